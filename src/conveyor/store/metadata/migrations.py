"""Versioned schema of the metadata store and its upgrade path (no Alembic).

The database records one integer in ``schema_version``. Version N is the state reached after
applying ``MIGRATIONS[:N]``; a database without the table is at version 0. :func:`upgrade`
applies what is pending inside one transaction that holds a lock (PostgreSQL: a transaction
advisory lock; SQLite: ``BEGIN IMMEDIATE``), so processes opening a fresh database at the same
time take turns and every migration runs exactly once. DDL is transactional on both backends:
a failed upgrade leaves the database as it was.

To change the schema: edit :mod:`~conveyor.store.metadata.tables`, then append a function
here that brings a database at the previous version to the new one. Never edit a released
migration; once a later one exists, ``_v1`` must keep building the version-1 tables.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    inspect,
    select,
    text,
)

from conveyor.exceptions import MetadataStoreError
from conveyor.store.metadata import tables
from conveyor.store.metadata.engine import WRITE, masked_url, retry_transient

__all__ = ["MIGRATIONS", "current_version", "upgrade"]

# Any constant works; it only has to be the same in every conveyor process.
_PG_LOCK_KEY = 0x636F6E7665796F72 & 0x7FFFFFFFFFFFFFFF  # "conveyor"


# The tables of each version, by name. ``tables.metadata`` describes the newest schema, so a
# migration names the tables it creates instead of calling ``create_all`` on all of them. A
# later migration that alters one of these tables must leave the earlier one a frozen copy
# of the old definition.
_V1_TABLES = (
    "schema_version",
    "pipelines",
    "runs",
    "executions",
    "artifacts",
    "events",
    "contexts",
    "context_executions",
    "context_artifacts",
)
_V2_TABLES = ("model_versions", "model_aliases")
_V3_TABLES = ("model_traffic",)
_V4_TABLES = ("ct_events", "ct_leases", "ct_state")

# ``model_audit`` as version 2 created it: version 3 adds ``details``, so ``_v2`` must not
# build today's definition (a fresh database and an upgraded one take the same path).
_V2_AUDIT = Table(
    "model_audit",
    MetaData(naming_convention=tables.metadata.naming_convention),
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("name", String(255), nullable=False, index=True),
    Column("action", String(32), nullable=False),
    Column("alias", String(64)),
    Column("from_version", Integer),
    Column("to_version", Integer),
    Column("actor", String(255), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", tables.UTCDateTime, nullable=False),
)


def _create(conn: Connection, names: tuple[str, ...]) -> None:
    chosen = [tables.metadata.tables[name] for name in names]
    tables.metadata.create_all(conn, tables=chosen, checkfirst=True)


def _v1(conn: Connection) -> None:
    """Create every table of the first schema."""
    _create(conn, _V1_TABLES)


def _v2(conn: Connection) -> None:
    """Add the model registry: versions, aliases and their audit trail."""
    _create(conn, _V2_TABLES)
    _V2_AUDIT.create(conn, checkfirst=True)


def _v3(conn: Connection) -> None:
    """Add traffic splits and the ``details`` of audit entries (a split's old and new value)."""
    _create(conn, _V3_TABLES)
    details = tables.model_audit.c.details
    kind = details.type.compile(dialect=conn.dialect)
    conn.execute(text(f"ALTER TABLE {tables.model_audit.name} ADD COLUMN {details.name} {kind}"))


def _v4(conn: Connection) -> None:
    """Add the continuous-training activity: events, leases and the controller's state."""
    _create(conn, _V4_TABLES)


MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2, _v3, _v4]
"""Migration N+1 takes a database from version N to N+1."""


def current_version(conn: Connection) -> int:
    """The schema version of the database behind ``conn`` (0 when it is empty)."""
    if not inspect(conn).has_table(tables.schema_version.name):
        return 0
    version = conn.scalar(select(func.max(tables.schema_version.c.version)))
    return int(version or 0)


def upgrade(engine: Engine) -> int:
    """Bring the database to the newest version this code knows, and return that version.

    Raises:
        MetadataStoreError: the database is newer than this conveyor.
        sqlalchemy.exc.DBAPIError: the database failed (the caller words it).
    """
    known = len(MIGRATIONS)
    with engine.connect() as conn, conn.begin():
        found = current_version(conn)
    _check_not_newer(engine, found, known)
    if found == known:
        return found
    write_engine = engine.execution_options(**WRITE)
    return retry_transient(lambda: _upgrade_locked(write_engine, known))


def _upgrade_locked(engine: Engine, known: int) -> int:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        # Another process may have upgraded while we waited for the lock: read again.
        found = current_version(conn)
        _check_not_newer(engine, found, known)
        for migration in MIGRATIONS[found:known]:
            migration(conn)
        if found != known:
            conn.execute(delete(tables.schema_version))
            conn.execute(insert(tables.schema_version).values(version=known))
        return known


def _check_not_newer(engine: Engine, found: int, known: int) -> None:
    if found > known:
        raise MetadataStoreError(
            f"the metadata database {masked_url(engine.url)}: schema version {found} is newer "
            f"than this conveyor supports ({known}); upgrade conveyor"
        )
