"""Records and rules of the continuous-training activity: events, leases, run labels.

The records are plain, frozen values (timezone-aware UTC timestamps), like the rest of the
metadata store's records, with a ``to_dict()`` for JSON output. The rules are pure functions
that :class:`~conveyor.store.metadata.activity.ActivityStore` applies before it writes
anything, so a refused call leaves the database as it was.

Not to be confused with :class:`~conveyor.store.metadata.records.EventRecord`: those are the
lineage edges between executions and artifacts (MLMD's events); an :class:`ActivityEvent` is
something the continuous-training controller did, with the reason it did it.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from conveyor.exceptions import ParameterError, StoreError
from conveyor.store.metadata.records import RunRecord

__all__ = [
    "ACTIVITY_KINDS",
    "LABEL_TRIGGER",
    "LABEL_TRIGGER_EVENT",
    "ActivityEvent",
    "ActivityKind",
    "ActivityStoreError",
    "LeaseLostError",
    "LeaseRecord",
    "NewActivityEvent",
    "Recorded",
    "activity_event",
    "check_json_value",
    "check_kind",
    "check_kinds",
    "check_run_labels",
    "check_text",
    "check_ttl",
    "lease_record",
    "run_labels",
]


class ActivityKind(StrEnum):
    """What an activity event records. The database stores the text; the store knows these."""

    CONTROLLER_STARTED = "controller_started"
    """A controller took the lease and began to poll (details: policy file, poll interval)."""
    CONTROLLER_STOPPED = "controller_stopped"
    """A controller stopped and released its lease (reason: signal, error, lease lost)."""
    ALERT = "alert"
    """A monitoring rule broke: which metric or feature, its value, the threshold, the window."""
    TRIGGER = "trigger"
    """A trigger fired and a run is due; ``reason`` is the trigger's sentence, ``details`` its
    decision; ``run_id`` is filled in once the run exists."""
    RUN_STARTED = "run_started"
    """The run a trigger asked for was created (``run_id``; details name the trigger event)."""
    RUN_FINISHED = "run_finished"
    """That run succeeded."""
    RUN_FAILED = "run_failed"
    """That run failed (``reason`` holds its error)."""
    RUN_INTERRUPTED = "run_interrupted"
    """The controller found, on restart, a run (or a due run) its crash interrupted."""
    SKIPPED = "skipped"
    """A fire was held back: debounce, ``min_interval``, a run of the pipeline still going."""
    NOT_BLESSED = "not_blessed"
    """The new model did not beat production; it is not rolled out."""
    CANARY_STARTED = "canary_started"
    """A new version gets its canary share of the traffic."""
    CANARY_WINDOW = "canary_window"
    """One complete window of canary traffic was compared with production."""
    PROMOTED = "promoted"
    """The canary version became production."""
    ROLLED_BACK = "rolled_back"
    """The canary did worse than production and was taken out of the traffic."""
    REGISTERED = "registered"
    """A run registered a new model version (``model``, ``version``, ``run_id``)."""


ACTIVITY_KINDS: tuple[str, ...] = tuple(kind.value for kind in ActivityKind)
"""Every kind the store accepts, in life-cycle order."""

LABEL_TRIGGER = "trigger"
"""Run label: the name of the trigger that started the run."""
LABEL_TRIGGER_EVENT = "trigger_event"
"""Run label: the id (as text) of the ``trigger`` activity event that asked for the run."""

_LABEL_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_LABEL_VALUE_LIMIT = 255


class ActivityStoreError(StoreError):
    """An activity event, lease or state value was refused (unknown kind, bad value)."""


class LeaseLostError(ActivityStoreError):
    """A write asked for a lease that its owner no longer holds: another process took over."""


@dataclass(frozen=True)
class ActivityEvent:
    """One thing the continuous-training controller (or a person, via the CLI) did, and why.

    Attributes:
        id: Increasing with insertion order; page with ``events(after_id=...)``.
        time: When it happened (UTC).
        kind: One of :data:`ACTIVITY_KINDS`.
        source: Who wrote it: ``controller``, ``cli``, ``monitor``...
        pipeline: The ``[pipelines]`` key concerned, if any.
        model: The registered model concerned, if any.
        version: Its version, if one is concerned.
        run_id: The pipeline run concerned (for a ``trigger`` event: the run it started).
        subject: The trigger or alert rule's name.
        reason: One sentence a newcomer understands.
        details: JSON facts behind the reason (metric, value, threshold, window...).
        dedupe_key: Set when the event must be recorded once only (an alert per rule and
            window); None otherwise.

    Example:
        >>> event.kind, event.subject, event.reason  # doctest: +SKIP
        ('trigger', 'retrain-on-drift', 'alert age-drift fired: drift of age 0.31 > 0.1 ...')
    """

    id: int
    time: datetime
    kind: str
    source: str
    pipeline: str | None
    model: str | None
    version: int | None
    run_id: int | None
    subject: str | None
    reason: str
    details: dict[str, Any]
    dedupe_key: str | None

    @property
    def model_ref(self) -> str | None:
        """``model:version``, ``model``, or None when no model is concerned."""
        if self.model is None:
            return None
        return self.model if self.version is None else f"{self.model}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict with ISO-8601 time (the ``conveyor events --json`` form)."""
        return {
            "id": self.id,
            "time": self.time.isoformat(),
            "kind": self.kind,
            "source": self.source,
            "pipeline": self.pipeline,
            "model": self.model,
            "version": self.version,
            "run_id": self.run_id,
            "subject": self.subject,
            "reason": self.reason,
            "details": self.details,
            "dedupe_key": self.dedupe_key,
        }


