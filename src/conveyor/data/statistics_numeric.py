"""Numeric statistics of all numeric columns at once, in one or two aggregate passes.

Every pass is one DuckDB aggregate query over all numeric columns; per column it may compute

- *moments*: count of finite values, of infinities, sum, min, max, zeros;
- exact quantiles (``quantile_cont``), for small data;
- sums of ``x - s`` and ``(x - s)^2`` around a shift ``s`` close to the mean, which give the
  standard deviation without the cancellation of the textbook formula;
- ``histogram(x, boundaries)``: exact ``#{x <= b}`` at each boundary ``b``. The boundaries
  are the largest double below each equal-width edge and each quantile estimate, and the
  estimates themselves, so ``#{x < v}`` and ``#{x <= v}`` are known for every estimate.

**Small data** (exact quantiles): pass 1 computes moments and quantiles, pass 2 the
histograms and the sums around the mean.

**Large data**: quantiles are estimated first from a deterministic sample of about 2^18 rows
(which also gives the shift). When the range of a column is known (the Parquet footers give
it), the equal-width edges are known too, and a single pass computes everything; columns whose
range the footers do not give (or give wrong) get a second pass. From the exact counts, each
estimate's exact rank interval is known: ``quantile_rank_error`` is that measured error, a
certificate rather than an a-priori promise (``docs/statistics.md``).

Plain integer and float columns of Parquet files take a faster road to the same numbers:
:mod:`~conveyor.data.statistics_scan` samples the same rows and counts the same boundaries
with pyarrow and numpy (sorted blocks instead of DuckDB's per-value binary search), and finds
the exact range of columns whose footers lack one while sampling; integer columns of small
range are not sampled but tallied value by value, which makes their quantiles exact too.
Everything else (in-memory tables, CSV, datetimes, decimals, hive partition columns, many
small files) goes through the DuckDB queries above.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import pairwise
from typing import Any

import numpy as np

from conveyor.data.statistics_model import FeatureType, Histogram, NumericStatistics
from conveyor.data.statistics_scan import ColumnCounts, ParquetScan, parquet_scan
from conveyor.data.statistics_source import StatsSource, quote, sample_stride

__all__ = [
    "EXACT_QUANTILE_ROWS",
    "NumericColumn",
    "numeric_column",
    "numeric_statistics",
    "quantile_key",
    "stable",
]

EXACT_QUANTILE_ROWS = 1_000_000
"""Below this many rows quantiles are exact (``quantile_cont``); from it on, estimated."""
EXACT_QUANTILE_CELLS = 20_000_000
"""...and only while rows x numeric columns stays below this (exact quantiles hold values)."""
SAMPLE_ROWS = 2**18
"""Rows sampled to estimate quantiles of large data (fewer for very wide tables)."""
SAMPLE_VALUES = 4_000_000
"""Upper bound on sampled values over all numeric columns (32 MB of doubles)."""
MIN_SAMPLE = 1_000
"""A column with fewer sampled values (a sparse one) gets exact quantiles when it is small."""
TALLY_RANGE = 1 << 12
"""Integer Parquet columns whose footers give a range of fewer values than this (codes,
counts, ratings, ages) are tallied value by value instead of sampled, sorted and counted:
their quantiles are exact, and they are left out of the sample pass. (The tally of a block is
a ``bincount`` as long as the range: beyond a few thousand values, sorting costs less.)"""
_SCANNED_TYPES = (FeatureType.INT, FeatureType.FLOAT)
SIGNIFICANT_DIGITS = 12
"""Means and standard deviations are rounded to this many digits: parallel sums differ in
their last bits from run to run, and statistics should not."""


def stable(value: float) -> float:
    """``value`` rounded to 12 significant digits (so parallel summation order is invisible).

    Example:
        >>> stable(0.1 + 0.2)
        0.3
    """
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}") if math.isfinite(value) else value


def quantile_key(q: float) -> str:
    """The key of quantile ``q`` in ``NumericStatistics.quantiles``.

    Example:
        >>> quantile_key(0.5), quantile_key(0.01)
        ('0.5', '0.01')
    """
    return repr(float(q))


@dataclass(frozen=True)
class NumericColumn:
    """A column analysed as numbers: ``value`` is SQL giving finite doubles or NULL;
    ``infinite`` is SQL that is true for +-inf (floats only)."""

    name: str
    type: FeatureType
    value: str
    infinite: str | None = None


def numeric_column(name: str, duckdb_type: str, ftype: FeatureType) -> NumericColumn:
    """How a column of ``ftype`` is read as numbers: NaN and +-inf become NULL for floats
    (infinities are counted apart), datetimes become epoch seconds.

    Example:
        >>> numeric_column("t", "DATE", FeatureType.DATETIME).value
        'epoch("t")'
    """
    col = quote(name)
    if ftype == FeatureType.FLOAT:
        raw = f"{col}::DOUBLE"
        return NumericColumn(
            name, ftype, f"(CASE WHEN isfinite({raw}) THEN {raw} END)", f"isinf({raw})"
        )
    if ftype == FeatureType.DATETIME:
        return NumericColumn(name, ftype, f"epoch({col})")
    return NumericColumn(name, ftype, f"{col}::DOUBLE")


@dataclass
class _State:
    """What is known about one column so far."""

    finite: int = 0
    infinite: int = 0
    total: float = 0.0  # sum of the values, when no shift was known
    min: float | None = None
    max: float | None = None
    zeros: int = 0
    quantiles: list[float] | None = None  # at the plan's positions, exact or estimated
    exact: bool = False  # quantiles from quantile_cont
    shift: float | None = None  # sums around it: sum(x - shift), sum((x - shift)^2)
    sums: tuple[float, float] | None = None
    range: tuple[float, float] | None = None  # the range the histogram boundaries assumed
    at_most: dict[float, int] = field(default_factory=dict)  # boundary b -> #{x <= b}

    @property
    def mean(self) -> float | None:
        if not self.finite:
            return None
        if self.sums is not None and self.shift is not None:
            return stable(self.shift + self.sums[0] / self.finite)
        return stable(self.total / self.finite)


@dataclass(frozen=True)
class _Plan:
    quantiles: tuple[float, ...]
    bins: int
    exact: bool

    @property
    def positions(self) -> list[float]:
        """The requested quantiles and the quantile histogram's edges (k / bins)."""
        edges = [k / self.bins for k in range(1, self.bins)]
        return sorted({float(q) for q in self.quantiles} | set(edges))


