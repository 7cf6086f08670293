"""Windows over the prediction log: by count (every N predictions) or by time (epoch-aligned).

A *series* is the predictions of one model version on one route kind (``served`` answers, or
``shadow`` answers logged under a route ending in ``:shadow``); windows never mix series.

- **Count windows** (``WindowSpec(size=N)``): the series' rows in log order (time, request
  id, row within the request) cut into blocks of N, numbered from the series' very first
  logged row, so a window keeps its number and rows whatever ``since`` a caller reads from.
  A window is complete once it holds N rows; its ``start``/``end`` are the times of its first
  and last rows. With ``since``, a window that began before ``since`` is left out.
- **Time windows** (``WindowSpec(duration=d)``): ``[k·d, (k+1)·d)`` since the Unix epoch, so
  every series and every caller cuts at the same instants. A window is complete once its end
  has passed (``end <= now``). Empty windows between a series' first and last windows are
  reported (count 0), so a traffic dip shows; none are invented after a series' last
  prediction. With ``since``, windows that start before ``since`` are left out.

The last, unfinished window of each series is returned as incomplete (``complete=False``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from conveyor.monitoring.errors import MonitoringError
from conveyor.monitoring.results import RouteKind
from conveyor.monitoring.window_spec import EPOCH, WindowSpec, micros

__all__ = ["EPOCH", "SeriesKey", "Window", "WindowSpec", "assign_windows"]

MAX_TIME_WINDOWS = 100_000
SeriesKey = tuple[str, RouteKind]
"""(version as logged, ``""`` when missing; route kind): what one series of windows shares."""


@dataclass(frozen=True)
class Window:
    """One window of one series: its bounds and the positions of its rows in the frame."""

    series: SeriesKey
    index: int
    start: dt.datetime
    end: dt.datetime
    complete: bool
    rows: npt.NDArray[np.intp]


def _at(stamp: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=int(stamp))


def assign_windows(
    frame: pd.DataFrame,
    spec: WindowSpec,
    *,
    now: dt.datetime,
    since: dt.datetime | None = None,
    offsets: Mapping[SeriesKey, int] | None = None,
) -> list[Window]:
    """Cut ``frame`` into windows per series.

    Args:
        frame: One row per prediction with ``version`` (text, ``""`` when unknown),
            ``route_kind`` and ``time`` (UTC), in log order within each series.
        spec: The window spec.
        now: Time windows ending after it are incomplete.
        since: Leave out windows that began before it.
        offsets: Count windows only: rows each series logged before ``since``.

    Returns:
        Windows ordered by series (version text, then route kind), then index.

    Raises:
        MonitoringError: Time windows so short that a series would span more than
            ``MAX_TIME_WINDOWS`` of them.
    """
    if frame.empty:
        return []
    stamps = _stamps(frame["time"])
    windows: list[Window] = []
    groups = frame.groupby(["version", "route_kind"], sort=True).indices
    for key, positions in groups.items():
        version, kind = cast("tuple[str, RouteKind]", key)
        series: SeriesKey = (str(version), kind)
        rows = np.asarray(positions, dtype=np.intp)
        if spec.size is not None:
            start = int((offsets or {}).get(series, 0))
            windows += _count_windows(series, rows, stamps[rows], spec.size, start)
        else:
            assert spec.duration is not None
            windows += _time_windows(series, rows, stamps[rows], spec.duration, now, since)
    return windows


def _stamps(times: pd.Series) -> npt.NDArray[np.int64]:
    values = pd.to_datetime(times, utc=True).dt.tz_convert("UTC")
    return values.dt.tz_localize(None).to_numpy().astype("datetime64[us]").astype(np.int64)


def _count_windows(
    series: SeriesKey,
    rows: npt.NDArray[np.intp],
    stamps: npt.NDArray[np.int64],
    size: int,
    offset: int,
) -> list[Window]:
    positions = offset + np.arange(len(rows))
    index = positions // size
    # A window that began before ``since`` would be judged on part of its rows: skip it.
    keep = index > offset // size if offset % size else np.ones(len(rows), dtype=bool)
    rows, stamps, index = rows[keep], stamps[keep], index[keep]
    if len(rows) == 0:
        return []
    values, starts = np.unique(index, return_index=True)
    ends = np.append(starts[1:], len(rows))
    return [
        Window(
            series=series,
            index=int(value),
            start=_at(stamps[first]),
            end=_at(stamps[last - 1]),
            complete=bool(last - first == size),
            rows=rows[first:last],
        )
        for value, first, last in zip(values.tolist(), starts.tolist(), ends.tolist(), strict=True)
    ]


def _time_windows(
    series: SeriesKey,
    rows: npt.NDArray[np.intp],
    stamps: npt.NDArray[np.int64],
    duration: dt.timedelta,
    now: dt.datetime,
    since: dt.datetime | None,
) -> list[Window]:
    step = micros(duration)
    index = stamps // step
    order = np.argsort(index, kind="stable")
    rows, index = rows[order], index[order]
    first_allowed = -(-micros(since - EPOCH) // step) if since is not None else None
    now_micros = micros(now - EPOCH)
    low, high = int(index[0]), int(index[-1])
    if first_allowed is not None:
        low = max(low, first_allowed)
    if high - low >= MAX_TIME_WINDOWS:
        raise MonitoringError(
            f"{high - low + 1} windows of {duration} between the first and last prediction of "
            f"version {series[0] or '?'}; use a longer duration or a later since "
            f"(at most {MAX_TIME_WINDOWS} per series)"
        )
    windows = []
    bounds = np.searchsorted(index, np.arange(low, high + 2))
    for number in range(low, high + 1):
        first, last = bounds[number - low], bounds[number - low + 1]
        windows.append(
            Window(
                series=series,
                index=number,
                start=_at(number * step),
                end=_at((number + 1) * step),
                complete=(number + 1) * step <= now_micros,
                rows=rows[first:last],
            )
        )
    return windows
