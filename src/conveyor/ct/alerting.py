"""Monitoring at each poll: window results per model, and each new alert recorded once.

The controller watches every model that has alert rules or a canary in progress. For each,
one :meth:`conveyor.monitoring.Monitor.check` reads the prediction log and feedback of the
last :meth:`Policy.lookback <conveyor.ct.policy_model.Policy.lookback>` (back to the start
of the model's canary when that is older), so a poll costs what the recent traffic costs,
not what the whole history does; alerts are
recorded as ``alert`` events keyed by rule and window end (``alert:RULE:END``), so an alert is
stored once however often it is seen (after a restart too), and each rule's last fire is kept
in the controller's state for the cool-down. The window results go to the canary judge.

Alert triggers read the recorded alerts back (:meth:`AlertWatch.recent`) rather than only this
poll's, so an alert recorded just before a crash still fires its trigger after the restart.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from conveyor.ct.ledger import Ledger, key
from conveyor.ct.policy_model import MonitoringPolicy, Policy
from conveyor.exceptions import ConveyorError
from conveyor.monitoring.alert_model import Alert
from conveyor.monitoring.results import WindowResult
from conveyor.monitoring.window_spec import WindowSpec
from conveyor.store.workspace import Workspace

if TYPE_CHECKING:
    from conveyor.monitoring.monitor import Monitor

__all__ = ["RECENT", "AlertWatch", "window_spec"]

logger = logging.getLogger(__name__)

RECENT = dt.timedelta(days=1)
"""How far back recorded alerts are handed to alert triggers."""
_LAST_FIRED = key("alerts")


def window_spec(monitoring: MonitoringPolicy) -> WindowSpec:
    """``[monitoring] window`` as a :class:`WindowSpec` (a count, or a duration)."""
    if isinstance(monitoring.window, dt.timedelta):
        return WindowSpec(duration=monitoring.window)
    return WindowSpec(size=monitoring.window)


class AlertWatch:
    """Window results and alerts of the watched models, at each poll.

    Args:
        workspace: The controller's workspace (prediction log and feedback under its
            artifact URL, references through the registry).
        policy: The policy (``[monitoring]`` and ``[[alerts]]``).
        ledger: Where alerts are recorded.
    """

    def __init__(self, workspace: Workspace, policy: Policy, ledger: Ledger) -> None:
        self.workspace = workspace
        self.policy = policy
        self.ledger = ledger
        self._monitor: Monitor | None = None
        self._problems: dict[str, str] = {}

    @property
    def monitor(self) -> Monitor:
        """The monitor (built on first use: it imports numpy and DuckDB)."""
        if self._monitor is None:
            from conveyor.monitoring.monitor import Monitor

            m = self.policy.monitoring
            self._monitor = Monitor(
                self.workspace,
                window_spec(m),
                m.label_delay,
                list(m.slices),
                min_coverage=m.min_feedback_coverage,
            )
        return self._monitor

    def models(self, rolling_out: Iterable[str]) -> list[str]:
        """The models to watch: those with alert rules, then those with a canary."""
        names = [rule.model for rule in self.policy.alerts] + list(rolling_out)
        return list(dict.fromkeys(names))

    def poll(
        self,
        models: Iterable[str],
        now: dt.datetime,
        since: Mapping[str, dt.datetime] | None = None,
    ) -> dict[str, list[WindowResult]]:
        """Check every model in ``models``: record new alerts, return the window results.

        ``since`` gives a model's own start (a canary older than the lookback); the others
        are read from ``now - policy.lookback()``. A model whose log cannot be read is
        skipped (logged once per distinct problem), so one broken log does not stop the
        controller.
        """
        horizon = now - self.policy.lookback()
        since = since or {}
        results: dict[str, list[WindowResult]] = {}
        last_fired = {
            rule: dt.datetime.fromisoformat(when)
            for rule, when in (self.ledger.get(_LAST_FIRED) or {}).items()
        }
        for model in models:
            try:
                start = min(since.get(model, horizon), horizon)
                found, alerts = self.monitor.check(
                    model, self.policy.alerts, last_fired, now, since=start
                )
            except (ConveyorError, OSError) as exc:
                self._problem(model, str(exc))
                continue
            self._problems.pop(model, None)
            results[model] = found
            for alert in alerts:
                self._record(alert, last_fired)
        return results

    def _record(self, alert: Alert, last_fired: dict[str, dt.datetime]) -> None:
        last_fired[alert.rule] = alert.fired_at
        state = {_LAST_FIRED: {r: t.isoformat() for r, t in sorted(last_fired.items())}}
        event = self.ledger.event(
            "alert",
            f"alert {alert.rule}: {alert.reason()}",
            time=alert.fired_at,
            model=alert.model,
            version=alert.version,
            subject=alert.rule,
            details={"alert": alert.to_json()},
            dedupe_key=f"alert:{alert.rule}:{alert.window_end.isoformat()}",
        )
        self.ledger.record([event], state=state)

    def _problem(self, model: str, message: str) -> None:
        if self._problems.get(model) != message:
            logger.warning("monitoring %s: %s", model, message)
        self._problems[model] = message

    def recent(self, now: dt.datetime) -> list[Alert]:
        """The alerts recorded over the last day (what alert triggers look at)."""
        events = self.ledger.activity.events(kinds=["alert"], since=now - RECENT)
        alerts = []
        for event in events:
            data = event.details.get("alert")
            if isinstance(data, Mapping):
                try:
                    alerts.append(Alert.from_json(data))
                except (KeyError, TypeError, ValueError):
                    continue  # an alert recorded by hand without the full record
        return alerts