@dataclass
class _Ask:
    """What one pass computes for one column.

    ``moments``: count, sum, min, max, zeros, infinities. Without them, a histogram over a
    range known beforehand gives the count, zeros and (checked) min and max itself.
    """

    moments: bool = False
    exact_quantiles: bool = False
    shift: float | None = None
    boundaries: list[float] | None = None

    def __bool__(self) -> bool:
        wanted = self.moments or self.exact_quantiles or bool(self.boundaries)
        return wanted or self.shift is not None


def numeric_statistics(
    src: StatsSource,
    columns: Sequence[NumericColumn],
    *,
    quantiles: Sequence[float],
    bins: int,
    exact: bool | None = None,
) -> dict[str, tuple[int, NumericStatistics]]:
    """(count, NumericStatistics) of each column; the count includes infinities.

    ``exact`` None picks exact quantiles below :data:`EXACT_QUANTILE_ROWS` rows.

    Example:
        >>> numeric_statistics(src, [numeric_column("x", "DOUBLE", FeatureType.FLOAT)],
        ...                    quantiles=[0.5], bins=10)  # doctest: +SKIP
        {'x': (3, NumericStatistics(mean=2.0, ...))}
    """
    if not columns:
        return {}
    if exact is None:
        cells = src.num_rows * len(columns)
        exact = src.num_rows < EXACT_QUANTILE_ROWS and cells <= EXACT_QUANTILE_CELLS
    plan = _Plan(tuple(quantiles), bins, exact)
    states = [_State() for _ in columns]
    if exact:
        first = [_Ask(moments=True, exact_quantiles=True) for _ in columns]
        _aggregate(src, columns, states, plan, first)
    else:
        _estimate(src, columns, states, plan)
    _finish(src, columns, states, plan)
    return {
        col.name: (s.finite + s.infinite, _assemble(s, plan))
        for col, s in zip(columns, states, strict=True)
    }


