"""Merge the statistics of two disjoint parts of a dataset (two spans, say) without the data.

Exact after merging: ``num_rows``, ``count``, ``missing``, ``zeros``, ``infinite``, ``min``,
``max``, ``mean`` and ``std`` (Chan et al.'s parallel-variance formula, up to floating point),
``avg_length``, and the label distribution and imbalance. Approximate: quantiles (with a
*rigorous* rank-error bound derived from the parts' exact histogram counts), both histograms
(counts spread uniformly within the parts' bins), distinct counts and top-k lists (exact when
both parts list their whole domain; otherwise a lower bound, ``distinct_is_exact=False``).
"""

from __future__ import annotations

import math

import numpy as np

from conveyor.data.errors import DataError
from conveyor.data.statistics_categorical import MAX_LABEL_CLASSES
from conveyor.data.statistics_model import (
    FeatureStatistics,
    FeatureType,
    Histogram,
    LabelStatistics,
    NumericStatistics,
    SplitStatistics,
    StringStatistics,
    ValueCount,
)
from conveyor.data.statistics_numeric import stable

__all__ = ["merge_statistics"]


def merge_statistics(a: SplitStatistics, b: SplitStatistics) -> SplitStatistics:
    """Statistics of the union of the rows ``a`` and ``b`` describe (disjoint parts).

    Features are matched by name; a feature present in only one part is missing in every
    row of the other. The split keeps ``a``'s name.

    Raises:
        DataError: a feature is numeric in one part and categorical in the other.

    Example:
        >>> import pandas as pd
        >>> from conveyor.data.statistics import compute_statistics
        >>> a = compute_statistics(pd.DataFrame({"x": [1.0, 2.0]}))
        >>> b = compute_statistics(pd.DataFrame({"x": [3.0, 6.0]}))
        >>> both = merge_statistics(a, b)
        >>> both.num_rows, both.features["x"].numeric.mean, both.features["x"].numeric.max
        (4, 3.0, 6.0)
    """
    names = [*a.features, *(n for n in b.features if n not in a.features)]
    features = {
        name: _merge_feature(name, a.features.get(name), b.features.get(name), a, b)
        for name in names
    }
    label = _merge_label(a.label, b.label)
    return SplitStatistics(
        split=a.split, num_rows=a.num_rows + b.num_rows, features=features, label=label
    )


def _absent(feature: FeatureStatistics, rows: int) -> FeatureStatistics:
    """``feature`` as seen in a part of ``rows`` rows that lacks the column."""
    empty_numeric = NumericStatistics(mean=None, std=None, min=None, max=None, zeros=0)
    empty_strings = StringStatistics(distinct=0)
    return FeatureStatistics(
        name=feature.name,
        type=feature.type,
        kind=feature.kind,
        count=0,
        missing=rows,
        numeric=empty_numeric if feature.numeric else None,
        categorical=empty_strings if feature.categorical else None,
    )


def _merge_feature(
    name: str,
    x: FeatureStatistics | None,
    y: FeatureStatistics | None,
    a: SplitStatistics,
    b: SplitStatistics,
) -> FeatureStatistics:
    if x is None:
        assert y is not None
        x = _absent(y, a.num_rows)
    if y is None:
        y = _absent(x, b.num_rows)
    if x.kind != y.kind:
        raise DataError(
            f"cannot merge statistics: feature {name!r} is {x.kind} in one part and {y.kind} "
            "in the other; compute statistics with the same categorical=... for both"
        )
    ftype = x.type if x.type == y.type else _wider(x.type, y.type)
    merged = FeatureStatistics(
        name=name, type=ftype, kind=x.kind, count=x.count + y.count, missing=x.missing + y.missing
    )
    if x.numeric is not None and y.numeric is not None:
        merged.numeric = _merge_numeric(x, y)
    if x.categorical is not None and y.categorical is not None:
        merged.categorical = _merge_strings(x.categorical, y.categorical, x.count, y.count)
    return merged


def _wider(s: FeatureType, t: FeatureType) -> FeatureType:
    if {s, t} <= {FeatureType.INT, FeatureType.FLOAT}:
        return FeatureType.FLOAT
    return FeatureType.STRING


