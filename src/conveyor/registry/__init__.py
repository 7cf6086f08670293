"""The model registry: numbered versions of blessed models, aliases, promotion and rollback.

Example:
    >>> from conveyor.registry import ModelRegistry
    >>> registry = ModelRegistry(workspace)  # doctest: +SKIP
    >>> registry.promote("census", 3, reason="beats version 2 on every slice")
    >>> registry.set_traffic("census", {"production": 90, "canary": 10}, reason="canary")
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
    TrafficSplit,
    VersionStatus,
)
from conveyor.store.metadata.registry_traffic import RouteTargets

__all__ = [
    "AuditAction",
    "AuditRecord",
    "ModelRegistry",
    "ModelSummary",
    "ModelVersionRecord",
    "NotBlessedError",
    "RegistryError",
    "RegistryStoreError",
    "RouteTargets",
    "TrafficSplit",
    "VersionStatus",
    "blessing_verdict",
    "default_actor",
    "verify_bundle",
]
