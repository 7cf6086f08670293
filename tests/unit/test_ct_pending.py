"""Pending runs: merging fires, and what holds them (busy, debounce, min_interval)."""

from __future__ import annotations

import datetime as dt

from conveyor.ct.pending import PendingRun, hold_of
from conveyor.ct.triggers import TriggerDecision

T0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)


def _decision(trigger: str, **params: object) -> TriggerDecision:
    return TriggerDecision(trigger, "manual", "census", True, f"{trigger} fired", {}, params, T0)


def test_merged_fires_overlay_their_params_in_order_and_say_so() -> None:
    pending = PendingRun.open(_decision("nightly", span=3, seed=1), T0)
    pending = pending.merge(_decision("new-span", span=4))
    assert pending.params == {"span": 4, "seed": 1}
    assert pending.trigger == "nightly" and pending.triggers == ["nightly", "new-span"]
    assert pending.reason() == "nightly fired (merged with 1 later fire(s): new-span)"
    assert PendingRun.from_json(pending.to_json()) == pending


def test_a_busy_pipeline_holds_first_then_debounce_then_the_rate_limit() -> None:
    pending = PendingRun.open(_decision("nightly"), T0)
    busy = hold_of(
        pending, T0, debounce=5 * MINUTE, min_interval=60 * MINUTE, running=12, last_start=None
    )
    assert busy is not None and busy.kind == "busy" and "busy with run 12" in busy.reason
    debounce = hold_of(
        pending, T0 + MINUTE, debounce=5 * MINUTE, min_interval=MINUTE, running=None,
        last_start=None,
    )  # fmt: skip
    assert debounce is not None and debounce.kind == "debounce"
    assert debounce.until == T0 + 5 * MINUTE
    assert "debounce 5m" in debounce.reason
    limited = hold_of(
        pending,
        T0 + 6 * MINUTE,
        debounce=5 * MINUTE,
        min_interval=60 * MINUTE,
        running=None,
        last_start=T0,
    )
    assert limited is not None and limited.kind == "min_interval"
    assert limited.until == T0 + 60 * MINUTE
    assert "at most one run of census every 1h" in limited.reason
    free = hold_of(
        pending,
        T0 + 60 * MINUTE,
        debounce=5 * MINUTE,
        min_interval=60 * MINUTE,
        running=None,
        last_start=T0,
    )
    assert free is None


def test_a_run_without_an_id_yet_still_holds() -> None:
    pending = PendingRun.open(_decision("nightly"), T0)
    hold = hold_of(
        pending, T0, debounce=dt.timedelta(0), min_interval=dt.timedelta(0), running=0,
        last_start=None,
    )  # fmt: skip
    assert hold is not None and "busy with a run" in hold.reason
