"""Drift metrics: TFDV's and Evidently's definitions, vectorised with numpy and scipy.

A metric is a :class:`DriftMethod`: a name, the column kinds it accepts, a default threshold,
which direction means drift, and a function of two :class:`DriftSample` objects returning
the score (and optional details). :data:`METHODS` holds them by name;
:func:`register_drift_method` adds one. :data:`SELECTORS` hold the methods that choose a
metric per column: ``auto`` (Evidently's default choice) and ``tfdv``.

Every formula, with the source it was checked against, is in ``docs/drift.md``. In short:

- ``psi``, ``jensenshannon``: Evidently's ``get_binned_data``: numeric columns with more than
  20 distinct reference values use Sturges bins over reference + current; otherwise one bin
  per value. PSI fills empty bins with an epsilon; the Jensen-Shannon distance (natural log)
  does not.
- ``wasserstein``: first Wasserstein distance divided by ``max(std(reference), 0.001)``.
- ``ks``, ``chisquare``, ``z``: p-values of the two-sample Kolmogorov-Smirnov test, Pearson's
  chi-square with expected counts from the reference scaled to the current size, and the
  two-proportion Z-test.
- ``linf``, ``js``: TFDV's L-infinity distance of category frequencies and its Jensen-Shannon
  divergence (log base 2, capped at 1) over aligned histograms.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow.compute as pc
from scipy import stats
from scipy.spatial import distance

from conveyor.data.drift_samples import KINDS, DriftSample, Kind, aligned_counts
from conveyor.data.errors import DriftError
from conveyor.exceptions import did_you_mean

__all__ = [
    "METHODS",
    "SELECTORS",
    "DriftMethod",
    "MethodResult",
    "Selector",
    "evidently_binned",
    "evidently_default_method",
    "register_drift_method",
    "tfdv_histogram_divergence",
    "wasserstein_sorted",
]

MethodResult = float | tuple[float, Mapping[str, Any]]
# A selector picks the method for one column: (kind, reference, current) -> (name, reason).
Selector = Callable[[Kind, DriftSample, DriftSample], tuple[str, str]]

KS_EXACT_MAX_N = 10_000  # scipy.stats.ks_2samp(method="auto") is exact up to this size
TFDV_BUCKETS = 10  # tfdv.StatsOptions(num_histogram_buckets=10)


@dataclass(frozen=True)
class DriftMethod:
    """A drift metric: how to score two samples and when the score means drift.

    Attributes:
        name: the name users pass as ``method=``.
        kinds: column kinds it accepts (``"numeric"``, ``"categorical"``).
        default_threshold: used when no threshold is given.
        higher_is_drift: True for distances (drift when the score is high), False for
            p-values (drift when the score is low).
        compute: ``compute(reference, current)`` returns the score, or
            ``(score, details)``.
        inclusive: whether a score equal to the threshold is drift (Evidently: ``>=`` for
            distances, ``<=`` for KS, ``<`` for chi-square and Z; TFDV: ``>``).
        title: a short human name.

    Example:
        >>> def mean_shift(ref, cur):
        ...     return abs(cur.values.mean() - ref.values.mean())
        >>> m = DriftMethod("mean_shift", frozenset({"numeric"}), 1.0, True, mean_shift)
        >>> m.is_drift(2.0, 1.0)
        True
    """

    name: str
    kinds: frozenset[Kind]
    default_threshold: float
    higher_is_drift: bool
    compute: Callable[[DriftSample, DriftSample], MethodResult] = field(repr=False)
    inclusive: bool = True
    title: str = ""

    def is_drift(self, score: float, threshold: float) -> bool:
        """Whether ``score`` crosses ``threshold`` in this method's direction (NaN: no)."""
        if math.isnan(score):
            return False
        if self.higher_is_drift:
            return score >= threshold if self.inclusive else score > threshold
        return score <= threshold if self.inclusive else score < threshold

    def run(self, reference: DriftSample, current: DriftSample) -> tuple[float, dict[str, Any]]:
        """Score the two samples; always returns ``(score, details)``."""
        result = self.compute(reference, current)
        if isinstance(result, tuple):
            score, details = result
            return float(score), dict(details)
        return float(result), {}