@dataclass(frozen=True)
class NewActivityEvent:
    """An event about to be recorded by :meth:`ActivityStore.record
    <conveyor.store.metadata.activity.ActivityStore.record>`; fields as in
    :class:`ActivityEvent`, ``time`` defaults to the moment it is written.

    Example:
        >>> NewActivityEvent("trigger", reason="new span=4 in data/census", subject="new-span",
        ...                  pipeline="census", dedupe_key="trigger:new-span:4")  # doctest: +SKIP
    """

    kind: str
    reason: str
    source: str = "controller"
    pipeline: str | None = None
    model: str | None = None
    version: int | None = None
    run_id: int | None = None
    subject: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    dedupe_key: str | None = None
    time: datetime | None = None

    def values(self) -> dict[str, Any]:
        """The checked column values of its row (``time`` None: the store sets it).

        Raises:
            ActivityStoreError: unknown kind, blank reason or source, bad version, details
                that are not a JSON object, naive time.
        """
        if self.time is not None and self.time.tzinfo is None:
            raise ActivityStoreError(
                f"activity event {self.kind!r}: time {self.time!r} has no time zone; "
                "pass an aware datetime, e.g. datetime.now(UTC)"
            )
        if self.version is not None and (
            isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1
        ):
            raise ActivityStoreError(
                f"activity event {self.kind!r}: version must be a number from 1, "
                f"got {self.version!r}"
            )
        if not isinstance(self.details, Mapping):
            raise ActivityStoreError(
                f"activity event {self.kind!r}: details must be a JSON object (a dict), "
                f"got {type(self.details).__name__}"
            )
        what = f"activity event {self.kind!r} details"
        return {
            "time": self.time,
            "kind": check_kind(self.kind),
            "source": check_text(self.source, "source", required=True, limit=64),
            "pipeline": _optional(self.pipeline, "pipeline"),
            "model": _optional(self.model, "model"),
            "version": self.version,
            "run_id": self.run_id,
            "subject": _optional(self.subject, "subject"),
            "reason": check_text(self.reason, "reason", required=True),
            "details": check_json_value(dict(self.details), what),
            "dedupe_key": _optional(self.dedupe_key, "dedupe_key"),
        }


@dataclass(frozen=True)
class Recorded:
    """What :meth:`ActivityStore.record <conveyor.store.metadata.activity.ActivityStore.record>`
    did.

    Attributes:
        written: True when the whole unit (events, state, links) was written; False when one
            of its events' ``dedupe_key`` was already recorded, in which case nothing of it
            was written: the unit was done before (by an earlier incarnation of the
            controller, or by another writer).
        events: When written, the new events in the order given; otherwise the events
            already stored under the clashing keys.
    """

    written: bool
    events: tuple[ActivityEvent, ...]


