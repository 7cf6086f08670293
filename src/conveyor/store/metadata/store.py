"""The metadata store: pipelines, runs, executions, artifacts, events and contexts.

One SQLAlchemy 2 implementation serves SQLite (embedded default) and PostgreSQL (by URL).
Every public method is one short transaction on a connection borrowed from the engine's pool
(see :mod:`~conveyor.store.metadata.database`), so a store may be shared by the threads of a
process (the runner's main loop and its heartbeat thread); no connection is ever shared
between threads. SQLite runs in WAL mode with a busy timeout and takes its write lock at
BEGIN (``BEGIN IMMEDIATE``) so several processes can write at once without "database is
locked" errors (see :mod:`~conveyor.store.metadata.engine`).

Database errors surface as :class:`~conveyor.exceptions.MetadataStoreError`, or as
:class:`~conveyor.exceptions.NotFoundError` when an id does not exist, original chained.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, case, func, insert, literal, or_, select, update

from conveyor.exceptions import ConveyorError
from conveyor.store.metadata.activity import ActivityStore
from conveyor.store.metadata.database import (
    Database,
    artifacts_by_event,
    insert_artifacts,
    insert_events,
    insert_ignore,
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
from conveyor.store.metadata.registry_store import RegistryStore
from conveyor.store.metadata.rows import (
    artifact_record,
    context_record,
    event_record,
    execution_record,
    pipeline_record,
    run_record,
)
from conveyor.store.metadata.tables import (
    UTCDateTime,
    artifacts,
    context_artifacts,
    context_executions,
    contexts,
    events,
    executions,
    pipelines,
    runs,
)

__all__ = ["MetadataStore"]

_RUNS = select(runs, pipelines.c.name.label("pipeline_name")).join_from(runs, pipelines)


def _now() -> datetime:
    return datetime.now(UTC)


class MetadataStore:
    """Lineage and run bookkeeping over one SQL database.

    Create it with :meth:`open` (or :func:`conveyor.store.metadata.open_metadata_store`);
    it is safe to use from several threads, and from several processes each with its own
    store on the same database.

    Example:
        >>> store = MetadataStore.open("sqlite:///:memory:")
        >>> pid = store.register_pipeline("demo", {"steps": []}, "abc")
        >>> store.get_pipeline(pid).name
        'demo'
        >>> store.close()
    """

    def __init__(self, database: Database) -> None:
        """Wrap an open :class:`Database`; prefer :meth:`open`."""
        self._db = database

    @classmethod
    def open(cls, url: str) -> MetadataStore:
        """Connect, create or upgrade the schema, and return a ready store.

        Args:
            url: ``sqlite:///PATH`` (the folder is created if missing), ``sqlite:///:memory:``
                or ``postgresql://USER:PASSWORD@HOST:PORT/DATABASE`` (psycopg 3 is used).

        Raises:
            MetadataStoreError: the URL is invalid, the database is unreachable (the message
                names the URL without its password) or its schema is newer than this conveyor.
        """
        return cls(Database.open(url))

    @property
    def url(self) -> str:
        """The database URL with its password masked."""
        return self._db.url

    @property
    def registry(self) -> RegistryStore:
        """The registry tables (named artifact versions and aliases) of this database."""
        return RegistryStore(self._db)

    @property
    def activity(self) -> ActivityStore:
        """The continuous-training activity (events, leases, controller state) of this database."""
        return ActivityStore(self._db)

    def close(self) -> None:
        """Close every pooled connection; the store cannot be used afterwards."""
        self._db.close()

    def __enter__(self) -> MetadataStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MetadataStore({self.url!r})"

    # -- pipelines and runs -------------------------------------------------------------
    def register_pipeline(self, name: str, ir: Mapping[str, Any], ir_hash: str) -> int:
        """Return the id of the pipeline (name, ir_hash), creating it if new."""

        def tx(conn: Connection) -> int:
            values = {"name": name, "ir_hash": ir_hash, "ir": dict(ir), "created_at": _now()}
            insert_ignore(conn, pipelines, values)
            query = select(pipelines.c.id).where(
                pipelines.c.name == name, pipelines.c.ir_hash == ir_hash
            )
            return int(conn.execute(query).scalar_one())

        return self._db.write(tx)

    def get_pipeline(self, pipeline_id: int) -> PipelineRecord:
        """Return the pipeline; raise NotFoundError when there is no such pipeline."""

        def tx(conn: Connection) -> PipelineRecord:
            row = conn.execute(select(pipelines).where(pipelines.c.id == pipeline_id))
            return pipeline_record(self._db.one(row, "pipeline", pipeline_id))

        return self._db.read(tx)

    def create_run(
        self,
        pipeline_id: int,
        params: Mapping[str, Any],
        options: Mapping[str, Any],
        host: str,
        pid: int,
    ) -> RunRecord:
        """Create a run in state ``running`` with a fresh heartbeat."""

        def tx(conn: Connection) -> RunRecord:
            name = conn.scalar(select(pipelines.c.name).where(pipelines.c.id == pipeline_id))
            if name is None:
                raise self._db.not_found("pipeline", pipeline_id)
            now = _now()
            values = {
                "pipeline_id": pipeline_id,
                "status": RunStatus.RUNNING.value,
                "params": dict(params),
                "options": dict(options),
                "host": host,
                "pid": pid,
                "created_at": now,
                "heartbeat_at": now,
            }
            row = conn.execute(insert(runs).values(values).returning(*runs.c)).mappings().one()
            return run_record({**row, "pipeline_name": name})

        return self._db.write(tx)

    def heartbeat(self, run_id: int) -> None:
        """Record that the run's runner is alive now; raise NotFoundError for an unknown run."""
        self._db.update(runs, "run", run_id, heartbeat_at=_now())

    def finish_run(self, run_id: int, status: RunStatus, error: str | None = None) -> None:
        """Set the run's final status (and error), stamping its end time."""
        value = RunStatus(status).value
        self._db.update(runs, "run", run_id, status=value, error=error, ended_at=_now())

    def interrupt_run(self, run_id: int, error: str) -> None:
        """Mark a run and its pending or running executions interrupted (the runner stops)."""

        def tx(conn: Connection) -> None:
            now = _now()
            conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(status=RunStatus.INTERRUPTED.value, ended_at=now, error=error)
            )
            conn.execute(
                update(executions)
                .where(executions.c.run_id == run_id)
                .where(executions.c.status.in_(["pending", "running"]))
                .values(status=ExecutionStatus.INTERRUPTED.value, ended_at=now)
            )

        self._db.write(tx)

    def get_run(self, run_id: int) -> RunRecord:
        """Raise NotFoundError when there is no such run."""

        def tx(conn: Connection) -> RunRecord:
            row = conn.execute(_RUNS.where(runs.c.id == run_id))
            return run_record(self._db.one(row, "run", run_id))

        return self._db.read(tx)

    def list_runs(
        self, limit: int = 50, pipeline_name: str | None = None, status: RunStatus | None = None
    ) -> list[RunRecord]:
        """Newest first."""
        query = _RUNS.order_by(runs.c.id.desc()).limit(limit)
        if pipeline_name is not None:
            query = query.where(pipelines.c.name == pipeline_name)
        if status is not None:
            query = query.where(runs.c.status == RunStatus(status).value)
        return self._db.read(lambda conn: [run_record(r) for r in conn.execute(query).mappings()])

    def recover_interrupted(
        self, host: str, is_alive: Callable[[int], bool], stale_after_s: float
    ) -> list[int]:
        """Mark runs whose runner is gone as interrupted; return their ids.

        A ``running`` run is gone when it was started on ``host`` and ``is_alive(pid)`` is
        false, or when its heartbeat is older than ``stale_after_s``. Its pending and running
        executions become ``interrupted`` too. The update is guarded by the ``running``
        status, so concurrent recoveries never mark a run twice nor touch a finished run.
        """

        def tx(conn: Connection) -> list[int]:
            now = _now()
            local = select(runs.c.id, runs.c.pid).where(
                runs.c.status == RunStatus.RUNNING.value, runs.c.host == host
            )
            dead = [row.id for row in conn.execute(local) if not is_alive(row.pid)]
            beat = func.coalesce(runs.c.heartbeat_at, runs.c.created_at, type_=UTCDateTime)
            why = case(
                (runs.c.id.in_(dead), literal("interrupted: the runner process is gone")),
                else_=literal(f"interrupted: no heartbeat for more than {stale_after_s:g} s"),
            )
            marked = conn.execute(
                update(runs)
                .where(runs.c.status == RunStatus.RUNNING.value)
                .where(or_(runs.c.id.in_(dead), beat < now - timedelta(seconds=stale_after_s)))
                .values(status=RunStatus.INTERRUPTED.value, ended_at=now, error=why)
                .returning(runs.c.id)
            )
            ids = sorted(marked.scalars())
            if ids:
                conn.execute(
                    update(executions)
                    .where(executions.c.run_id.in_(ids))
                    .where(executions.c.status.in_(["pending", "running"]))
                    .values(status=ExecutionStatus.INTERRUPTED.value, ended_at=now)
                )
            return ids

        return self._db.write(tx)

    # -- executions ---------------------------------------------------------------------
    def create_executions(
        self, run_id: int, steps: Sequence[tuple[str, str, Mapping[str, Any]]]
    ) -> dict[str, int]:
        """Create one pending execution per (step_name, component_name, params).

        Returns:
            The new execution ids by step name.
        """
        now = _now()
        rows = [
            {
                "run_id": run_id,
                "step_name": step,
                "component_name": component,
                "params": dict(params),
                "status": ExecutionStatus.PENDING.value,
                "attempts": 0,
                "created_at": now,
            }
            for step, component, params in steps
        ]

        def tx(conn: Connection) -> dict[str, int]:
            if not rows:
                self._db.require(conn, "run", run_id)
                return {}
            query = insert(executions).returning(
                executions.c.step_name, executions.c.id, sort_by_parameter_order=True
            )
            return {step: int(id_) for step, id_ in conn.execute(query, rows)}

        return self._db.write(tx, conflict=lambda: self._db.missing(run=[run_id]))

    def start_execution(
        self,
        execution_id: int,
        cache_key: str | None,
        cache_key_parts: Mapping[str, Any] | None,
        cache_explanation: str | None,
        attempt: int,
        log_uri: str | None,
    ) -> None:
        """Mark running; record the attempt number (1-based) and the cache key."""
        self._db.update(
            executions,
            "execution",
            execution_id,
            status=ExecutionStatus.RUNNING.value,
            started_at=_now(),
            ended_at=None,
            attempts=attempt,
            cache_key=cache_key,
            cache_key_parts=None if cache_key_parts is None else dict(cache_key_parts),
            cache_explanation=cache_explanation,
            log_uri=log_uri,
            error=None,
            traceback=None,
        )

    def succeed_execution(
        self,
        execution_id: int,
        inputs: Mapping[str, int],
        outputs: Mapping[str, NewArtifact],
    ) -> dict[str, ArtifactRecord]:
        """In one transaction: create the output artifacts, the input and output events,
        and mark the execution succeeded. ``inputs`` maps input names to artifact ids.

        Returns:
            The new artifacts by output name.
        """

        def tx(conn: Connection) -> dict[str, ArtifactRecord]:
            now = _now()
            changed = conn.execute(
                update(executions)
                .where(executions.c.id == execution_id)
                .values(status=ExecutionStatus.SUCCEEDED.value, ended_at=now, error=None)
            )
            if not changed.rowcount:
                raise self._db.not_found("execution", execution_id)
            created = insert_artifacts(conn, outputs.values(), now)
            made = {name: artifact_record(row) for name, row in zip(outputs, created, strict=True)}
            outs = {name: record.id for name, record in made.items()}
            insert_events(conn, execution_id, inputs, outs, now)
            return made

        def conflict() -> ConveyorError | None:
            return self._db.missing(artifact=inputs.values())

        return self._db.write(tx, conflict=conflict)

    def cache_execution(
        self,
        execution_id: int,
        cache_key: str,
        cache_key_parts: Mapping[str, Any],
        cache_explanation: str,
        cached_from: int,
        inputs: Mapping[str, int],
        outputs: Mapping[str, int],
    ) -> None:
        """In one transaction: mark the execution cached, reusing existing output artifacts.

        ``outputs`` maps output names to the ids of the artifacts ``cached_from`` produced;
        they get output events from this execution too, so lineage runs through it.
        """

        def tx(conn: Connection) -> None:
            now = _now()
            changed = conn.execute(
                update(executions)
                .where(executions.c.id == execution_id)
                .values(
                    status=ExecutionStatus.CACHED.value,
                    cache_key=cache_key,
                    cache_key_parts=dict(cache_key_parts),
                    cache_explanation=cache_explanation,
                    cached_from=cached_from,
                    started_at=func.coalesce(executions.c.started_at, now),
                    ended_at=now,
                    error=None,
                )
            )
            if not changed.rowcount:
                raise self._db.not_found("execution", execution_id)
            insert_events(conn, execution_id, inputs, outputs, now)

        def conflict() -> ConveyorError | None:
            ids = [*inputs.values(), *outputs.values()]
            return self._db.missing(execution=[cached_from], artifact=ids)

        self._db.write(tx, conflict=conflict)

    def fail_execution(
        self, execution_id: int, error: str, traceback: str | None, attempts: int
    ) -> None:
        """Mark failed after ``attempts`` attempts, keeping the error and its traceback."""
        self._db.update(
            executions,
            "execution",
            execution_id,
            status=ExecutionStatus.FAILED.value,
            ended_at=_now(),
            error=error,
            traceback=traceback,
            attempts=attempts,
        )

    def skip_execution(self, execution_id: int, reason: str) -> None:
        """Mark skipped because an upstream step failed (reason goes to ``error``)."""
        status = ExecutionStatus.SKIPPED.value
        self._db.update(
            executions, "execution", execution_id, status=status, error=reason, ended_at=_now()
        )

    def get_execution(self, execution_id: int) -> ExecutionRecord:
        """Return the execution; raise NotFoundError when there is no such execution."""

        def tx(conn: Connection) -> ExecutionRecord:
            row = conn.execute(select(executions).where(executions.c.id == execution_id))
            return execution_record(self._db.one(row, "execution", execution_id))

        return self._db.read(tx)

    def list_executions(self, run_id: int) -> list[ExecutionRecord]:
        """In creation order; raise NotFoundError when there is no such run."""
        query = select(executions).where(executions.c.run_id == run_id).order_by(executions.c.id)
        return self._db.read(
            lambda conn: self._db.records(conn, query, execution_record, "run", run_id)
        )

    def find_cached(
        self, cache_key: str
    ) -> tuple[ExecutionRecord, dict[str, ArtifactRecord]] | None:
        """Latest *succeeded* (not cached) execution with this key and its outputs by name."""
        query = (
            select(executions)
            .where(executions.c.cache_key == cache_key)
            .where(executions.c.status == ExecutionStatus.SUCCEEDED.value)
            .order_by(executions.c.id.desc())
            .limit(1)
        )

        def tx(conn: Connection) -> tuple[ExecutionRecord, dict[str, ArtifactRecord]] | None:
            row = conn.execute(query).mappings().first()
            if row is None:
                return None
            return execution_record(row), artifacts_by_event(conn, row["id"], EventKind.OUTPUT)

        return self._db.read(tx)

    def previous_execution(
        self, pipeline_name: str, step_name: str, before_run_id: int
    ) -> ExecutionRecord | None:
        """The latest execution of that step, in an earlier run of a pipeline with that name,
        that has cache_key_parts (used to explain why a step missed the cache)."""
        query = (
            select(executions)
            .join(runs, executions.c.run_id == runs.c.id)
            .join(pipelines, runs.c.pipeline_id == pipelines.c.id)
            .where(pipelines.c.name == pipeline_name)
            .where(executions.c.step_name == step_name)
            .where(runs.c.id < before_run_id)
            .where(executions.c.cache_key_parts.is_not(None))
            .order_by(runs.c.id.desc(), executions.c.id.desc())
            .limit(1)
        )

        def tx(conn: Connection) -> ExecutionRecord | None:
            row = conn.execute(query).mappings().first()
            return None if row is None else execution_record(row)

        return self._db.read(tx)

    # -- artifacts and events -----------------------------------------------------------
    def get_artifact(self, artifact_id: int) -> ArtifactRecord:
        """Return the artifact; raise NotFoundError when there is no such artifact."""

        def tx(conn: Connection) -> ArtifactRecord:
            row = conn.execute(select(artifacts).where(artifacts.c.id == artifact_id))
            return artifact_record(self._db.one(row, "artifact", artifact_id))

        return self._db.read(tx)

    def list_artifacts(self, type_name: str | None = None, limit: int = 50) -> list[ArtifactRecord]:
        """Newest first."""
        query = select(artifacts).order_by(artifacts.c.id.desc()).limit(limit)
        if type_name is not None:
            query = query.where(artifacts.c.type_name == type_name)
        return self._db.read(
            lambda conn: [artifact_record(r) for r in conn.execute(query).mappings()]
        )

    def execution_inputs(self, execution_id: int) -> dict[str, ArtifactRecord]:
        """The artifacts the execution consumed, by input name."""
        return self._db.read(lambda conn: self._by_event(conn, execution_id, EventKind.INPUT))

    def execution_outputs(self, execution_id: int) -> dict[str, ArtifactRecord]:
        """The artifacts the execution produced (or reused from the cache), by output name."""
        return self._db.read(lambda conn: self._by_event(conn, execution_id, EventKind.OUTPUT))

    def events_for_artifact(self, artifact_id: int) -> list[EventRecord]:
        """Every event that touches the artifact, oldest first."""
        query = select(events).where(events.c.artifact_id == artifact_id).order_by(events.c.id)
        return self._db.read(
            lambda conn: self._db.records(conn, query, event_record, "artifact", artifact_id)
        )

    def events_for_execution(self, execution_id: int) -> list[EventRecord]:
        """Every input and output event of the execution, oldest first."""
        query = select(events).where(events.c.execution_id == execution_id).order_by(events.c.id)
        return self._db.read(
            lambda conn: self._db.records(conn, query, event_record, "execution", execution_id)
        )

    # -- contexts -------------------------------------------------------------------------
    def put_context(self, type_name: str, name: str, properties: Mapping[str, Any]) -> int:
        """Return the id of context (type_name, name), creating it if new.

        The properties of an existing context are left as they are.
        """

        def tx(conn: Connection) -> int:
            values = {
                "type_name": type_name,
                "name": name,
                "properties": dict(properties),
                "created_at": _now(),
            }
            insert_ignore(conn, contexts, values)
            query = select(contexts.c.id).where(
                contexts.c.type_name == type_name, contexts.c.name == name
            )
            return int(conn.execute(query).scalar_one())

        return self._db.write(tx)

    def associate(self, context_id: int, execution_id: int) -> None:
        """Put the execution in the context (again is a no-op)."""
        values = {"context_id": context_id, "execution_id": execution_id, "created_at": _now()}
        self._db.write(
            lambda conn: insert_ignore(conn, context_executions, values),
            conflict=lambda: self._db.missing(context=[context_id], execution=[execution_id]),
        )

    def attribute(self, context_id: int, artifact_id: int) -> None:
        """Attribute the artifact to the context (again is a no-op)."""
        values = {"context_id": context_id, "artifact_id": artifact_id, "created_at": _now()}
        self._db.write(
            lambda conn: insert_ignore(conn, context_artifacts, values),
            conflict=lambda: self._db.missing(context=[context_id], artifact=[artifact_id]),
        )

    def list_contexts(self, type_name: str | None = None) -> list[ContextRecord]:
        """Every context (of that type), oldest first."""
        query = select(contexts).order_by(contexts.c.id)
        if type_name is not None:
            query = query.where(contexts.c.type_name == type_name)
        return self._db.read(
            lambda conn: [context_record(r) for r in conn.execute(query).mappings()]
        )

    def context_executions(self, context_id: int) -> list[ExecutionRecord]:
        """The executions associated with the context, oldest first."""
        query = select(executions).join_from(executions, context_executions)
        query = query.where(context_executions.c.context_id == context_id)
        query = query.order_by(executions.c.id)
        return self._db.read(
            lambda conn: self._db.records(conn, query, execution_record, "context", context_id)
        )

    def context_artifacts(self, context_id: int) -> list[ArtifactRecord]:
        """The artifacts attributed to the context, oldest first."""
        query = select(artifacts).join_from(artifacts, context_artifacts)
        query = query.where(context_artifacts.c.context_id == context_id)
        query = query.order_by(artifacts.c.id)
        return self._db.read(
            lambda conn: self._db.records(conn, query, artifact_record, "context", context_id)
        )

    def _by_event(
        self, conn: Connection, execution_id: int, kind: EventKind
    ) -> dict[str, ArtifactRecord]:
        found = artifacts_by_event(conn, execution_id, kind)
        if not found:
            self._db.require(conn, "execution", execution_id)
        return found
