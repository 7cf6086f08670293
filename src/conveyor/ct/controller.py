"""The continuous-training controller behind ``conveyor watch``.

One :class:`Controller` per metadata database (a lease makes sure of it) polls every
``[controller] poll``. A poll (:meth:`Controller.step`) does, in order:

1. **renew** its lease (a controller that lost it stops without acting);
2. **conclude** the runs that ended: ``run_finished``/``run_failed``, then what the run
   registered (``registered``, ``not_blessed``, ``canary_started``, a first deployment);
3. take the **manual requests** queued by ``conveyor trigger`` into the trigger state;
4. **monitor** every model with alert rules or a canary: new ``alert`` events, window results;
5. **judge canaries** on those windows: ``canary_window``, then ``promoted`` or ``rolled_back``;
6. evaluate the **triggers**; each fire joins its pipeline's pending run, and a fire that cannot
   start now is recorded as ``skipped`` with the reason (debounce, busy, rate limit) and kept;
7. **start** the pending runs nothing holds (see :mod:`conveyor.ct.runbook` for the protocol
   that makes restarts free of duplicate runs).

Everything it does is an activity event (``conveyor events``) and every run it starts is a
normal run labelled with its trigger (``conveyor runs``). :meth:`Controller.start` takes the
lease and settles what a crashed predecessor left (interrupted runs, unfinished roll-outs).

Example:
    >>> policy = load_policy("conveyor.toml")  # doctest: +SKIP
    >>> controller = Controller(Workspace.open(load_settings()), policy)  # doctest: +SKIP
    >>> controller.start()  # doctest: +SKIP
    >>> events = controller.step()  # one poll; run_forever(stop) polls until stop is set
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from conveyor.ct.alerting import AlertWatch
from conveyor.ct.controller_errors import ControllerError
from conveyor.ct.deploy import Deployer
from conveyor.ct.durations import format_duration
from conveyor.ct.lease import ControllerLease
from conveyor.ct.ledger import Ledger, key
from conveyor.ct.manual import read_requests, remove_request
from conveyor.ct.pending import Hold, PendingRun, hold_of
from conveyor.ct.policy_model import Policy
from conveyor.ct.runbook import RunBook
from conveyor.ct.state import TriggerState, load_state, save_state
from conveyor.ct.triggers import TriggerDecision, advance_state, build_context, explain_all
from conveyor.store.metadata.activity_records import (
    ActivityEvent,
    LeaseLostError,
    NewActivityEvent,
)
from conveyor.store.workspace import Workspace

__all__ = ["Controller", "describe"]

_TRIGGERS = key("triggers")
_MIN_TTL = dt.timedelta(seconds=30)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Controller:
    """Evaluates triggers, starts runs, and rolls out what they register.

    Args:
        workspace: The workspace it acts on (runs, registry, prediction log, events).
        policy: A loaded, checked policy (:func:`conveyor.ct.load_policy`).
        clock: Returns the current time, aware (default: UTC now); tests pass their own.
        max_workers: Worker processes per run (default: the workspace settings').
        lease_ttl: How long the lease outlives a missed renewal (default: four polls, at
            least 30 s).

    Example:
        >>> controller = Controller(workspace, policy)  # doctest: +SKIP
        >>> controller.start()  # takes the lease, settles a predecessor's crash
        >>> controller.run_forever(threading.Event())  # until the event is set
    """

    def __init__(
        self,
        workspace: Workspace,
        policy: Policy,
        *,
        clock: Callable[[], dt.datetime] | None = None,
        max_workers: int | None = None,
        lease_ttl: dt.timedelta | None = None,
    ) -> None:
        self.workspace = workspace
        self.policy = policy
        self.clock = clock or _utcnow
        ttl = lease_ttl or max(_MIN_TTL, policy.controller.poll * 4)
        self.lease = ControllerLease(workspace.metadata.activity, ttl)
        self.ledger = Ledger(workspace.metadata.activity, self.lease.owner, self.clock)
        self.deployer = Deployer(workspace, self.ledger, policy.controller)
        self.runs = RunBook(workspace, policy, self.ledger, self.deployer, max_workers=max_workers)
        self.alerts = AlertWatch(workspace, policy, self.ledger)
        self.triggers = TriggerState()
        self.pending: dict[str, PendingRun] = {}
        self.started = False

    def __repr__(self) -> str:
        return f"Controller(policy={str(self.policy.source)!r}, owner={self.lease.owner!r})"

    # -- life cycle --------------------------------------------------------------------------
    def start(self) -> list[ActivityEvent]:
        """Take the lease, record ``controller_started`` and settle a predecessor's crash.

        Raises:
            ControllerBusyError: another live controller holds the lease.
        """
        self.lease.acquire()
        now = self.clock()
        self.triggers = self._load_triggers()
        c = self.policy.controller
        took = (
            f"; took over from {self.lease.took_over}, which is gone"
            if self.lease.took_over
            else ""
        )
        self.ledger.add(
            "controller_started",
            f"controller {self.lease.owner} watches {self.policy.source or 'a policy'}: "
            f"{len(self.policy.pipelines)} pipeline(s), {len(self.policy.all_triggers())} "
            f"trigger(s), {len(self.policy.alerts)} alert rule(s), poll "
            f"{format_duration(c.poll)}{took}",
            time=now,
            details={
                "policy": str(self.policy.source),
                "owner": self.lease.owner,
                "pid": os.getpid(),
                "took_over": self.lease.took_over,
            },
        )
        try:
            self.runs.recover(now)
            self.pending = self._load_pending(now)
            for rollout in self.deployer.rollouts().values():
                self.deployer.resume(rollout, now)
        except BaseException:
            self.lease.release()  # a controller that could not settle the past does not act
            raise
        self.started = True
        return self.ledger.drain()

    def stop(
        self, *, reason: str = "stopped", abandon: threading.Event | None = None
    ) -> list[ActivityEvent]:
        """Wait for the runs in progress (concluding them), record ``controller_stopped`` and
        release the lease. When ``abandon`` is set (now or while waiting), the runs still going
        are marked interrupted instead of waited for.
        """
        if not self.started:
            return []
        self.started = False
        try:
            self._drain_runs(abandon)
            self.ledger.add("controller_stopped", f"controller {self.lease.owner} {reason}")
            self.lease.release()
        except (LeaseLostError, ControllerError):
            pass  # another controller took over: it settles what this one left
        return self.ledger.drain()

    def _drain_runs(self, abandon: threading.Event | None) -> None:
        wait = min(self.policy.controller.poll.total_seconds(), 1.0)
        while True:
            if abandon is not None and abandon.is_set():
                self.runs.abandon(self.clock())
                break
            if self.runs.launcher.wait(timeout=wait):
                break
            self.lease.renew()  # a long run must not let the lease lapse while it is waited for
            self.runs.reap(self.clock())
        self.runs.reap(self.clock())

    def run_forever(
        self,
        stop: threading.Event,
        *,
        max_polls: int | None = None,
        on_events: Callable[[list[ActivityEvent]], None] | None = None,
    ) -> int:
        """Poll until ``stop`` is set (or ``max_polls`` polls); return the number of polls."""
        polls = 0
        while not stop.is_set():
            events = self.step()
            if on_events is not None and events:
                on_events(events)
            polls += 1
            if max_polls is not None and polls >= max_polls:
                break
            stop.wait(self.policy.controller.poll.total_seconds())
        return polls

    # -- one poll ----------------------------------------------------------------------------
    def step(self, now: dt.datetime | None = None) -> list[ActivityEvent]:
        """One poll (see the module docstring); returns the events it recorded.

        Raises:
            ControllerError: :meth:`start` was not called, or the lease was lost.
        """
        if not self.started:
            raise ControllerError("the controller is not started; call start() first")
        when = now or self.clock()
        self.lease.renew()
        self.runs.reap(when)
        self._take_requests(when)
        rollouts = self.deployer.rollouts()
        starts = {model: rollout.started_at for model, rollout in rollouts.items()}
        results = self.alerts.poll(self.alerts.models(rollouts), when, since=starts)
        for model, rollout in rollouts.items():
            if model in results or rollout.phase != "canary":
                self.deployer.evaluate(rollout, results.get(model, []), when)
        self._fire(when)
        self._start_due(when)
        return self.ledger.drain()

    def _take_requests(self, now: dt.datetime) -> None:
        home = self.workspace.settings.home
        requests = read_requests(home)
        if not requests:
            return
        known = [r for r in requests if r.pipeline in self.policy.pipelines]
        events = [
            self.ledger.event(
                "skipped",
                f"manual request {r.id} names pipeline {r.pipeline!r}, which the policy no "
                "longer declares; dropped",
                time=now,
                pipeline=r.pipeline,
                details={"request": r.to_json()},
            )
            for r in requests
            if r.pipeline not in self.policy.pipelines
        ]
        state = self.triggers.with_requests(known)
        self.ledger.record(events, state={_TRIGGERS: state.to_json()})
        self.triggers = state
        for request in requests:  # only once the state holding them is saved
            remove_request(home, request)

    def _fire(self, now: dt.datetime) -> None:
        context = build_context(self.policy.all_triggers(), self.alerts.recent(now))
        decisions = explain_all(self.policy, self.triggers, now, context)
        after = advance_state(self.policy, self.triggers, decisions, now)
        changes: dict[str, Any] = {_TRIGGERS: after.to_json()}
        events: list[NewActivityEvent] = []
        for decision in (d for d in decisions if d.fire):
            pending = self.pending.get(decision.pipeline)
            pending = pending.merge(decision) if pending else PendingRun.open(decision, now)
            hold = self._hold(pending, now)
            if hold is not None:
                events.append(self._held(decision, hold, now))
                pending = pending.with_hold(hold.kind)
            self.pending[decision.pipeline] = pending
            changes[key("pending", decision.pipeline)] = pending.to_json()
        self.ledger.record(events, state=changes)
        self.triggers = after
        save_state(self.workspace.settings.home, after)  # a mirror for `conveyor trigger --dry-run`

    def _start_due(self, now: dt.datetime) -> None:
        for name, pending in list(self.pending.items()):
            hold = self._hold(pending, now)
            if hold is None:
                del self.pending[name]
                self.runs.start(pending, now)
            elif hold.kind != pending.held:
                self.pending[name] = pending = pending.with_hold(hold.kind)
                event = self.ledger.event(
                    "skipped",
                    f"the run of {name} for {', '.join(pending.triggers)} is still held: "
                    f"{hold.reason}",
                    time=now,
                    pipeline=name,
                    subject=pending.trigger,
                    details={"hold": hold.kind, **hold.details, "pending": pending.id},
                )
                self.ledger.record([event], state={key("pending", name): pending.to_json()})

    def _hold(self, pending: PendingRun, now: dt.datetime) -> Hold | None:
        c = self.policy.controller
        return hold_of(
            pending,
            now,
            debounce=c.debounce,
            min_interval=c.min_interval,
            running=self.runs.running(pending.pipeline),
            last_start=self.runs.last_start(pending.pipeline),
        )

    def _held(self, decision: TriggerDecision, hold: Hold, now: dt.datetime) -> NewActivityEvent:
        return self.ledger.event(
            "skipped",
            f"{decision.trigger} fired ({decision.reason}) but the run is held: {hold.reason}; "
            "the fire stays pending",
            time=now,
            pipeline=decision.pipeline,
            model=self._model(decision.pipeline),
            subject=decision.trigger,
            details={"hold": hold.kind, **hold.details, "decision": decision.to_json()},
        )

    # -- loading -----------------------------------------------------------------------------
    def _model(self, pipeline: str) -> str | None:
        target = self.policy.pipelines.get(pipeline)
        return target.model if target is not None else None

    def _load_triggers(self) -> TriggerState:
        saved = self.ledger.get(_TRIGGERS)
        if isinstance(saved, dict):
            return TriggerState.from_json(saved)
        return load_state(self.workspace.settings.home)  # a dry run's file, before any controller

    def _load_pending(self, now: dt.datetime) -> dict[str, PendingRun]:
        pending = {n: PendingRun.from_json(v) for n, v in self.ledger.all("pending").items()}
        gone = [name for name in pending if name not in self.policy.pipelines]
        events = [
            self.ledger.event(
                "skipped",
                f"the pending run of {name} is dropped: the policy no longer declares it",
                time=now,
                pipeline=name,
                details={"pending": pending[name].to_json()},
            )
            for name in gone
        ]
        if events:
            self.ledger.record(events, state={key("pending", name): None for name in gone})
        return {n: p for n, p in pending.items() if n not in gone}


def describe(events: Sequence[ActivityEvent]) -> list[str]:
    """One line per event: ``time kind [model:version] [rRUN] reason`` (for logs)."""
    lines = []
    for event in events:
        parts = [f"{event.time:%Y-%m-%d %H:%M:%S}", event.kind]
        if event.model_ref:
            parts.append(event.model_ref)
        if event.run_id is not None:
            parts.append(f"r{event.run_id}")
        lines.append(" ".join(parts) + f": {event.reason}")
    return lines