@dataclass(frozen=True)
class LeaseRecord:
    """Who holds a named lease, since when, and until when.

    Attributes:
        name: The lease (``controller``).
        owner: Its holder, e.g. ``host:pid``.
        acquired_at: When this owner took it.
        heartbeat_at: When this owner last renewed it.
        expires_at: When another owner may take it unless it is renewed.
    """

    name: str
    owner: str
    acquired_at: datetime
    heartbeat_at: datetime
    expires_at: datetime

    def expired(self, now: datetime) -> bool:
        """Whether another owner may take the lease at ``now``."""
        return self.expires_at <= now

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict with ISO-8601 times."""
        return {
            "name": self.name,
            "owner": self.owner,
            "acquired_at": self.acquired_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
        }


# -- rules ----------------------------------------------------------------------------------
def check_kind(kind: str) -> str:
    """``kind`` if it is one of :data:`ACTIVITY_KINDS`, else ActivityStoreError with a hint:
    the closest kind, or all of them (there are few enough to list)."""
    if isinstance(kind, str) and kind in ACTIVITY_KINDS:
        return kind
    close = difflib.get_close_matches(str(kind), ACTIVITY_KINDS, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(ACTIVITY_KINDS)}"
    raise ActivityStoreError(f"unknown activity event kind {kind!r} ({hint})")


def check_kinds(kinds: str | Iterable[str]) -> list[str]:
    """Every kind of ``kinds`` checked (a single string counts as one kind)."""
    if isinstance(kinds, str):
        kinds = [kinds]
    return [check_kind(kind) for kind in kinds]


def check_text(value: Any, what: str, *, required: bool, limit: int | None = None) -> str:
    """``value`` stripped; ActivityStoreError when it is not text, blank but required, too long."""
    if not isinstance(value, str):
        raise ActivityStoreError(f"{what} must be text, got {type(value).__name__}")
    value = value.strip()
    if required and not value:
        hint = ": write one sentence saying why" if what == "reason" else ""
        raise ActivityStoreError(f"a non-empty {what} is required{hint}")
    if limit is not None and len(value) > limit:
        raise ActivityStoreError(f"{what} is longer than {limit} characters: {value[:40]!r}...")
    return value


def _optional(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    return check_text(value, what, required=True, limit=255)


def check_json_value(value: Any, what: str) -> Any:
    """A plain-JSON copy of ``value``; ActivityStoreError when it is not JSON (NaN included)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ActivityStoreError(f"{what} must be JSON data: {exc}") from exc


def check_ttl(ttl: float | timedelta) -> timedelta:
    """A lease's time to live as a positive timedelta (seconds when a number)."""
    if isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, int | float) and not isinstance(ttl, bool):
        seconds = float(ttl)
    else:
        raise ActivityStoreError(f"a lease ttl must be seconds or a timedelta, got {ttl!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ActivityStoreError(f"a lease ttl must be positive, got {ttl!r}")
    return timedelta(seconds=seconds)


def check_run_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    """Labels for a run: keys like identifiers (at most 64 characters), text values.

    Raises:
        ParameterError: naming the label at fault.

    Example:
        >>> check_run_labels({"trigger": "nightly", "trigger_event": "12"})
        {'trigger': 'nightly', 'trigger_event': '12'}
    """
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise ParameterError(
            f"run_labels must be a mapping of text to text, got {type(labels).__name__}"
        )
    checked: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not _LABEL_KEY.fullmatch(key):
            raise ParameterError(
                f"run label {key!r}: a label name starts with a letter and has letters, digits, "
                "'_', '.' and '-', at most 64 characters"
            )
        if not isinstance(value, str) or len(value) > _LABEL_VALUE_LIMIT:
            raise ParameterError(
                f"run label {key!r}: the value must be text of at most {_LABEL_VALUE_LIMIT} "
                f"characters, got {value!r:.60}"
            )
        checked[key] = value
    return checked


def run_labels(run: RunRecord) -> dict[str, str]:
    """The labels a run was started with (``options["labels"]``), empty when it has none."""
    labels = run.options.get("labels")
    if not isinstance(labels, Mapping):
        return {}
    return {str(key): str(value) for key, value in labels.items()}


# -- rows -----------------------------------------------------------------------------------
def activity_event(row: Mapping[Any, Any]) -> ActivityEvent:
    """Build an :class:`ActivityEvent` from a ``ct_events`` row."""
    return ActivityEvent(
        id=row["id"],
        time=row["time"],
        kind=row["kind"],
        source=row["source"],
        pipeline=row["pipeline"],
        model=row["model"],
        version=row["version"],
        run_id=row["run_id"],
        subject=row["subject"],
        reason=row["reason"],
        details=dict(row["details"] or {}),
        dedupe_key=row["dedupe_key"],
    )


def lease_record(row: Mapping[Any, Any]) -> LeaseRecord:
    """Build a :class:`LeaseRecord` from a ``ct_leases`` row."""
    return LeaseRecord(
        name=row["name"],
        owner=row["owner"],
        acquired_at=row["acquired_at"],
        heartbeat_at=row["heartbeat_at"],
        expires_at=row["expires_at"],
    )
