"""The continuous-training activity: an event log, leases and the controller's state.

Three tables, one durable record of what the controller does (see
``docs/continuous-training.md``, "Events and run labels"):

- ``ct_events`` — append-only :class:`~conveyor.store.metadata.activity_records.ActivityEvent`
  rows: an alert, a trigger firing (with its reason), a run started, finished or
  interrupted, a canary window, a promotion. An event with a ``dedupe_key`` is stored once,
  however many writers race to record it. The one column written later is ``run_id``, filled
  in once (:meth:`ActivityStore.link_run`) for a ``trigger`` event recorded before its run
  existed, so the trigger links to the run it started.
- ``ct_leases`` — named leases with an expiry: at most one ``conveyor watch`` acts at a time,
  and a restarted controller takes over a lease its dead predecessor let expire.
- ``ct_state`` — JSON values by key: what the controller remembers between polls.

:meth:`ActivityStore.record` writes events, state changes and run links in one transaction,
optionally fenced by a lease, so a crash leaves either all of a step or none of it; with the
run labels (``conveyor.run(..., run_labels=...)``) that makes restarts free of duplicate runs.

Each public method is one transaction on the metadata store's
:class:`~conveyor.store.metadata.database.Database`. Times come from this process's clock
(UTC): processes sharing a PostgreSQL database from several hosts need clocks kept in step
(NTP) to well under a lease's time to live.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from conveyor.exceptions import ConveyorError, NotFoundError
from conveyor.store.metadata.activity_records import (
    LABEL_TRIGGER_EVENT,
    ActivityEvent,
    ActivityStoreError,
    LeaseLostError,
    LeaseRecord,
    NewActivityEvent,
    Recorded,
    activity_event,
    check_json_value,
    check_kinds,
    check_text,
    check_ttl,
    lease_record,
)
from conveyor.store.metadata.database import Database
from conveyor.store.metadata.records import RunRecord
from conveyor.store.metadata.rows import run_record
from conveyor.store.metadata.tables import ct_events, ct_leases, ct_state, pipelines, runs

__all__ = ["ActivityStore", "StateChanges"]

StateChanges = Mapping[str, Any] | Callable[[Sequence[ActivityEvent]], Mapping[str, Any]]
"""State to write with :meth:`ActivityStore.record`: ``{key: value}`` (None deletes the key),
or a function of the events just inserted returning that mapping (to store their ids)."""

_RUNS = select(runs, pipelines.c.name.label("pipeline_name")).join_from(runs, pipelines)


def _now() -> datetime:
    return datetime.now(UTC)


def _upsert(conn: Connection, table: Any, values: Mapping[str, Any]) -> Any:
    """A dialect insert of ``values`` into ``table``, ready for ``on_conflict_*``."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).values(dict(values))


