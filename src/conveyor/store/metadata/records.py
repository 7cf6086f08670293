"""Plain, immutable records the metadata store returns.

They are detached from the database session, safe to pass between threads and to print.
Timestamps are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "ArtifactRecord",
    "ContextRecord",
    "EventKind",
    "EventRecord",
    "ExecutionRecord",
    "ExecutionStatus",
    "NewArtifact",
    "PipelineRecord",
    "RunRecord",
    "RunStatus",
]


class RunStatus(StrEnum):
    """Life cycle of a run."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class ExecutionStatus(StrEnum):
    """Life cycle of one step's execution inside a run."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    CACHED = "cached"
    FAILED = "failed"
    SKIPPED = "skipped"  # an upstream step failed
    INTERRUPTED = "interrupted"


class EventKind(StrEnum):
    """Direction of an edge between an execution and an artifact."""

    INPUT = "input"
    OUTPUT = "output"


@dataclass(frozen=True)
class PipelineRecord:
    id: int
    name: str
    ir_hash: str
    ir: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class RunRecord:
    id: int
    pipeline_id: int
    pipeline_name: str
    status: RunStatus
    params: dict[str, Any]
    options: dict[str, Any]
    created_at: datetime
    ended_at: datetime | None
    heartbeat_at: datetime | None
    host: str
    pid: int
    error: str | None = None


@dataclass(frozen=True)
class ExecutionRecord:
    id: int
    run_id: int
    step_name: str
    component_name: str
    status: ExecutionStatus
    params: dict[str, Any]
    started_at: datetime | None
    ended_at: datetime | None
    attempts: int
    cache_key: str | None
    cache_key_parts: dict[str, Any] | None
    cache_explanation: str | None
    cached_from: int | None
    log_uri: str | None
    error: str | None
    traceback: str | None


@dataclass(frozen=True)
class NewArtifact:
    """An artifact about to be recorded (it already exists in the artifact store)."""

    type_name: str
    uri: str
    sha256: str
    size: int
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ArtifactRecord:
    id: int
    type_name: str
    uri: str
    sha256: str
    size: int
    properties: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class EventRecord:
    id: int
    execution_id: int
    artifact_id: int
    kind: EventKind
    name: str
    created_at: datetime


@dataclass(frozen=True)
class ContextRecord:
    id: int
    type_name: str
    name: str
    properties: dict[str, Any]
    created_at: datetime
