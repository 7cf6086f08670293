"""Triggers: small declared policies that decide when a pipeline should run, and say why.

Each kind implements :class:`Trigger`: ``evaluate(state, now, context)`` is pure (no I/O, no
clock) and returns a :class:`TriggerDecision` whether it fires or not, with a sentence saying
why, JSON details (the alert's metric, feature, value and window; the cron time that was due;
the new span) and the run's parameters. ``record(state, decision, now)`` returns the state after
the controller acted on a decision. The I/O a poll needs (listing span folders, querying span
tables) is done once by :func:`build_context`.

========== ======================================================= ===========================
kind       fires when                                              remembers
========== ======================================================= ===========================
manual     a request is queued (``conveyor trigger PIPELINE``)     consumes the request
cron       a scheduled time passed since it was last evaluated,    last evaluation
           once, however many were missed while the controller
           was down (no burst of catch-up runs)
new_data   the watch shows a span numbered above the last one      the newest span handled;
           handled; several new spans fire once, for the newest    the first look is a
                                                                   baseline and does not fire
alert      one of its alert rules raised an alert after the        last fired
           trigger last fired
========== ======================================================= ===========================

Example:
    >>> decisions = explain_all(policy, load_state(home), now, build_context(policy.all_triggers()))  # doctest: +SKIP
    >>> [(d.trigger, d.fire, d.reason) for d in decisions]  # doctest: +SKIP
    [('nightly', False, "cron '0 3 * * *' next due at 2024-01-02 03:00 UTC")]
"""  # noqa: E501

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from conveyor.ct.cron import CronSchedule
from conveyor.ct.errors import TriggerError
from conveyor.ct.state import TriggerState
from conveyor.ct.watch import SeenSpan, Watch, observe_spans
from conveyor.exceptions import ConveyorError
from conveyor.monitoring.alert_model import Alert

if TYPE_CHECKING:
    from conveyor.ct.policy_model import Policy

__all__ = [
    "TRIGGER_KINDS",
    "AlertTrigger",
    "CronTrigger",
    "ManualTrigger",
    "NewDataTrigger",
    "Trigger",
    "TriggerContext",
    "TriggerDecision",
    "advance_state",
    "build_context",
    "explain_all",
]

TRIGGER_KINDS: tuple[str, ...] = ("manual", "cron", "new_data", "alert")


def _when(moment: dt.datetime) -> str:
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"


