"""The runs the controller starts: recorded before they start, concluded once, never twice.

The protocol that makes a crash harmless:

1. A pending run is due. One transaction records the ``trigger`` event (why, every merged
   decision, the parameters), removes the pending run and sets ``inflight/PIPELINE`` to the
   trigger event's id. Only then does the run start, labelled ``trigger=NAME`` and
   ``trigger_event=ID``.
2. As soon as the run record exists, ``run_started`` is recorded with the run id, the trigger
   event is linked to the run, and the run id is added to ``inflight``.
3. When the run ends, one transaction records ``run_finished`` (or ``run_failed``) together with
   what follows (``registered``, ``canary_started``, ``not_blessed``, the roll-out state) and
   clears ``inflight``. Each end is keyed by the trigger event (``run_end:ID``): recorded once.

On restart, an ``inflight`` entry is a run the previous controller did not conclude. The run
is found by its label: none -> the crash came before it was created; ``running`` with its
runner gone (the workspace marks those ``interrupted`` when it opens) or ``interrupted`` ->
``run_interrupted``; finished -> concluded now as usual; still running elsewhere (another
host, heartbeat fresh) -> adopted and concluded when it ends. An interrupted run is never
started again: that is the operator's call (``conveyor trigger PIPELINE``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from conveyor.ct.deploy import Deployer, Plan
from conveyor.ct.launcher import LaunchedRun, RunLauncher
from conveyor.ct.ledger import Ledger, key
from conveyor.ct.pending import PendingRun
from conveyor.ct.policy_model import Policy
from conveyor.store.metadata.activity_records import (
    LABEL_TRIGGER,
    LABEL_TRIGGER_EVENT,
    ActivityEvent,
    NewActivityEvent,
)
from conveyor.store.metadata.records import RunRecord, RunStatus
from conveyor.store.workspace import Workspace

__all__ = ["RunBook"]


class RunBook:
    """Start, follow and conclude the controller's runs.

    Args:
        workspace: The controller's workspace.
        policy: The policy (its pipelines).
        ledger: Where events and state go.
        deployer: What follows a successful run.
        max_workers: Worker processes per run (default: the workspace settings').
    """

    def __init__(
        self,
        workspace: Workspace,
        policy: Policy,
        ledger: Ledger,
        deployer: Deployer,
        *,
        max_workers: int | None = None,
    ) -> None:
        self.workspace = workspace
        self.policy = policy
        self.ledger = ledger
        self.deployer = deployer
        self.launcher = RunLauncher(workspace, self._started, max_workers=max_workers)
        self.inflight: dict[str, dict[str, Any]] = {}
        self._adopted: dict[str, int] = {}

    # -- reading -----------------------------------------------------------------------------
    def running(self, pipeline: str) -> int | None:
        """The run id of the pipeline's run in progress (0 while it has no id), or None."""
        info = self.inflight.get(pipeline)
        if info is None:
            return None
        return int(info.get("run_id") or 0)

    def last_start(self, pipeline: str) -> dt.datetime | None:
        """When the pipeline's last run started (as the controller's clock read it)."""
        value = self.ledger.get(key("last_run", pipeline))
        return dt.datetime.fromisoformat(value) if isinstance(value, str) else None

    # -- starting ----------------------------------------------------------------------------
    def start(self, pending: PendingRun, now: dt.datetime) -> ActivityEvent | None:
        """Record the ``trigger`` event of ``pending`` and start its run.

        Returns the trigger event, or None when this pending run was started before (its
        trigger event exists; only the stale pending entry is cleared).
        """
        name = pending.pipeline
        target = self.policy.pipelines[name]
        params = pending.params
        event = self.ledger.event(
            "trigger",
            pending.reason(),
            time=now,
            pipeline=name,
            model=target.model,
            subject=pending.trigger,
            details={
                "decisions": [dict(d) for d in pending.decisions],
                "params": params,
                "first_fire": pending.opened_at.isoformat(),
            },
            dedupe_key=f"trigger:{pending.id}",
        )

        def changes(made: Sequence[ActivityEvent]) -> dict[str, Any]:
            info = {"event": made[0].id, "trigger": pending.trigger, "started_at": now.isoformat()}
            return {
                key("pending", name): None,
                key("inflight", name): info,
                key("last_run", name): now.isoformat(),
            }

        done = self.ledger.record([event], state=changes)
        if not done.written:
            self.ledger.record(state={key("pending", name): None})
            return None
        made = done.events[0]
        self.inflight[name] = {"event": made.id, "trigger": pending.trigger}
        labels = {LABEL_TRIGGER: pending.trigger, LABEL_TRIGGER_EVENT: str(made.id)}
        self.launcher.launch(target, params, labels, trigger_event=made.id)
        return made

    def _started(self, run: LaunchedRun) -> None:
        """From the run's thread: the run record exists."""
        assert run.run_id is not None
        info = {**self.inflight.get(run.pipeline, {}), "run_id": run.run_id}
        self.inflight[run.pipeline] = info
        params = ", ".join(f"{k}={v!r}" for k, v in run.params.items())
        event = self.ledger.event(
            "run_started",
            f"run {run.run_id} of {run.pipeline} started for trigger "
            f"{run.labels[LABEL_TRIGGER]}" + (f" ({params})" if params else ""),
            pipeline=run.pipeline,
            run_id=run.run_id,
            subject=run.labels[LABEL_TRIGGER],
            details={"trigger_event": run.trigger_event, "params": run.params},
        )
        self.ledger.record(
            [event],
            link={run.trigger_event: run.run_id},
            state={key("inflight", run.pipeline): info},
        )

    # -- ending ------------------------------------------------------------------------------
    def reap(self, now: dt.datetime) -> None:
        """Conclude the runs that ended since the last poll (adopted ones included)."""
        for run in self.launcher.reap():
            record = self.workspace.metadata.get_run(run.run_id) if run.run_id else None
            self._conclude(run.pipeline, record, run.error, now)
        for pipeline, run_id in list(self._adopted.items()):
            record = self.workspace.metadata.get_run(run_id)
            if record.status != RunStatus.RUNNING:
                del self._adopted[pipeline]
                self._conclude(pipeline, record, None, now, late=True)

    def _conclude(
        self,
        pipeline: str,
        run: RunRecord | None,
        error: str | None,
        now: dt.datetime,
        *,
        late: bool = False,
    ) -> None:
        info = self.inflight.get(pipeline) or self.ledger.get(key("inflight", pipeline)) or {}
        trigger_event = info.get("event")
        fields: dict[str, Any] = {"pipeline": pipeline, "subject": info.get("trigger")}
        fields["dedupe_key"] = f"run_end:{trigger_event}"
        fields["model"] = (
            self.policy.pipelines[pipeline].model if pipeline in self.policy.pipelines else None
        )
        plan = Plan()
        after = " (its end was recorded after a controller restart)" if late else ""
        if run is None:
            kind = "run_failed" if error else "run_interrupted"
            reason = (
                f"the run of {pipeline} could not start: {error}"
                if error
                else f"the controller stopped after the trigger fired and before the run of "
                f"{pipeline} was created; it is not started again (conveyor trigger {pipeline} "
                "runs it anew)"
            )
            event = self.ledger.event(kind, reason, time=now, details={"error": error}, **fields)
        else:
            fields["run_id"] = run.id
            event, plan = self._outcome(pipeline, run, now, after, fields)
        done = self.ledger.record(
            [event, *plan.events], state={key("inflight", pipeline): None, **plan.state}
        )
        self.inflight.pop(pipeline, None)
        if not done.written:
            self.ledger.record(state={key("inflight", pipeline): None})
            return
        self.deployer.apply(plan)

    def _outcome(
        self, pipeline: str, run: RunRecord, now: dt.datetime, after: str, fields: dict[str, Any]
    ) -> tuple[NewActivityEvent, Plan]:
        if run.status == RunStatus.SUCCEEDED:
            plan = self.deployer.plan_after_run(pipeline, run.id, fields["model"], now)
            reason = f"run {run.id} of {pipeline} succeeded{after}"
            return self.ledger.event("run_finished", reason, time=now, **fields), plan
        if run.status == RunStatus.FAILED:
            reason = f"run {run.id} of {pipeline} failed{after}: {run.error or 'no error recorded'}"
            return self.ledger.event("run_failed", reason, time=now, **fields), Plan()
        if run.status == RunStatus.RUNNING:
            self.workspace.metadata.interrupt_run(
                run.id, "interrupted: the controller that ran it stopped"
            )
        why = (run.error or "").removeprefix("interrupted: ") or "the controller stopped"
        reason = (
            f"run {run.id} of {pipeline} was interrupted ({why}); it is not started again "
            f"(conveyor trigger {pipeline} runs it anew)"
        )
        return self.ledger.event("run_interrupted", reason, time=now, **fields), Plan()

    # -- restart and stop --------------------------------------------------------------------
    def recover(self, now: dt.datetime) -> None:
        """Settle the runs the previous controller left in flight (see the module docstring)."""
        self.workspace.recover()  # runs whose runner died are marked interrupted first
        for pipeline, info in self.ledger.all("inflight").items():
            self.inflight[pipeline] = dict(info)
            runs = self.ledger.activity.runs_with_label(LABEL_TRIGGER_EVENT, str(info.get("event")))
            if not runs:
                self._conclude(pipeline, None, None, now)
                continue
            run = runs[-1]
            if run.status == RunStatus.RUNNING:  # alive elsewhere: follow it to its end
                self.inflight[pipeline]["run_id"] = run.id
                self._adopted[pipeline] = run.id
                continue
            self._conclude(pipeline, run, None, now, late=run.status != RunStatus.INTERRUPTED)

    def abandon(self, now: dt.datetime) -> None:
        """Mark the runs still going interrupted (the controller stops without them)."""
        for run in self.launcher.running().values():
            if run.done.is_set():
                continue
            record = self.workspace.metadata.get_run(run.run_id) if run.run_id else None
            if record is not None and record.status == RunStatus.RUNNING:
                self.workspace.metadata.interrupt_run(
                    record.id, "interrupted: the controller stopped"
                )
                record = self.workspace.metadata.get_run(record.id)
            self._conclude(run.pipeline, record, None, now)
