"""Judging a canary on window results made by hand: counting, periods, directions, verdicts."""

from __future__ import annotations

import datetime as dt

import pytest

from conveyor.ct.rollout import Rollout, canary_windows, judge_canary, production_mean
from conveyor.monitoring import WindowResult

T0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
ROLLOUT = Rollout("census", 2, 1, T0, 10.0, run_id=7)


def _window(
    version: int,
    index: int,
    value: float | None,
    *,
    metric: str = "accuracy",
    minutes: int = 10,
    offset: int = 0,
    complete: bool = True,
    route_kind: str = "served",
) -> WindowResult:
    start = T0 + dt.timedelta(minutes=offset + index * minutes)
    return WindowResult(
        model="census",
        version=version,
        route_kind="shadow" if route_kind == "shadow" else "served",
        index=index,
        start=start,
        end=start + dt.timedelta(minutes=minutes),
        complete=complete,
        metrics={"count": 50.0, metric: value},
    )


def test_waits_until_enough_canary_windows_have_the_metric() -> None:
    results = [
        _window(2, 0, 0.8),
        _window(2, 1, None),  # feedback not in yet: does not count
        _window(2, 2, 0.8, complete=False),  # still filling
        _window(2, 3, 0.8, route_kind="shadow"),  # a shadow's answers reach nobody
        _window(1, 0, 0.8),
    ]
    verdict = judge_canary(
        ROLLOUT, results, production=1, metric="accuracy", promote_after=3, tolerance=0.02
    )
    assert verdict.decision == "wait"
    assert verdict.reason == "1 of 3 canary window(s) with accuracy so far"
    assert [w.index for w in verdict.windows] == [0]


def test_a_canary_without_a_verdict_by_its_timeout_is_rolled_back() -> None:
    results = [_window(2, 0, 0.8), _window(1, 0, 0.8)]
    timeout = dt.timedelta(hours=24)

    def judge(now: dt.datetime) -> object:
        return judge_canary(
            ROLLOUT,
            results,
            production=1,
            metric="accuracy",
            promote_after=3,
            tolerance=0.02,
            now=now,
            timeout=timeout,
        )

    assert judge(T0 + timeout).decision == "wait"  # exactly at the limit: still waiting
    late = judge(T0 + timeout + dt.timedelta(minutes=1, microseconds=5))
    assert late.decision == "rollback"
    assert late.reason == (
        "no verdict 1d1m after the canary started (canary_timeout 1d): "
        "1 of 3 canary window(s) with accuracy so far"
    )
    assert [w.index for w in late.windows] == [0]  # the figures it had are kept


def test_a_verdict_in_time_is_not_touched_by_the_timeout() -> None:
    results = [_window(2, i, 0.8) for i in range(3)] + [_window(1, i, 0.8) for i in range(3)]
    verdict = judge_canary(
        ROLLOUT,
        results,
        production=1,
        metric="accuracy",
        promote_after=3,
        tolerance=0.02,
        now=T0 + dt.timedelta(days=30),
        timeout=dt.timedelta(hours=1),
    )
    assert verdict.decision == "promote"


def test_windows_before_the_canary_started_do_not_count() -> None:
    early = _window(2, 0, 0.9, offset=-60)
    assert canary_windows(ROLLOUT, [early, _window(2, 1, 0.7)], "accuracy")[0].index == 1


def test_promotes_a_canary_as_good_as_production_over_the_same_period() -> None:
    canary = [_window(2, i, 0.80, minutes=30) for i in range(3)]
    production = [_window(1, i, 0.81) for i in range(12)]  # 90 minutes of canary = 9 of these
    verdict = judge_canary(
        ROLLOUT,
        canary + production,
        production=1,
        metric="accuracy",
        promote_after=3,
        tolerance=0.02,
    )
    assert verdict.decision == "promote"
    assert verdict.production_windows == 9
    assert verdict.canary_mean == pytest.approx(0.80)
    assert verdict.production_mean == pytest.approx(0.81)
    assert verdict.worse_by == pytest.approx(0.01)
    assert verdict.reason == (
        "canary accuracy 0.8 over 3 window(s) vs production 0.81 over 9 window(s): not worse by "
        "more than 0.02"
    )
    assert verdict.figures()["canary_windows"][0]["value"] == 0.80


def test_rolls_back_a_canary_worse_than_the_tolerance() -> None:
    results = [_window(2, i, 0.70) for i in range(4)] + [_window(1, i, 0.82) for i in range(3)]
    verdict = judge_canary(
        ROLLOUT, results, production=1, metric="accuracy", promote_after=3, tolerance=0.02
    )
    assert verdict.decision == "rollback"
    assert len(verdict.windows) == 3  # the first promote_after windows decide
    assert verdict.worse_by == pytest.approx(0.12)
    assert "worse by 0.12 > tolerance 0.02" in verdict.reason


def test_for_an_error_metric_higher_is_worse() -> None:
    better = [_window(2, i, 1.0, metric="rmse") for i in range(3)]
    worse = [_window(2, i, 3.0, metric="rmse") for i in range(3)]
    production = [_window(1, i, 2.0, metric="rmse") for i in range(3)]
    options = {"production": 1, "metric": "rmse", "promote_after": 3, "tolerance": 0.5}
    assert judge_canary(ROLLOUT, better + production, **options).decision == "promote"  # type: ignore[arg-type]
    verdict = judge_canary(ROLLOUT, worse + production, **options)  # type: ignore[arg-type]
    assert verdict.decision == "rollback" and verdict.worse_by == pytest.approx(1.0)


def test_waits_while_production_has_no_figure_for_the_period() -> None:
    results = [_window(2, i, 0.8) for i in range(3)] + [_window(1, 0, None)]
    verdict = judge_canary(
        ROLLOUT, results, production=1, metric="accuracy", promote_after=3, tolerance=0.02
    )
    assert verdict.decision == "wait"
    assert "production (version 1) has no accuracy over the canary's period yet" in verdict.reason


def test_production_mean_keeps_to_the_period() -> None:
    results = [_window(1, i, float(i)) for i in range(6)]
    until = T0 + dt.timedelta(minutes=30)
    assert production_mean(results, 1, T0, until, "accuracy") == pytest.approx(1.0)  # 0, 1, 2
    assert production_mean(results, 3, T0, until, "accuracy") is None


def test_a_rollout_survives_its_json_form() -> None:
    decided = ROLLOUT.decided("promoting", "first deployment of census", {"x": 1})
    assert Rollout.from_json(decided.to_json()) == decided
    assert Rollout.from_json({**ROLLOUT.to_json(), "phase": "bogus"}).phase == "canary"
