"""Rolling out what a run registered: canary, promotion, rollback, through the registry.

After a run succeeds, :meth:`Deployer.plan_after_run` looks in the registry for the versions
the run registered (``run_id``) and plans what happens to each model:

- nothing registered, or a version whose blessing is negative or missing -> ``not_blessed``;
  production is not touched;
- the model has no production yet -> promoted at once (``first deployment``);
- otherwise -> a canary: alias ``canary`` on the new version and production's traffic split
  ``{"production": 100 - p, "canary": p}`` (a canary already running is superseded);
- the run's own register step moved ``production`` (``alias="production"``) -> recorded loudly
  (a ``promoted`` event saying the canary was bypassed); pipelines run by the controller should
  register without an alias, or with ``alias="candidate"``.

A plan's events and the roll-out state are written in the same transaction as the run's
``run_finished`` event; only then does :meth:`Deployer.apply` change the registry, and every
registry change is idempotent, so after a crash :meth:`Deployer.resume` makes the registry
match the recorded state again. Each poll, :meth:`Deployer.evaluate` judges canaries on the
monitoring windows (:func:`conveyor.ct.rollout.judge_canary`), records each counted window
once (``canary_window``), and finishes a decided roll-out: promotion moves ``production`` to the
canary version (audited ``promote``), rollback leaves production as it was; both clear the
traffic split and remove the ``canary`` alias (audited).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor.ct.ledger import Ledger, key
from conveyor.ct.policy_model import ControllerPolicy
from conveyor.ct.rollout import (
    CanaryVerdict,
    Phase,
    Rollout,
    judge_canary,
    production_mean,
)
from conveyor.exceptions import ConveyorError
from conveyor.monitoring.results import WindowResult
from conveyor.registry import ModelRegistry, ModelVersionRecord, blessing_verdict
from conveyor.store.metadata.activity_records import NewActivityEvent
from conveyor.store.workspace import Workspace

__all__ = ["ACTOR", "CANARY_ALIAS", "Deployer", "Plan"]

logger = logging.getLogger(__name__)

ACTOR = "conveyor-controller"
"""Who the registry's audit trail names for the controller's changes."""
CANARY_ALIAS = "canary"
PRODUCTION = "production"


@dataclass
class Plan:
    """What to record and do after a run.

    Attributes:
        events: Events to write with the run's end.
        state: State changes to write with them (roll-outs).
        rollouts: Roll-outs whose registry changes :meth:`Deployer.apply` makes afterwards.
    """

    events: list[NewActivityEvent] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    rollouts: list[Rollout] = field(default_factory=list)


class Deployer:
    """The registry side of the controller.

    Args:
        workspace: The controller's workspace.
        ledger: Where events and roll-outs are recorded.
        policy: ``[controller]`` (canary share, windows, metric, tolerance).
    """

    def __init__(self, workspace: Workspace, ledger: Ledger, policy: ControllerPolicy) -> None:
        self.workspace = workspace
        self.registry = ModelRegistry(workspace)
        self.ledger = ledger
        self.policy = policy

    # -- state -------------------------------------------------------------------------------
    def rollouts(self) -> dict[str, Rollout]:
        """The roll-outs in progress, by model."""
        return {m: Rollout.from_json(v) for m, v in self.ledger.all("rollout").items()}

    # -- after a run -------------------------------------------------------------------------
    def plan_after_run(
        self, pipeline: str, run_id: int, model: str | None, now: dt.datetime
    ) -> Plan:
        """What follows a successful run (see the module docstring)."""
        plan = Plan()
        mine = [v for v in self.registry.list(include_archived=True) if v.run_id == run_id]
        by_model: dict[str, list[ModelVersionRecord]] = {}
        for version in mine:
            by_model.setdefault(version.name, []).append(version)
            plan.events.append(
                self.ledger.event(
                    "registered",
                    f"run {run_id} registered {version.ref}",
                    time=now,
                    pipeline=pipeline,
                    model=version.name,
                    version=version.version,
                    run_id=run_id,
                    details={"blessing": version.blessing, "metrics": _plain(version.metrics)},
                    dedupe_key=f"registered:{version.name}:{version.version}",
                )
            )
        if not mine and model is not None:
            reasons = self._register_reasons(run_id)
            shown = "; ".join(reasons) or "the pipeline registered no version"
            plan.events.append(
                self.ledger.event(
                    "not_blessed",
                    f"run {run_id} registered no version of {model} ({shown}); production is "
                    "unchanged",
                    time=now,
                    pipeline=pipeline,
                    model=model,
                    run_id=run_id,
                    details={"reasons": reasons},
                )
            )
        for versions in by_model.values():
            newest = max(versions, key=lambda v: v.version)
            self._plan_version(plan, pipeline, newest, run_id, now)
        return plan

    def _plan_version(
        self, plan: Plan, pipeline: str, record: ModelVersionRecord, run_id: int, now: dt.datetime
    ) -> None:
        name, version = record.name, record.version
        fields: dict[str, Any] = {"pipeline": pipeline, "model": name, "version": version}
        fields["run_id"] = run_id
        blessed, reasons = blessing_verdict(record.blessing)
        aliases = self.registry.aliases(name)
        old = self.rollouts().get(name)
        if aliases.get(PRODUCTION) == version:
            self._bypassed(plan, record, old, now, fields)
            return
        if not blessed:
            why = f"{record.ref} is not blessed ({'; '.join(reasons) or 'no reason given'})"
            plan.events.append(
                self.ledger.event(
                    "not_blessed",
                    f"{why}; production is unchanged",
                    time=now,
                    details={"reasons": reasons},
                    **fields,
                )
            )
            return
        current = aliases.get(PRODUCTION)
        rollout = Rollout(name, version, current, now, self.policy.canary_percent, run_id)
        if old is not None and old.version != version:
            plan.events.append(self._superseded(old, record, now))
        if current is None:
            rollout = rollout.decided("promoting", f"first deployment of {name}", {})
        else:
            plan.events.append(self._canary_started(rollout, now))
        plan.state[key("rollout", name)] = rollout.to_json()
        plan.rollouts.append(rollout)

    def _bypassed(
        self,
        plan: Plan,
        record: ModelVersionRecord,
        old: Rollout | None,
        now: dt.datetime,
        fields: dict[str, Any],
    ) -> None:
        """The run's register step moved production itself: say so loudly, canary nothing."""
        why = (
            f"run {fields['run_id']} moved {PRODUCTION} to {record.ref} itself (its register "
            f"step sets alias={PRODUCTION!r}), bypassing the canary; pipelines the controller "
            'runs should register without an alias or with alias="candidate"'
        )
        plan.events.append(
            self.ledger.event("promoted", why, time=now, source="pipeline", **fields)
        )
        if old is not None:  # its canary is compared with nothing any more: take it down
            plan.events.append(self._superseded(old, record, now))
            retired = old.decided("rolling_back", f"superseded by {record.ref}", {})
            plan.state[key("rollout", record.name)] = retired.to_json()
            plan.rollouts.append(retired)

    def _canary_started(self, rollout: Rollout, now: dt.datetime) -> NewActivityEvent:
        share = f"{rollout.percent:g}%"
        return self.ledger.event(
            "canary_started",
            f"{rollout.model}:{rollout.version} gets {share} of production's traffic as canary "
            f"(production is version {rollout.production}); it is promoted after "
            f"{self.policy.promote_after} window(s) with {self.policy.metric} not worse by more "
            f"than {self.policy.tolerance:g}, rolled back otherwise (or without a verdict "
            f"by {rollout.started_at + self.policy.canary_timeout:%Y-%m-%d %H:%M} UTC)",
            time=now,
            model=rollout.model,
            version=rollout.version,
            run_id=rollout.run_id,
            details={"percent": rollout.percent, "production": rollout.production},
            dedupe_key=f"canary:{rollout.model}:{rollout.version}:{rollout.started_at.isoformat()}",
        )

    def _superseded(
        self, old: Rollout, record: ModelVersionRecord, now: dt.datetime
    ) -> NewActivityEvent:
        return self.ledger.event(
            "rolled_back",
            f"canary {old.model}:{old.version} is superseded by {record.ref} before a verdict; "
            "production is unchanged",
            time=now,
            model=old.model,
            version=old.version,
            run_id=old.run_id,
            details={"superseded_by": record.version, "production": old.production},
            dedupe_key=f"end:{old.model}:{old.version}:{old.started_at.isoformat()}",
        )

    def apply(self, plan: Plan) -> None:
        """Make the registry follow the roll-outs of ``plan`` (after it was recorded)."""
        for rollout in plan.rollouts:
            self.resume(rollout)

    # -- each poll ---------------------------------------------------------------------------
    def evaluate(
        self, rollout: Rollout, results: Sequence[WindowResult], now: dt.datetime
    ) -> CanaryVerdict | None:
        """Judge a canary on its model's windows; record new windows; finish when decided."""
        if rollout.phase != "canary":
            self.resume(rollout)
            return None
        production = self.registry.aliases(rollout.model).get(PRODUCTION)
        if production is None or production == rollout.version:
            why = (
                f"{PRODUCTION} already points at {rollout.model}:{rollout.version}"
                if production == rollout.version
                else f"{rollout.model} has no {PRODUCTION} alias any more"
            )
            phase: Phase = "promoting" if production == rollout.version else "rolling_back"
            self._decide(rollout.decided(phase, why, {}), now)
            return None
        verdict = judge_canary(
            rollout,
            results,
            production=production,
            metric=self.policy.metric,
            promote_after=self.policy.promote_after,
            tolerance=self.policy.tolerance,
            now=now,
            timeout=self.policy.canary_timeout,
        )
        self._record_windows(rollout, verdict, results, production, now)
        if verdict.decision != "wait":
            decided: Phase = "promoting" if verdict.decision == "promote" else "rolling_back"
            self._decide(rollout.decided(decided, verdict.reason, verdict.figures()), now)
        return verdict

    def _record_windows(
        self,
        rollout: Rollout,
        verdict: CanaryVerdict,
        results: Sequence[WindowResult],
        production: int,
        now: dt.datetime,
    ) -> None:
        metric = self.policy.metric
        for number, window in enumerate(verdict.windows, start=1):
            dedupe = f"canary_window:{rollout.model}:{rollout.version}:{window.index}"
            if self.ledger.activity.event_by_key(dedupe) is not None:
                continue
            prod = production_mean(results, production, rollout.started_at, window.end, metric)
            versus = f"; production {prod:.4g} so far" if prod is not None else ""
            self.ledger.add(
                "canary_window",
                f"canary {rollout.model}:{rollout.version} window {number} of "
                f"{self.policy.promote_after}: {metric} {window.value:.4g} over "
                f"{window.count} prediction(s){versus}",
                time=now,
                model=rollout.model,
                version=rollout.version,
                run_id=rollout.run_id,
                details={**window.to_json(), "metric": metric, "production_mean": prod},
                dedupe_key=dedupe,
            )

    def _decide(self, rollout: Rollout, now: dt.datetime) -> None:
        self.ledger.record(state={key("rollout", rollout.model): rollout.to_json()})
        self.resume(rollout, now)

    # -- registry changes --------------------------------------------------------------------
    def resume(self, rollout: Rollout, now: dt.datetime | None = None) -> None:
        """Make the registry match ``rollout``; finish it when it is decided (idempotent)."""
        when = now or self.ledger.clock()
        if rollout.phase == "canary":
            self._ensure_canary(rollout)
        elif rollout.phase == "promoting":
            self._promote(rollout, when)
        else:
            self._roll_back(rollout, when)

    def _ensure_canary(self, rollout: Rollout) -> None:
        name, why = rollout.model, f"canary of version {rollout.version} (controller)"
        self.registry.promote(name, rollout.version, CANARY_ALIAS, reason=why, actor=ACTOR)
        split = {PRODUCTION: 100.0 - rollout.percent, CANARY_ALIAS: rollout.percent}
        self.registry.set_traffic(name, split, actor=ACTOR, reason=why)

    def _take_down_canary(self, rollout: Rollout, why: str) -> None:
        self.registry.clear_traffic(rollout.model, actor=ACTOR, reason=why)
        if self.registry.aliases(rollout.model).get(CANARY_ALIAS) == rollout.version:
            self.registry.store.remove_alias(rollout.model, CANARY_ALIAS, actor=ACTOR, reason=why)

    def _promote(self, rollout: Rollout, now: dt.datetime) -> None:
        name = rollout.model
        why = f"{rollout.reason} (controller)"
        self.registry.promote(name, rollout.version, PRODUCTION, reason=why, actor=ACTOR)
        self._take_down_canary(rollout, why)
        self._finish(
            rollout, "promoted", f"{name}:{rollout.version} is production: {rollout.reason}", now
        )

    def _roll_back(self, rollout: Rollout, now: dt.datetime) -> None:
        why = f"{rollout.reason} (controller)"
        self._take_down_canary(rollout, why)
        production = self.registry.aliases(rollout.model).get(PRODUCTION)
        kept = f"version {production}" if production is not None else "none"
        self._finish(
            rollout,
            "rolled_back",
            f"canary {rollout.model}:{rollout.version} rolled back: {rollout.reason}; "
            f"production unchanged ({kept})",
            now,
        )

    def _finish(self, rollout: Rollout, kind: str, reason: str, now: dt.datetime) -> None:
        event = self.ledger.event(
            kind,
            reason,
            time=now,
            model=rollout.model,
            version=rollout.version,
            run_id=rollout.run_id,
            details={**rollout.verdict, "production_before": rollout.production},
            dedupe_key=f"end:{rollout.model}:{rollout.version}:{rollout.started_at.isoformat()}",
        )
        done = self.ledger.record([event], state={key("rollout", rollout.model): None})
        if not done.written:  # finished before a crash; only the state was left behind
            self.ledger.record(state={key("rollout", rollout.model): None})

    # -- reading -----------------------------------------------------------------------------
    def _register_reasons(self, run_id: int) -> list[str]:
        """Why the run's register steps registered nothing (their ``reasons`` outputs)."""
        from conveyor.core.materializers import load_artifact

        meta = self.workspace.metadata
        reasons: list[str] = []
        for execution in meta.list_executions(run_id):
            if execution.component_name != "register":
                continue
            output = meta.execution_outputs(execution.id).get("output")
            if output is None or output.type_name != "JSON":
                continue
            try:
                value = load_artifact(
                    self.workspace.artifacts,
                    output.uri,
                    output.type_name,
                    output.sha256,
                    output.properties,
                    dict,
                )
            except ConveyorError:
                continue
            reasons += [str(r) for r in value.get("reasons") or ()]
        return reasons


def _plain(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level numeric metrics only (slices stay in the registry)."""
    return {k: v for k, v in metrics.items() if isinstance(v, int | float)}