def _finite(f: FeatureStatistics) -> int:
    assert f.numeric is not None
    return f.count - f.numeric.infinite


def _merge_moments(x: FeatureStatistics, y: FeatureStatistics) -> tuple[float | None, float | None]:
    """Mean and sample std of the union (Chan, Golub & LeVeque's pairwise update)."""
    parts: list[tuple[int, float, float]] = []
    for f in (x, y):
        assert f.numeric is not None
        if _finite(f) and f.numeric.mean is not None:
            parts.append((_finite(f), f.numeric.mean, f.numeric.std or 0.0))
    n = sum(count for count, _, _ in parts)
    if not n:
        return None, None
    mean = sum(count * m for count, m, _ in parts) / n
    if n < 2:
        return stable(mean), None
    m2 = sum((count - 1) * sd**2 + count * (m - mean) ** 2 for count, m, sd in parts)
    return stable(mean), stable(math.sqrt(max(m2, 0.0) / (n - 1)))


def _merge_numeric(x: FeatureStatistics, y: FeatureStatistics) -> NumericStatistics:
    s, t = x.numeric, y.numeric
    assert s is not None and t is not None
    mean, std = _merge_moments(x, y)
    lows = [v for v in (s.min, t.min) if v is not None]
    highs = [v for v in (s.max, t.max) if v is not None]
    merged = NumericStatistics(
        mean=mean,
        std=std,
        min=min(lows) if lows else None,
        max=max(highs) if highs else None,
        zeros=s.zeros + t.zeros,
        infinite=s.infinite + t.infinite,
    )
    parts = [_Part(p, _finite(f)) for p, f in ((s, x), (t, y)) if _finite(f)]
    if not parts or merged.min is None or merged.max is None:
        return merged
    keys = [k for k in parts[0].stats.quantiles if all(k in p.stats.quantiles for p in parts)]
    candidates = sorted({v for p in parts for v in p.values()})
    for key in keys:
        value, error = _merged_quantile(float(key), parts, candidates)
        merged.quantiles[key] = value
        merged.quantile_rank_error = max(merged.quantile_rank_error, error)
    bins = max((len(p.stats.histogram.counts) for p in parts if p.stats.histogram), default=0)
    if bins:
        merged.histogram = _rebin(parts, _equal_edges(merged.min, merged.max, bins))
    return merged


class _Part:
    """What one part's statistics prove about its ``n`` finite values.

    Facts: ``#{x < min} = 0``, ``#{x <= max} = n``; at an edge ``e`` of an exact histogram,
    ``#{x < e}`` is known; at a quantile ``v`` (of ``q``, rank error ``eps``),
    ``#{x <= v} >= (q - eps) n`` and ``#{x < v} <= (q + eps) n``.
    """

    def __init__(self, stats: NumericStatistics, n: int) -> None:
        self.stats, self.n = stats, n
        self.below: dict[float, int] = {}  # exact #{x < e}
        for hist in (stats.histogram, stats.quantile_histogram):
            if hist is not None and hist.exact:
                running = 0
                for edge, count in zip(hist.edges, hist.counts, strict=False):
                    self.below[edge] = running
                    running += count
        assert stats.min is not None and stats.max is not None
        self.below[stats.min] = 0
        # Exact quantiles interpolate between neighbours: their rank is within one of q * n.
        eps = max(stats.quantile_rank_error, 1 / n)
        self.quantiles = [(v, float(k), eps) for k, v in stats.quantiles.items()]

    def values(self) -> list[float]:
        return [*self.below, *(v for v, _, _ in self.quantiles)]

    def bounds(self, w: float) -> tuple[float, float]:
        """(a lower bound of #{x < w}, an upper bound of #{x <= w})."""
        low, high = 0.0, float(self.n)
        for e, count in self.below.items():
            if e <= w:
                low = max(low, count)
            else:
                high = min(high, count)
        for v, q, eps in self.quantiles:
            if v < w:
                low = max(low, (q - eps) * self.n)
            elif v > w:
                high = min(high, (q + eps) * self.n)
        assert self.stats.min is not None and self.stats.max is not None
        if w > self.stats.max:
            low = float(self.n)
        if w < self.stats.min:
            high = 0.0
        return low, high


