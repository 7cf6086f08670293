"""Alert rules over window results: thresholds, consecutive windows, cool-down (pure)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.monitoring import (
    AlertRule,
    DriftVerdict,
    MonitoringError,
    WindowResult,
    check_rule,
    evaluate_rules,
)

T0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
NOW = T0 + dt.timedelta(days=1)
MINUTE = dt.timedelta(minutes=1)


def _window(
    index: int,
    metrics: dict[str, float | None],
    *,
    version: int | None = 1,
    kind: str = "served",
    complete: bool = True,
    drift: dict[str, DriftVerdict] | None = None,
    thresholds: dict[str, float] | None = None,
) -> WindowResult:
    return WindowResult(
        model="census",
        version=version,
        route_kind="shadow" if kind == "shadow" else "served",
        index=index,
        start=T0 + index * MINUTE,
        end=T0 + (index + 1) * MINUTE,
        complete=complete,
        metrics={"count": 100.0, **metrics},
        drift=drift or {},
        thresholds=thresholds or {},
    )


def _series(
    values: list[float | None], key: str = "accuracy", **options: object
) -> list[WindowResult]:
    return [_window(i, {key: v}, **options) for i, v in enumerate(values)]  # type: ignore[arg-type]


def _rule(**options: object) -> AlertRule:
    base: dict[str, object] = {
        "name": "r",
        "model": "census",
        "metric": "accuracy",
        "threshold": 0.8,
    }
    return AlertRule(**(base | options))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"metric": "acuracy"}, r"rule 'r' \(line 7\): unknown metric 'acuracy'; valid metrics: "),
        ({"metric": "drift", "threshold": None}, "drift is per feature; name one, or '\\*'"),
        ({"threshold": None}, "accuracy needs a threshold"),
        ({"windows": 0}, "windows must be at least 1, got 0"),
        ({"cooldown": -MINUTE}, "cooldown must not be negative"),
    ],
)
def test_bad_rules_are_refused_with_their_line(options: dict[str, object], message: str) -> None:
    with pytest.raises(MonitoringError, match=message):
        evaluate_rules([_rule(line=7, **options)], [], last_fired={}, now=NOW)


def test_check_rule_returns_the_metric_info() -> None:
    assert check_rule(_rule(metric="latency_p99", threshold=250.0)).worse == "higher"


def test_lower_is_worse_for_accuracy_and_higher_for_latency() -> None:
    windows = [_window(0, {"accuracy": 0.75, "latency_p99": 300.0})]
    low = evaluate_rules([_rule()], windows, last_fired={}, now=NOW)
    assert [(a.value, a.threshold, a.version) for a in low] == [(0.75, 0.8, 1)]
    assert evaluate_rules([_rule(threshold=0.7)], windows, last_fired={}, now=NOW) == []
    slow = _rule(name="slow", metric="latency_p99", threshold=250.0)
    assert [a.rule for a in evaluate_rules([slow], windows, last_fired={}, now=NOW)] == ["slow"]
    assert evaluate_rules([_rule(threshold=0.75)], windows, last_fired={}, now=NOW) == []  # strict


def test_needs_consecutive_windows_of_one_series() -> None:
    rule = _rule(windows=3)
    mixed = [
        _window(0, {"accuracy": 0.5}),
        _window(1, {"accuracy": 0.5}, version=2),
        _window(1, {"accuracy": 0.5}),
        _window(2, {"accuracy": 0.9}),
        _window(3, {"accuracy": 0.5}),
        _window(0, {"accuracy": 0.5}, kind="shadow"),
    ]
    assert evaluate_rules([rule], mixed, last_fired={}, now=NOW) == []
    gap = [_window(i, {"accuracy": 0.5}) for i in (0, 1, 3)]
    assert evaluate_rules([rule], gap, last_fired={}, now=NOW) == []
    run = [_window(i, {"accuracy": 0.5}) for i in (5, 6, 7)]
    (alert,) = evaluate_rules([rule], gap + run, last_fired={}, now=NOW)
    assert (alert.window_start, alert.window_end) == (run[0].start, run[-1].end)
    assert alert.details["run_length"] == 3 and len(alert.details["windows"]) == 3


def test_incomplete_and_uncomputed_windows_never_break() -> None:
    windows = [
        _window(0, {"accuracy": None}),
        _window(1, {}),
        _window(2, {"accuracy": 0.1}, complete=False),
    ]
    assert evaluate_rules([_rule()], windows, last_fired={}, now=NOW) == []


def test_drift_without_threshold_uses_the_features_own_verdict() -> None:
    verdicts = {
        "drift:age": DriftVerdict("wasserstein", 0.25, True, True, "schema drift"),
        "drift:city": DriftVerdict("chisquare", 0.05, False, False),
    }
    window = _window(0, {"drift:age": 0.3, "drift:city": 0.2}, drift=verdicts)
    rule = _rule(metric="drift", feature="*", threshold=None)
    (alert,) = evaluate_rules([rule], [window], last_fired={}, now=NOW)
    assert (alert.feature, alert.value, alert.threshold) == ("age", 0.3, 0.25)
    assert alert.details["threshold_source"] == "data validation"
    city = _rule(metric="drift", feature="city", threshold=None)
    assert evaluate_rules([city], [window], last_fired={}, now=NOW) == []


def test_p_value_drift_breaks_below_an_explicit_threshold() -> None:
    verdict = {"drift:city": DriftVerdict("chisquare", 0.05, False, True)}
    window = _window(0, {"drift:city": 0.01}, drift=verdict)
    low = _rule(metric="drift", feature="city", threshold=0.02)
    (alert,) = evaluate_rules([low], [window], last_fired={}, now=NOW)
    assert alert.details["worse"] == "lower"
    high = _rule(metric="drift", feature="city", threshold=0.005)
    assert evaluate_rules([high], [window], last_fired={}, now=NOW) == []


def test_missing_rate_without_threshold_uses_the_schema_limit() -> None:
    windows = [
        _window(0, {"missing_rate:age": 0.02}, thresholds={"missing_rate:age": 0.05}),
        _window(1, {"missing_rate:age": 0.10}, thresholds={"missing_rate:age": 0.05}),
    ]
    rule = _rule(metric="missing_rate", feature="age", threshold=None)
    (alert,) = evaluate_rules([rule], windows, last_fired={}, now=NOW)
    assert (alert.value, alert.threshold, alert.window_start) == (0.10, 0.05, windows[1].start)


def test_a_slice_can_be_named_for_performance_metrics() -> None:
    window = _window(0, {"accuracy": 0.9, "accuracy[sex=Female]": 0.6})
    assert evaluate_rules([_rule()], [window], last_fired={}, now=NOW) == []
    (alert,) = evaluate_rules([_rule(feature="sex=Female")], [window], last_fired={}, now=NOW)
    assert alert.feature == "sex=Female"
    (any_slice,) = evaluate_rules([_rule(feature="*")], [window], last_fired={}, now=NOW)
    assert any_slice.details["metric_key"] == "accuracy[sex=Female]"


def test_cooldown_and_new_evidence() -> None:
    windows = _series([0.5, 0.5, 0.5])
    rule = _rule(cooldown=dt.timedelta(hours=1))
    assert evaluate_rules([rule], windows, last_fired={"r": NOW - MINUTE}, now=NOW) == []
    # cool-down over, but the breaking windows all ended before the last alert: nothing new
    stale = {"r": T0 + dt.timedelta(minutes=10)}
    assert evaluate_rules([rule], windows, last_fired=stale, now=NOW) == []
    fresh = {"r": T0 + dt.timedelta(minutes=2)}
    (alert,) = evaluate_rules([rule], windows, last_fired=fresh, now=NOW)
    assert alert.fired_at == NOW


def test_several_versions_breaking_give_one_alert_without_a_version() -> None:
    windows = _series([0.5], version=1) + _series([0.6], version=2)
    (alert,) = evaluate_rules([_rule()], windows, last_fired={}, now=NOW)
    assert alert.version is None and alert.details["versions"] == [1, 2]
    other = _rule(name="other", model="elsewhere")
    assert evaluate_rules([other], windows, last_fired={}, now=NOW) == []


# -- properties ----------------------------------------------------------------------------

values = st.lists(st.one_of(st.none(), st.floats(0.0, 1.0)), min_size=0, max_size=25)


def _longest_run(series: list[float | None], threshold: float) -> int:
    best = current = 0
    for value in series:
        current = current + 1 if value is not None and value < threshold else 0
        best = max(best, current)
    return best


@settings(max_examples=200, deadline=None)
@given(series=values, windows=st.integers(1, 6), threshold=st.floats(0.05, 0.95))
def test_fires_exactly_when_a_long_enough_run_exists(
    series: list[float | None], windows: int, threshold: float
) -> None:
    rule = _rule(windows=windows, threshold=threshold)
    alerts = evaluate_rules([rule], _series(series), last_fired={}, now=NOW)
    assert len(alerts) == (1 if _longest_run(series, threshold) >= windows else 0)
    for alert in alerts:
        covered = (alert.window_end - alert.window_start) // MINUTE
        assert covered >= windows and alert.value < threshold


@settings(max_examples=200, deadline=None)
@given(
    series=values,
    windows=st.integers(1, 4),
    cooldown=st.integers(1, 120),
    since_last=st.integers(0, 240),
)
def test_never_fires_twice_within_the_cooldown(
    series: list[float | None], windows: int, cooldown: int, since_last: int
) -> None:
    rule = _rule(windows=windows, cooldown=dt.timedelta(minutes=cooldown))
    last = {"r": NOW - dt.timedelta(minutes=since_last)}
    alerts = evaluate_rules([rule], _series(series), last_fired=last, now=NOW)
    if since_last < cooldown:
        assert alerts == []
    assert len(alerts) <= 1