@dataclass(frozen=True)
class TriggerDecision:
    """What one trigger decided at one poll.

    Attributes:
        trigger: The trigger's name.
        kind: ``manual``, ``cron``, ``new_data`` or ``alert``.
        pipeline: The ``[pipelines]`` key it would start.
        fire: Whether it fires now.
        reason: One sentence: why it fires, or why not.
        details: JSON-able facts behind the reason (see each kind).
        params: Parameters for the run (the pipeline's defaults, the trigger's, and what the
            event adds: a manual request's, the new span).
        evaluated_at: The ``now`` it was evaluated at.
    """

    trigger: str
    kind: str
    pipeline: str
    fire: bool
    reason: str
    details: dict[str, Any]
    params: dict[str, Any]
    evaluated_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (for ``--json`` and the trigger-event store)."""
        return {
            "trigger": self.trigger,
            "kind": self.kind,
            "pipeline": self.pipeline,
            "fire": self.fire,
            "reason": self.reason,
            "details": self.details,
            "params": self.params,
            "evaluated_at": self.evaluated_at.isoformat(),
        }


@dataclass(frozen=True)
class TriggerContext:
    """What the world looks like at one poll (gathered by :func:`build_context`).

    Attributes:
        alerts: Alerts raised by monitoring and not yet expired.
        spans: Per ``new_data`` trigger name, the spans visible at its watch, oldest first.
        errors: Per ``new_data`` trigger name, why its watch could not be read.
    """

    alerts: tuple[Alert, ...] = ()
    spans: Mapping[str, tuple[SeenSpan, ...]] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Trigger(abc.ABC):
    """A declared reason to start a pipeline.

    Attributes:
        name: Unique among the policy's triggers.
        pipeline: The ``[pipelines]`` key it starts.
        params: Parameters for the run: the pipeline's defaults overlaid with the trigger's.
        line: The policy line that declared it, if known.
    """

    kind: ClassVar[str] = ""
    name: str
    pipeline: str
    params: Mapping[str, Any] = field(default_factory=dict)
    line: int | None = None

    @abc.abstractmethod
    def evaluate(
        self, state: TriggerState, now: dt.datetime, context: TriggerContext
    ) -> TriggerDecision:
        """Decide whether to fire now; pure (no I/O, no clock)."""

    @abc.abstractmethod
    def describe(self) -> str:
        """What it reacts to, in a few words (``every 15th minute``)."""

    def record(
        self, state: TriggerState, decision: TriggerDecision, now: dt.datetime
    ) -> TriggerState:
        """The state after the controller acted on ``decision`` (fired or only evaluated)."""
        if decision.fire:
            return state.fired(self.name, now)
        return state.evaluated(self.name, now)

    def _decide(
        self,
        now: dt.datetime,
        fire: bool,
        reason: str,
        details: dict[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> TriggerDecision:
        return TriggerDecision(
            trigger=self.name,
            kind=self.kind,
            pipeline=self.pipeline,
            fire=fire,
            reason=reason,
            details=details or {},
            params={**self.params, **(params or {})},
            evaluated_at=now,
        )


@dataclass(frozen=True, kw_only=True)
class ManualTrigger(Trigger):
    """Fires for the oldest queued manual request for its pipeline (one per poll).

    ``implicit`` marks the trigger a policy adds for a pipeline that declares none, so that
    ``conveyor trigger PIPELINE`` works for every pipeline.

    Example:
        >>> ManualTrigger(name="manual:census", pipeline="census").describe()
        'conveyor trigger census'
    """

    kind: ClassVar[str] = "manual"
    implicit: bool = False

    def describe(self) -> str:
        """``conveyor trigger PIPELINE``."""
        return f"conveyor trigger {self.pipeline}"

    def evaluate(
        self, state: TriggerState, now: dt.datetime, context: TriggerContext
    ) -> TriggerDecision:
        """Fire for the oldest pending request of this pipeline."""
        pending = [r for r in state.pending_manual if r.pipeline == self.pipeline]
        if not pending:
            return self._decide(now, False, f"no manual request pending ({self.describe()})")
        request = pending[0]
        more = f"; {len(pending) - 1} more queued" if len(pending) > 1 else ""
        who = f" by {request.requested_by}" if request.requested_by else ""
        reason = f"manual request {request.id}{who} at {_when(request.requested_at)}{more}"
        details = {"request": request.to_json(), "queued": len(pending)}
        return self._decide(now, True, reason, details, request.params)

    def record(
        self, state: TriggerState, decision: TriggerDecision, now: dt.datetime
    ) -> TriggerState:
        """Also drop the request that was run from the pending ones."""
        state = super().record(state, decision, now)
        request = decision.details.get("request")
        if decision.fire and isinstance(request, dict):
            state = state.without_request(str(request["id"]))
        return state


@dataclass(frozen=True, kw_only=True)
class CronTrigger(Trigger):
    """Fires once when a scheduled time passed since the trigger was last evaluated.

    Missed times (the controller was down) are counted in ``details["missed"]`` but give one
    run, not a burst. The first evaluation only starts the clock.

    Example:
        >>> from conveyor.ct.cron import parse_cron
        >>> CronTrigger(name="n", pipeline="p", schedule=parse_cron("0 3 * * *")).describe()
        "cron '0 3 * * *' (At 03:00 every day)"
    """

    kind: ClassVar[str] = "cron"
    schedule: CronSchedule

    def describe(self) -> str:
        """The expression and its meaning."""
        return f"cron {self.schedule.expression!r} ({self.schedule.explain()})"

    def evaluate(
        self, state: TriggerState, now: dt.datetime, context: TriggerContext
    ) -> TriggerDecision:
        """Fire when a scheduled time lies in (last evaluation or fire, now]."""
        expr = self.schedule.expression
        marks = (state.last_evaluated.get(self.name), state.last_fired.get(self.name))
        since = max((t for t in marks if t is not None), default=None)
        upcoming = self.schedule.next_after(now)
        details: dict[str, Any] = {
            "cron": expr,
            "timezone": self.schedule.timezone,
            "next_due": upcoming.isoformat(),
        }
        if since is None:
            when = self.schedule.local(upcoming)
            reason = f"cron {expr!r} starts at this first evaluation; next due at {when}"
            return self._decide(now, False, reason, details)
        due = self.schedule.due_between(since, now)
        if not due:
            return self._decide(
                now, False, f"cron {expr!r} next due at {self.schedule.local(upcoming)}", details
            )
        details.update(due=due[-1].isoformat(), missed=len(due) - 1, since=since.isoformat())
        missed = f" ({len(due) - 1} earlier time(s) missed, run once)" if len(due) > 1 else ""
        reason = f"cron {expr!r} was due at {self.schedule.local(due[-1])}{missed}"
        return self._decide(now, True, reason, details)


@dataclass(frozen=True, kw_only=True)
class NewDataTrigger(Trigger):
    """Fires when its watch shows a span numbered above the newest one already handled.

    The new span goes to the run through ``span_param`` (its number) and the watched location
    through ``source_param``, when those name pipeline parameters. The first look at a watch is
    a baseline: the spans there are taken as handled.

    Example:
        >>> NewDataTrigger(name="n", pipeline="p", watch=Watch("/data/census")).describe()
        'new span in /data/census'
    """

    kind: ClassVar[str] = "new_data"
    watch: Watch
    span_param: str | None = None
    source_param: str | None = None

    def describe(self) -> str:
        """Where it looks."""
        return f"new span in {self.watch.describe()}"

    def evaluate(
        self, state: TriggerState, now: dt.datetime, context: TriggerContext
    ) -> TriggerDecision:
        """Compare the visible spans with the last one handled."""
        where = self.watch.describe()
        details: dict[str, Any] = {"watch": where}
        if self.name in context.errors:
            return self._decide(
                now, False, f"cannot look at {where}: {context.errors[self.name]}", details
            )
        spans = context.spans.get(self.name)
        if spans is None:
            return self._decide(now, False, f"{where} was not looked at in this poll", details)
        if not spans:
            return self._decide(now, False, f"no span in {where} yet", details)
        newest = spans[-1]
        details["span"] = newest.to_json()
        last = state.last_span.get(self.name)
        if last is None:
            reason = f"first look at {where}: {newest.label} is taken as already handled"
            return self._decide(now, False, reason, details)
        fresh = [s for s in spans if s.number > last.number]
        if not fresh:
            return self._decide(now, False, f"no new span since {last.label}", details)
        details.update(previous=last.to_json(), new_spans=[s.to_json() for s in fresh])
        others = f" ({len(fresh) - 1} more new span(s) before it)" if len(fresh) > 1 else ""
        reason = f"new span {newest.label} in {where} after {last.label}{others}"
        params: dict[str, Any] = {}
        if self.span_param:
            params[self.span_param] = newest.number
        if self.source_param:
            params[self.source_param] = self.watch.location
        return self._decide(now, True, reason, details, params)

    def record(
        self, state: TriggerState, decision: TriggerDecision, now: dt.datetime
    ) -> TriggerState:
        """Also remember the newest span, when it fired or on the first look."""
        state_after = super().record(state, decision, now)
        span = decision.details.get("span")
        if isinstance(span, dict) and (decision.fire or self.name not in state.last_span):
            state_after = state_after.saw_span(self.name, SeenSpan.from_json(span))
        return state_after


@dataclass(frozen=True, kw_only=True)
class AlertTrigger(Trigger):
    """Fires when one of its alert rules raised an alert after the trigger last fired.

    Example:
        >>> AlertTrigger(name="t", pipeline="p", alerts=("age-drift",)).describe()
        'alert age-drift'
    """

    kind: ClassVar[str] = "alert"
    alerts: tuple[str, ...]

    def describe(self) -> str:
        """The alert rules it listens to."""
        noun = "alert" if len(self.alerts) == 1 else "alerts"
        return f"{noun} {', '.join(self.alerts)}"

    def evaluate(
        self, state: TriggerState, now: dt.datetime, context: TriggerContext
    ) -> TriggerDecision:
        """Fire for alerts of its rules raised after its last fire, newest first."""
        active = [a for a in context.alerts if a.rule in self.alerts and a.fired_at <= now]
        if not active:
            return self._decide(now, False, f"{self.describe()} not active")
        last = state.last_fired.get(self.name)
        fresh = sorted(
            (a for a in active if last is None or a.fired_at > last),
            key=lambda a: a.fired_at,
            reverse=True,
        )
        if last is not None and not fresh:
            reason = f"{self.describe()} already acted on at {_when(last)}"
            return self._decide(now, False, reason, {"alerts": [a.to_json() for a in active]})
        first = fresh[0]
        others = f" (and {len(fresh) - 1} more alert(s))" if len(fresh) > 1 else ""
        reason = f"alert {first.rule}: {first.reason()}{others}"
        return self._decide(now, True, reason, {"alerts": [a.to_json() for a in fresh]})


def _check_now(now: dt.datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise TriggerError(f"triggers need an aware time, got {now.isoformat()} without a zone")


def build_context(triggers: Iterable[Trigger], alerts: Sequence[Alert] = ()) -> TriggerContext:
    """Look at every ``new_data`` watch once (I/O) and bundle it with ``alerts``.

    A watch that cannot be read is recorded in ``errors``, so one missing folder does not stop
    the other triggers.
    """
    seen: dict[Watch, tuple[SeenSpan, ...] | str] = {}
    spans: dict[str, tuple[SeenSpan, ...]] = {}
    errors: dict[str, str] = {}
    for trigger in triggers:
        if not isinstance(trigger, NewDataTrigger):
            continue
        if trigger.watch not in seen:
            try:
                seen[trigger.watch] = observe_spans(trigger.watch)
            except (ConveyorError, OSError) as exc:  # OSError: e.g. a folder we may not list
                seen[trigger.watch] = str(exc)
        found = seen[trigger.watch]
        if isinstance(found, str):
            errors[trigger.name] = found
        else:
            spans[trigger.name] = found
    return TriggerContext(alerts=tuple(alerts), spans=spans, errors=errors)


def explain_all(
    policy: Policy, state: TriggerState, now: dt.datetime, context: TriggerContext
) -> list[TriggerDecision]:
    """Every trigger's decision now, fired or not, in policy order (``--dry-run``).

    Raises:
        TriggerError: ``now`` has no time zone.
    """
    _check_now(now)
    return [trigger.evaluate(state, now, context) for trigger in policy.all_triggers()]


def advance_state(
    policy: Policy, state: TriggerState, decisions: Iterable[TriggerDecision], now: dt.datetime
) -> TriggerState:
    """The state after the controller acted on ``decisions`` (each trigger records its own)."""
    _check_now(now)
    by_name = {t.name: t for t in policy.all_triggers()}
    for decision in decisions:
        trigger = by_name.get(decision.trigger)
        if trigger is None:
            raise TriggerError(f"decision for unknown trigger {decision.trigger!r}")
        state = trigger.record(state, decision, now)
    return state