def _estimate(
    src: StatsSource, columns: Sequence[NumericColumn], states: list[_State], plan: _Plan
) -> None:
    """Large data: quantile estimates from a sample, then one counting pass. Plain numeric
    Parquet columns are sampled and counted by :mod:`~conveyor.data.statistics_scan` (small-
    range integer columns are not sampled but tallied value by value, which makes everything
    about them exact); the others by DuckDB (their range from the footers; columns without
    one get a second pass in :func:`_finish`). Sparse columns get exact quantiles from one
    more query."""
    size = min(SAMPLE_ROWS, max(2**12, SAMPLE_VALUES // len(columns)))
    stride = sample_stride(src.num_rows, size)
    scan, scanned_list = parquet_scan(
        src.files,
        [(i, col.name) for i, col in enumerate(columns) if col.type in _SCANNED_TYPES],
        src.threads,
        src.num_rows,
    )
    scanned = set(scanned_list)
    rest = [i for i in range(len(columns)) if i not in scanned]
    samples = _sample(src, columns, rest, size)
    ranges = known_ranges(src, columns)
    tallied = _tallied(scan, ranges) if scan is not None else {}
    if scan is not None:
        sampled = scanned - set(tallied)
        found, exact = scan.only(sampled).sample(stride, sampled - set(ranges))
        samples.update(found)
        ranges.update(exact)
    asks = []
    for i, state in enumerate(states):
        _from_sample(state, samples.get(i, np.empty(0)), ranges.get(i), plan)
        state.shift = None if i in scanned else state.shift
        boundaries = _boundaries(state, plan)
        ask = _Ask(moments=not boundaries, shift=state.shift, boundaries=boundaries)
        asks.append(_Ask() if i in scanned else ask)
    _aggregate(src, columns, states, plan, asks)
    wrong = [
        _Ask(moments=bool(a.boundaries) and not s.finite) for a, s in zip(asks, states, strict=True)
    ]
    _aggregate(src, columns, states, plan, wrong)  # footers lied: moments the usual way
    if scan is not None:
        misfits = _scan_count(scan, states, plan, scanned - set(tallied), tallied)
        if misfits:  # the footers gave a wrong range: sample and count them as the others
            found, exact = scan.only(misfits).sample(stride, misfits)
            for i in misfits:
                samples[i] = found.get(i, np.empty(0))
                _from_sample(states[i], samples[i], exact.get(i), plan)
            _scan_count(scan, states, plan, misfits, {})
    sparse = [
        _Ask(
            exact_quantiles=not s.exact
            and len(samples.get(i, ())) < MIN_SAMPLE
            and 0 < s.finite <= EXACT_QUANTILE_ROWS
        )
        for i, s in enumerate(states)
    ]
    _aggregate(src, columns, states, plan, sparse)
    for state in states:
        if state.finite and state.quantiles is None:  # no sampled value: bracket by min/max
            state.quantiles = [state.min if q < 0.5 else state.max for q in plan.positions]  # type: ignore[misc]


def _from_sample(
    state: _State, values: np.ndarray, span: tuple[float, float] | None, plan: _Plan
) -> None:
    """Quantile estimates (order statistics of the sorted sample ``values``) and the shift;
    the range is kept for the histogram boundaries unless the sample is too sparse."""
    if len(values):
        at = np.rint(np.asarray(plan.positions) * (len(values) - 1)).astype(np.int64)
        state.quantiles = values[at].tolist()
        state.shift = float(values.mean())
    state.range = span if len(values) >= MIN_SAMPLE else None


def _tallied(
    scan: ParquetScan, ranges: dict[int, tuple[float, float]]
) -> dict[int, tuple[int, int]]:
    """The integer columns whose footers give a range of at most :data:`TALLY_RANGE` values
    (well inside the integers a double holds exactly): (low, high) by column index."""
    out = {}
    for i in scan.integers:
        if i in ranges:
            low, high = math.floor(ranges[i][0]), math.ceil(ranges[i][1])
            if high - low < TALLY_RANGE and max(-low, high) < 2**53:
                out[i] = (low, high)
    return out


def _scan_count(
    scan: ParquetScan,
    states: list[_State],
    plan: _Plan,
    counted: set[int],
    tallied: dict[int, tuple[int, int]],
) -> set[int]:
    """The counting pass of the scanned columns; the tallied columns whose values do not all
    lie in the range the footers gave (to be sampled and counted again)."""
    bounds = {i: _boundaries(states[i], plan) or [] for i in counted}
    counts, tallies = scan.count(
        {i: np.asarray(b, dtype=np.float64) for i, b in bounds.items()}, tallied
    )
    for i, found in counts.items():
        _absorb_counts(states[i], bounds[i], found)
    for i, occurrences in tallies.items():
        if occurrences is not None:
            _absorb_tally(states[i], tallied[i][0], occurrences, plan)
    return {i for i, occurrences in tallies.items() if occurrences is None}


def _absorb_counts(state: _State, boundaries: list[float], counts: ColumnCounts) -> None:
    """The state after a direct scan: everything exact. When the data does not span the range
    the boundaries assumed (wrong footers), :func:`_finish` recounts the histograms."""
    state.finite, state.infinite, state.zeros = counts.finite, counts.infinite, counts.zeros
    if counts.finite:
        state.min, state.max = counts.min + 0.0, counts.max + 0.0  # + 0.0: -0.0 -> 0.0
        state.shift, state.sums = counts.mean, (0.0, counts.m2)
        state.total = counts.mean * counts.finite
    state.at_most = dict(zip(boundaries, (int(c) for c in counts.at_most), strict=True))


def _absorb_tally(state: _State, low: int, occurrences: np.ndarray, plan: _Plan) -> None:
    """Everything exact from how often each integer occurs: moments in integer arithmetic,
    quantiles as ``quantile_cont`` gives them (linear between the two order statistics
    around ``q (n - 1)``), the counts at every histogram boundary."""
    present = np.flatnonzero(occurrences)
    if not len(present):
        return
    offsets, counts = present.tolist(), occurrences[present].tolist()
    n = sum(counts)
    s1 = sum(k * c for k, c in zip(offsets, counts, strict=True))
    s2 = sum(k * k * c for k, c in zip(offsets, counts, strict=True))
    values = (present + low).astype(np.float64)  # exact: |value| < 2^53
    state.finite, state.infinite = n, 0
    state.min, state.max = float(values[0]) + 0.0, float(values[-1]) + 0.0
    state.zeros = int(occurrences[-low]) if 0 <= -low < len(occurrences) else 0
    state.shift = (low * n + s1) / n  # exact integers, one rounding
    state.sums = (0.0, float(Fraction(n * s2 - s1 * s1, n)))
    cumulative = np.cumsum(occurrences[present])

    def at_rank(rank: int) -> float:
        return float(values[np.searchsorted(cumulative, rank, "right")])

    quantiles = []
    for q in plan.positions:
        position = q * (n - 1)
        below = math.floor(position)
        low_value = at_rank(below)
        high_value = at_rank(min(below + 1, n - 1))
        quantiles.append(low_value + (high_value - low_value) * (position - below))
    state.quantiles, state.exact = quantiles, True
    state.range = (state.min, state.max)
    boundaries = _boundaries(state, plan) or []
    at_most = np.concatenate([[0], cumulative])[np.searchsorted(values, boundaries, "right")]
    state.at_most = dict(zip(boundaries, (int(c) for c in at_most), strict=True))


def _finish(
    src: StatsSource, columns: Sequence[NumericColumn], states: list[_State], plan: _Plan
) -> None:
    """The pass for whatever is still missing: histograms whose range was unknown or wrong,
    sums for the standard deviation."""
    asks = []
    for state in states:
        ask = _Ask()
        if state.finite and (not state.at_most or state.range != (state.min, state.max)):
            state.range, state.at_most = (state.min, state.max), {}  # type: ignore[assignment]
            ask.boundaries = _boundaries(state, plan)
        if state.finite and state.sums is None:
            state.shift = ask.shift = state.mean
        asks.append(ask)
    _aggregate(src, columns, states, plan, asks)


def _sample(
    src: StatsSource, columns: Sequence[NumericColumn], wanted: Sequence[int], size: int
) -> dict[int, np.ndarray]:
    """Sorted finite sampled values of the ``wanted`` columns (by index), through DuckDB."""
    if not wanted:
        return {}
    select = ", ".join(f"{columns[i].value} AS c{i}" for i in wanted)
    sample = src.query(src.sample_sql(select, size)).fetchnumpy()
    return {
        i: np.sort(np.ma.compressed(np.ma.asarray(sample[f"c{i}"], dtype=np.float64)))
        for i in wanted
    }


def known_ranges(
    src: StatsSource, columns: Sequence[NumericColumn]
) -> dict[int, tuple[float, float]]:
    """(min, max) of int and float columns from the Parquet footers, by column index.

    A column is left out when any row group with values lacks exact statistics or when they
    are not finite (a file with +-inf, say). The pass checks them against the data anyway.
    """
    wanted = {
        col.name: i
        for i, col in enumerate(columns)
        if col.type in (FeatureType.INT, FeatureType.FLOAT)
    }
    if not src.files or not wanted:
        return {}
    names = ", ".join(f"'{n.replace(chr(39), chr(39) * 2)}'" for n in wanted)
    complete = (
        "coalesce(num_values = stats_null_count, false) OR coalesce(stats_min_value IS NOT NULL "
        "AND stats_max_value IS NOT NULL AND min_is_exact IS NOT false "
        "AND max_is_exact IS NOT false, false)"
    )
    rows = src.query(
        f"SELECT path_in_schema, min(TRY_CAST(stats_min_value AS DOUBLE)), "
        f"max(TRY_CAST(stats_max_value AS DOUBLE)), bool_and({complete}) "
        f"FROM parquet_metadata({src.file_list()}) WHERE path_in_schema IN ({names}) "
        "GROUP BY path_in_schema"
    ).fetchall()
    return {
        wanted[name]: (float(low), float(high))
        for name, low, high, ok in rows
        if ok and low is not None and high is not None and math.isfinite(low + high)
    }


def _select(ask: _Ask, i: int, plan: _Plan, col: NumericColumn) -> list[str]:
    v = f"v{i}"
    parts = []
    if ask.moments:
        parts += [f"count({v}) AS n{i}", f"min({v}) AS lo{i}", f"max({v}) AS hi{i}"]
        parts += [f"count_if({v} = 0) AS z{i}", f"sum({v}) AS s{i}"]
    if col.infinite and (ask.moments or ask.boundaries):
        parts.append(f"count_if(f{i}) AS inf{i}")
    if ask.exact_quantiles:
        parts.append(f"quantile_cont({v}, $positions) AS q{i}")
    if ask.shift is not None:
        parts += [f"sum(d{i}) AS d{i}", f"sum(d{i} * d{i}) AS dd{i}"]
    if ask.boundaries:
        parts.append(f"histogram({v}, $b{i}) AS h{i}")
    return parts


def _from(src: StatsSource, columns: Sequence[NumericColumn], asks: Sequence[_Ask]) -> str:
    """The values (``v``), infinity flags (``f``) and shifted values (``d``) of the columns
    asked about, each computed once per row."""
    todo = [i for i, ask in enumerate(asks) if ask]
    inner = [f"{columns[i].value} AS v{i}" for i in todo]
    inner += [f"{columns[i].infinite} AS f{i}" for i in todo if columns[i].infinite]
    shifted = [f"v{i} - ({asks[i].shift!r}) AS d{i}" for i in todo if asks[i].shift is not None]
    values = f"(SELECT {', '.join(inner)} FROM {src.relation})"
    return f"(SELECT *, {', '.join(shifted)} FROM {values})" if shifted else values


def _aggregate(
    src: StatsSource,
    columns: Sequence[NumericColumn],
    states: list[_State],
    plan: _Plan,
    asks: Sequence[_Ask],
) -> None:
    """One aggregate query computing ``asks[i]`` for column ``i``; results go into states."""
    todo = [i for i, ask in enumerate(asks) if ask]
    if not todo:
        return
    parts = [p for i in todo for p in _select(asks[i], i, plan, columns[i])]
    params: dict[str, Any] = {f"b{i}": asks[i].boundaries for i in todo if asks[i].boundaries}
    if any(asks[i].exact_quantiles for i in todo):
        params["positions"] = plan.positions
    cursor = src.query(f"SELECT {', '.join(parts)} FROM {_from(src, columns, asks)}", params)
    (row,) = cursor.fetchall()  # fetchone would leave the result open on the connection
    assert cursor.description is not None
    result = dict(zip((d[0] for d in cursor.description), row, strict=True))
    for i in todo:
        _absorb(states[i], asks[i], result, i)


def _absorb(state: _State, ask: _Ask, result: dict[str, Any], i: int) -> None:
    if ask.moments:
        state.finite, state.zeros = int(result[f"n{i}"]), int(result[f"z{i}"] or 0)
        state.total = float(result[f"s{i}"] or 0.0)
        low, high = result[f"lo{i}"], result[f"hi{i}"]
        state.min = float(low) + 0.0 if low is not None else None  # + 0.0: -0.0 -> 0.0
        state.max = float(high) + 0.0 if high is not None else None
    if f"inf{i}" in result:
        state.infinite = int(result[f"inf{i}"] or 0)
    if ask.exact_quantiles and result[f"q{i}"] is not None:
        state.quantiles, state.exact = [float(x) for x in result[f"q{i}"]], True
    if ask.shift is not None:
        state.sums = (float(result[f"d{i}"] or 0.0), float(result[f"dd{i}"] or 0.0))
    if ask.boundaries:
        hist = result[f"h{i}"] or {}
        running = 0
        for b in ask.boundaries:
            running += int(hist.get(b, 0))
            state.at_most[b] = running
        if not ask.moments:
            _from_histogram(state, sum(int(c) for c in hist.values()))


def _from_histogram(state: _State, count: int) -> None:
    """Count, zeros, min and max from a histogram over the range the footers gave; when
    the data does not span exactly that range, the state is reset for a moments pass."""
    assert state.range is not None
    low, high = state.range
    at_most = state.at_most
    spans = (
        at_most.get(_below(low), 0) == 0
        and at_most[low] >= 1
        and at_most[_below(high)] < count
        and at_most[high] == count
    )
    if not spans:
        state.range, state.at_most, state.finite = None, {}, 0
        return
    # Parquet writers store a zero minimum as -0.0 (the format says so); report 0.0.
    state.finite, state.min, state.max = count, low + 0.0, high + 0.0
    state.zeros = at_most[0.0] - at_most[_below(0.0)] if low <= 0.0 <= high else 0


def _equal_width_edges(low: float, high: float, bins: int) -> list[float]:
    """numpy's edges for ``np.histogram(values, bins)``: ``linspace(min, max, bins + 1)``,
    or a unit-wide range around a single value."""
    if low == high:
        low, high = low - 0.5, high + 0.5
    return [float(e) for e in np.linspace(low, high, bins + 1)]


def _below(value: float) -> float:
    """The largest double smaller than ``value``: ``x <= _below(v)`` iff ``x < v``."""
    return float(np.nextafter(value, -np.inf))


def _boundaries(state: _State, plan: _Plan) -> list[float] | None:
    """Histogram boundaries for the state's range and quantiles (None when either is
    unknown): below each equal-width edge and each quantile histogram edge, at and below
    each requested quantile (its rank interval), and at and below the range's ends and zero
    (so that they can be checked and zeros counted)."""
    if state.range is None or state.quantiles is None:
        return None
    low, high = state.range
    edges = _equal_width_edges(low, high, plan.bins)[1:-1]
    points = {_below(e) for e in edges}
    requested = {float(q) for q in plan.quantiles}
    for q, v in zip(plan.positions, state.quantiles, strict=True):
        points |= {v, _below(v)} if q in requested else {_below(v)}
    for v in [low, high, *([0.0] if low <= 0.0 <= high else [])]:
        points |= {v, _below(v)}
    return sorted(p for p in points if math.isfinite(p))


def _less_than(state: _State, value: float) -> int:
    return state.at_most[_below(value)]


def _rank_error(q: float, v: float, state: _State) -> float:
    """Distance between ``q * n`` and the rank interval ``[#{x < v}, #{x <= v}]``, over n."""
    n = state.finite
    low, high = _less_than(state, v), state.at_most[v]
    return max(0.0, low - q * n, q * n - high) / n


def _differences(cumulative: list[int]) -> list[int]:
    return [b - a for a, b in pairwise(cumulative)]


def _histograms(state: _State, plan: _Plan) -> tuple[Histogram, Histogram]:
    assert state.min is not None and state.max is not None and state.quantiles is not None
    edges = _equal_width_edges(state.min, state.max, plan.bins)
    below = [0, *(_less_than(state, e) for e in edges[1:-1]), state.finite]
    equal_width = Histogram(edges=edges, counts=_differences(below))
    by_q = dict(zip(plan.positions, state.quantiles, strict=True))
    cuts = [by_q[k / plan.bins] for k in range(1, plan.bins)]
    q_below = [0, *(_less_than(state, e) for e in cuts), state.finite]
    by_mass = Histogram(edges=[state.min, *cuts, state.max], counts=_differences(q_below))
    return equal_width, by_mass


def _std(state: _State) -> float | None:
    if state.finite < 2 or state.sums is None:
        return None
    centred, squares = state.sums
    variance = max(squares - centred**2 / state.finite, 0.0) / (state.finite - 1)
    return stable(math.sqrt(variance))


def _assemble(state: _State, plan: _Plan) -> NumericStatistics:
    stats = NumericStatistics(
        mean=state.mean,
        std=_std(state),
        min=state.min,
        max=state.max,
        zeros=state.zeros,
        infinite=state.infinite,
    )
    if not state.finite or state.quantiles is None:
        return stats
    by_q = dict(zip(plan.positions, state.quantiles, strict=True))
    stats.quantiles = {quantile_key(q): by_q[float(q)] for q in plan.quantiles}
    if not state.exact and plan.quantiles:
        errors = (_rank_error(float(q), by_q[float(q)], state) for q in plan.quantiles)
        stats.quantile_rank_error = max(errors)
    stats.histogram, stats.quantile_histogram = _histograms(state, plan)
    return stats
