"""Fires waiting for their run: debounce, one run at a time, and the retraining rate limit.

When a trigger fires, its decision joins the :class:`PendingRun` of its pipeline (opening one
when there is none). A pending run starts when nothing holds it (:func:`hold_of`):

1. **busy** -- a run of the pipeline is still going: one run at a time per pipeline;
2. **debounce** -- ``debounce`` has not passed since the first fire of the pending run, so
   fires closer together than that are merged into one run;
3. **min_interval** -- the pipeline's last run started less than ``min_interval`` ago.

A held fire is never lost: it stays in the pending run, which the controller keeps in its
state across restarts. Merged fires give one run whose parameters are the fires' parameters
overlaid in fire order (a newer span wins over an older one) and whose trigger event lists
every merged decision. Everything here is pure; the controller does the I/O.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from conveyor.ct.durations import format_duration
from conveyor.ct.triggers import TriggerDecision

__all__ = ["Hold", "PendingRun", "hold_of"]


def _when(moment: dt.datetime) -> str:
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"


@dataclass(frozen=True)
class PendingRun:
    """The fires of one pipeline waiting for a run.

    Attributes:
        id: Unique; the ``trigger`` event of the run is recorded once per id.
        pipeline: The ``[pipelines]`` key.
        opened_at: When the first of its fires happened.
        decisions: The merged decisions (``TriggerDecision.to_json()``), in fire order.
        held: The kind of the last hold recorded (``busy``, ``debounce``, ``min_interval``),
            so one hold is recorded once, not at every poll.
    """

    id: str
    pipeline: str
    opened_at: dt.datetime
    decisions: tuple[Mapping[str, Any], ...] = ()
    held: str | None = None

    @classmethod
    def open(cls, decision: TriggerDecision, now: dt.datetime) -> PendingRun:
        """A pending run holding ``decision`` alone."""
        return cls(uuid.uuid4().hex[:12], decision.pipeline, now, (decision.to_json(),))

    def merge(self, decision: TriggerDecision) -> PendingRun:
        """This pending run with ``decision`` added."""
        return replace(self, decisions=(*self.decisions, decision.to_json()))

    def with_hold(self, kind: str | None) -> PendingRun:
        """This pending run with ``kind`` as its last recorded hold."""
        return replace(self, held=kind)

    @property
    def trigger(self) -> str:
        """The first fire's trigger (the run's ``trigger`` label)."""
        return str(self.decisions[0]["trigger"])

    @property
    def triggers(self) -> list[str]:
        """Every merged fire's trigger, in order, once each."""
        return list(dict.fromkeys(str(d["trigger"]) for d in self.decisions))

    @property
    def params(self) -> dict[str, Any]:
        """The run's parameters: each fire's parameters overlaid in fire order."""
        merged: dict[str, Any] = {}
        for decision in self.decisions:
            merged.update(decision.get("params") or {})
        return merged

    def reason(self) -> str:
        """The first fire's reason, and what was merged into it."""
        first = str(self.decisions[0]["reason"])
        if len(self.decisions) == 1:
            return first
        others = len(self.decisions) - 1
        names = ", ".join(str(d["trigger"]) for d in self.decisions[1:])
        return f"{first} (merged with {others} later fire(s): {names})"

    def to_json(self) -> dict[str, Any]:
        """The JSON form kept in the controller's state."""
        return {
            "id": self.id,
            "pipeline": self.pipeline,
            "opened_at": self.opened_at.isoformat(),
            "decisions": [dict(d) for d in self.decisions],
            "held": self.held,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PendingRun:
        """The inverse of :meth:`to_json`."""
        return cls(
            id=str(data["id"]),
            pipeline=str(data["pipeline"]),
            opened_at=dt.datetime.fromisoformat(str(data["opened_at"])),
            decisions=tuple(dict(d) for d in data.get("decisions") or ()),
            held=data.get("held"),
        )


@dataclass(frozen=True)
class Hold:
    """Why a pending run does not start now.

    Attributes:
        kind: ``busy``, ``debounce`` or ``min_interval``.
        reason: One sentence saying why and until when.
        until: When the hold ends, when it is known (busy: when the run ends).
        details: JSON facts (run id, durations, times).
    """

    kind: str
    reason: str
    until: dt.datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)


def hold_of(
    pending: PendingRun,
    now: dt.datetime,
    *,
    debounce: dt.timedelta,
    min_interval: dt.timedelta,
    running: int | None,
    last_start: dt.datetime | None,
) -> Hold | None:
    """What holds ``pending`` at ``now``, or None when its run may start.

    Args:
        pending: The pending run.
        now: The controller's time.
        debounce: ``[controller] debounce``.
        min_interval: ``[controller] min_interval``.
        running: The run id of the pipeline's run in progress (0 when it is starting and has
            no id yet), None when none is.
        last_start: When the pipeline's last run started, if ever.
    """
    name = pending.pipeline
    if running is not None:
        which = f"run {running}" if running else "a run"
        return Hold(
            "busy",
            f"{name} is busy with {which}; one run at a time per pipeline, so this one starts "
            "after it",
            details={"running": running or None},
        )
    settle = pending.opened_at + debounce
    if now < settle:
        return Hold(
            "debounce",
            f"waiting until {_when(settle)} (debounce {format_duration(debounce)}) to merge "
            "further fires into one run",
            until=settle,
            details={"debounce_s": debounce.total_seconds(), "until": settle.isoformat()},
        )
    if last_start is not None and now < last_start + min_interval:
        after = last_start + min_interval
        return Hold(
            "min_interval",
            f"at most one run of {name} every {format_duration(min_interval)} and the last "
            f"started at {_when(last_start)}; this one starts at {_when(after)}",
            until=after,
            details={
                "min_interval_s": min_interval.total_seconds(),
                "last_start": last_start.isoformat(),
                "until": after.isoformat(),
            },
        )
    return None