METHODS: dict[str, DriftMethod] = {}


def register_drift_method(method: DriftMethod, *, replace: bool = False) -> DriftMethod:
    """Add a drift method to :data:`METHODS`, so ``method=<name>`` finds it.

    Args:
        method: the method to add.
        replace: allow replacing a method of the same name (never a selector).

    Returns:
        The method, so this can wrap a definition.

    Example:
        >>> def mean_shift(ref, cur):
        ...     return abs(cur.values.mean() - ref.values.mean())
        >>> _ = register_drift_method(
        ...     DriftMethod("mean_shift", frozenset({"numeric"}), 1.0, True, mean_shift),
        ...     replace=True,
        ... )
        >>> "mean_shift" in METHODS
        True
        >>> del METHODS["mean_shift"]
    """
    if not method.name or not method.name.replace("_", "").replace("-", "").isalnum():
        raise DriftError(f"drift method name {method.name!r} must be letters, digits, _ or -")
    if method.name in SELECTORS:
        raise DriftError(f"{method.name!r} is a method selector and cannot be replaced")
    if method.name in METHODS and not replace:
        raise DriftError(
            f"a drift method named {method.name!r} exists; pass replace=True to replace it"
        )
    unknown = set(method.kinds) - set(KINDS)
    if unknown or not method.kinds:
        raise DriftError(f"drift method {method.name!r}: kinds must be some of {KINDS}")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> DriftMethod:
    """The registered method called ``name``; DriftError listing valid ones otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise DriftError(
            f"unknown drift method {name!r}{did_you_mean(name, [*METHODS, *SELECTORS])}"
        ) from None


# -- Evidently -------------------------------------------------------------------------


def evidently_binned(
    reference: DriftSample, current: DriftSample, *, fill_zeros: bool
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Evidently's ``get_binned_data``: shares of each side per bin.

    Numeric columns with more than 20 distinct reference values: Sturges bins
    (``np.histogram_bin_edges(reference + current, "sturges")``); otherwise one bin per
    distinct value of reference + current. With ``fill_zeros``, empty bins get
    ``min(nonzero share) / 1e6`` when that minimum is <= 0.0001, else 0.0001 (per side).
    """
    if reference.kind == "numeric" and not reference.n_unique_at_most(20):
        ref_counts, cur_counts, info = _sturges_counts(reference, current)
    else:
        _, ref_counts, cur_counts = aligned_counts(reference, current)
        info = {"binning": "values", "bins": len(ref_counts)}
    ref_share = ref_counts / reference.n
    cur_share = cur_counts / current.n
    if fill_zeros:
        ref_share, ref_eps = _fill_zeros(ref_share)
        cur_share, cur_eps = _fill_zeros(cur_share)
        info |= {"epsilon_reference": ref_eps, "epsilon_current": cur_eps}
    return ref_share, cur_share, info


