"""The metadata store: what ran, on what, producing what (lineage and run bookkeeping).

Example:
    >>> from conveyor.store.metadata import open_metadata_store
    >>> with open_metadata_store("sqlite:///:memory:") as store:
    ...     store.register_pipeline("demo", {"steps": []}, "abc")
    1
"""

from __future__ import annotations

from conveyor.store.metadata.activity import ActivityStore
from conveyor.store.metadata.activity_records import (
    ACTIVITY_KINDS,
    ActivityEvent,
    ActivityKind,
    ActivityStoreError,
    LeaseLostError,
    LeaseRecord,
    NewActivityEvent,
    Recorded,
)
from conveyor.store.metadata.records import (
    ArtifactRecord,
    ContextRecord,
    EventKind,
    EventRecord,
    ExecutionRecord,
    ExecutionStatus,
    NewArtifact,
    PipelineRecord,
    RunRecord,
    RunStatus,
)
from conveyor.store.metadata.store import MetadataStore

__all__ = [
    "ACTIVITY_KINDS",
    "ActivityEvent",
    "ActivityKind",
    "ActivityStore",
    "ActivityStoreError",
    "ArtifactRecord",
    "ContextRecord",
    "EventKind",
    "EventRecord",
    "ExecutionRecord",
    "ExecutionStatus",
    "LeaseLostError",
    "LeaseRecord",
    "MetadataStore",
    "NewActivityEvent",
    "NewArtifact",
    "PipelineRecord",
    "Recorded",
    "RunRecord",
    "RunStatus",
    "open_metadata_store",
]


def open_metadata_store(url: str) -> MetadataStore:
    """Open the metadata store at ``url``, creating or upgrading its schema.

    Args:
        url: ``sqlite:///PATH``, ``sqlite:///:memory:`` or ``postgresql://...``.

    Raises:
        conveyor.exceptions.MetadataStoreError: the database is unreachable or too new.
    """
    return MetadataStore.open(url)