class _Clash(Exception):
    """Rolls back a :meth:`ActivityStore.record` whose dedupe keys are already taken."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__(keys)
        self.keys = keys


class ActivityStore:
    """Events, leases and state of continuous training, over the metadata store.

    Get it from :attr:`MetadataStore.activity <conveyor.store.metadata.MetadataStore.activity>`.
    Thread-safe like the store; several processes may write at once.

    Example:
        >>> from conveyor.store.metadata import MetadataStore
        >>> activity = MetadataStore.open("sqlite:///:memory:").activity
        >>> activity.acquire_lease("controller", "host:1", ttl=30)
        True
        >>> activity.add_event("controller_started", reason="watching conveyor.toml").kind
        'controller_started'
    """

    def __init__(self, database: Database) -> None:
        """Bind to an open :class:`Database` (the one the metadata store uses)."""
        self._db = database

    # -- events -----------------------------------------------------------------------------
    def add_event(
        self,
        kind: str,
        *,
        reason: str,
        source: str = "controller",
        pipeline: str | None = None,
        model: str | None = None,
        version: int | None = None,
        run_id: int | None = None,
        subject: str | None = None,
        details: Mapping[str, Any] | None = None,
        dedupe_key: str | None = None,
        time: datetime | None = None,
    ) -> ActivityEvent:
        """Record one event and return it; with a ``dedupe_key`` already recorded, return
        the event stored under it and write nothing.

        Args:
            kind: One of :data:`~conveyor.store.metadata.activity_records.ACTIVITY_KINDS`.
            reason: One sentence a newcomer understands (required).
            source: Who records it (``controller``, ``cli``, ``monitor``).
            pipeline: The ``[pipelines]`` key concerned.
            model: The registered model concerned.
            version: Its version (a number from 1).
            run_id: The run concerned (it must exist).
            subject: The trigger or alert rule's name.
            details: JSON facts behind the reason.
            dedupe_key: Makes the event recorded once, e.g. ``alert:age-drift:<window end>``.
            time: When it happened (aware); default now.

        Raises:
            ActivityStoreError: unknown kind (with a did-you-mean), blank reason, bad value.
            NotFoundError: ``run_id`` does not exist.
        """
        new = NewActivityEvent(
            kind,
            reason=reason,
            source=source,
            pipeline=pipeline,
            model=model,
            version=version,
            run_id=run_id,
            subject=subject,
            details=details or {},
            dedupe_key=dedupe_key,
            time=time,
        )
        return self.record([new]).events[0]

    def record(
        self,
        events: Sequence[NewActivityEvent] = (),
        *,
        state: StateChanges | None = None,
        link: Mapping[int, int] | None = None,
        lease: str | None = None,
        owner: str | None = None,
    ) -> Recorded:
        """Write ``events``, ``state`` changes and run ``link`` s in one transaction.

        All or nothing: when an event's ``dedupe_key`` is already recorded, nothing is
        written and the result says so (``written=False``, with the stored events under the
        clashing keys) -- this unit was done before, so the caller must not act on it again.

        Args:
            events: The events, inserted in this order (their ids increase).
            state: ``{key: value}`` to store (a value of None deletes its key), or a function
                of the inserted events returning it (e.g. to remember a trigger event's id).
            link: ``{event id: run id}``: fill in the run of events recorded before their run
                existed (once; linking again to the same run is a no-op).
            lease: With ``owner``: write only while ``owner`` holds this lease, unexpired;
                otherwise raise :class:`LeaseLostError` and write nothing (a controller that
                was paused past its lease must not act after another took over).
            owner: The lease holder the write is fenced by.

        Raises:
            ActivityStoreError: a bad event or state value, an event already linked to
                another run, two events with one dedupe key.
            LeaseLostError: ``owner`` does not hold ``lease`` (or it expired).
            NotFoundError: an event or run to link, or an event's run, does not exist.
        """
        if (lease is None) != (owner is None):
            raise ActivityStoreError("record(): give both lease and owner, or neither")
        rows = [event.values() for event in events]
        _check_distinct_keys(rows)
        links = {_id(e, "event"): _id(r, "run") for e, r in (link or {}).items()}
        changes = None if state is None or callable(state) else _check_state(state)

        def tx(conn: Connection) -> Recorded:
            now = _now()
            if lease is not None and owner is not None:
                _check_holder(conn, lease, owner, now)
            made = _insert_events(conn, rows, now)
            for event_id, run_id in links.items():
                self._link(conn, event_id, run_id)
            wanted = changes
            if callable(state):
                wanted = _check_state(state(made))
            if wanted:
                _put_state(conn, wanted, now)
            return Recorded(True, tuple(made))

        run_ids = [r["run_id"] for r in rows if r["run_id"] is not None] + list(links.values())
        try:
            return self._db.write(tx, conflict=lambda: self._db.missing(run=run_ids))
        except _Clash as clash:
            return Recorded(False, tuple(self._by_keys(clash.keys)))

    def link_run(self, event_id: int, run_id: int) -> ActivityEvent:
        """Fill in the run of an event recorded before its run existed; return the event.

        Raises:
            NotFoundError: no such event or run.
            ActivityStoreError: the event is already linked to another run.
        """
        self.record(link={event_id: run_id})
        return self.event(event_id)

    def event(self, event_id: int) -> ActivityEvent:
        """The event ``event_id``; NotFoundError when there is none."""

        def tx(conn: Connection) -> ActivityEvent:
            row = conn.execute(select(ct_events).where(ct_events.c.id == event_id))
            found = row.mappings().first()
            if found is None:
                raise self._no_event(event_id)
            return activity_event(found)

        return self._db.read(tx)

    def event_by_key(self, dedupe_key: str) -> ActivityEvent | None:
        """The event recorded under ``dedupe_key``, or None."""
        found = self._by_keys([dedupe_key])
        return found[0] if found else None

    def events(
        self,
        *,
        model: str | None = None,
        pipeline: str | None = None,
        kinds: Iterable[str] | None = None,
        subject: str | None = None,
        since: datetime | None = None,
        run_id: int | None = None,
        after_id: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[ActivityEvent]:
        """Events matching every filter given, oldest first (or newest first).

        ``limit`` applies in the chosen order: ``events(after_id=last, limit=100)`` pages
        forward from the event ``last``; ``events(limit=20, newest_first=True)`` is the
        latest 20.

        Raises:
            ActivityStoreError: an unknown kind (did-you-mean), a naive ``since``, a
                ``limit`` below 1.
        """
        query = select(ct_events)
        if kinds is not None:
            query = query.where(ct_events.c.kind.in_(check_kinds(kinds)))
        if since is not None:
            if since.tzinfo is None:
                raise ActivityStoreError(f"since={since!r} has no time zone; pass an aware one")
            query = query.where(ct_events.c.time >= since)
        equal = {
            "model": model,
            "pipeline": pipeline,
            "subject": subject,
            "run_id": run_id,
        }
        for column, value in equal.items():
            if value is not None:
                query = query.where(ct_events.c[column] == value)
        if after_id is not None:
            query = query.where(ct_events.c.id > after_id)
        order = ct_events.c.id.desc() if newest_first else ct_events.c.id
        query = query.order_by(order)
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ActivityStoreError(f"limit must be a number from 1, got {limit!r}")
            query = query.limit(limit)
        return self._db.read(
            lambda conn: [activity_event(row) for row in conn.execute(query).mappings()]
        )

    def run_events(self, run_id: int) -> list[ActivityEvent]:
        """The events of a run, oldest first: those whose ``run_id`` is the run, and the
        ``trigger`` event its ``trigger_event`` label names (linked or not yet).

        Raises:
            NotFoundError: no such run.
        """

        def tx(conn: Connection) -> list[ActivityEvent]:
            options = conn.scalar(select(runs.c.options).where(runs.c.id == run_id))
            if options is None:
                raise self._db.not_found("run", run_id)
            query = select(ct_events).where(ct_events.c.run_id == run_id)
            labelled = _label_event_id(options)
            if labelled is not None:
                query = select(ct_events).where(
                    or_(ct_events.c.run_id == run_id, ct_events.c.id == labelled)
                )
            rows = conn.execute(query.order_by(ct_events.c.id)).mappings()
            return [activity_event(row) for row in rows]

        return self._db.read(tx)

    def runs_with_label(self, key: str, value: str) -> list[RunRecord]:
        """Runs started with the label ``key=value``, oldest first.

        The controller's restart check: ``runs_with_label("trigger_event", str(event.id))``
        tells whether the run a trigger event asked for was created before a crash.
        """
        wanted = runs.c.options[("labels", key)].as_string() == value
        query = _RUNS.where(wanted).order_by(runs.c.id)
        return self._db.read(lambda conn: [run_record(r) for r in conn.execute(query).mappings()])

    # -- leases -----------------------------------------------------------------------------
    def acquire_lease(self, name: str, owner: str, ttl: float | timedelta) -> bool:
        """Take the lease ``name`` for ``ttl`` (seconds or a timedelta); True on success.

        Succeeds when the lease is free, expired, or already ``owner``'s (then it is renewed
        and keeps its ``acquired_at``). One statement (an upsert guarded by owner and
        expiry), so of two processes racing for a free lease exactly one gets it, on SQLite
        and PostgreSQL alike.

        Raises:
            ActivityStoreError: blank name or owner, ttl not positive.
        """
        name, owner, span = _lease_args(name, owner, ttl)

        def tx(conn: Connection) -> bool:
            now = _now()
            values = {
                "name": name,
                "owner": owner,
                "acquired_at": now,
                "heartbeat_at": now,
                "expires_at": now + span,
            }
            insert = _upsert(conn, ct_leases, values)
            mine = ct_leases.c.owner == owner
            taken = insert.on_conflict_do_update(
                index_elements=[ct_leases.c.name],
                set_={
                    "owner": insert.excluded.owner,
                    "acquired_at": case((mine, ct_leases.c.acquired_at), else_=now),
                    "heartbeat_at": insert.excluded.heartbeat_at,
                    "expires_at": insert.excluded.expires_at,
                },
                where=or_(mine, ct_leases.c.expires_at <= now),
            )
            return conn.execute(taken.returning(ct_leases.c.name)).first() is not None

        return self._db.write(tx)

    def renew_lease(self, name: str, owner: str, ttl: float | timedelta) -> bool:
        """Extend ``owner``'s lease to ``ttl`` from now; False when ``owner`` does not hold it.

        A lease that expired but was not taken by anyone is still ``owner``'s and renews:
        nobody else can have acted under it.
        """
        name, owner, span = _lease_args(name, owner, ttl)

        def tx(conn: Connection) -> bool:
            now = _now()
            renewed = conn.execute(
                update(ct_leases)
                .where(ct_leases.c.name == name, ct_leases.c.owner == owner)
                .values(heartbeat_at=now, expires_at=now + span)
            )
            return bool(renewed.rowcount)

        return self._db.write(tx)

    def release_lease(self, name: str, owner: str) -> bool:
        """Give the lease up; False (and nothing changed) when ``owner`` does not hold it."""
        name, owner, _ = _lease_args(name, owner, 1.0)

        def tx(conn: Connection) -> bool:
            where = (ct_leases.c.name == name) & (ct_leases.c.owner == owner)
            return bool(conn.execute(delete(ct_leases).where(where)).rowcount)

        return self._db.write(tx)

    def lease(self, name: str) -> LeaseRecord | None:
        """The lease ``name`` as stored (possibly expired: see ``LeaseRecord.expired``)."""

        def tx(conn: Connection) -> LeaseRecord | None:
            row = conn.execute(select(ct_leases).where(ct_leases.c.name == name))
            found = row.mappings().first()
            return None if found is None else lease_record(found)

        return self._db.read(tx)

    # -- state ------------------------------------------------------------------------------
    def get_state(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key``, or ``default`` when there is none."""
        query = select(ct_state.c.value).where(ct_state.c.key == key)
        found = self._db.read(lambda conn: conn.execute(query).first())
        return default if found is None else found.value

    def get_states(self, prefix: str = "") -> dict[str, Any]:
        """Every key starting with ``prefix`` and its value, by key."""
        query = select(ct_state.c.key, ct_state.c.value).order_by(ct_state.c.key)
        if prefix:
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(ct_state.c.key.like(f"{escaped}%", escape="\\"))
        rows = self._db.read(lambda conn: list(conn.execute(query)))
        return {row.key: row.value for row in rows}

    def put_state(self, key: str, value: Any) -> None:
        """Store the JSON ``value`` under ``key`` (None deletes the key).

        To change state together with events, use :meth:`record`.

        Raises:
            ActivityStoreError: a blank key or a value that is not JSON (NaN included).
        """
        self.record(state={key: value})

    # -- in a transaction -------------------------------------------------------------------
    def _link(self, conn: Connection, event_id: int, run_id: int) -> None:
        unlinked = or_(ct_events.c.run_id.is_(None), ct_events.c.run_id == run_id)
        changed = conn.execute(
            update(ct_events).where(ct_events.c.id == event_id, unlinked).values(run_id=run_id)
        )
        if changed.rowcount:
            return
        current = conn.execute(select(ct_events.c.run_id).where(ct_events.c.id == event_id))
        row = current.first()
        if row is None:
            raise self._no_event(event_id)
        raise ActivityStoreError(
            f"activity event {event_id} is already linked to run {row.run_id}, not run "
            f"{run_id}; an event links to one run"
        )

    def _by_keys(self, keys: list[str]) -> list[ActivityEvent]:
        query = select(ct_events).where(ct_events.c.dedupe_key.in_(keys)).order_by(ct_events.c.id)
        return self._db.read(
            lambda conn: [activity_event(row) for row in conn.execute(query).mappings()]
        )

    def _no_event(self, event_id: int) -> ConveyorError:
        return NotFoundError(
            f"activity event {event_id} not found in the metadata database {self._db.url}"
        )


