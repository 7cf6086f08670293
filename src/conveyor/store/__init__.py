"""Storage for conveyor: content-addressed artifact payloads and the metadata store.

``MetadataStore`` is imported on first access: it pulls in SQLAlchemy (~150 ms), which step
worker processes, needing only the artifact store, should not pay for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.store.artifact_store import ArtifactStore, StoredArtifact

if TYPE_CHECKING:
    from conveyor.store.metadata import MetadataStore

__all__ = ["ArtifactStore", "MetadataStore", "StoredArtifact"]


def __getattr__(name: str) -> object:
    if name == "MetadataStore":
        from conveyor.store.metadata import MetadataStore

        return MetadataStore
    raise AttributeError(f"module 'conveyor.store' has no attribute {name!r}")
