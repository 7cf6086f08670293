"""Windows over log rows: count and time windows, completeness, ``since`` and offsets."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.monitoring import MonitoringError, WindowSpec
from conveyor.monitoring.windows import MAX_TIME_WINDOWS, assign_windows

T0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)


def _frame(seconds: list[float], version: str = "1", kind: str = "served") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "version": [version] * len(seconds),
            "route_kind": [kind] * len(seconds),
            "time": pd.to_datetime([T0 + dt.timedelta(seconds=s) for s in seconds], utc=True),
        }
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one of size"),
        ({"size": 10, "duration": dt.timedelta(minutes=1)}, "exactly one of size"),
        ({"size": 0}, "positive integer, got 0"),
        ({"size": True}, "positive integer, got True"),
        ({"duration": dt.timedelta(0)}, "at least 1 ms"),
    ],
)
def test_window_spec_needs_one_positive_setting(options: dict[str, object], message: str) -> None:
    with pytest.raises(MonitoringError, match=message):
        WindowSpec(**options)  # type: ignore[arg-type]


def test_window_spec_describes_itself() -> None:
    assert WindowSpec(size=500).describe() == "500 predictions"
    assert WindowSpec(duration=dt.timedelta(hours=1)).to_dict() == {"duration_s": 3600.0}


def test_count_windows_are_blocks_of_n_rows_and_the_last_is_incomplete() -> None:
    frame = _frame([float(i) for i in range(25)])
    windows = assign_windows(frame, WindowSpec(size=10), now=T0 + dt.timedelta(days=1))
    assert [(w.index, len(w.rows), w.complete) for w in windows] == [
        (0, 10, True),
        (1, 10, True),
        (2, 5, False),
    ]
    assert windows[1].start == T0 + dt.timedelta(seconds=10)
    assert windows[1].end == T0 + dt.timedelta(seconds=19)


def test_count_windows_keep_their_numbers_after_since() -> None:
    frame = _frame([float(i) for i in range(12, 45)])  # rows 12-44 of the series
    windows = assign_windows(
        frame, WindowSpec(size=10), now=T0 + dt.timedelta(days=1), offsets={("1", "served"): 12}
    )
    # rows 12-19 belong to window 1, which began before since: left out
    assert [(w.index, len(w.rows), w.complete) for w in windows] == [
        (2, 10, True),
        (3, 10, True),
        (4, 5, False),
    ]
    assert frame["time"].iloc[windows[0].rows[0]] == T0 + dt.timedelta(seconds=20)


def test_time_windows_are_epoch_aligned_with_empty_gaps_and_nothing_after() -> None:
    frame = _frame([5.0, 30.0, 250.0, 299.0])
    spec = WindowSpec(duration=dt.timedelta(minutes=1))
    windows = assign_windows(frame, spec, now=T0 + dt.timedelta(seconds=290))
    base = int(T0.timestamp()) // 60
    assert [(w.index - base, len(w.rows), w.complete) for w in windows] == [
        (0, 2, True),
        (1, 0, True),
        (2, 0, True),
        (3, 0, True),
        (4, 2, False),  # ends at 300 s, after now
    ]
    assert windows[1].start == T0 + dt.timedelta(minutes=1)
    assert windows[1].end == T0 + dt.timedelta(minutes=2)


def test_time_windows_after_since_start_at_or_after_it() -> None:
    frame = _frame([70.0, 130.0])
    spec = WindowSpec(duration=dt.timedelta(minutes=1))
    windows = assign_windows(
        frame, spec, now=T0 + dt.timedelta(hours=1), since=T0 + dt.timedelta(seconds=61)
    )
    assert [w.start for w in windows] == [T0 + dt.timedelta(minutes=2)]


def test_series_are_cut_apart() -> None:
    frame = pd.concat(
        [_frame([1.0, 2.0, 3.0], "1"), _frame([1.5, 2.5], "1", "shadow"), _frame([4.0], "2")],
        ignore_index=True,
    )
    windows = assign_windows(frame, WindowSpec(size=2), now=T0 + dt.timedelta(days=1))
    assert [(w.series, w.index, w.complete) for w in windows] == [
        (("1", "served"), 0, True),
        (("1", "served"), 1, False),
        (("1", "shadow"), 0, True),
        (("2", "served"), 0, False),
    ]
    assert sorted(np.concatenate([w.rows for w in windows]).tolist()) == list(range(6))


def test_too_many_time_windows_are_refused() -> None:
    frame = _frame([0.0, 3600.0 * 24 * 365])
    with pytest.raises(MonitoringError, match=r"use a longer duration or a later since"):
        assign_windows(
            frame, WindowSpec(duration=dt.timedelta(seconds=1)), now=T0 + dt.timedelta(days=400)
        )
    assert MAX_TIME_WINDOWS >= 10_000


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.integers(min_value=0, max_value=5_000), min_size=1, max_size=60),
    size=st.integers(min_value=1, max_value=7),
    offset=st.integers(min_value=0, max_value=20),
)
def test_count_windows_partition_rows_into_full_blocks(
    gaps: list[int], size: int, offset: int
) -> None:
    seconds = np.cumsum(gaps).astype(float).tolist()
    frame = _frame(seconds)
    windows = assign_windows(
        frame,
        WindowSpec(size=size),
        now=T0 + dt.timedelta(days=30),
        offsets={("1", "served"): offset},
    )
    skipped = (size - offset % size) % size  # rows finishing a window begun before since
    covered = np.concatenate([w.rows for w in windows]) if windows else np.zeros(0, int)
    assert covered.tolist() == list(range(min(skipped, len(seconds)), len(seconds)))
    assert [w.index for w in windows] == list(
        range(-(-offset // size), -(-offset // size) + len(windows))
    )
    assert all(len(w.rows) == size for w in windows if w.complete)
    assert all(w.complete for w in windows[:-1])


@settings(max_examples=60, deadline=None)
@given(
    seconds=st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=60),
    minutes=st.integers(min_value=1, max_value=30),
    now=st.integers(min_value=0, max_value=12_000),
)
def test_time_windows_hold_exactly_their_rows(seconds: list[int], minutes: int, now: int) -> None:
    ordered = sorted(float(s) for s in seconds)
    frame = _frame(ordered)
    step = dt.timedelta(minutes=minutes)
    windows = assign_windows(frame, WindowSpec(duration=step), now=T0 + dt.timedelta(seconds=now))
    assert sum(len(w.rows) for w in windows) == len(ordered)
    for window in windows:
        assert window.end - window.start == step
        assert window.complete == (window.end <= T0 + dt.timedelta(seconds=now))
        times = frame["time"].iloc[window.rows]
        assert ((times >= window.start) & (times < window.end)).all()
    indices = [w.index for w in windows]
    assert indices == list(range(indices[0], indices[-1] + 1))
