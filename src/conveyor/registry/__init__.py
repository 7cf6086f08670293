"""The model registry: numbered versions of blessed models, aliases, promotion and rollback.

Example:
    >>> from conveyor.registry import ModelRegistry
    >>> registry = ModelRegistry(workspace)  # doctest: +SKIP
    >>> registry.promote("census", 3, reason="beats version 2 on every slice")
"""

from __future__ import annotations

from conveyor.registry.registry import (
    ModelRegistry,
    NotBlessedError,
    RegistryError,
    blessing_verdict,
    default_actor,
    verify_bundle,
)
from conveyor.store.metadata.registry_records import (
    AuditAction,
    AuditRecord,
    ModelSummary,
    ModelVersionRecord,
    RegistryStoreError,
    VersionStatus,
)

__all__ = [
    "AuditAction",
    "AuditRecord",
    "ModelRegistry",
    "ModelSummary",
    "ModelVersionRecord",
    "NotBlessedError",
    "RegistryError",
    "RegistryStoreError",
    "VersionStatus",
    "blessing_verdict",
    "default_actor",
    "verify_bundle",
]
