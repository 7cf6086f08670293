"""Alert rules over window results: thresholds, consecutive windows and cool-down.

:func:`evaluate_rules` is a pure function of the rules, the window results, when each rule
last fired and the current time; it stores nothing (the controller records the alerts and
passes ``last_fired`` back next time). For each rule:

1. Only *complete* windows of the rule's model count. They form one series per version and
   route kind (served / shadow), ordered by window index.
2. A window **breaks** the rule when the metric's value is worse than the threshold, in the
   metric's ``worse`` direction (:data:`~conveyor.monitoring.METRICS`), strictly. A value
   that is None (not computed) never breaks. Drift scores that are p-values (``ks``,
   ``chisquare``, ``z``: the window's :class:`~conveyor.monitoring.results.DriftVerdict`
   says ``higher_is_drift=False``) break when *below* the threshold.
3. Without a threshold, ``drift`` and ``prediction_drift`` use the window's own verdict (the
   feature's method and threshold from data validation), and ``missing_rate`` the schema's
   ``max_missing_fraction``; other metrics need a threshold.
4. ``feature="*"`` means any feature: a window breaks when at least one feature does. For
   performance metrics, ``feature`` may name a slice (``"sex=Female"``), ``"*"`` any slice
   or the whole window.
5. The rule **fires** on a run of at least ``windows`` consecutive breaking windows (window
   indices without a gap) whose last window ended after the rule last fired, unless the rule
   is in its cool-down (``now - last_fired < cooldown``). At most one alert per rule per call:
   the most recent qualifying run (``version`` None when runs of several versions qualify).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.monitoring.alert_model import Alert, AlertRule
from conveyor.monitoring.errors import MonitoringError
from conveyor.monitoring.metric_names import METRICS, MetricInfo
from conveyor.monitoring.results import WindowResult, metric_key, split_metric_key

__all__ = ["check_rule", "evaluate_rules"]

_OWN_THRESHOLD = ("drift", "prediction_drift", "missing_rate")
_RUN_DETAIL = 20  # windows of a run listed in the alert's details


@dataclass(frozen=True)
class _Break:
    """One key of one window that broke a rule."""

    key: str
    value: float
    threshold: float
    worse: str


def check_rule(rule: AlertRule) -> MetricInfo:
    """Check that a rule can be evaluated; return its metric's info.

    Raises:
        MonitoringError: unknown metric, missing feature, missing threshold, ``windows`` < 1
            or a negative cool-down; the message names the rule (and its policy line).
    """
    where = f"alert rule {rule.name!r}" + (f" (line {rule.line})" if rule.line else "")
    try:
        info = METRICS[rule.metric]
    except KeyError:
        raise MonitoringError(
            f"{where}: unknown metric {rule.metric!r}; valid metrics: {', '.join(sorted(METRICS))}"
        ) from None
    if info.per_feature and not rule.feature:
        raise MonitoringError(f"{where}: {rule.metric} is per feature; name one, or '*' for any")
    if rule.threshold is None and rule.metric not in _OWN_THRESHOLD:
        raise MonitoringError(
            f"{where}: {rule.metric} needs a threshold (only {', '.join(_OWN_THRESHOLD)} "
            "have one of their own from data validation)"
        )
    if isinstance(rule.windows, bool) or rule.windows < 1:
        raise MonitoringError(f"{where}: windows must be at least 1, got {rule.windows!r}")
    if rule.cooldown < dt.timedelta(0):
        raise MonitoringError(f"{where}: cooldown must not be negative, got {rule.cooldown}")
    return info


def _keys(rule: AlertRule, info: MetricInfo, window: WindowResult) -> list[str]:
    if rule.feature != "*":
        if info.per_feature:
            return [metric_key(rule.metric, rule.feature)]
        return [metric_key(rule.metric, slice_name=rule.feature)]
    found = []
    for key in window.metrics:
        metric, feature, _ = split_metric_key(key)
        if metric == rule.metric and (feature is not None) == info.per_feature:
            found.append(key)
    return sorted(found)


def _judge(rule: AlertRule, info: MetricInfo, window: WindowResult, key: str) -> _Break | None:
    value = window.metrics.get(key)
    if value is None:
        return None
    verdict = window.drift.get(key)
    if rule.threshold is None:
        if verdict is not None:
            worse = "higher" if verdict.higher_is_drift else "lower"
            return _Break(key, value, verdict.threshold, worse) if verdict.drifted else None
        limit = window.thresholds.get(key)
        if limit is None:
            return None
        return _Break(key, value, limit, info.worse) if value > limit else None
    worse = info.worse
    if verdict is not None and not verdict.higher_is_drift:
        worse = "lower"
    broken = value > rule.threshold if worse == "higher" else value < rule.threshold
    return _Break(key, value, rule.threshold, worse) if broken else None


def _breaks(rule: AlertRule, info: MetricInfo, window: WindowResult) -> list[_Break]:
    found = [_judge(rule, info, window, key) for key in _keys(rule, info, window)]
    return [b for b in found if b is not None]


def _runs(
    windows: list[WindowResult], rule: AlertRule, info: MetricInfo
) -> list[list[tuple[WindowResult, list[_Break]]]]:
    """Runs of consecutive breaking windows of one series (ordered by index)."""
    runs: list[list[tuple[WindowResult, list[_Break]]]] = []
    current: list[tuple[WindowResult, list[_Break]]] = []
    for window in windows:
        broken = _breaks(rule, info, window)
        follows = bool(current) and window.index == current[-1][0].index + 1
        if broken and follows:
            current.append((window, broken))
            continue
        if current:
            runs.append(current)
        current = [(window, broken)] if broken else []
    if current:
        runs.append(current)
    return runs


def _series(rule: AlertRule, results: Sequence[WindowResult]) -> dict[Any, list[WindowResult]]:
    series: dict[Any, list[WindowResult]] = {}
    for window in results:
        if window.model == rule.model and window.complete:
            series.setdefault(window.series, []).append(window)
    for windows in series.values():
        windows.sort(key=lambda w: w.index)
    return series


def _label(rule: AlertRule, info: MetricInfo, key: str) -> str | None:
    _, feature, slice_name = split_metric_key(key)
    return feature if info.per_feature else slice_name


def _alert(
    rule: AlertRule,
    info: MetricInfo,
    run: list[tuple[WindowResult, list[_Break]]],
    versions: set[int | None],
    now: dt.datetime,
) -> Alert:
    last_window, last_breaks = run[-1]
    tally: dict[str, int] = {}
    for _, broken in run:
        for item in broken:
            tally[item.key] = tally.get(item.key, 0) + 1
    # the key that broke most often in the run, among those breaking in its last window
    chosen = min(last_breaks, key=lambda b: (-tally[b.key], b.key))
    details: dict[str, Any] = {
        "metric_key": chosen.key,
        "worse": chosen.worse,
        "route_kind": last_window.route_kind,
        "threshold_source": "rule" if rule.threshold is not None else "data validation",
        "run_length": len(run),
        "windows": [
            {
                "index": w.index,
                "start": w.start.isoformat(),
                "end": w.end.isoformat(),
                "breaking": {b.key: b.value for b in broken},
            }
            for w, broken in run[-_RUN_DETAIL:]
        ],
    }
    if len(versions) > 1:
        details["versions"] = sorted(versions, key=lambda v: (v is None, v or 0))
    return Alert(
        rule=rule.name,
        model=rule.model,
        version=last_window.version if len(versions) == 1 else None,
        metric=rule.metric,
        feature=_label(rule, info, chosen.key),
        value=chosen.value,
        threshold=chosen.threshold,
        window_start=run[0][0].start,
        window_end=last_window.end,
        fired_at=now,
        details=details,
    )


def _evaluate(
    rule: AlertRule,
    results: Sequence[WindowResult],
    last: dt.datetime | None,
    now: dt.datetime,
) -> Alert | None:
    info = check_rule(rule)
    if last is not None and now - last < rule.cooldown:
        return None
    qualifying = []
    for windows in _series(rule, results).values():
        for run in _runs(windows, rule, info):
            if len(run) >= rule.windows and (last is None or run[-1][0].end > last):
                qualifying.append(run)
    if not qualifying:
        return None
    latest = max(qualifying, key=lambda run: (run[-1][0].end, len(run)))
    versions = {run[-1][0].version for run in qualifying}
    return _alert(rule, info, latest, versions, now)


def evaluate_rules(
    rules: Sequence[AlertRule],
    results: Sequence[WindowResult],
    *,
    last_fired: Mapping[str, dt.datetime],
    now: dt.datetime,
) -> list[Alert]:
    """The alerts the rules raise over ``results`` (see the module docstring).

    Args:
        rules: The rules to evaluate (each one checked first).
        results: Window results, of any models, in any order.
        last_fired: When each rule (by name) last fired; rules not in it never fired.
        now: The evaluation time (``fired_at`` of the alerts, and the cool-down's clock).

    Returns:
        At most one alert per rule, in rule order.

    Raises:
        MonitoringError: A rule cannot be evaluated (see :func:`check_rule`).

    Example:
        >>> rule = AlertRule("age-drift", "census", "drift", feature="age", windows=2)
        >>> evaluate_rules([rule], results, last_fired={}, now=now)  # doctest: +SKIP
        [Alert(rule='age-drift', model='census', version=3, ...)]
    """
    for rule in rules:
        check_rule(rule)
    alerts = []
    for rule in rules:
        alert = _evaluate(rule, results, last_fired.get(rule.name), now)
        if alert is not None:
            alerts.append(alert)
    return alerts
