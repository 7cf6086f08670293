"""Drift metrics: agreement with scipy and Evidently, hand-worked TFDV/PSI vectors, properties."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial import distance

from conveyor.data.drift import (
    METHODS,
    ColumnDrift,
    DriftMethod,
    DriftReport,
    column_drift,
    dataset_drift,
    read_table,
    register_drift_method,
)
from conveyor.data.drift_methods import (
    tfdv_histogram,
    tfdv_histogram_divergence,
    wasserstein_sorted,
)
from conveyor.data.drift_samples import ColumnNotComparable, make_sample
from conveyor.data.errors import DataError, DataSourceError, DriftError, SchemaError
from conveyor.exceptions import ConveyorError

TOL = 1e-9


def close(got: float, want: float, tol: float = TOL) -> bool:
    return math.isclose(got, want, rel_tol=tol, abs_tol=1e-12)


def repeat(counts: dict[str, int]) -> list[str]:
    """["a"] * 10 + ["b"] * 20 + ... from {"a": 10, "b": 20, ...}."""
    return [value for value, n in counts.items() for _ in range(n)]


def modular(n: int, step: int, mod: int, scale: float, shift: float) -> np.ndarray:
    """Deterministic, platform-independent data: (i * step % mod) / scale + shift."""
    return (np.arange(n) * step % mod) / scale + shift


def letters(n: int, step: int, mod: int, fold: int = 0) -> np.ndarray:
    """Deterministic letters: "abcdefg"[i * step % mod (% fold)]."""
    codes = np.arange(n) * step % mod
    return np.array(list("abcdefg"))[codes % fold if fold else codes]


# -- agreement with Evidently 0.7.23 ----------------------------------------------------
# Golden values computed with evidently==0.7.23 (benchmarks/.venv-evidently), through
# evidently.legacy.calculations.stattests.registry.get_stattest(ref, cur, type, method)
# (method None = Evidently's default choice), on the same inputs as CASES below.

CASES = {
    "numeric_large": (modular(1500, 7919, 1000, 10.0, 0), modular(1300, 104729, 1200, 10.0, 3)),
    "numeric_small": (modular(400, 7919, 1000, 10.0, 0), modular(300, 104729, 1200, 10.0, 3)),
    "numeric_few": (modular(2000, 13, 4, 1.0, 0), modular(1800, 7, 5, 1.0, 0)),
    "numeric_near": (modular(1500, 7919, 1000, 10.0, 0), modular(1400, 7919, 1000, 10.0, 0.5)),
    "categorical": (letters(1200, 5, 7, fold=5), letters(900, 3, 7)),
    "categorical_small": (letters(500, 5, 7, fold=5), letters(450, 3, 7)),
    "categorical_near": (
        np.array(list("abcd"))[np.arange(3000) % 4],
        np.array(list("abcd"))[np.arange(2900) * 7 % 9 % 4],
    ),
    "binary_small": (
        np.array(["no", "yes"])[(np.arange(600) % 5 == 0).astype(int)],
        np.array(["no", "yes"])[(np.arange(500) % 3 == 0).astype(int)],
    ),
}

EVIDENTLY = {
    "numeric_large": {
        "auto": ("wasserstein", 0.44629035473781326, True),
        "psi": ("psi", 1.1072635028937623, True),
        "jensenshannon": ("jensenshannon", 0.24840224153114365, True),
        "wasserstein": ("wasserstein", 0.44629035473781326, True),
        "ks": ("ks", 7.915824062400961e-23, True),
    },
    "numeric_small": {
        "auto": ("ks", 2.8975391608995185e-06, True),
        "psi": ("psi", 1.3783234827084305, True),
        "jensenshannon": ("jensenshannon", 0.27076567608911584, True),
        "wasserstein": ("wasserstein", 0.45226694199634876, True),
        "ks": ("ks", 2.8975391608995185e-06, True),
    },
    "numeric_few": {
        "auto": ("jensenshannon", 0.27364532084863846, True),
        "psi": ("psi", 1.5640491119253044, True),
        "jensenshannon": ("jensenshannon", 0.27364532084863846, True),
        "wasserstein": ("wasserstein", 0.44721359549995787, True),
        "ks": ("ks", 1.2660013348416458e-33, True),
    },
    "numeric_near": {
        "auto": ("wasserstein", 0.017146965233610607, False),
        "psi": ("psi", 0.0007724153765124064, False),
        "jensenshannon": ("jensenshannon", 0.009825221661315735, False),
        "wasserstein": ("wasserstein", 0.017146965233610607, False),
        "ks": ("ks", 0.9999999999999993, False),
    },
    "categorical": {
        "auto": ("jensenshannon", 0.3511474023570806, True),
        "psi": ("psi", 2.271390212327238, True),
        "jensenshannon": ("jensenshannon", 0.3511474023570806, True),
        "chisquare": ("chisquare", 0.0, True),
        "z": ("z", 7.105427357601002e-15, True),
    },
    "categorical_small": {
        "auto": ("chisquare", 0.0, True),
        "psi": ("psi", 2.260723777337381, True),
        "jensenshannon": ("jensenshannon", 0.3503453779919509, True),
        "chisquare": ("chisquare", 0.0, True),
        "z": ("z", 9.647767984510836e-08, True),
    },
    "categorical_near": {
        "auto": ("jensenshannon", 0.06499082640564198, False),
        "psi": ("psi", 0.033878902388665574, False),
        "jensenshannon": ("jensenshannon", 0.06499082640564198, False),
        "chisquare": ("chisquare", 3.4215985523753814e-23, True),
        "z": ("z", 1.730615650785694e-12, True),
    },
    "binary_small": {
        "auto": ("z", 4.6708655188076875e-07, True),
        "psi": ("psi", 0.09328352159653108, False),
        "jensenshannon": ("jensenshannon", 0.10753251863157912, True),
        "chisquare": ("chisquare", 6.844060346519136e-14, True),
        "z": ("z", 4.6708655188076875e-07, True),
    },
}


@pytest.mark.parametrize(
    ("case", "method"),
    [(case, method) for case, methods in EVIDENTLY.items() for method in methods],
)
def test_matches_evidently(case: str, method: str) -> None:
    reference, current = CASES[case]
    want_method, want_score, want_drifted = EVIDENTLY[case][method]
    kind = "numeric" if case.startswith("numeric") else "categorical"
    result = column_drift(reference, current, kind=kind, method=method)
    assert result.method == want_method
    assert close(result.score, want_score)
    assert result.drifted is want_drifted


# -- agreement with scipy ---------------------------------------------------------------


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.mark.parametrize(("n1", "n2"), [(300, 250), (800, 800), (12_000, 15_000)])
def test_ks_matches_scipy(rng: np.random.Generator, n1: int, n2: int) -> None:
    # Up to 10,000 values scipy's exact p-value is used; above, our sorted-sample statistic
    # feeds scipy's asymptotic formula (kstwo.sf(D, round(n1*n2/(n1+n2)))).
    a, b = rng.normal(size=n1), rng.normal(0.05, 1.1, size=n2)
    want = stats.ks_2samp(a, b)
    got = column_drift(a, b, method="ks")
    assert close(got.score, want.pvalue)
    assert close(got.details["statistic"], want.statistic)


def test_ks_statistic_with_ties_matches_scipy(rng: np.random.Generator) -> None:
    a = rng.integers(0, 50, 20_000).astype(float)
    b = rng.integers(2, 52, 11_000).astype(float)
    want = stats.ks_2samp(a, b)
    got = column_drift(a, b, kind="numeric", method="ks")
    assert close(got.score, want.pvalue)
    assert close(got.details["statistic"], want.statistic)


def test_chisquare_matches_scipy_with_expected_from_reference() -> None:
    # Evidently: f_exp = reference counts * (len(current) / len(reference)).
    reference = repeat({"a": 50, "b": 30, "c": 20})
    current = repeat({"a": 40, "b": 40, "c": 35, "d": 5})
    f_obs = [40, 40, 35, 5]
    f_exp = [50 * 120 / 100, 30 * 120 / 100, 20 * 120 / 100, 0.0]
    with np.errstate(divide="ignore"):
        want = stats.chisquare(f_obs, f_exp)
    got = column_drift(reference, current, method="chisquare")
    assert close(got.score, want.pvalue)  # "d" never seen: expected 0, statistic inf, p 0
    no_new = column_drift(reference, repeat({"a": 45, "b": 40, "c": 35}), method="chisquare")
    assert close(no_new.score, stats.chisquare([45, 40, 35], [60.0, 36.0, 24.0]).pvalue)


def test_jensenshannon_matches_scipy_on_evidently_bins(rng: np.random.Generator) -> None:
    a, b = rng.normal(size=5000), rng.normal(0.3, size=4000)
    edges = np.histogram_bin_edges(np.concatenate([a, b]), bins="sturges")
    ref_share = np.histogram(a, edges)[0] / len(a)
    cur_share = np.histogram(b, edges)[0] / len(b)
    want = distance.jensenshannon(ref_share, cur_share)  # natural log, as Evidently
    got = column_drift(a, b, method="jensenshannon")
    assert close(got.score, want)
    assert got.details["bins"] == len(edges) - 1


def test_psi_matches_reimplementation_on_sturges_bins(rng: np.random.Generator) -> None:
    a, b = rng.normal(size=5000), rng.normal(0.5, size=3000)
    edges = np.histogram_bin_edges(np.concatenate([a, b]), bins="sturges")
    r = np.histogram(a, edges)[0] / len(a)
    c = np.histogram(b, edges)[0] / len(b)
    r = np.where(r == 0, r[r > 0].min() / 1e6 if r[r > 0].min() <= 1e-4 else 1e-4, r)
    c = np.where(c == 0, c[c > 0].min() / 1e6 if c[c > 0].min() <= 1e-4 else 1e-4, c)
    got = column_drift(a, b, method="psi")
    assert close(got.score, float(np.sum((r - c) * np.log(r / c))))


@pytest.mark.parametrize(("n1", "n2"), [(1000, 1000), (1000, 777), (5, 3), (1, 9)])
def test_wasserstein_matches_scipy_normed_by_reference_std(
    rng: np.random.Generator, n1: int, n2: int
) -> None:
    a, b = rng.exponential(size=n1), rng.exponential(1.3, size=n2)
    want = stats.wasserstein_distance(a, b) / max(np.std(a), 0.001)
    assert close(column_drift(a, b, method="wasserstein").score, want)


def test_wasserstein_norm_floor_for_constant_reference() -> None:
    # std(reference) == 0: Evidently divides by max(std, 0.001).
    got = column_drift(np.full(50, 2.0), np.full(40, 2.5), method="wasserstein")
    assert close(got.score, 0.5 / 0.001)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(-20, 20), min_size=1, max_size=60),
    st.lists(st.integers(-20, 20), min_size=1, max_size=60),
)
def test_wasserstein_sorted_matches_scipy_with_ties(xs: list[int], ys: list[int]) -> None:
    u, v = np.sort(np.array(xs, float) / 4), np.sort(np.array(ys, float) / 4)
    assert close(wasserstein_sorted(u, v), stats.wasserstein_distance(u, v))


# -- hand-worked vectors ------------------------------------------------------------------


def test_psi_hand_worked() -> None:
    # reference counts [10, 20, 70] -> shares r = [0.1, 0.2, 0.7]
    # current counts   [20, 20, 60] -> shares c = [0.2, 0.2, 0.6]
    # PSI = sum((r - c) * ln(r / c))
    #     = (0.1 - 0.2) ln(0.1/0.2) + 0 + (0.7 - 0.6) ln(0.7/0.6)
    #     = 0.1 ln 2 + 0.1 ln(7/6) = 0.0693147 + 0.0154151 = 0.0847298
    got = column_drift(
        repeat({"a": 10, "b": 20, "c": 70}), repeat({"a": 20, "b": 20, "c": 60}), method="psi"
    )
    assert close(got.score, 0.1 * math.log(2) + 0.1 * math.log(7 / 6))
    assert close(got.score, 0.0847298, tol=1e-6)
    assert got.drifted is False  # < 0.1


def test_psi_hand_worked_empty_bin_epsilon() -> None:
    # reference counts [0, 50, 50] -> r = [0, 0.5, 0.5]; the empty bin gets 0.0001 because
    # the smallest non-zero share (0.5) is above 0.0001 (else it would get that share / 1e6).
    # current counts [10, 40, 50] -> c = [0.1, 0.4, 0.5]
    # PSI = (0.0001 - 0.1) ln(0.0001/0.1) + (0.5 - 0.4) ln(0.5/0.4) + 0
    #     = 0.0999 ln 1000 + 0.1 ln 1.25 = 0.690085 + 0.022314 = 0.712400
    got = column_drift(
        repeat({"b": 50, "c": 50}), repeat({"a": 10, "b": 40, "c": 50}), method="psi"
    )
    assert close(got.score, 0.0999 * math.log(1000) + 0.1 * math.log(1.25))
    assert got.details["epsilon_reference"] == 0.0001
    assert got.drifted is True


def test_psi_epsilon_is_tiny_share_over_a_million() -> None:
    # reference: 1 "a" in 20,000 -> smallest share 0.00005 <= 0.0001, so empty bins get
    # 0.00005 / 1e6 = 5e-11.
    reference = repeat({"a": 1, "b": 19_999})
    got = column_drift(reference, repeat({"b": 10, "c": 10}), method="psi")
    assert close(got.details["epsilon_reference"], 5e-11)


def test_linf_hand_worked() -> None:
    # reference [10, 20, 70] of 100 -> [0.10, 0.20, 0.70]
    # current   [5, 5, 10] of 20    -> [0.25, 0.25, 0.50]
    # |diff| = [0.15, 0.05, 0.20] -> L-infinity = 0.20, at "c"
    got = column_drift(
        repeat({"a": 10, "b": 20, "c": 70}), repeat({"a": 5, "b": 5, "c": 10}), method="linf"
    )
    assert close(got.score, 0.20)
    assert got.details["max_value"] == "c"
    assert got.drifted is True  # > 0.1


def test_tfdv_js_categorical_hand_worked() -> None:
    # p = [0.5, 0.5, 0], q = [0, 0.5, 0.5], m = (p + q) / 2 = [0.25, 0.5, 0.25]
    # KL(p||m) = 0.5 log2(0.5/0.25) + 0.5 log2(0.5/0.5) = 0.5; KL(q||m) = 0.5 likewise
    # JSD = (0.5 + 0.5) / 2 = 0.5 (log base 2; 0 * log 0 terms are skipped, no epsilon)
    got = column_drift(repeat({"a": 5, "b": 5}), repeat({"b": 7, "c": 7}), method="js")
    assert close(got.score, 0.5)


def test_tfdv_js_is_capped_at_one_for_disjoint_values() -> None:
    assert column_drift(["a"] * 3, ["b"] * 4, method="js").score == 1.0


def test_tfdv_js_numeric_aligned_histograms_hand_worked() -> None:
    # reference [0, 10]: 10 buckets of width 1 on [0, 10] -> 1 in [0,1), 1 in [9,10]
    # current   [0, 20]: 10 buckets of width 2 on [0, 20] -> 1 in [0,2), 1 in [18,20]
    # Union of boundaries: 0,1,...,10,12,...,20 (15 buckets). Re-bucketing assumes values
    # spread uniformly in a bucket, so current's [0,2) splits into 0.5 + 0.5:
    #   p (reference): b[0,1) = 0.5, b[9,10) = 0.5
    #   q (current):   b[0,1) = 0.25, b[1,2) = 0.25, b[18,20) = 0.5
    #   m: b[0,1) = 0.375, b[1,2) = 0.125, b[9,10) = 0.25, b[18,20) = 0.25
    # KL(p||m) = 0.5 log2(0.5/0.375) + 0.5 log2(0.5/0.25)                  = 0.7075187
    # KL(q||m) = 0.25 log2(0.25/0.375) + 0.25 log2(0.25/0.125) + 0.5 log2(2) = 0.6037594
    # JSD = (0.7075187 + 0.6037594) / 2 = 0.6556391
    want = (0.5 * math.log2(4 / 3) + 0.5 + 0.25 * math.log2(2 / 3) + 0.25 + 0.5) / 2
    got = column_drift(np.array([0.0, 10.0]), np.array([0.0, 20.0]), method="js")
    assert close(got.score, want)
    assert close(got.score, 0.6556391, tol=1e-6)


def test_tfdv_point_buckets_are_matched_by_value() -> None:
    # A sample of one distinct value is a point bucket; equal points match, others do not.
    same = tfdv_histogram_divergence(
        tfdv_histogram(np.full(5, 3.0)), tfdv_histogram(np.full(9, 3.0))
    )
    other = tfdv_histogram_divergence(
        tfdv_histogram(np.full(5, 3.0)), tfdv_histogram(np.array([0.0, 10.0]))
    )
    assert same == 0.0
    assert other == 1.0


def test_z_test_hand_worked() -> None:
    # key0 = "a" (sorted first); shares of "not a": p1 = 60/100, p2 = 40/100
    # pooled P = (60 + 40) / 200 = 0.5; z = (0.6 - 0.4) / sqrt(0.25 * (1/100 + 1/100))
    #   = 0.2 / sqrt(0.005) = 2.8284271; p = 2 (1 - Phi(|z|)) = 0.0046777
    got = column_drift(repeat({"a": 40, "b": 60}), repeat({"a": 60, "b": 40}), method="z")
    z = 0.2 / math.sqrt(0.005)
    assert close(got.details["statistic"], z)
    assert close(got.score, 2 * (1 - stats.norm.cdf(z)))
    assert close(got.score, 0.0046777, tol=1e-4)


def test_wasserstein_hand_worked() -> None:
    # W([0,1,2,3], [1,2,3,4]) = 1 (every quantile moves by 1); std([0,1,2,3]) = sqrt(1.25)
    got = column_drift(np.array([0.0, 1, 2, 3]), np.array([1.0, 2, 3, 4]), method="wasserstein")
    assert close(got.score, 1 / math.sqrt(1.25))


# -- properties ---------------------------------------------------------------------------

numeric_lists = st.lists(
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), min_size=2, max_size=80
)
category_lists = st.lists(st.sampled_from(list("abcdef")), min_size=1, max_size=80)
DISTANCES = ["psi", "jensenshannon", "js"]


@settings(max_examples=60, deadline=None)
@given(numeric_lists)
def test_identical_numeric_samples_do_not_drift(values: list[float]) -> None:
    a = np.array(values)
    for method in [*DISTANCES, "wasserstein", "auto", "tfdv"]:
        result = column_drift(a, a.copy(), kind="numeric", method=method)
        if result.higher_is_drift:
            assert result.score == pytest.approx(0.0, abs=1e-12), method
        assert not result.drifted, method
    assert column_drift(a, a.copy(), method="ks").score == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(category_lists)
def test_identical_categorical_samples_do_not_drift(values: list[str]) -> None:
    for method in [*DISTANCES, "linf", "chisquare", "z", "auto"]:
        result = column_drift(values, list(values), method=method)
        if method == "chisquare" and len(set(values)) == 1:
            # One category: 0 degrees of freedom, scipy (and so Evidently) says NaN.
            assert math.isnan(result.score) and not result.drifted
            continue
        expected = 0.0 if result.higher_is_drift else 1.0
        assert result.score == pytest.approx(expected, abs=1e-12), method
        assert not result.drifted, method


@settings(max_examples=80, deadline=None)
@given(category_lists, category_lists)
def test_symmetric_categorical_metrics(a: list[str], b: list[str]) -> None:
    for method in ["psi", "jensenshannon", "js", "linf"]:
        forward = column_drift(a, b, method=method).score
        backward = column_drift(b, a, method=method).score
        assert forward == pytest.approx(backward, rel=1e-9, abs=1e-12), method


@pytest.mark.filterwarnings("ignore:ks_2samp. Exact calculation unsuccessful:RuntimeWarning")
@settings(max_examples=80, deadline=None)
@given(numeric_lists, numeric_lists)
def test_scores_in_range(a: list[float], b: list[float]) -> None:
    u, v = np.array(a), np.array(b)
    scores = {
        m: column_drift(u, v, kind="numeric", method=m).score
        for m in METHODS
        if m in {"psi", "jensenshannon", "wasserstein", "ks", "js"}
    }
    assert 0.0 <= scores["ks"] <= 1.0
    assert 0.0 <= scores["js"] <= 1.0
    assert 0.0 <= scores["jensenshannon"] <= math.sqrt(math.log(2)) + 1e-12
    assert scores["psi"] >= 0.0
    assert scores["wasserstein"] >= 0.0
    assert wasserstein_sorted(np.sort(u), np.sort(v)) == pytest.approx(
        wasserstein_sorted(np.sort(v), np.sort(u)), rel=1e-9, abs=1e-9
    )


@settings(max_examples=80, deadline=None)
@given(category_lists, category_lists)
def test_categorical_scores_in_range(a: list[str], b: list[str]) -> None:
    for method in ["chisquare", "z"]:
        score = column_drift(a, b, method=method).score
        assert 0.0 <= score <= 1.0 or (method == "chisquare" and set(a) == set(b) == {a[0]})
    assert 0.0 <= column_drift(a, b, method="linf").score <= 1.0
    assert 0.0 <= column_drift(a, b, method="js").score <= 1.0


# -- auto: Evidently's default choice ---------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "current", "kind", "method"),
    [
        (np.linspace(0, 1, 1001), np.linspace(0, 1, 50), "numeric", "wasserstein"),
        (np.linspace(0, 1, 1000), np.linspace(0, 1, 5000), "numeric", "ks"),  # <= 1000 rows
        (np.arange(2000) % 5 * 1.5, np.arange(100) % 5 * 1.5, "numeric", "jensenshannon"),
        (np.arange(900) % 4 * 0.5, np.arange(100) % 3 * 0.5, "numeric", "chisquare"),
        (np.arange(900) % 2 * 0.5, np.arange(100) % 2 * 0.5, "numeric", "z"),
        (np.arange(900) % 6 * 0.5, np.arange(100) % 6 * 0.5, "numeric", "ks"),  # 6 values
        (letters(1001, 1, 3), letters(10, 1, 3), "categorical", "jensenshannon"),
        (letters(1000, 1, 3), letters(10, 1, 3), "categorical", "chisquare"),
        (letters(1000, 1, 2), letters(10, 1, 2), "categorical", "z"),
        (letters(1000, 1, 1), letters(10, 1, 2), "categorical", "z"),  # 2 values in union
        (np.arange(500) % 2 == 0, np.arange(50) % 3 == 0, "categorical", "z"),  # booleans
        (np.arange(3000) % 10, np.arange(3000) % 10, "categorical", "jensenshannon"),  # ints
        (np.arange(3000) % 11, np.arange(3000) % 11, "numeric", "wasserstein"),  # 11 ints
    ],
)
def test_auto_picks_evidently_default(
    reference: np.ndarray, current: np.ndarray, kind: str, method: str
) -> None:
    result = column_drift(reference, current, method="auto")
    assert (result.kind, result.method) == (kind, method)
    assert result.details["selected_by"].startswith("auto: ")


def test_integer_kind_follows_current_cardinality() -> None:
    # Evidently 0.7 types a column from the current data: <= 10 distinct ints -> categorical.
    assert column_drift(np.arange(500), np.arange(500) % 10).kind == "categorical"
    assert column_drift(np.arange(500) % 10, np.arange(500)).kind == "numeric"


def test_tfdv_selector() -> None:
    assert column_drift(["a", "b"], ["b"], method="tfdv").method == "linf"
    assert column_drift(np.arange(50.0), np.arange(60.0), method="tfdv").method == "js"


# -- inputs ---------------------------------------------------------------------------------


def test_missing_values_are_dropped_and_counted() -> None:
    reference = pd.Series([1.0, np.nan, 3.0, np.inf, 5.0] * 10)
    current = pa.chunked_array([[1.0, None], [2.0, 3.0, -np.inf]])
    result = column_drift(reference, current, kind="numeric", method="wasserstein")
    assert (result.reference_count, result.current_count) == (30, 3)
    assert (result.details["missing_reference"], result.details["missing_current"]) == (20, 2)


def test_accepts_numpy_pandas_arrow_and_lists_alike() -> None:
    values = ["x", "y", "y", None, "z"]
    results = {
        column_drift(data, ["x", "y"], method="linf").score
        for data in (
            np.array(values, dtype=object),
            pd.Series(values),
            pd.Series(values, dtype="category"),
            pa.array(values),
            pa.chunked_array([values[:2], values[2:]]),
            values,
        )
    }
    assert len(results) == 1


# -- errors ---------------------------------------------------------------------------------


def test_unknown_method_suggests_the_closest() -> None:
    with pytest.raises(DriftError, match=r"unknown drift method 'wasserstien'.*'wasserstein'"):
        column_drift([1.0, 2.0], [1.0], method="wasserstien")


def test_unknown_method_lists_valid_ones() -> None:
    with pytest.raises(DriftError, match=r"unknown drift method 'zzz' \(valid: 'auto', 'chi"):
        column_drift([1.0, 2.0], [1.0], method="zzz")


def test_method_of_the_wrong_kind_names_column_and_alternatives() -> None:
    with pytest.raises(DriftError, match="'ks' works on numeric columns; column 'city' is categ"):
        column_drift(["a"], ["b"], column="city", method="ks")


def test_empty_side_is_an_error() -> None:
    with pytest.raises(ColumnNotComparable, match="'x' has no non-missing values in the current"):
        column_drift([1.0, 2.0], [None, np.nan], column="x", kind="numeric")


def test_strings_cannot_be_numeric() -> None:
    with pytest.raises(DriftError, match="column 'c' \\(reference\\) holds string values"):
        column_drift(["a"], ["b"], column="c", kind="numeric")


def test_type_change_between_sides_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="'n' holds int64 values in the reference data but"):
        column_drift(np.arange(5), ["a", "b"], column="n", kind="categorical")


def test_errors_belong_to_the_conveyor_tree() -> None:
    assert issubclass(DriftError, DataError)
    assert issubclass(DataError, ConveyorError)
    assert issubclass(DataSourceError, DataError)


# -- registry -------------------------------------------------------------------------------


@pytest.fixture
def mean_shift() -> Iterator[DriftMethod]:
    def compute(reference, current):  # type: ignore[no-untyped-def]
        return abs(float(current.values.mean() - reference.values.mean())), {"unit": "raw"}

    method = register_drift_method(
        DriftMethod("mean_shift", frozenset({"numeric"}), 1.0, True, compute)
    )
    yield method
    METHODS.pop("mean_shift", None)


def test_registered_method_is_usable_by_name(mean_shift: DriftMethod) -> None:
    result = column_drift(np.zeros(10), np.full(10, 2.0), method="mean_shift")
    assert (result.score, result.drifted, result.details["unit"]) == (2.0, True, "raw")
    report = dataset_drift(
        pd.DataFrame({"a": [0.0, 1.0]}), pd.DataFrame({"a": [5.0, 6.0]}), method="mean_shift"
    )
    assert report.columns["a"].method == "mean_shift"


def test_register_refuses_duplicates_and_selectors(mean_shift: DriftMethod) -> None:
    with pytest.raises(DriftError, match="'mean_shift' exists; pass replace=True"):
        register_drift_method(mean_shift)
    with pytest.raises(DriftError, match="'auto' is a method selector"):
        register_drift_method(DriftMethod("auto", frozenset({"numeric"}), 1.0, True, len))
    with pytest.raises(DriftError, match="kinds must be some of"):
        register_drift_method(DriftMethod("odd", frozenset({"text"}), 1.0, True, len))  # type: ignore[arg-type]


def test_thresholds_direction_and_inclusiveness() -> None:
    assert METHODS["psi"].is_drift(0.1, 0.1)  # Evidently: >=
    assert METHODS["ks"].is_drift(0.05, 0.05)  # Evidently: p <= threshold
    assert not METHODS["chisquare"].is_drift(0.05, 0.05)  # Evidently: p < threshold
    assert not METHODS["linf"].is_drift(0.1, 0.1)  # TFDV: >
    assert not METHODS["psi"].is_drift(float("nan"), 0.1)
    defaults = {name: (m.default_threshold, m.higher_is_drift) for name, m in METHODS.items()}
    assert defaults["psi"] == defaults["jensenshannon"] == defaults["wasserstein"] == (0.1, True)
    assert defaults["ks"] == defaults["chisquare"] == defaults["z"] == (0.05, False)


# -- dataset drift ----------------------------------------------------------------------------


@pytest.fixture
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    n = 1500
    reference = pd.DataFrame(
        {
            "age": modular(n, 7919, 80, 1.0, 18),
            "income": modular(n, 104729, 1000, 0.1, 0),
            "city": letters(n, 5, 7),
            "when": pd.date_range("2024-01-01", periods=n, freq="h"),
        }
    )
    current = reference.copy()
    current["age"] = current["age"] + 30  # shifted
    current["city"] = letters(n, 3, 4)  # shifted
    return reference, current


def test_dataset_drift_verdicts(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    report = dataset_drift(*frames)
    assert list(report.columns) == ["age", "income", "city"]
    assert report.drifted_columns == ["age", "city"]
    assert report.share_drifted == pytest.approx(2 / 3)
    assert report.dataset_drifted
    assert "when" in report.skipped and "timestamp" in report.skipped["when"]


def test_dataset_drift_from_files_and_tables(
    frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    reference, current = (f.drop(columns="when") for f in frames)
    reference.to_csv(tmp_path / "ref.csv", index=False)
    pq.write_table(pa.Table.from_pandas(current, preserve_index=False), tmp_path / "cur.parquet")
    from_files = dataset_drift(tmp_path / "ref.csv", str(tmp_path / "cur.parquet"))
    from_frames = dataset_drift(reference, pa.Table.from_pandas(current))
    assert from_files.to_dict() == from_frames.to_dict()


def test_per_column_methods_thresholds_and_categorical(
    frames: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    report = dataset_drift(
        *frames,
        columns=["age", "income", "city"],
        method={"*": "psi", "city": "linf"},
        thresholds={"income": 0.5, "*": 0.2},
        categorical=["age"],
        drift_share=0.9,
    )
    assert [c.method for c in report.columns.values()] == ["psi", "psi", "linf"]
    assert [c.threshold for c in report.columns.values()] == [0.2, 0.5, 0.2]
    assert report.columns["age"].kind == "categorical"
    assert not report.dataset_drifted  # 2 of 3 < 0.9


def test_missing_column_in_current_is_named(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reference, current = frames
    with pytest.raises(SchemaError, match="column 'city' is not in current"):
        dataset_drift(reference, current.drop(columns="city"))


def test_unknown_column_suggests_the_closest(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    with pytest.raises(SchemaError, match=r"column 'agee' is not in reference.*'age'"):
        dataset_drift(*frames, columns=["agee"])
    with pytest.raises(SchemaError, match="threshold given for column 'incom'"):
        dataset_drift(*frames, columns=["income"], thresholds={"incom": 0.1})


def test_named_unsupported_column_is_an_error(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    with pytest.raises(ColumnNotComparable, match="column 'when' has type timestamp"):
        dataset_drift(*frames, columns=["when"])


def test_bad_method_fails_before_reading(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    with pytest.raises(DriftError, match=r"unknown drift method 'pis'.*'psi'"):
        dataset_drift(*frames, method={"age": "pis"})


def test_report_round_trip_and_json(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    report = dataset_drift(*frames, method={"city": "chisquare"})
    data = report.to_dict()
    json.dumps(data, allow_nan=False)  # strict JSON: no NaN/Infinity literals
    again = DriftReport.from_dict(json.loads(json.dumps(data)))
    assert again.to_dict() == data
    assert again.columns["age"] == ColumnDrift.from_dict(data["columns"]["age"])


def test_empty_report_has_no_drift() -> None:
    report = DriftReport({})
    assert (report.share_drifted, report.dataset_drifted, report.drifted_columns) == (
        0.0,
        False,
        [],
    )


# -- reading files ------------------------------------------------------------------------------


def test_read_table_reads_only_the_columns_asked(tmp_path: Path) -> None:
    path = tmp_path / "data.tsv"
    path.write_text("a\tb\tc\n1\tx\t2.5\n2\ty\t3.5\n")
    table = read_table(path, columns=["c", "a"])
    assert table.column_names == ["c", "a"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "missing.csv: no such file"),
        ("empty.csv", b"", "empty.csv: the file is empty"),
        (
            "ragged.csv",
            b"a,b\n1,2\n3,4,5\n",
            "ragged.csv: cannot read as CSV, line 3: .*Expected 2 columns",
        ),
        (
            "latin1.csv",
            "a,b\n1,caf\xe9\n".encode("latin-1"),
            "latin1.csv: column 'b' is not .*UTF-8",
        ),
        ("bad.parquet", b"not parquet at all", "bad.parquet: cannot read as PARQUET"),
    ],
)
def test_read_errors_name_the_file(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataSourceError, match=message):
        read_table(path)


def test_numeric_sample_exposes_sorted_values() -> None:
    sample = make_sample(np.array([3.0, 1.0, 2.0]), "numeric")
    assert sample.sorted_values().tolist() == [1.0, 2.0, 3.0]
    assert sample.n_unique() == 3 and sample.n_unique_at_most(3)