def _insert_events(
    conn: Connection, rows: list[dict[str, Any]], now: datetime
) -> list[ActivityEvent]:
    """Insert each row (``time`` defaulting to ``now``); raise _Clash on taken dedupe keys."""
    made: list[ActivityEvent] = []
    clashes: list[str] = []
    for values in rows:
        insert = _upsert(conn, ct_events, {**values, "time": values["time"] or now})
        inserted = conn.execute(insert.on_conflict_do_nothing().returning(*ct_events.c)).mappings()
        row = inserted.first()
        if row is None:
            clashes.append(values["dedupe_key"])
        else:
            made.append(activity_event(row))
    if clashes:
        raise _Clash(clashes)
    return made


def _check_holder(conn: Connection, name: str, owner: str, now: datetime) -> None:
    query = select(ct_leases).where(ct_leases.c.name == name)
    if conn.dialect.name == "postgresql":
        # Holds off a taker until this write commits: it happened under a valid lease.
        query = query.with_for_update(read=True)
    row = conn.execute(query).mappings().first()
    if row is not None and row["owner"] == owner and row["expires_at"] > now:
        return
    if row is None:
        held = "nobody holds it"
    elif row["owner"] != owner:
        held = f"{row['owner']!r} holds it since {row['acquired_at']:%Y-%m-%d %H:%M:%S} UTC"
    else:
        held = f"it expired at {row['expires_at']:%Y-%m-%d %H:%M:%S} UTC"
    raise LeaseLostError(
        f"lease {name!r} is not held by {owner!r} ({held}); nothing was written -- stop acting "
        "and acquire the lease again"
    )


