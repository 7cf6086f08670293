"""Turn database rows into the store's immutable records.

Each function takes a row mapping whose keys are the column names of one table (for runs,
plus ``pipeline_name``). The records hold plain values only, so they outlive the connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conveyor.store.metadata.records import (
    ArtifactRecord,
    ContextRecord,
    EventKind,
    EventRecord,
    ExecutionRecord,
    ExecutionStatus,
    PipelineRecord,
    RunRecord,
    RunStatus,
)

__all__ = [
    "artifact_record",
    "context_record",
    "event_record",
    "execution_record",
    "pipeline_record",
    "run_record",
]


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if value else {}


def pipeline_record(row: Mapping[Any, Any]) -> PipelineRecord:
    """Build a :class:`PipelineRecord` from a ``pipelines`` row."""
    return PipelineRecord(
        id=row["id"],
        name=row["name"],
        ir_hash=row["ir_hash"],
        ir=_dict(row["ir"]),
        created_at=row["created_at"],
    )


def run_record(row: Mapping[Any, Any]) -> RunRecord:
    """Build a :class:`RunRecord` from a ``runs`` row joined with ``pipeline_name``."""
    return RunRecord(
        id=row["id"],
        pipeline_id=row["pipeline_id"],
        pipeline_name=row["pipeline_name"],
        status=RunStatus(row["status"]),
        params=_dict(row["params"]),
        options=_dict(row["options"]),
        created_at=row["created_at"],
        ended_at=row["ended_at"],
        heartbeat_at=row["heartbeat_at"],
        host=row["host"],
        pid=row["pid"],
        error=row["error"],
    )


def execution_record(row: Mapping[Any, Any]) -> ExecutionRecord:
    """Build an :class:`ExecutionRecord` from an ``executions`` row."""
    parts = row["cache_key_parts"]
    return ExecutionRecord(
        id=row["id"],
        run_id=row["run_id"],
        step_name=row["step_name"],
        component_name=row["component_name"],
        status=ExecutionStatus(row["status"]),
        params=_dict(row["params"]),
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        attempts=row["attempts"],
        cache_key=row["cache_key"],
        cache_key_parts=None if parts is None else dict(parts),
        cache_explanation=row["cache_explanation"],
        cached_from=row["cached_from"],
        log_uri=row["log_uri"],
        error=row["error"],
        traceback=row["traceback"],
    )


def artifact_record(row: Mapping[Any, Any]) -> ArtifactRecord:
    """Build an :class:`ArtifactRecord` from an ``artifacts`` row."""
    return ArtifactRecord(
        id=row["id"],
        type_name=row["type_name"],
        uri=row["uri"],
        sha256=row["sha256"],
        size=row["size"],
        properties=_dict(row["properties"]),
        created_at=row["created_at"],
    )


def event_record(row: Mapping[Any, Any]) -> EventRecord:
    """Build an :class:`EventRecord` from an ``events`` row."""
    return EventRecord(
        id=row["id"],
        execution_id=row["execution_id"],
        artifact_id=row["artifact_id"],
        kind=EventKind(row["kind"]),
        name=row["name"],
        created_at=row["created_at"],
    )


def context_record(row: Mapping[Any, Any]) -> ContextRecord:
    """Build a :class:`ContextRecord` from a ``contexts`` row."""
    return ContextRecord(
        id=row["id"],
        type_name=row["type_name"],
        name=row["name"],
        properties=_dict(row["properties"]),
        created_at=row["created_at"],
    )
