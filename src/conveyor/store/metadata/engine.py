"""Engines for the metadata store: URL handling, SQLite settings, retries and error wording.

The store talks to the database only through the engines made here. For SQLite this module
sets the pragmas that let several processes share one file (WAL, busy timeout, foreign keys)
and makes write transactions take the write lock at ``BEGIN IMMEDIATE`` so that two writers
queue on the busy timeout instead of failing with "database is locked" half way through.
Reads use a plain (deferred) ``BEGIN`` and never block writers in WAL mode.

Write transactions run on ``engine.execution_options(**WRITE)``; the ``begin`` hook reads
that option to choose the kind of ``BEGIN``.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from conveyor.exceptions import MetadataStoreError

__all__ = [
    "WRITE",
    "create_store_engine",
    "describe_error",
    "is_memory_sqlite",
    "masked_url",
    "normalize_url",
    "retry_transient",
]

_T = TypeVar("_T")

WRITE: dict[str, Any] = {"conveyor_write": True}
"""Execution options of the engine that runs write transactions."""

_SQLITE_BUSY_TIMEOUT_MS = 30_000
_PG_CONNECT_TIMEOUT_S = 5
_RETRY_ATTEMPTS = 8
_RETRY_FIRST_DELAY_S = 0.05
_RETRY_MAX_DELAY_S = 2.0
# SQLSTATEs worth a retry on PostgreSQL: serialization failure, deadlock detected.
_PG_TRANSIENT = {"40001", "40P01"}


def normalize_url(url: str | URL) -> URL:
    """Parse ``url`` and pick the psycopg (v3) driver for PostgreSQL URLs without one.

    Raises:
        MetadataStoreError: the URL cannot be parsed or names an unsupported database.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise MetadataStoreError(
            f"invalid metadata database URL {str(url)[:200]!r}: expected sqlite:///PATH "
            "or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise MetadataStoreError(
            f"unsupported metadata database URL {masked_url(parsed)}: "
            "use sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        )
    return parsed


def masked_url(url: URL) -> str:
    """Render ``url`` with its password replaced by ``***``."""
    return url.render_as_string(hide_password=True)


def is_memory_sqlite(url: URL) -> bool:
    """Whether ``url`` names an in-memory SQLite database (one per process, not shareable)."""
    return url.get_backend_name() == "sqlite" and (
        url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"
    )


def create_store_engine(url: URL) -> Engine:
    """Create the engine for ``url`` (already normalized), configured for the store.

    Raises:
        MetadataStoreError: the database driver is not installed.
    """
    try:
        if url.get_backend_name() == "sqlite":
            return _sqlite_engine(url)
        return _postgres_engine(url)
    except ImportError as exc:
        raise MetadataStoreError(
            f"cannot use the metadata database {masked_url(url)}: its driver is not installed "
            f"({exc}); for PostgreSQL install psycopg 3: pip install 'conveyor-ml[postgres]'"
        ) from exc


def _postgres_engine(url: URL) -> Engine:
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = _PG_CONNECT_TIMEOUT_S
    if "application_name" not in url.query:
        connect_args["application_name"] = "conveyor"
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def _sqlite_engine(url: URL) -> Engine:
    memory = is_memory_sqlite(url)
    connect_args: dict[str, Any] = {
        "check_same_thread": False,
        "timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000,
    }
    if memory:
        engine = create_engine(url, poolclass=StaticPool, connect_args=connect_args)
    else:
        _create_parent_folder(url)
        engine = create_engine(url, connect_args=connect_args)
    event.listen(engine, "connect", _sqlite_on_connect(wal=not memory))
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _create_parent_folder(url: URL) -> None:
    database = url.database or ""
    if database.startswith("file:"):
        return  # an SQLite URI; its path is the user's business
    try:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MetadataStoreError(
            f"cannot create the folder of the metadata database {masked_url(url)}: {exc}"
        ) from exc


def _sqlite_on_connect(*, wal: bool) -> Callable[[Any, ConnectionPoolEntry], None]:
    def on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Take transaction control away from the sqlite3 module: the "begin" hook emits BEGIN.
        dbapi_connection.isolation_level = None
        pragmas = [
            f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}",
            "PRAGMA foreign_keys=ON",
            "PRAGMA synchronous=NORMAL",
        ]
        if wal:
            pragmas.insert(1, "PRAGMA journal_mode=WAL")
        for pragma in pragmas:
            # Switching a fresh file to WAL needs an exclusive lock that another process
            # may hold for a moment; the busy handler does not cover every such case.
            retry_transient(partial(_pragma, dbapi_connection, pragma))

    return on_connect


def _pragma(dbapi_connection: Any, pragma: str) -> None:
    dbapi_connection.execute(pragma).fetchall()


def _sqlite_on_begin(conn: Connection) -> None:
    if conn.get_execution_options().get("conveyor_write"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a lock or serialization conflict that a new attempt may avoid."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(orig, sqlite3.OperationalError):
        text = str(orig).lower()
        return "database is locked" in text or "database table is locked" in text
    sqlstate = getattr(orig, "sqlstate", None)
    return sqlstate in _PG_TRANSIENT


def retry_transient(fn: Callable[[], _T]) -> _T:
    """Call ``fn``, calling it again with jittered exponential backoff on transient errors.

    The last resort behind SQLite's busy timeout; ``fn`` must be one whole transaction.
    """
    delay = _RETRY_FIRST_DELAY_S
    for attempt in range(1, _RETRY_ATTEMPTS + 1):
        try:
            return fn()
        except (DBAPIError, sqlite3.OperationalError) as exc:
            if attempt == _RETRY_ATTEMPTS or not is_transient(exc):
                raise
        time.sleep(delay * random.uniform(0.5, 1.5))
        delay = min(delay * 2, _RETRY_MAX_DELAY_S)
    raise AssertionError("unreachable")  # pragma: no cover


def describe_error(exc: BaseException) -> str:
    """A one-line, bounded reason for a database error, without SQL or parameters."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    reason = lines[0] if lines else type(orig).__name__
    # psycopg: 'connection failed: connection to server at "h", port 1 failed: Connection refused'
    reason = reason.rsplit(" failed: ", 1)[-1].removeprefix("FATAL:").strip()
    if len(reason) > 1 and reason[0].isupper() and reason[1].islower():
        reason = reason[0].lower() + reason[1:]
    return reason if len(reason) <= 300 else reason[:297] + "..."