def _put_state(conn: Connection, changes: Mapping[str, Any], now: datetime) -> None:
    for key, value in changes.items():
        if value is None:
            conn.execute(delete(ct_state).where(ct_state.c.key == key))
            continue
        insert = _upsert(conn, ct_state, {"key": key, "value": value, "updated_at": now})
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=[ct_state.c.key],
                set_={"value": insert.excluded.value, "updated_at": insert.excluded.updated_at},
            )
        )


def _check_state(state: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(state, Mapping):
        raise ActivityStoreError(
            f"state must be a mapping of keys to JSON values, got {type(state).__name__}"
        )
    checked: dict[str, Any] = {}
    for key, value in state.items():
        name = check_text(key, "state key", required=True, limit=255)
        checked[name] = None if value is None else check_json_value(value, f"state {name!r}")
    return checked


def _check_distinct_keys(rows: list[dict[str, Any]]) -> None:
    keys = [r["dedupe_key"] for r in rows if r["dedupe_key"] is not None]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ActivityStoreError(
            f"dedupe key {repeated[0]!r} is given to two events of one record(); "
            "each event needs its own key"
        )


def _id(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ActivityStoreError(f"link: a {what} id must be a number, got {value!r}")
    return value


def _lease_args(name: str, owner: str, ttl: float | timedelta) -> tuple[str, str, timedelta]:
    return (
        check_text(name, "lease name", required=True, limit=255),
        check_text(owner, "lease owner", required=True, limit=255),
        check_ttl(ttl),
    )


def _label_event_id(options: Any) -> int | None:
    labels = options.get("labels") if isinstance(options, Mapping) else None
    value = labels.get(LABEL_TRIGGER_EVENT) if isinstance(labels, Mapping) else None
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