def _merged_quantile(q: float, parts: list[_Part], candidates: list[float]) -> tuple[float, float]:
    """The candidate whose merged rank interval is proven closest to ``q * n``, and the proof:
    the largest distance from ``q * n`` the true rank interval may have."""
    n = sum(p.n for p in parts)
    best = (candidates[0], math.inf)
    for v in candidates:
        bounds = [p.bounds(v) for p in parts]
        low, high = sum(b[0] for b in bounds), sum(b[1] for b in bounds)
        error = max(0.0, high - q * n, q * n - low) / n
        if error < best[1]:
            best = (v, error)
    return best[0], min(best[1], 1.0)


def _equal_edges(low: float, high: float, bins: int) -> list[float]:
    if low == high:
        low, high = low - 0.5, high + 0.5
    return [float(e) for e in np.linspace(low, high, bins + 1)]


def _rebin(parts: list[_Part], edges: list[float]) -> Histogram:
    """Counts in ``edges`` bins, each part's bins spread uniformly (largest remainder)."""
    total = np.zeros(len(edges) - 1)
    for part in parts:
        hist = part.stats.histogram
        if hist is None:
            continue
        for lo, hi, count in zip(hist.edges, hist.edges[1:], hist.counts, strict=False):
            total += count * _overlap(lo, hi, edges)
    floors = np.floor(total + 1e-9).astype(int)
    short = round(total.sum()) - int(floors.sum())
    for i in np.argsort(-(total - floors), kind="stable")[: max(short, 0)]:
        floors[i] += 1
    return Histogram(edges=edges, counts=[int(v) for v in floors], exact=False)


def _overlap(lo: float, hi: float, edges: list[float]) -> np.ndarray:
    """Share of [lo, hi] in each of ``edges``' bins (a point: all in the bin holding it)."""
    bounds = np.asarray(edges)
    share = np.zeros(len(edges) - 1)
    if hi <= lo:
        share[min(max(int(np.searchsorted(bounds, lo, "right")) - 1, 0), len(share) - 1)] = 1
        return share
    left, right = np.maximum(bounds[:-1], lo), np.minimum(bounds[1:], hi)
    return np.clip(right - left, 0, None) / (hi - lo)


def _merge_strings(
    s: StringStatistics, t: StringStatistics, n_s: int, n_t: int
) -> StringStatistics:
    counts: dict[str, int] = {}
    for vc in (*s.top, *t.top):
        counts[vc.value] = counts.get(vc.value, 0) + vc.count
    whole = len(s.top) >= s.distinct and len(t.top) >= t.distinct and s.distinct_is_exact
    whole = whole and t.distinct_is_exact
    k = max(len(s.top), len(t.top))
    top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:k]
    lengths = [(n, st.avg_length) for n, st in ((n_s, s), (n_t, t)) if n and st.avg_length]
    avg = sum(n * x for n, x in lengths) / sum(n for n, _ in lengths) if lengths else None
    return StringStatistics(
        distinct=len(counts) if whole else max(s.distinct, t.distinct, len(counts)),
        distinct_is_exact=whole,
        top=[ValueCount(value=v, count=c) for v, c in top],
        avg_length=avg,
    )


def _merge_label(x: LabelStatistics | None, y: LabelStatistics | None) -> LabelStatistics | None:
    if x is None or y is None:
        return x or y
    distribution = dict(x.distribution)
    for value, count in y.distribution.items():
        distribution[value] = distribution.get(value, 0) + count
    if len(distribution) > MAX_LABEL_CLASSES:
        return None
    ordered = dict(sorted(distribution.items(), key=lambda item: (-item[1], item[0])))
    ratio = max(ordered.values()) / min(ordered.values()) if ordered else 1.0
    return LabelStatistics(column=x.column, distribution=ordered, imbalance_ratio=ratio)
