"""Alert rules and alerts: what a policy declares and what monitoring raises.

An :class:`AlertRule` is data (from ``conveyor.toml`` or a policy file, see
:mod:`conveyor.ct.policy`): a metric from :data:`conveyor.monitoring.METRICS`, optionally a
feature, a threshold, how many consecutive windows must break it, and a cool-down before the
same rule may fire again. Monitoring evaluates rules over window results and returns
:class:`Alert` records; the controller stores them and triggers act on them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Alert", "AlertRule"]


@dataclass(frozen=True)
class AlertRule:
    """One declared alert rule.

    Attributes:
        name: Unique rule name (triggers refer to it).
        model: The registered model whose prediction log is watched.
        metric: A name from :data:`conveyor.monitoring.METRICS`.
        feature: For per-feature metrics: a feature name, or ``"*"`` for any feature.
        threshold: The limit; a window breaks the rule when its value is worse than it (in the
            metric's ``worse`` direction). None for ``drift`` means the feature's own drift
            threshold from data validation (the schema).
        windows: Consecutive breaking windows needed to fire (>= 1).
        cooldown: After firing, the rule stays quiet this long.
        line: The policy line that declared the rule (for messages), if known.
    """

    name: str
    model: str
    metric: str
    feature: str | None = None
    threshold: float | None = None
    windows: int = 1
    cooldown: dt.timedelta = dt.timedelta(0)
    line: int | None = None


@dataclass(frozen=True)
class Alert:
    """A rule that fired.

    Attributes:
        rule: The rule's name.
        model: The model.
        version: The version whose windows broke the rule (None when several did).
        metric: The metric.
        feature: The feature that broke it (per-feature metrics), else None.
        value: The metric's value in the last breaking window.
        threshold: The threshold it was compared with.
        window_start: Start of the first breaking window of the run.
        window_end: End of the last breaking window.
        fired_at: When the alert was raised.
        details: Anything else worth recording (per-window values, drift method, ...).
    """

    rule: str
    model: str
    version: int | None
    metric: str
    feature: str | None
    value: float
    threshold: float
    window_start: dt.datetime
    window_end: dt.datetime
    fired_at: dt.datetime
    details: dict[str, Any] = field(default_factory=dict)

    def reason(self) -> str:
        """One sentence saying why the alert fired."""
        what = f"{self.metric} of {self.feature!r}" if self.feature else self.metric
        version = f" version {self.version}" if self.version is not None else ""
        return (
            f"{what} of {self.model}{version} was {self.value:.4g} "
            f"(threshold {self.threshold:.4g}) in the windows from "
            f"{self.window_start.isoformat()} to {self.window_end.isoformat()}"
        )

    def to_json(self) -> dict[str, Any]:
        """The alert as JSON: times as ISO 8601 strings (the controller keeps it in events)."""
        return {
            "rule": self.rule,
            "model": self.model,
            "version": self.version,
            "metric": self.metric,
            "feature": self.feature,
            "value": self.value,
            "threshold": self.threshold,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "fired_at": self.fired_at.isoformat(),
            "details": self.details,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Alert:
        """The inverse of :meth:`to_json`."""
        return cls(
            rule=str(data["rule"]),
            model=str(data["model"]),
            version=None if data.get("version") is None else int(data["version"]),
            metric=str(data["metric"]),
            feature=data.get("feature"),
            value=float(data["value"]),
            threshold=float(data["threshold"]),
            window_start=dt.datetime.fromisoformat(str(data["window_start"])),
            window_end=dt.datetime.fromisoformat(str(data["window_end"])),
            fired_at=dt.datetime.fromisoformat(str(data["fired_at"])),
            details=dict(data.get("details") or {}),
        )
