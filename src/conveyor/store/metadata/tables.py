"""Table definitions of the metadata store (SQLAlchemy Core), shared by SQLite and PostgreSQL.

These describe the *current* schema; :mod:`conveyor.store.metadata.migrations` builds and
upgrades databases to it. Changing a table here needs a new migration there.

Timestamps are stored in UTC (``timestamptz`` on PostgreSQL, naive UTC text on SQLite, which
keeps no zone) and always come back as timezone-aware UTC datetimes. JSON columns map SQL
``NULL`` to ``None`` (``none_as_null``), so "no value" can be found with ``IS NULL``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "UTCDateTime",
    "artifacts",
    "context_artifacts",
    "context_executions",
    "contexts",
    "ct_events",
    "ct_leases",
    "ct_state",
    "events",
    "executions",
    "metadata",
    "model_aliases",
    "model_audit",
    "model_traffic",
    "model_versions",
    "pipelines",
    "runs",
    "schema_version",
]


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC; SQLite gets a naive UTC value since it cannot store a zone."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the metadata store needs aware ones")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime whatever the backend handed back."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _json() -> TypeEngine[Any]:
    return JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def _id() -> TypeEngine[int]:
    # SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
    return BigInteger().with_variant(Integer(), "sqlite")


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
)

pipelines = Table(
    "pipelines",
    metadata,
    Column("id", _id(), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("ir_hash", String(128), nullable=False),
    Column("ir", _json(), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # Also serves lookups by name (leading column).
    UniqueConstraint("name", "ir_hash"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", _id(), primary_key=True),
    Column("pipeline_id", _id(), ForeignKey("pipelines.id"), nullable=False, index=True),
    Column("status", String(32), nullable=False, index=True),
    Column("params", _json(), nullable=False),
    Column("options", _json(), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
    Column("heartbeat_at", UTCDateTime),
    Column("error", Text),
)

executions = Table(
    "executions",
    metadata,
    Column("id", _id(), primary_key=True),
    Column("run_id", _id(), ForeignKey("runs.id"), nullable=False, index=True),
    Column("step_name", String(255), nullable=False),
    Column("component_name", String(255), nullable=False),
    Column("status", String(32), nullable=False),
    Column("params", _json(), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("ended_at", UTCDateTime),
    Column("attempts", Integer, nullable=False, default=0),
    Column("cache_key", String(128), index=True),
    Column("cache_key_parts", _json()),
    Column("cache_explanation", Text),
    Column("cached_from", _id(), ForeignKey("executions.id")),
    Column("log_uri", Text),
    Column("error", Text),
    Column("traceback", Text),
    UniqueConstraint("run_id", "step_name"),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("id", _id(), primary_key=True),
    Column("type_name", String(255), nullable=False, index=True),
    Column("uri", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("properties", _json(), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", _id(), primary_key=True),
    Column("execution_id", _id(), ForeignKey("executions.id"), nullable=False, index=True),
    Column("artifact_id", _id(), ForeignKey("artifacts.id"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("name", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("execution_id", "kind", "name"),
)

contexts = Table(
    "contexts",
    metadata,
    Column("id", _id(), primary_key=True),
    Column("type_name", String(255), nullable=False),
    Column("name", String(255), nullable=False),
    Column("properties", _json(), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("type_name", "name"),
)

context_executions = Table(
    "context_executions",
    metadata,
    Column("context_id", _id(), ForeignKey("contexts.id"), nullable=False),
    Column("execution_id", _id(), ForeignKey("executions.id"), nullable=False, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("context_id", "execution_id"),
)

context_artifacts = Table(
    "context_artifacts",
    metadata,
    Column("context_id", _id(), ForeignKey("contexts.id"), nullable=False),
    Column("artifact_id", _id(), ForeignKey("artifacts.id"), nullable=False, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("context_id", "artifact_id"),
)


# -- model registry (schema version 2) ------------------------------------------------------
# Named versions of an artifact, the aliases pointing at them and an append-only audit trail.
# ``version`` counts from 1 per name; aliases and audit rows name versions by that number.

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", _id(), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("artifact_id", _id(), ForeignKey("artifacts.id"), nullable=False, index=True),
    Column("run_id", _id(), ForeignKey("runs.id"), index=True),
    Column("execution_id", _id(), ForeignKey("executions.id")),
    Column("metrics", _json(), nullable=False),
    Column("blessing", _json()),
    Column("params", _json(), nullable=False),
    Column("tags", _json(), nullable=False),
    Column("description", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(255), nullable=False),
    # Also serves lookups by name (leading column).
    UniqueConstraint("name", "version"),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("name", String(255), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("version_id", _id(), ForeignKey("model_versions.id"), nullable=False, index=True),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("name", "alias"),
)

model_audit = Table(
    "model_audit",
    metadata,
    Column("id", _id(), primary_key=True),
    Column("name", String(255), nullable=False, index=True),
    Column("action", String(32), nullable=False),
    Column("alias", String(64)),
    Column("from_version", Integer),
    Column("to_version", Integer),
    Column("actor", String(255), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    # Schema version 3: what changed beyond alias and versions (a traffic split's old and
    # new weights); NULL for the entries that need none and for those written before.
    Column("details", _json()),
)

# -- traffic splits (schema version 3) ------------------------------------------------------
# How the requests for one alias (the *route*) of a model are shared between targets: other
# aliases of the same model or explicit versions ("v7"), resolved to versions when read, so a
# split follows its target aliases. ``weights`` is {target: percent}; ``shadows`` [target].
# No foreign key to ``model_aliases``: moving an alias deletes and re-inserts its row, which
# would cascade; the registry store deletes a split itself when its route alias is removed.

model_traffic = Table(
    "model_traffic",
    metadata,
    Column("name", String(255), nullable=False),
    Column("route", String(64), nullable=False),
    Column("weights", _json(), nullable=False),
    Column("shadows", _json(), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("updated_by", String(255), nullable=False),
    PrimaryKeyConstraint("name", "route"),
)


# -- continuous-training activity (schema version 4) ----------------------------------------
# What the controller did and why (append-only; ``run_id`` is the one column filled in later,
# once, for an event recorded before its run existed), the leases that keep two controllers
# from acting at once, and the controller's own state as JSON by key. ``kind`` is free text in
# the database: the store checks it against the kinds it knows, so a new kind needs no
# migration. ``dedupe_key`` is unique (NULLs are distinct on both backends): an event that two
# writers may both record, e.g. an alert for one rule and window, is stored once.

ct_events = Table(
    "ct_events",
    metadata,
    Column("id", _id(), primary_key=True),
    Column("time", UTCDateTime, nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("source", String(64), nullable=False),
    Column("pipeline", String(255), index=True),
    Column("model", String(255), index=True),
    Column("version", Integer),
    Column("run_id", _id(), ForeignKey("runs.id"), index=True),
    Column("subject", String(255)),
    Column("reason", Text, nullable=False),
    Column("details", _json(), nullable=False),
    Column("dedupe_key", String(255)),
    UniqueConstraint("dedupe_key"),
)

ct_leases = Table(
    "ct_leases",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("owner", String(255), nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

ct_state = Table(
    "ct_state",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("value", _json(), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)
