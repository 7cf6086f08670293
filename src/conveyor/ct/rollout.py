"""Canary roll-outs as data, and the verdict on a canary from monitoring's windows.

A :class:`Rollout` is what the controller remembers about one model's canary: the version, the
production version it is compared with, when it started and its phase. :func:`judge_canary`
reads the window results of the model (:class:`conveyor.monitoring.WindowResult`) and decides:

- a **canary window** is a complete window of the canary version, served (not shadow), that
  began after the canary started and has a value for the compared metric (windows whose
  feedback is not in yet, or too sparse, do not count until they have one);
- production's figure is the mean of production's complete windows with a value that began
  after the canary started and ended by the end of the last canary window counted -- the same
  period of traffic;
- after ``promote_after`` canary windows the canary is **promoted** when its mean is not worse
  than production's by more than ``tolerance`` (in the metric's ``worse`` direction), else
  **rolled back**. Until then, and while production has no figure for the period, it waits;
- a canary still waiting ``timeout`` after it started is **rolled back**: no verdict in time
  keeps production, the model that has earned its place.

Everything here is pure, so a verdict can be checked on hand-made windows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from conveyor.ct.durations import format_duration
from conveyor.monitoring.metric_names import METRICS
from conveyor.monitoring.results import WindowResult

__all__ = [
    "CanaryVerdict",
    "CanaryWindow",
    "Rollout",
    "canary_windows",
    "judge_canary",
    "production_mean",
]

Phase = Literal["canary", "promoting", "rolling_back"]
Decision = Literal["wait", "promote", "rollback"]


@dataclass(frozen=True)
class Rollout:
    """One model's roll-out in progress.

    Attributes:
        model: The registered model.
        version: The canary version.
        production: The production version when the canary started (None: first deployment).
        started_at: When the canary started (windows before it do not count).
        percent: The canary's share of production's traffic.
        run_id: The run that registered the version.
        phase: ``canary`` (serving its share, being judged), ``promoting`` or ``rolling_back``
            (decided; the registry changes are being made -- resumed after a crash).
        verdict: The figures behind the decision, once decided.
        reason: Why it is being promoted or rolled back, once decided.
    """

    model: str
    version: int
    production: int | None
    started_at: dt.datetime
    percent: float
    run_id: int | None = None
    phase: Phase = "canary"
    verdict: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""

    def decided(self, phase: Phase, reason: str, verdict: Mapping[str, Any]) -> Rollout:
        """This roll-out, decided: ``phase`` with its reason and figures."""
        return replace(self, phase=phase, reason=reason, verdict=dict(verdict))

    def to_json(self) -> dict[str, Any]:
        """The JSON form kept in the controller's state."""
        return {
            "model": self.model,
            "version": self.version,
            "production": self.production,
            "started_at": self.started_at.isoformat(),
            "percent": self.percent,
            "run_id": self.run_id,
            "phase": self.phase,
            "verdict": dict(self.verdict),
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rollout:
        """The inverse of :meth:`to_json`."""
        phase = data.get("phase", "canary")
        return cls(
            model=str(data["model"]),
            version=int(data["version"]),
            production=None if data.get("production") is None else int(data["production"]),
            started_at=dt.datetime.fromisoformat(str(data["started_at"])),
            percent=float(data["percent"]),
            run_id=None if data.get("run_id") is None else int(data["run_id"]),
            phase=phase if phase in ("canary", "promoting", "rolling_back") else "canary",
            verdict=dict(data.get("verdict") or {}),
            reason=str(data.get("reason") or ""),
        )


@dataclass(frozen=True)
class CanaryWindow:
    """One counted window of canary traffic.

    Attributes:
        index: The window's index in the canary version's series.
        start: Its start.
        end: Its end.
        value: The compared metric's value in it.
        count: Predictions in it.
    """

    index: int
    start: dt.datetime
    end: dt.datetime
    value: float
    count: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return {
            "index": self.index,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "value": self.value,
            "count": self.count,
        }


@dataclass(frozen=True)
class CanaryVerdict:
    """What :func:`judge_canary` concluded.

    Attributes:
        decision: ``wait``, ``promote`` or ``rollback``.
        reason: One sentence with the figures.
        windows: The canary windows counted so far (at most ``promote_after``), oldest first.
        canary_mean: Mean of the counted windows' values (None before the first).
        production_mean: Production's mean over the same period (None when it has none).
        production_windows: How many production windows that mean is over.
        metric: The compared metric.
        worse_by: How much worse the canary is, in the metric's bad direction (negative:
            better), when both means are known.
    """

    decision: Decision
    reason: str
    windows: tuple[CanaryWindow, ...] = ()
    canary_mean: float | None = None
    production_mean: float | None = None
    production_windows: int = 0
    metric: str = "accuracy"
    worse_by: float | None = None

    def figures(self) -> dict[str, Any]:
        """The verdict's numbers as JSON (for events)."""
        return {
            "decision": self.decision,
            "metric": self.metric,
            "canary_mean": self.canary_mean,
            "production_mean": self.production_mean,
            "worse_by": self.worse_by,
            "canary_windows": [w.to_json() for w in self.windows],
            "production_windows": self.production_windows,
        }


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def canary_windows(
    rollout: Rollout, results: Sequence[WindowResult], metric: str
) -> list[CanaryWindow]:
    """The counted canary windows in ``results``, oldest first."""
    found = []
    for window in results:
        if window.version != rollout.version or window.route_kind != "served":
            continue
        if not window.complete or window.start < rollout.started_at:
            continue
        value = window.value(metric)
        if value is not None:
            found.append(CanaryWindow(window.index, window.start, window.end, value, window.count))
    return sorted(found, key=lambda w: w.index)


def production_mean(
    results: Sequence[WindowResult],
    version: int,
    since: dt.datetime,
    until: dt.datetime,
    metric: str,
) -> float | None:
    """Mean ``metric`` of ``version``'s complete served windows within ``[since, until]``."""
    return _mean(_production_values(results, version, since, until, metric))


def _production_values(
    results: Sequence[WindowResult],
    version: int,
    since: dt.datetime,
    until: dt.datetime,
    metric: str,
) -> list[float]:
    values = []
    for window in results:
        if window.version != version or window.route_kind != "served" or not window.complete:
            continue
        if window.start < since or window.end > until:
            continue
        value = window.value(metric)
        if value is not None:
            values.append(value)
    return values


def judge_canary(
    rollout: Rollout,
    results: Sequence[WindowResult],
    *,
    production: int,
    metric: str,
    promote_after: int,
    tolerance: float,
    now: dt.datetime | None = None,
    timeout: dt.timedelta | None = None,
) -> CanaryVerdict:
    """Decide on a canary from the model's window results.

    Args:
        rollout: The roll-out (its version, start).
        results: The model's window results (any versions; others are ignored).
        production: The production version now.
        metric: The performance metric compared (``[controller] metric``).
        promote_after: Canary windows needed before deciding.
        tolerance: How much worse than production the canary may be.
        now: The evaluation time (needed for ``timeout``).
        timeout: Roll back a canary still waiting this long after it started.

    Example:
        >>> verdict = judge_canary(rollout, monitor.results("census"), production=1,
        ...                        metric="accuracy", promote_after=3, tolerance=0.02)  # doctest: +SKIP
        >>> verdict.decision, verdict.reason  # doctest: +SKIP
        ('promote', 'canary accuracy 0.842 over 3 window(s) vs production 0.838 over 27 ...')
    """  # noqa: E501
    verdict = _verdict(rollout, results, production, metric, promote_after, tolerance)
    if verdict.decision != "wait" or timeout is None or now is None:
        return verdict
    waited = now - rollout.started_at
    if waited <= timeout:
        return verdict
    waited = dt.timedelta(seconds=int(waited.total_seconds()))
    return replace(
        verdict,
        decision="rollback",
        reason=f"no verdict {format_duration(waited)} after the canary started "
        f"(canary_timeout {format_duration(timeout)}): {verdict.reason}",
    )


def _verdict(
    rollout: Rollout,
    results: Sequence[WindowResult],
    production: int,
    metric: str,
    promote_after: int,
    tolerance: float,
) -> CanaryVerdict:
    info = METRICS[metric]
    counted = tuple(canary_windows(rollout, results, metric)[:promote_after])
    canary_mean = _mean([w.value for w in counted])
    if len(counted) < promote_after:
        return CanaryVerdict(
            "wait",
            f"{len(counted)} of {promote_after} canary window(s) with {metric} so far",
            counted,
            canary_mean,
            metric=metric,
        )
    until = counted[-1].end
    values = _production_values(results, production, rollout.started_at, until, metric)
    production_mean = _mean(values)
    if production_mean is None or canary_mean is None:
        return CanaryVerdict(
            "wait",
            f"production (version {production}) has no {metric} over the canary's period yet",
            counted,
            canary_mean,
            metric=metric,
        )
    worse_by = (
        production_mean - canary_mean if info.worse == "lower" else canary_mean - production_mean
    )
    figures = (
        f"canary {metric} {canary_mean:.4g} over {len(counted)} window(s) vs production "
        f"{production_mean:.4g} over {len(values)} window(s)"
    )
    if worse_by <= tolerance:
        decision: Decision = "promote"
        reason = f"{figures}: not worse by more than {tolerance:g}"
    else:
        decision = "rollback"
        reason = f"{figures}: worse by {worse_by:.4g} > tolerance {tolerance:g}"
    return CanaryVerdict(
        decision, reason, counted, canary_mean, production_mean, len(values), metric, worse_by
    )
