"""One metadata database as the store uses it: transactions, retries and error wording.

:class:`Database` opens the engine (connecting and upgrading the schema), runs each unit of
work as one transaction on a pooled connection (reads with ``BEGIN``, writes with SQLite's
``BEGIN IMMEDIATE``), retries lock conflicts, and turns SQLAlchemy errors into
:class:`~conveyor.exceptions.MetadataStoreError` or, when an id does not exist,
:class:`~conveyor.exceptions.NotFoundError`. The statement helpers at the bottom are shared
by the store's methods.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Result, Select, Table, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from conveyor.exceptions import ConveyorError, MetadataStoreError, NotFoundError
from conveyor.store.metadata import migrations
from conveyor.store.metadata.engine import (
    WRITE,
    create_store_engine,
    describe_error,
    is_memory_sqlite,
    masked_url,
    normalize_url,
    retry_transient,
)
from conveyor.store.metadata.records import ArtifactRecord, EventKind, NewArtifact
from conveyor.store.metadata.rows import artifact_record
from conveyor.store.metadata.tables import (
    artifacts,
    contexts,
    events,
    executions,
    pipelines,
    runs,
)

__all__ = [
    "Conflict",
    "Database",
    "Tx",
    "artifacts_by_event",
    "insert_artifacts",
    "insert_events",
    "insert_ignore",
]

_T = TypeVar("_T")
Tx = Callable[[Connection], _T]
Conflict = Callable[[], ConveyorError | None]
"""Explains an integrity error after the fact, typically by naming the id that is missing."""

# The tables an id of each kind lives in.
_KINDS: dict[str, Table] = {
    "pipeline": pipelines,
    "run": runs,
    "execution": executions,
    "artifact": artifacts,
    "context": contexts,
}


class Database:
    """An engine at the current schema version, used one transaction at a time.

    Thread-safe: every transaction borrows its own pooled connection (the single connection
    of an in-memory SQLite database is taken in turns).
    """

    def __init__(self, engine: Engine) -> None:
        """Wrap an engine whose database is at the current schema version; prefer :meth:`open`."""
        self._engine = engine
        self._write_engine = engine.execution_options(**WRITE)
        self.url = masked_url(engine.url)
        self._guard: AbstractContextManager[Any] = (
            threading.RLock() if is_memory_sqlite(engine.url) else nullcontext()
        )
        self._pid = os.getpid()
        self._closed = False

    @classmethod
    def open(cls, url: str) -> Database:
        """Connect to ``url``, create or upgrade its schema, and wrap it.

        Raises:
            MetadataStoreError: bad URL, unreachable database, schema newer than this code.
        """
        parsed = normalize_url(url)
        engine = create_store_engine(parsed)
        try:
            try:
                engine.connect().close()
            except SQLAlchemyError as exc:
                raise MetadataStoreError(
                    f"cannot connect to the metadata database {masked_url(parsed)}: "
                    f"{describe_error(exc)}"
                ) from exc
            try:
                migrations.upgrade(engine)
            except SQLAlchemyError as exc:
                raise MetadataStoreError(
                    f"cannot prepare the schema of the metadata database {masked_url(parsed)}: "
                    f"{describe_error(exc)}"
                ) from exc
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def close(self) -> None:
        """Close the pooled connections; later transactions raise MetadataStoreError."""
        self._closed = True
        self._engine.dispose()

    def read(self, tx: Tx[_T]) -> _T:
        """Run ``tx`` in a read transaction and return its result."""
        return self._run(self._engine, tx, None)

    def write(self, tx: Tx[_T], conflict: Conflict | None = None) -> _T:
        """Run ``tx`` in a write transaction; ``conflict`` words an integrity error."""
        return self._run(self._write_engine, tx, conflict)

    def _run(self, engine: Engine, tx: Tx[_T], conflict: Conflict | None) -> _T:
        self._check_usable()

        def once() -> _T:
            with self._guard, engine.begin() as conn:
                return tx(conn)

        try:
            return retry_transient(once)
        except IntegrityError as exc:
            error = conflict() if conflict is not None else None
            raise error or MetadataStoreError(
                f"the metadata database {self.url} refused a change: {describe_error(exc)}"
            ) from exc
        except SQLAlchemyError as exc:
            raise MetadataStoreError(
                f"the metadata database {self.url} failed: {describe_error(exc)}"
            ) from exc

    def _check_usable(self) -> None:
        if self._closed:
            raise MetadataStoreError(f"the metadata store {self.url} is closed")
        if os.getpid() != self._pid and not is_memory_sqlite(self._engine.url):
            # A forked child must not use the connections its parent pooled.
            self._engine.dispose(close=False)
            self._pid = os.getpid()

    def update(self, table: Table, kind: str, ident: int, **values: Any) -> None:
        """Set ``values`` on row ``ident`` of ``table`` in one write transaction.

        Raises:
            NotFoundError: there is no such row (``kind`` names it in the message).
        """

        def tx(conn: Connection) -> None:
            result = conn.execute(update(table).where(table.c.id == ident).values(values))
            if not result.rowcount:
                raise self.not_found(kind, ident)

        self.write(tx)

    def records(
        self,
        conn: Connection,
        query: Select[Any],
        build: Callable[[Mapping[Any, Any]], _T],
        kind: str,
        ident: int,
    ) -> list[_T]:
        """Rows of ``query`` as records; when there are none, check that ``kind`` ``ident``
        exists, so that a wrong id raises NotFoundError instead of giving an empty list."""
        found = [build(row) for row in conn.execute(query).mappings()]
        if not found:
            self.require(conn, kind, ident)
        return found

    def one(self, result: Result[Any], kind: str, ident: int) -> Mapping[Any, Any]:
        """The first row of ``result``; NotFoundError naming ``kind`` ``ident`` if none."""
        row = result.mappings().first()
        if row is None:
            raise self.not_found(kind, ident)
        return row

    def require(self, conn: Connection, kind: str, ident: int) -> None:
        """Raise NotFoundError unless ``kind`` ``ident`` exists."""
        table = _KINDS[kind]
        if conn.scalar(select(table.c.id).where(table.c.id == ident)) is None:
            raise self.not_found(kind, ident)

    def missing(self, **ids: Iterable[int]) -> NotFoundError | None:
        """The NotFoundError for the first of ``ids`` (by kind) that does not exist."""

        def tx(conn: Connection) -> NotFoundError | None:
            for kind, idents in ids.items():
                table = _KINDS[kind]
                wanted = set(idents)
                query = select(table.c.id).where(table.c.id.in_(wanted))
                absent = sorted(wanted - set(conn.execute(query).scalars()))
                if absent:
                    return self.not_found(kind, absent[0])
            return None

        return self.read(tx)

    def not_found(self, kind: str, ident: int) -> NotFoundError:
        """The error for a ``kind`` (run, execution, ...) ``ident`` that does not exist."""
        return NotFoundError(f"{kind} {ident} not found in the metadata database {self.url}")


def insert_ignore(conn: Connection, table: Table, values: Mapping[str, Any]) -> None:
    """Insert a row unless it clashes with a unique key (then keep the existing row)."""
    if conn.dialect.name == "postgresql":
        conn.execute(postgresql.insert(table).values(values).on_conflict_do_nothing())
    else:
        conn.execute(sqlite.insert(table).values(values).on_conflict_do_nothing())


def insert_artifacts(
    conn: Connection, new: Iterable[NewArtifact], now: datetime
) -> list[Mapping[Any, Any]]:
    """Insert the artifacts with one statement; return their rows in the given order."""
    rows = [
        {
            "type_name": a.type_name,
            "uri": a.uri,
            "sha256": a.sha256,
            "size": a.size,
            "properties": dict(a.properties),
            "created_at": now,
        }
        for a in new
    ]
    if not rows:
        return []
    query = insert(artifacts).returning(*artifacts.c, sort_by_parameter_order=True)
    return list(conn.execute(query, rows).mappings())


def insert_events(
    conn: Connection,
    execution_id: int,
    inputs: Mapping[str, int],
    outputs: Mapping[str, int],
    now: datetime,
) -> None:
    """Insert the input and output events of an execution with one statement."""
    rows = [
        {
            "execution_id": execution_id,
            "artifact_id": artifact_id,
            "kind": kind.value,
            "name": name,
            "created_at": now,
        }
        for kind, named in ((EventKind.INPUT, inputs), (EventKind.OUTPUT, outputs))
        for name, artifact_id in named.items()
    ]
    if rows:
        conn.execute(insert(events), rows)


def artifacts_by_event(
    conn: Connection, execution_id: int, kind: EventKind
) -> dict[str, ArtifactRecord]:
    """The artifacts on the ``kind`` events of the execution, by event name."""
    query = (
        select(events.c.name.label("event_name"), *artifacts.c)
        .join_from(events, artifacts, events.c.artifact_id == artifacts.c.id)
        .where(events.c.execution_id == execution_id, events.c.kind == kind.value)
        .order_by(events.c.id)
    )
    return {row["event_name"]: artifact_record(row) for row in conn.execute(query).mappings()}