def _sturges_counts(
    reference: DriftSample, current: DriftSample
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    # The same arithmetic as numpy's _get_bin_edges(bins="sturges") on the concatenation,
    # without building it; np.histogram's equal-width path then counts as the edges do.
    low = float(min(reference.values.min(), current.values.min()))
    high = float(max(reference.values.max(), current.values.max()))
    width = (high - low) / (np.log2(reference.n + current.n) + 1.0)
    bins = int(np.ceil((high - low) / width)) if width else 1
    edges = (low, high) if low != high else (low - 0.5, high + 0.5)
    bins = _fitting_bins(bins, edges)
    ref_counts = np.histogram(reference.values, bins=bins, range=edges)[0]
    cur_counts = np.histogram(current.values, bins=bins, range=edges)[0]
    return ref_counts, cur_counts, {"binning": "sturges", "bins": bins, "range": list(edges)}


def _fitting_bins(bins: int, edges: tuple[float, float]) -> int:
    """``bins``, or fewer when the range is too narrow (subnormal) for that many edges."""
    while bins > 1 and np.any(np.diff(np.linspace(edges[0], edges[1], bins + 1)) <= 0):
        bins //= 2
    return max(bins, 1)


def _fill_zeros(shares: np.ndarray) -> tuple[np.ndarray, float | None]:
    empty = shares == 0
    if not empty.any():
        return shares, None
    smallest = float(shares[~empty].min())
    epsilon = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return np.where(empty, epsilon, shares), epsilon


def _psi(reference: DriftSample, current: DriftSample) -> MethodResult:
    ref_share, cur_share, info = evidently_binned(reference, current, fill_zeros=True)
    return float(np.sum((ref_share - cur_share) * np.log(ref_share / cur_share))), info


def _jensenshannon(reference: DriftSample, current: DriftSample) -> MethodResult:
    ref_share, cur_share, info = evidently_binned(reference, current, fill_zeros=False)
    return float(distance.jensenshannon(ref_share, cur_share)), info


def wasserstein_sorted(u: np.ndarray, v: np.ndarray) -> float:
    """First Wasserstein distance of two sorted samples (``scipy.stats.wasserstein_distance``).

    Example:
        >>> wasserstein_sorted(np.array([0.0, 1.0]), np.array([1.0, 2.0]))
        1.0
    """
    n, m = len(u), len(v)
    if n == m:
        # Both empirical CDFs step at multiples of 1/n: the area between them is the mean
        # gap between order statistics.
        return float(np.mean(np.abs(u - v)))
    if n * m >= 2**62:  # the integer grid below would overflow
        both = np.concatenate([u, v])
        both.sort(kind="stable")
        u_cdf = np.searchsorted(u, both[:-1], side="right") / n
        v_cdf = np.searchsorted(v, both[:-1], side="right") / m
        return float(np.sum(np.abs(u_cdf - v_cdf) * np.diff(both)))
    # The same area, integrated over t in (0, 1] between the quantile functions, which
    # step at t = i/n and t = j/m. On the integer grid T = t*n*m those steps are i*m and
    # j*n; their merged order is known in closed form, so no search or sort is needed
    # (~7x faster than scipy's searchsorted on 1M values).
    i = np.arange(1, n + 1, dtype=np.int64)
    j = np.arange(1, m + 1, dtype=np.int64)
    grid = np.empty(n + m, dtype=np.int64)
    grid[(i - 1) + (i * m - 1) // n] = i * m
    grid[(j - 1) + (j * n) // m] = j * n
    widths = np.diff(grid, prepend=0)
    gaps = np.abs(u[(grid + (m - 1)) // m - 1] - v[(grid + (n - 1)) // n - 1])
    # Not np.dot: BLAS threads fight the column thread pool, and int x float is slow there.
    return float(np.sum(gaps * widths) / (n * m))


def _wasserstein(reference: DriftSample, current: DriftSample) -> MethodResult:
    distance_ = wasserstein_sorted(reference.sorted_values(), current.sorted_values())
    norm = max(float(np.std(reference.values)), 0.001)
    return distance_ / norm, {"distance": distance_, "reference_std": norm}


def _ks_statistic(u: np.ndarray, v: np.ndarray) -> float:
    both = np.concatenate([u, v])
    both.sort(kind="stable")
    u_cdf = np.searchsorted(u, both, side="right") / len(u)
    v_cdf = np.searchsorted(v, both, side="right") / len(v)
    return float(np.max(np.abs(u_cdf - v_cdf)))


def _ks(reference: DriftSample, current: DriftSample) -> MethodResult:
    n1, n2 = reference.n, current.n
    if max(n1, n2) <= KS_EXACT_MAX_N:
        result = stats.ks_2samp(reference.values, current.values)
        return float(result.pvalue), {"statistic": float(result.statistic), "mode": "exact"}
    # scipy's asymptotic branch (method="auto" above 10,000 values), on our sorted samples.
    statistic = _ks_statistic(reference.sorted_values(), current.sorted_values())
    m, n = sorted([float(n1), float(n2)], reverse=True)
    p_value = float(np.clip(stats.kstwo.sf(statistic, np.round(m * n / (m + n))), 0, 1))
    return p_value, {"statistic": statistic, "mode": "asymp"}


def _chisquare(reference: DriftSample, current: DriftSample) -> MethodResult:
    _, ref_counts, cur_counts = aligned_counts(reference, current)
    expected = ref_counts * (current.n / reference.n)
    with np.errstate(divide="ignore", invalid="ignore"):
        result = stats.chisquare(cur_counts, expected)
    return float(result.pvalue), {"statistic": float(result.statistic), "bins": len(ref_counts)}


def _z(reference: DriftSample, current: DriftSample) -> MethodResult:
    keys, ref_counts, cur_counts = aligned_counts(reference, current)
    if len(keys) == 1:  # one and the same value on both sides
        return 1.0, {"statistic": 0.0}
    first = int(pc.sort_indices(keys)[0].as_py())  # Evidently: sorted(keys)[0] vs the rest
    n1, n2 = reference.n, current.n
    p1 = float(n1 - ref_counts[first]) / n1
    p2 = float(n2 - cur_counts[first]) / n2
    pooled = float(p1 * n1 + p2 * n2) / (n1 + n2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    p_value = 2 * (1 - stats.norm.cdf(np.abs(z)))
    return float(p_value), {"statistic": float(z), "base_value": keys[first].as_py()}


# -- TFDV ------------------------------------------------------------------------------


def _linf(reference: DriftSample, current: DriftSample) -> MethodResult:
    keys, ref_counts, cur_counts = aligned_counts(reference, current)
    gaps = np.abs(ref_counts / ref_counts.sum() - cur_counts / cur_counts.sum())
    worst = int(np.argmax(gaps))
    return float(gaps[worst]), {"max_value": keys[worst].as_py(), "bins": len(keys)}


def _divergence_log2(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    """TFDV's JensenShannonDivergence: log base 2, 0 * log 0 = 0, capped at 1."""
    p = p_counts / p_counts.sum()
    q = q_counts / q_counts.sum()
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(p > 0, p * np.log2(p / m), 0.0)
        right = np.where(q > 0, q * np.log2(q / m), 0.0)
    return min(float(left.sum() + right.sum()) / 2, 1.0)


def tfdv_histogram(
    values: np.ndarray, buckets: int = TFDV_BUCKETS
) -> tuple[np.ndarray, np.ndarray]:
    """TFDV's standard histogram: equal-width buckets between this sample's min and max.

    Returns ``(edges, counts)``; a sample of one distinct value is a point bucket
    (``edges == [v, v]``).
    """
    low, high = float(values.min()), float(values.max())
    if low == high:
        return np.array([low, high]), np.array([float(len(values))])
    buckets = _fitting_bins(buckets, (low, high))
    counts, edges = np.histogram(values, bins=buckets, range=(low, high))
    return edges, counts.astype(np.float64)


def tfdv_histogram_divergence(
    first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray]
) -> float:
    """TFDV's JSD of two histograms after ``AlignHistograms`` (metrics.cc).

    Both are re-bucketed on the union of their boundaries assuming values spread uniformly
    inside each bucket; point buckets (low == high) are matched by value separately.
    """
    (e1, c1), (e2, c2) = first, second
    point1, point2 = e1[0] == e1[-1], e2[0] == e2[-1]
    regular = [e for e, point in ((e1, point1), (e2, point2)) if not point]
    union = np.union1d(*regular) if len(regular) == 2 else (regular[0] if regular else None)
    parts1, parts2 = [], []
    if union is not None:
        parts1.append(_rebucket(e1, c1, union) if not point1 else np.zeros(len(union) - 1))
        parts2.append(_rebucket(e2, c2, union) if not point2 else np.zeros(len(union) - 1))
    points = sorted({float(e[0]) for e, point in ((e1, point1), (e2, point2)) if point})
    for value in points:
        parts1.append(np.array([c1[0] if point1 and e1[0] == value else 0.0]))
        parts2.append(np.array([c2[0] if point2 and e2[0] == value else 0.0]))
    return _divergence_log2(np.concatenate(parts1), np.concatenate(parts2))


def _rebucket(edges: np.ndarray, counts: np.ndarray, union: np.ndarray) -> np.ndarray:
    cumulative = np.concatenate(([0.0], np.cumsum(counts)))
    return np.diff(np.interp(union, edges, cumulative))


def _tfdv_js(reference: DriftSample, current: DriftSample) -> MethodResult:
    if reference.kind == "categorical":
        _, ref_counts, cur_counts = aligned_counts(reference, current)
        return _divergence_log2(ref_counts, cur_counts), {"bins": len(ref_counts)}
    divergence = tfdv_histogram_divergence(
        tfdv_histogram(reference.values), tfdv_histogram(current.values)
    )
    return divergence, {"buckets": TFDV_BUCKETS}


# -- selectors -------------------------------------------------------------------------


def evidently_default_method(
    kind: Kind, reference: DriftSample, current: DriftSample
) -> tuple[str, str]:
    """Evidently's ``_get_default_stattest`` (legacy/calculations/stattests/registry.py).

    Returns the method name and the reason, e.g. ``("wasserstein", "numeric, > 1000 rows")``.
    """
    small = reference.n <= 1000
    size = "<= 1000" if small else "> 1000"
    if kind == "numeric":
        few = _union_unique_at_most(reference, current, 5)
        if not few:
            return ("ks" if small else "wasserstein"), f"numeric, {size} rows"
        if not small:
            return "jensenshannon", f"numeric with <= 5 values, {size} rows"
    values = _union_unique(reference, current)
    if small:
        name = "chisquare" if values > 2 else "z"
        return name, f"{kind} with {values} values, {size} rows"
    return "jensenshannon", f"{kind}, {size} rows"


def _union_unique_at_most(reference: DriftSample, current: DriftSample, limit: int) -> bool:
    if not (reference.n_unique_at_most(limit) and current.n_unique_at_most(limit)):
        return False
    return _union_unique(reference, current) <= limit


def _union_unique(reference: DriftSample, current: DriftSample) -> int:
    return len(aligned_counts(reference, current)[0])


def tfdv_method(kind: Kind, reference: DriftSample, current: DriftSample) -> tuple[str, str]:
    """TFDV's pairing: L-infinity for categorical columns, JS divergence for numeric ones."""
    return ("linf", "tfdv, categorical") if kind == "categorical" else ("js", "tfdv, numeric")


SELECTORS: dict[str, Selector] = {"auto": evidently_default_method, "tfdv": tfdv_method}

_BOTH: frozenset[Kind] = frozenset(KINDS)
_NUMERIC: frozenset[Kind] = frozenset({"numeric"})
_CATEGORICAL: frozenset[Kind] = frozenset({"categorical"})

for _method in (
    DriftMethod("psi", _BOTH, 0.1, True, _psi, title="PSI (Evidently)"),
    DriftMethod("jensenshannon", _BOTH, 0.1, True, _jensenshannon, title="Jensen-Shannon distance"),
    DriftMethod("wasserstein", _NUMERIC, 0.1, True, _wasserstein, title="Wasserstein (normed)"),
    DriftMethod("ks", _NUMERIC, 0.05, False, _ks, title="K-S p-value"),
    DriftMethod(
        "chisquare", _CATEGORICAL, 0.05, False, _chisquare, inclusive=False, title="chi-square p"
    ),
    DriftMethod("z", _CATEGORICAL, 0.05, False, _z, inclusive=False, title="Z-test p-value"),
    DriftMethod("linf", _CATEGORICAL, 0.1, True, _linf, inclusive=False, title="L-infinity"),
    DriftMethod("js", _BOTH, 0.1, True, _tfdv_js, inclusive=False, title="JS divergence (TFDV)"),
):
    METHODS[_method.name] = _method
