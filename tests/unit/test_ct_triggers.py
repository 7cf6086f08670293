"""Triggers, evaluated with fixed clocks and made-up contexts: cron, alert, manual, new data."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conveyor.ct import (
    AlertTrigger,
    CronTrigger,
    ManualRequest,
    ManualTrigger,
    NewDataTrigger,
    PipelineTarget,
    Policy,
    SeenSpan,
    TriggerContext,
    TriggerError,
    TriggerState,
    Watch,
    advance_state,
    explain_all,
    load_state,
    parse_cron,
    save_state,
)
from conveyor.ct.state import ct_dir
from conveyor.monitoring.alert_model import Alert

UTC = dt.UTC
T0 = dt.datetime(2024, 3, 1, 10, 7, tzinfo=UTC)
NO_CONTEXT = TriggerContext()


def _at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def _cron(expression: str = "*/15 * * * *", timezone: str = "UTC") -> CronTrigger:
    return CronTrigger(
        name="quarterly", pipeline="census", schedule=parse_cron(expression, timezone)
    )


# -- cron ---------------------------------------------------------------------------------------
def test_cron_starts_its_clock_at_the_first_evaluation() -> None:
    decision = _cron().evaluate(TriggerState(), T0, NO_CONTEXT)
    assert not decision.fire
    assert decision.reason == (
        "cron '*/15 * * * *' starts at this first evaluation; next due at 2024-03-01 10:15:00 UTC"
    )
    assert decision.details["next_due"] == "2024-03-01T10:15:00+00:00"


def test_cron_fires_once_when_a_time_passed_since_the_last_poll() -> None:
    trigger = _cron()
    state = TriggerState().evaluated(trigger.name, T0)
    before = trigger.evaluate(state, _at(7), NO_CONTEXT)  # 10:14
    assert not before.fire and "next due at 2024-03-01 10:15:00 UTC" in before.reason
    state = trigger.record(state, before, _at(7))
    due = trigger.evaluate(state, _at(8.5), NO_CONTEXT)  # 10:15:30
    assert due.fire
    assert due.reason == "cron '*/15 * * * *' was due at 2024-03-01 10:15:00 UTC"
    assert (due.details["due"], due.details["missed"]) == ("2024-03-01T10:15:00+00:00", 0)
    state = trigger.record(state, due, _at(8.5))
    assert state.last_fired[trigger.name] == _at(8.5)
    again = trigger.evaluate(state, _at(9), NO_CONTEXT)  # the same 10:15 never fires twice
    assert not again.fire and "next due at 2024-03-01 10:30:00 UTC" in again.reason


def test_cron_after_downtime_runs_once_and_counts_the_missed_times() -> None:
    trigger = _cron()
    state = TriggerState().evaluated(trigger.name, T0)
    decision = trigger.evaluate(state, T0 + dt.timedelta(hours=5), NO_CONTEXT)  # 15:07
    assert decision.fire
    assert decision.details["due"] == "2024-03-01T15:00:00+00:00"
    assert decision.details["missed"] == 19  # 10:15 ... 14:45
    assert "(19 earlier time(s) missed, run once)" in decision.reason
    state = trigger.record(state, decision, T0 + dt.timedelta(hours=5))
    assert not trigger.evaluate(state, T0 + dt.timedelta(hours=5, minutes=1), NO_CONTEXT).fire


def test_cron_in_a_time_zone_across_daylight_saving() -> None:
    # 03:00 Berlin is 02:00 UTC in winter and 01:00 UTC in summer (clocks moved on 31 March).
    trigger = _cron("0 3 * * *", "Europe/Berlin")
    winter = dt.datetime(2024, 3, 30, 12, tzinfo=UTC)
    state = TriggerState().evaluated(trigger.name, winter)
    decision = trigger.evaluate(state, winter + dt.timedelta(hours=14), NO_CONTEXT)
    assert decision.fire and decision.details["due"] == "2024-03-31T01:00:00+00:00"
    assert "was due at 2024-03-31 01:00:00 UTC (03:00 Europe/Berlin)" in decision.reason
    assert trigger.describe() == "cron '0 3 * * *' (At 03:00 every day, Europe/Berlin time)"


def test_cron_uses_the_later_of_last_fire_and_last_evaluation() -> None:
    trigger = _cron()
    state = TriggerState().fired(trigger.name, _at(10)).evaluated(trigger.name, T0)
    assert not trigger.evaluate(state, _at(20), NO_CONTEXT).fire  # 10:15 was before 10:17


# -- alerts -------------------------------------------------------------------------------------
def _alert(rule: str = "age-drift", fired: float = 0, value: float = 0.31, **extra: Any) -> Alert:
    return Alert(
        rule=rule,
        model="census",
        version=3,
        metric="drift",
        feature="age",
        value=value,
        threshold=0.1,
        window_start=_at(-20),
        window_end=_at(-1),
        fired_at=_at(fired),
        details={"method": "psi", **extra},
    )


ALERT_TRIGGER = AlertTrigger(
    name="retrain-on-drift", pipeline="census", alerts=("age-drift",), params={"n_trials": 2}
)


def test_alert_trigger_is_quiet_without_its_alerts() -> None:
    context = TriggerContext(alerts=(_alert(rule="other"),))
    decision = ALERT_TRIGGER.evaluate(TriggerState(), _at(1), context)
    assert not decision.fire and decision.reason == "alert age-drift not active"


def test_alert_trigger_fires_and_records_why() -> None:
    context = TriggerContext(alerts=(_alert(),))
    decision = ALERT_TRIGGER.evaluate(TriggerState(), _at(1), context)
    assert decision.fire
    assert decision.reason.startswith(
        "alert age-drift: drift of 'age' of census version 3 was 0.31"
    )
    (why,) = decision.details["alerts"]
    assert (why["metric"], why["feature"], why["value"], why["threshold"]) == (
        "drift",
        "age",
        0.31,
        0.1,
    )
    assert (why["window_start"], why["window_end"]) == (_at(-20).isoformat(), _at(-1).isoformat())
    assert why["details"] == {"method": "psi"}
    assert decision.params == {"n_trials": 2}
    json.dumps(decision.to_json())  # the event record is plain JSON


def test_alert_trigger_does_not_fire_twice_for_one_alert() -> None:
    context = TriggerContext(alerts=(_alert(),))
    state = ALERT_TRIGGER.record(
        TriggerState(), ALERT_TRIGGER.evaluate(TriggerState(), _at(1), context), _at(1)
    )
    decision = ALERT_TRIGGER.evaluate(state, _at(2), context)
    assert not decision.fire
    assert decision.reason == "alert age-drift already acted on at 2024-03-01 10:08:00 UTC"
    newer = TriggerContext(alerts=(_alert(), _alert(fired=5, value=0.5)))
    again = ALERT_TRIGGER.evaluate(state, _at(6), newer)
    assert again.fire and "was 0.5" in again.reason
    assert [a["value"] for a in again.details["alerts"]] == [0.5]


def test_alert_trigger_ignores_alerts_from_the_future() -> None:
    context = TriggerContext(alerts=(_alert(fired=10),))
    assert not ALERT_TRIGGER.evaluate(TriggerState(), _at(1), context).fire


def test_several_alerts_fire_once_newest_first() -> None:
    trigger = AlertTrigger(name="t", pipeline="census", alerts=("age-drift", "acc"))
    context = TriggerContext(alerts=(_alert(fired=1), _alert(rule="acc", fired=2)))
    decision = trigger.evaluate(TriggerState(), _at(3), context)
    assert decision.fire and decision.reason.startswith("alert acc:")
    assert decision.reason.endswith("(and 1 more alert(s))")
    assert [a["rule"] for a in decision.details["alerts"]] == ["acc", "age-drift"]


# -- manual -------------------------------------------------------------------------------------
def _request(request_id: str, minutes: float, **params: Any) -> ManualRequest:
    return ManualRequest(request_id, "census", params, _at(minutes), "ana")


def test_manual_trigger_runs_requests_oldest_first_one_per_poll() -> None:
    trigger = ManualTrigger(name="manual:census", pipeline="census", params={"seed": 0})
    state = TriggerState().with_requests([_request("b", 2, seed="2"), _request("a", 1)])
    first = trigger.evaluate(state, _at(3), NO_CONTEXT)
    assert first.fire and first.details["request"]["id"] == "a"
    assert first.reason == ("manual request a by ana at 2024-03-01 10:08:00 UTC; 1 more queued")
    assert first.params == {"seed": 0}
    state = trigger.record(state, first, _at(3))
    second = trigger.evaluate(state, _at(4), NO_CONTEXT)
    assert second.fire and second.params == {"seed": "2"}
    state = trigger.record(state, second, _at(4))
    assert state.pending_manual == ()
    idle = trigger.evaluate(state, _at(5), NO_CONTEXT)
    assert not idle.fire and idle.reason == "no manual request pending (conveyor trigger census)"


def test_manual_requests_of_other_pipelines_are_left_alone() -> None:
    trigger = ManualTrigger(name="m", pipeline="other")
    state = TriggerState().with_requests([_request("a", 1)])
    assert not trigger.evaluate(state, _at(2), NO_CONTEXT).fire


def test_with_requests_skips_known_ids() -> None:
    state = TriggerState().with_requests([_request("a", 1)]).with_requests([_request("a", 1)])
    assert [r.id for r in state.pending_manual] == ["a"]


# -- new data (pure: the spans come in the context) ---------------------------------------------
NEW_DATA = NewDataTrigger(
    name="new-data",
    pipeline="census",
    watch=Watch("/data/census"),
    span_param="until_span",
    source_param="source",
    params={"n_trials": 2},
)


def _spans(*numbers: int) -> TriggerContext:
    return TriggerContext(spans={"new-data": tuple(SeenSpan(n, f"span={n}") for n in numbers)})


def test_new_data_takes_the_first_look_as_a_baseline() -> None:
    decision = NEW_DATA.evaluate(TriggerState(), T0, _spans(1, 2))
    assert not decision.fire
    assert decision.reason == "first look at /data/census: span=2 is taken as already handled"
    state = NEW_DATA.record(TriggerState(), decision, T0)
    assert state.last_span["new-data"] == SeenSpan(2, "span=2")


def test_new_data_fires_for_the_newest_of_several_new_spans() -> None:
    state = TriggerState().saw_span("new-data", SeenSpan(2, "span=2"))
    assert NEW_DATA.evaluate(state, T0, _spans(1, 2)).reason == "no new span since span=2"
    decision = NEW_DATA.evaluate(state, T0, _spans(1, 2, 3, 4))
    assert decision.fire
    assert decision.reason == (
        "new span span=4 in /data/census after span=2 (1 more new span(s) before it)"
    )
    assert decision.params == {"n_trials": 2, "until_span": 4, "source": "/data/census"}
    assert [s["number"] for s in decision.details["new_spans"]] == [3, 4]
    state = NEW_DATA.record(state, decision, T0)
    assert state.last_span["new-data"] == SeenSpan(4, "span=4")


def test_new_data_that_is_not_acted_on_stays_new() -> None:
    state = TriggerState().saw_span("new-data", SeenSpan(2, "span=2"))
    decision = NEW_DATA.evaluate(state, T0, _spans(3))
    # The controller held the run (e.g. min_interval): it records an evaluation, not the fire.
    held = NEW_DATA.record(state, replace(decision, fire=False), T0)
    assert held.last_span["new-data"] == SeenSpan(2, "span=2")
    assert NEW_DATA.evaluate(held, _at(1), _spans(3)).fire


def test_new_data_explains_unreadable_and_empty_watches() -> None:
    error = TriggerContext(errors={"new-data": "/data/census does not exist"})
    assert NEW_DATA.evaluate(TriggerState(), T0, error).reason == (
        "cannot look at /data/census: /data/census does not exist"
    )
    assert NEW_DATA.evaluate(TriggerState(), T0, _spans()).reason == "no span in /data/census yet"
    assert "was not looked at" in NEW_DATA.evaluate(TriggerState(), T0, NO_CONTEXT).reason


# -- a policy's triggers together ---------------------------------------------------------------
def _policy() -> Policy:
    target = PipelineTarget("census", Path("/p/train.py"), "census_training", "census")
    return Policy(pipelines={"census": target}, triggers=(ALERT_TRIGGER, _cron(), NEW_DATA))


def test_explain_all_covers_every_trigger_and_advance_state_records_them() -> None:
    policy = _policy()
    state = TriggerState().with_requests([_request("a", -1)])
    context = TriggerContext(alerts=(_alert(fired=-1),), spans=_spans(1).spans)
    decisions = explain_all(policy, state, T0, context)
    assert [(d.trigger, d.fire) for d in decisions] == [
        ("retrain-on-drift", True),
        ("quarterly", False),
        ("new-data", False),
        ("manual:census", True),
    ]
    state = advance_state(policy, state, decisions, T0)
    assert set(state.last_evaluated) == {d.trigger for d in decisions}
    assert set(state.last_fired) == {"retrain-on-drift", "manual:census"}
    assert state.pending_manual == () and state.last_span["new-data"].number == 1


def test_triggers_refuse_a_clock_without_a_zone() -> None:
    with pytest.raises(TriggerError, match=r"need an aware time, got 2024-03-01T10:07:00 without"):
        explain_all(_policy(), TriggerState(), T0.replace(tzinfo=None), NO_CONTEXT)
    decision = ALERT_TRIGGER.evaluate(TriggerState(), T0, NO_CONTEXT)
    with pytest.raises(TriggerError, match=r"decision for unknown trigger 'gone'"):
        advance_state(_policy(), TriggerState(), [replace(decision, trigger="gone")], T0)


# -- state ----------------------------------------------------------------------------------------
def test_state_round_trips_through_its_file(tmp_path: Path) -> None:
    state = (
        TriggerState()
        .fired("a", T0)
        .evaluated("b", _at(1))
        .saw_span("n", SeenSpan(20240301, "date=2024-03-01"))
        .with_requests([_request("r", 2, until_span="3")])
    )
    assert load_state(tmp_path) == TriggerState()  # none saved yet
    path = save_state(tmp_path, state)
    assert path == ct_dir(tmp_path) / "state.json"
    assert load_state(tmp_path) == state
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temporary left


def test_a_corrupt_state_file_is_named(tmp_path: Path) -> None:
    (ct_dir(tmp_path)).mkdir(parents=True)
    (ct_dir(tmp_path) / "state.json").write_text('{"last_fired": {"a": "yesterday"}}')
    with pytest.raises(TriggerError, match=r"state.json is corrupt .*; move it away"):
        load_state(tmp_path)


def test_the_package_exports_what_it_lists() -> None:
    import conveyor.ct

    assert sorted(conveyor.ct.__all__) == conveyor.ct.__all__
    missing = [name for name in conveyor.ct.__all__ if not hasattr(conveyor.ct, name)]
    assert missing == []
    public = {n for n in vars(conveyor.ct) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(conveyor.ct.__all__) | {"annotations"}
