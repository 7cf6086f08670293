"""Dataset statistics: exact agreement with pandas/numpy, the quantile bound, invariants,
splits, labels, bad input, merging and the materializer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor import Dataset
from conveyor.core.materializers import artifact_type_of, materializer_for
from conveyor.data.errors import DataError, DataSourceError, SchemaError
from conveyor.data.statistics import (
    DEFAULT_QUANTILES,
    StatisticsMaterializer,
    compute_dataset_statistics,
    compute_statistics,
    dataset_splits,
    merge_statistics,
)
from conveyor.data.statistics_model import (
    DatasetStatistics,
    FeatureKind,
    FeatureStatistics,
    FeatureType,
    SplitStatistics,
)

QUANTILES = list(DEFAULT_QUANTILES)


def mixed_frame(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Every kind of column, with NaN, nulls, zeros, ties, empty and non-ASCII strings."""
    rng = np.random.default_rng(seed)
    floats = rng.normal(3, 2, n)
    floats[rng.random(n) < 0.1] = np.nan
    floats[:5] = 0.0
    ints = pd.array(rng.integers(-5, 6, n), dtype="Int64")
    ints[rng.random(n) < 0.05] = pd.NA
    words = np.array(["a", "bb", "ccc", "", "é", "日本語"], dtype=object)
    strings = words[rng.integers(0, len(words), n)]
    strings[rng.random(n) < 0.08] = None
    return pd.DataFrame(
        {
            "x": floats,
            "k": ints,
            "s": strings,
            "flag": rng.random(n) < 0.3,
            "when": pd.to_datetime(rng.integers(0, 2 * 10**9, n), unit="s"),
            "y": rng.choice([0, 1, 2], n, p=[0.7, 0.2, 0.1]),
        }
    )


def ranks(values: np.ndarray, v: float) -> tuple[int, int]:
    """(#{x < v}, #{x <= v}) of sorted ``values``."""
    return int(np.searchsorted(values, v, "left")), int(np.searchsorted(values, v, "right"))


def rank_error(values: np.ndarray, q: float, v: float) -> float:
    low, high = ranks(values, v)
    n = len(values)
    return max(0.0, low - q * n, q * n - high) / n


def check_numeric_like_pandas(feature: FeatureStatistics, series: pd.Series, exact: bool) -> None:
    values = series.dropna().astype(float)
    s = feature.numeric
    assert s is not None
    assert feature.count == series.count()
    assert feature.missing == series.isna().sum()
    assert s.mean == pytest.approx(values.mean(), rel=1e-11)
    assert s.std == pytest.approx(values.std(ddof=1), rel=1e-11)
    assert (s.min, s.max) == (values.min(), values.max())
    assert s.zeros == (values == 0).sum()
    expected = np.histogram(values, bins=10)
    assert s.histogram is not None
    assert s.histogram.counts == expected[0].tolist()
    assert s.histogram.edges == expected[1].tolist()
    if exact:
        assert s.quantile_rank_error == 0.0
        got = [s.quantiles[repr(q)] for q in QUANTILES]
        assert got == pytest.approx(values.quantile(QUANTILES).tolist(), rel=1e-12, abs=1e-12)
    ordered = np.sort(values.to_numpy())
    # An exact quantile interpolates between two neighbours: within one rank of q * n.
    bound = s.quantile_rank_error if not exact else 1 / len(ordered)
    for key, v in s.quantiles.items():
        assert rank_error(ordered, float(key), v) <= bound + 1e-12


def check_categorical_like_pandas(feature: FeatureStatistics, series: pd.Series, k: int) -> None:
    s = feature.categorical
    assert s is not None
    present = series.dropna().astype(str)
    assert (feature.count, feature.missing) == (len(present), series.isna().sum())
    assert s.distinct == series.nunique() and s.distinct_is_exact
    counts = present.value_counts()
    expected = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:k]
    assert [(vc.value, vc.count) for vc in s.top] == expected
    assert s.avg_length == pytest.approx(present.str.len().mean(), rel=1e-12)


@pytest.mark.parametrize("kind", ["pandas", "arrow", "parquet", "csv"])
@pytest.mark.parametrize("exact", [True, False])
def test_agrees_with_pandas_on_small_data(tmp_path: Path, kind: str, exact: bool) -> None:
    frame = mixed_frame()
    source: object = frame
    if kind == "arrow":
        source = pa.Table.from_pandas(frame)
    elif kind in ("parquet", "csv"):
        source = tmp_path / f"data.{kind}"
        frame.drop(columns=["when"] if kind == "csv" else []).pipe(
            lambda f: f.to_parquet(source) if kind == "parquet" else f.to_csv(source, index=False)
        )
    stats = compute_statistics(source, top_k=4, exact_quantiles=exact)
    assert stats.num_rows == len(frame) and stats.split == "all"
    check_numeric_like_pandas(stats.features["x"], frame["x"], exact)
    check_numeric_like_pandas(stats.features["k"], frame["k"], exact)
    check_numeric_like_pandas(stats.features["y"], frame["y"], exact)
    if kind != "csv":  # CSV cannot tell a missing string from an empty one
        check_categorical_like_pandas(stats.features["s"], frame["s"], 4)
    flag = stats.features["flag"]
    assert (flag.type, flag.kind) == (FeatureType.BOOL, FeatureKind.CATEGORICAL)
    assert flag.categorical is not None
    assert {vc.value: vc.count for vc in flag.categorical.top} == {
        "true": int(frame.flag.sum()),
        "false": int((~frame.flag).sum()),
    }


def test_feature_types_and_kinds() -> None:
    stats = compute_statistics(mixed_frame(), categorical=["y"])
    kinds = {name: (f.type, f.kind) for name, f in stats.features.items()}
    assert kinds == {
        "x": (FeatureType.FLOAT, FeatureKind.NUMERIC),
        "k": (FeatureType.INT, FeatureKind.NUMERIC),
        "s": (FeatureType.STRING, FeatureKind.CATEGORICAL),
        "flag": (FeatureType.BOOL, FeatureKind.CATEGORICAL),
        "when": (FeatureType.DATETIME, FeatureKind.NUMERIC),
        "y": (FeatureType.INT, FeatureKind.CATEGORICAL),
    }
    assert list(stats.features) == list(mixed_frame().columns)  # column order


def test_datetimes_are_epoch_seconds() -> None:
    frame = mixed_frame()
    when = stats_of(frame).features["when"].numeric
    assert when is not None
    assert when.min == frame["when"].min().timestamp()
    assert when.max == frame["when"].max().timestamp()
    assert when.mean == pytest.approx(epoch_seconds(frame["when"]).mean(), rel=1e-11)


def epoch_seconds(series: pd.Series) -> pd.Series:
    return (series - pd.Timestamp(0)).dt.total_seconds()


def stats_of(frame: pd.DataFrame, **options: object) -> SplitStatistics:
    return compute_statistics(frame, **options)  # type: ignore[arg-type]


def test_nan_is_missing_and_infinities_are_counted_apart() -> None:
    frame = pd.DataFrame({"x": [1.0, np.nan, np.inf, -np.inf, 3.0, None]})
    x = stats_of(frame).features["x"]
    assert x.numeric is not None
    assert (x.count, x.missing, x.numeric.infinite) == (4, 2, 2)  # pandas: count 4
    assert (x.numeric.min, x.numeric.max, x.numeric.mean) == (1.0, 3.0, 2.0)
    json.loads(x.model_dump_json())  # JSON-safe: no infinity anywhere


def test_float_listed_as_categorical_treats_nan_as_missing() -> None:
    frame = pd.DataFrame({"code": [1.0, 2.0, 2.0, np.nan]})
    code = stats_of(frame, categorical=["code"]).features["code"]
    assert code.categorical is not None
    assert (code.count, code.missing, code.categorical.distinct) == (3, 1, 2)
    assert [(vc.value, vc.count) for vc in code.categorical.top] == [("2.0", 2), ("1.0", 1)]


def test_ties_in_top_k_are_broken_by_value() -> None:
    frame = pd.DataFrame({"c": ["b", "a", "c", "c", "d", "b", "a"]})
    c = stats_of(frame, top_k=3).features["c"].categorical
    assert c is not None
    assert [(vc.value, vc.count) for vc in c.top] == [("a", 2), ("b", 2), ("c", 2)]


def test_constant_column_histogram_matches_numpy() -> None:
    frame = pd.DataFrame({"x": [4.0] * 9})
    x = stats_of(frame).features["x"].numeric
    assert x is not None and x.histogram is not None
    counts, edges = np.histogram(frame["x"], bins=10)
    assert (x.histogram.counts, x.histogram.edges) == (counts.tolist(), edges.tolist())
    assert x.std == 0.0


def test_quantile_histogram_has_equal_mass_bins() -> None:
    frame = pd.DataFrame({"x": np.arange(1000.0)})
    x = stats_of(frame, bins=4).features["x"].numeric
    assert x is not None and x.quantile_histogram is not None
    assert x.quantile_histogram.edges == [0.0, 249.75, 499.5, 749.25, 999.0]
    assert x.quantile_histogram.counts == [250, 250, 250, 250]


# -- the quantile error bound ---------------------------------------------------------------


def large_frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    heavy = rng.lognormal(0, 2, n)
    heavy[rng.random(n) < 0.02] = np.nan
    return pd.DataFrame(
        {
            "normal": rng.normal(0, 1, n),
            "heavy": heavy,
            "sorted": np.arange(n, dtype=np.int64),  # the sample must not follow row order
            "ties": rng.poisson(1.0, n),
            "rounded": np.round(rng.exponential(20, n), 1),
        }
    )


@pytest.mark.parametrize("kind", ["parquet", "pandas"])
def test_estimated_quantiles_stay_within_the_stated_bound_on_1m_rows(
    tmp_path: Path, kind: str
) -> None:
    frame = large_frame(1_000_000)
    source: object = frame
    if kind == "parquet":
        source = tmp_path / "large.parquet"
        frame.to_parquet(source, row_group_size=100_000)
    stats = compute_statistics(source, threads=2)
    for name in frame.columns:
        s = stats.features[name].numeric
        assert s is not None
        assert s.quantile_rank_error <= 0.005, name  # docs/statistics.md: typically ~1e-3
        ordered = np.sort(frame[name].dropna().to_numpy(dtype=float))
        for key, v in s.quantiles.items():
            assert rank_error(ordered, float(key), v) <= s.quantile_rank_error + 1e-12, name
        assert s.histogram is not None and s.quantile_histogram is not None
        assert s.histogram.counts == np.histogram(ordered, bins=10)[0].tolist()
        edges = np.asarray(s.quantile_histogram.edges)
        below = np.searchsorted(ordered, edges[1:-1], "left")
        assert s.quantile_histogram.counts == np.diff([0, *below, len(ordered)]).tolist()


def test_statistics_are_deterministic(tmp_path: Path) -> None:
    path = tmp_path / "large.parquet"
    large_frame(300_000).to_parquet(path, row_group_size=30_000)
    runs = [
        compute_statistics(path, threads=threads, exact_quantiles=False).model_dump_json()
        for threads in (1, 2, 2)
    ]
    assert runs[0] == runs[1] == runs[2]


# -- invariants -------------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
cells = st.one_of(st.none(), st.just(float("nan")), finite, st.integers(-3, 3).map(float))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(cells, min_size=0, max_size=60),
    bins=st.integers(1, 12),
    exact=st.booleans(),
)
def test_invariants(values: list[float | None], bins: int, exact: bool) -> None:
    frame = pd.DataFrame({"x": pd.Series(values, dtype="float64")})
    frame["s"] = frame["x"].map(lambda v: None if pd.isna(v) else f"v{int(v) % 5}")
    stats = stats_of(frame, bins=bins, exact_quantiles=exact)
    for feature in stats.features.values():
        assert feature.count + feature.missing == stats.num_rows == len(values)
    x = stats.features["x"].numeric
    assert x is not None
    if stats.features["x"].count == 0:
        assert x.histogram is None and x.quantiles == {} and x.mean is None
        return
    assert x.min is not None and x.max is not None
    assert all(x.min <= v <= x.max for v in x.quantiles.values())
    assert list(x.quantiles.values()) == sorted(x.quantiles.values())
    for hist in (x.histogram, x.quantile_histogram):
        assert hist is not None
        assert sum(hist.counts) == stats.features["x"].count
        assert len(hist.edges) == len(hist.counts) + 1 == bins + 1
    s = stats.features["s"].categorical
    assert s is not None and sum(vc.count for vc in s.top) == stats.features["s"].count


# -- splits, labels ---------------------------------------------------------------------------


def write_splits(root: Path, frame: pd.DataFrame, splits: dict[str, slice]) -> None:
    for name, rows in splits.items():
        folder = root / f"split={name}"
        folder.mkdir(parents=True)
        frame.iloc[rows].to_parquet(folder / "part-0.parquet")


def test_dataset_statistics_per_split(tmp_path: Path) -> None:
    frame = mixed_frame(1000)
    write_splits(
        tmp_path, frame, {"eval": slice(800, 900), "train": slice(0, 800), "test": slice(900, 1000)}
    )
    (tmp_path / "_SUCCESS").write_text("")  # hidden: skipped
    stats = compute_dataset_statistics(Dataset.from_path(tmp_path), label="y")
    assert list(stats.splits) == ["train", "eval", "test"]
    assert [s.num_rows for s in stats.splits.values()] == [800, 100, 100]
    train = stats.split("train")
    assert "split" not in train.features and stats.label == "y"
    assert train.label is not None
    expected = frame.y.iloc[:800].astype(str).value_counts().to_dict()
    assert train.label.distribution == expected
    assert train.label.imbalance_ratio == max(expected.values()) / min(expected.values())
    check_numeric_like_pandas(train.features["x"], frame.x.iloc[:800], exact=True)


def test_folder_without_splits_is_one_split_all(tmp_path: Path) -> None:
    frame = mixed_frame(500)
    frame.iloc[:200].to_parquet(tmp_path / "a.parquet")
    (tmp_path / "more").mkdir()
    frame.iloc[200:].to_parquet(tmp_path / "more" / "b.parquet")
    stats = compute_dataset_statistics(tmp_path)
    assert list(stats.splits) == ["all"] and stats.split("all").num_rows == 500


def test_folder_mixing_split_folders_and_loose_files_is_refused(tmp_path: Path) -> None:
    write_splits(tmp_path, mixed_frame(100), {"train": slice(0, 50)})
    mixed_frame(100).to_parquet(tmp_path / "loose.parquet")
    with pytest.raises(DataSourceError, match=r"mixes split=NAME/ folders.*loose\.parquet"):
        dataset_splits(tmp_path)


def test_hive_partitions_become_columns(tmp_path: Path) -> None:
    for region in ("eu", "us"):
        (tmp_path / f"region={region}").mkdir()
        mixed_frame(100).to_parquet(tmp_path / f"region={region}" / "part-0.parquet")
    stats = compute_statistics(tmp_path)
    region = stats.features["region"].categorical
    assert region is not None and {vc.value for vc in region.top} == {"eu", "us"}


def test_label_distribution_for_a_string_label_and_a_regression_target() -> None:
    frame = pd.DataFrame({"y": ["a"] * 6 + ["b"] * 3 + [None], "z": np.arange(10) / 7})
    stats = stats_of(frame, label="y")
    assert stats.label is not None
    assert stats.label.distribution == {"a": 6, "b": 3}  # missing labels are left out
    assert stats.label.imbalance_ratio == 2.0
    many = pd.DataFrame({"z": np.arange(2000) / 7})
    assert stats_of(many, label="z").label is None  # > 1000 classes: a regression target


def test_unknown_label_or_categorical_column_is_named() -> None:
    with pytest.raises(SchemaError, match=r"label column 'lable' is not in .*did you mean 'label'"):
        stats_of(pd.DataFrame({"label": [1]}), label="lable")
    with pytest.raises(SchemaError, match=r"categorical column 'q' is not in"):
        stats_of(pd.DataFrame({"label": [1]}), categorical=["q"])


# -- bad input --------------------------------------------------------------------------------


def test_zero_row_file_gives_zero_row_statistics(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    mixed_frame(10).iloc[:0].to_parquet(path)
    stats = compute_statistics(path, label="y")
    assert stats.num_rows == 0
    x = stats.features["x"]
    assert (x.count, x.missing) == (0, 0)
    assert x.numeric is not None and x.numeric.mean is None and x.numeric.histogram is None
    assert stats.label is not None and stats.label.distribution == {}


def test_empty_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nothing.parquet"
    path.write_bytes(b"")
    with pytest.raises(DataSourceError, match=r"nothing\.parquet is empty \(0 bytes\)"):
        compute_statistics(path)


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    good = tmp_path / "good.parquet"
    mixed_frame(10).to_parquet(good)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really parquet at all PAR1")
    with pytest.raises(DataSourceError, match=r"bad\.parquet"):
        compute_statistics([good, bad])


def test_missing_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match=r"nope\.parquet does not exist"):
        compute_statistics(tmp_path / "nope.parquet")


def test_malformed_csv_names_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.csv"
    path.write_text("a,b\n1,2\n3\n")
    with pytest.raises(DataSourceError, match=r"broken\.csv.*line 3"):
        compute_statistics(path)


def test_unsupported_source_and_bad_options() -> None:
    with pytest.raises(DataSourceError, match="unsupported data source int"):
        compute_statistics(42)
    frame = pd.DataFrame({"x": [1.0]})
    with pytest.raises(DataError, match="bins must be at least 1"):
        stats_of(frame, bins=0)
    with pytest.raises(DataError, match=r"quantiles must lie in \[0, 1\], got 1.5"):
        stats_of(frame, quantiles=[0.5, 1.5])
    with pytest.raises(DataError, match="cannot configure DuckDB"):
        stats_of(frame, memory_limit="lots")


def test_threads_and_memory_limit_are_applied() -> None:
    stats = stats_of(mixed_frame(), threads=1, memory_limit="256MB")
    assert stats.features["x"].count == mixed_frame()["x"].count()


# -- merging ----------------------------------------------------------------------------------


def test_merge_is_exact_for_counts_moments_and_extremes() -> None:
    frame = mixed_frame(4000, seed=3)
    a, b = frame.iloc[:1500], frame.iloc[1500:]
    merged = merge_statistics(stats_of(a, label="y"), stats_of(b, label="y"))
    whole = stats_of(frame, label="y")
    assert merged.num_rows == whole.num_rows
    assert merged.label == whole.label
    for name, feature in whole.features.items():
        got = merged.features[name]
        assert (got.count, got.missing) == (feature.count, feature.missing), name
        if feature.numeric is not None:
            assert got.numeric is not None
            n, m = feature.numeric, got.numeric
            assert (m.min, m.max, m.zeros, m.infinite) == (n.min, n.max, n.zeros, n.infinite)
            assert m.mean == pytest.approx(n.mean, rel=1e-10)
            assert m.std == pytest.approx(n.std, rel=1e-10)
            column = epoch_seconds(frame[name]) if name == "when" else frame[name]
            ordered = np.sort(column.dropna().to_numpy(dtype=float))
            for key, v in m.quantiles.items():
                assert rank_error(ordered, float(key), v) <= m.quantile_rank_error + 1e-12
            assert m.histogram is not None and sum(m.histogram.counts) == feature.count
            assert not m.histogram.exact
    s = merged.features["s"].categorical
    assert s == whole.features["s"].categorical  # whole domain listed: exact


def test_merge_of_large_domains_is_marked_approximate() -> None:
    a = pd.DataFrame({"c": [f"a{i}" for i in range(50)]})
    b = pd.DataFrame({"c": [f"b{i}" for i in range(30)]})
    merged = merge_statistics(stats_of(a, top_k=5), stats_of(b, top_k=5))
    c = merged.features["c"].categorical
    assert c is not None
    assert not c.distinct_is_exact and c.distinct <= 80


def test_merge_handles_a_feature_missing_from_one_part() -> None:
    a = stats_of(pd.DataFrame({"x": [1.0, 2.0], "only_a": ["u", "v"]}))
    b = stats_of(pd.DataFrame({"x": [3.0]}))
    merged = merge_statistics(a, b)
    only = merged.features["only_a"]
    assert (only.count, only.missing) == (2, 1)


def test_merge_refuses_numeric_against_categorical() -> None:
    a = stats_of(pd.DataFrame({"x": [1, 2]}))
    b = stats_of(pd.DataFrame({"x": [1, 2]}), categorical=["x"])
    with pytest.raises(DataError, match=r"feature 'x' is numeric in one part and categorical"):
        merge_statistics(a, b)


# -- the artifact -----------------------------------------------------------------------------


def test_materializer_round_trip_and_properties(tmp_path: Path) -> None:
    stats = DatasetStatistics(
        label="y", splits={"train": stats_of(mixed_frame(200), label="y", split="train")}
    )
    assert artifact_type_of(DatasetStatistics) == "Statistics"
    assert materializer_for(DatasetStatistics).name == (
        "conveyor.data.statistics:StatisticsMaterializer"
    )
    properties = StatisticsMaterializer().save(stats, tmp_path)
    assert properties == {"splits": {"train": 200}, "num_features": 6, "label": "y"}
    assert [p.name for p in tmp_path.iterdir()] == ["statistics.json"]
    loaded = StatisticsMaterializer().load(tmp_path, DatasetStatistics)
    assert loaded == stats
    assert math.isclose(
        loaded.split("train").features["x"].numeric.mean,  # type: ignore[union-attr]
        stats.split("train").features["x"].numeric.mean,  # type: ignore[union-attr]
    )


def test_parquet_with_infinities_and_no_footer_statistics(tmp_path: Path) -> None:
    n = 1_000_000
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, n)
    x[::1000] = np.inf
    path = tmp_path / "inf.parquet"
    pq.write_table(pa.table({"x": x, "y": rng.normal(0, 1, n)}), path, write_statistics=["y"])
    stats = compute_statistics(path)
    s = stats.features["x"].numeric
    assert s is not None and s.infinite == 1000 and s.max is not None and math.isfinite(s.max)
    finite_x = np.sort(x[np.isfinite(x)])
    assert s.histogram is not None
    assert s.histogram.counts == np.histogram(finite_x, bins=10)[0].tolist()
    assert stats.features["y"].numeric is not None


@pytest.mark.parametrize("road", ["scan", "duckdb"])
@pytest.mark.parametrize(
    "shift", [(-1.0, 0.0), (0.0, 1.0), (0.5, 0.0), (0.0, -0.5), (1.0, 0.0), (0.0, -1.0)]
)
def test_wrong_footer_ranges_are_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shift: tuple[float, float], road: str
) -> None:
    """Whether the Parquet columns are scanned directly (``ties`` is then tallied, and a
    footer range narrower than its values sends it through the sample) or through DuckDB."""
    import conveyor.data.statistics_numeric as numeric

    frame = large_frame(1_000_000)[["normal", "ties"]]
    path = tmp_path / "data.parquet"
    frame.to_parquet(path)
    honest = numeric.known_ranges

    def lying(src: object, columns: object) -> dict[int, tuple[float, float]]:
        ranges = honest(src, columns)  # type: ignore[arg-type]
        return {i: (low + shift[0], high + shift[1]) for i, (low, high) in ranges.items()}

    monkeypatch.setattr(numeric, "known_ranges", lying)
    if road == "duckdb":
        monkeypatch.setattr(numeric, "parquet_scan", lambda *args: (None, []))
    stats = compute_statistics(path)
    for name in frame.columns:
        s = stats.features[name].numeric
        assert s is not None and s.histogram is not None
        assert (s.min, s.max) == (frame[name].min(), frame[name].max())
        assert s.zeros == (frame[name] == 0).sum()
        assert s.histogram.counts == np.histogram(frame[name], bins=10)[0].tolist()


def test_a_zero_minimum_is_reported_as_zero_not_minus_zero(tmp_path: Path) -> None:
    path = tmp_path / "zeros.parquet"
    pd.DataFrame({"x": np.r_[np.zeros(10), np.arange(1_000_000.0)]}).to_parquet(path)
    x = compute_statistics(path).features["x"].numeric
    assert x is not None and x.min == 0.0 and math.copysign(1.0, x.min) == 1.0
    assert x.zeros == 11


# -- the direct Parquet scan (statistics_scan) ------------------------------------------------


def awkward_parts(seed: int = 3) -> list[pa.Table]:
    """Three files' worth of numeric columns that a direct scan must read as DuckDB does:
    nulls and NaN, +-inf, -0.0, narrow and unsigned integers (``i8`` and ``codes`` span few
    values: they are tallied), a column that is an integer in one file and a float in
    another, a column missing from one file, one null in every row of a file, and a name
    with a dot (left to DuckDB)."""
    rng = np.random.default_rng(seed)
    parts = []
    for k, n in enumerate([150_000, 70_000, 30_001]):
        x = rng.normal(5, 3, n)
        x[rng.random(n) < 0.05] = np.nan
        x[::997] = np.inf
        x[1::1499] = -np.inf
        x[2::101] = -0.0
        x[3::103] = 0.0
        columns: dict[str, pa.Array] = {
            "x": pa.array(x, mask=rng.random(n) < 0.03),
            "f32": pa.array(rng.lognormal(0, 2, n).astype(np.float32), mask=rng.random(n) < 0.1),
            "i8": pa.array(rng.integers(-128, 128, n).astype(np.int8), mask=rng.random(n) < 0.2),
            "u64": pa.array(rng.integers(2**62, 2**64 - 1, n, dtype=np.uint64)),
            "mixed": pa.array(rng.poisson(3, n).astype(np.float64 if k == 1 else np.int32)),
            "a.b": pa.array(rng.normal(0, 1, n)),
            "empty": pa.nulls(n, pa.float64()) if k == 0 else pa.array(rng.normal(0, 1, n)),
        }
        codes = (rng.poisson(4, n) + 100).astype(np.uint8)
        columns["codes"] = pa.array(codes, mask=rng.random(n) < 0.05)
        if k != 2:
            columns["partial"] = pa.array(np.arange(n, dtype=np.int64) * (k + 1))
        parts.append(pa.table(columns))
    return parts


def write_awkward(folder: Path) -> list[pa.Table]:
    parts = awkward_parts()
    folder.mkdir()
    for k, (table, group) in enumerate(zip(parts, [100_000, 16_384, 30_001], strict=True)):
        pq.write_table(table, folder / f"part-{k}.parquet", row_group_size=group)
    return parts


AWKWARD = ["x", "f32", "i8", "u64", "mixed", "a.b", "empty", "codes", "partial"]
TALLIED = {"i8", "codes"}  # integer columns whose footers give a small range


def check_awkward(stats: SplitStatistics, parts: list[pa.Table], exact: set[str]) -> None:
    """Every statistic of the awkward columns against numpy; quantiles exact for ``exact``."""
    for name in AWKWARD:
        raw = [
            t.column(name).to_numpy(zero_copy_only=False).astype(float)
            for t in parts
            if name in t.column_names
        ]
        values = np.concatenate(raw) if raw else np.empty(0)
        finite = np.sort(values[np.isfinite(values)])
        feature = stats.features[name]
        s = feature.numeric
        assert s is not None, name
        assert feature.count == np.count_nonzero(~np.isnan(values)), name
        assert s.infinite == np.count_nonzero(np.isinf(values)), name
        assert (s.min, s.max) == (finite[0], finite[-1]), name
        assert s.zeros == np.count_nonzero(finite == 0), name
        assert s.mean == pytest.approx(finite.mean(), rel=1e-11), name
        assert s.std == pytest.approx(finite.std(ddof=1), rel=1e-9), name
        assert s.histogram is not None and s.quantile_histogram is not None, name
        counts, edges = np.histogram(finite, bins=10)
        assert (s.histogram.counts, s.histogram.edges) == (counts.tolist(), edges.tolist()), name
        below = np.searchsorted(finite, s.quantile_histogram.edges[1:-1], "left")
        assert s.quantile_histogram.counts == np.diff([0, *below, len(finite)]).tolist(), name
        for key, v in s.quantiles.items():
            assert rank_error(finite, float(key), v) <= s.quantile_rank_error + 1e-12, name
        assert s.quantile_rank_error <= 0.005, name
        if name in exact:
            assert s.quantile_rank_error == 0.0, name
            got = [s.quantiles[repr(q)] for q in QUANTILES]
            assert got == pytest.approx(np.quantile(finite, QUANTILES), rel=1e-12), name


def test_direct_scan_agrees_with_numpy(tmp_path: Path) -> None:
    from conveyor.data.statistics_scan import parquet_scan

    parts = write_awkward(tmp_path / "data")
    files = sorted((tmp_path / "data").iterdir())
    rows = sum(len(t) for t in parts)
    scan, scanned = parquet_scan(files, list(enumerate(AWKWARD)), 2, rows)
    assert [AWKWARD[i] for i in scanned] == [n for n in AWKWARD if n != "a.b"]  # a.b: DuckDB
    assert scan is not None
    assert {AWKWARD[i] for i in scan.integers} == TALLIED | {"u64", "partial"}
    stats = compute_statistics(tmp_path / "data", exact_quantiles=False, threads=2)
    check_awkward(stats, parts, exact=TALLIED)


def test_tallied_columns_whose_footers_lie_are_sampled_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import conveyor.data.statistics_numeric as numeric

    parts = write_awkward(tmp_path / "data")
    honest = numeric.known_ranges

    def narrow(src: object, columns: object) -> dict[int, tuple[float, float]]:
        ranges = honest(src, columns)  # type: ignore[arg-type]
        return {i: (low + 1, high) for i, (low, high) in ranges.items()}

    monkeypatch.setattr(numeric, "known_ranges", narrow)
    stats = compute_statistics(tmp_path / "data", exact_quantiles=False, threads=2)
    check_awkward(stats, parts, exact=set())


def test_direct_scan_gives_what_duckdb_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same sample (rows whose number in their file is a multiple of the stride), hence the
    same estimates, the same exact counts; moments equal up to rounding."""
    import conveyor.data.statistics_numeric as numeric

    write_awkward(tmp_path / "data")
    scanned = compute_statistics(tmp_path / "data", exact_quantiles=False, threads=2)
    monkeypatch.setattr(numeric, "parquet_scan", lambda *args: (None, []))
    duck = compute_statistics(tmp_path / "data", exact_quantiles=False, threads=2)
    for name, feature in duck.features.items():
        ours, theirs = scanned.features[name].numeric, feature.numeric
        assert ours is not None and theirs is not None, name
        assert scanned.features[name].count == feature.count, name
        for field in ("mean", "std"):
            assert getattr(ours, field) == pytest.approx(getattr(theirs, field), rel=1e-10), name
        rest = {"mean", "std"}
        if name in TALLIED:  # exact quantiles here, estimates there
            rest |= {"quantiles", "quantile_rank_error", "quantile_histogram"}
        assert ours.model_dump(exclude=rest) == theirs.model_dump(exclude=rest), name


@pytest.mark.parametrize("arrow_type", [pa.int8(), pa.uint64(), pa.float16(), pa.float64()])
def test_direct_scan_reads_arrow_buffers_with_offsets_and_nulls(
    arrow_type: pa.DataType, monkeypatch: pytest.MonkeyPatch
) -> None:
    import conveyor.data.statistics_scan as scan
    from conveyor.data.statistics_scan import _blocks, _picked, _raw

    monkeypatch.setattr(scan, "SORT_ROWS", 61)  # blocks that start mid-byte of the bitmap
    rng = np.random.default_rng(5)
    values = pa.array(rng.integers(0, 100, 1000), mask=rng.random(1000) < 0.3).cast(arrow_type)
    for array in (values, values.slice(3, 500), values.slice(17, 301), values.dictionary_encode()):
        expected = array.to_numpy(zero_copy_only=False).astype(float)
        raw, valid = _raw(array)
        got = raw.astype(float)
        if valid is not None:
            got[~valid] = np.nan
        assert np.array_equal(got, expected, equal_nan=True)
        positions = np.arange(2, len(array), 7)
        assert np.array_equal(_picked(array, positions), expected[positions], equal_nan=True)
        blocks = []
        for part, valid_part in _blocks(array):
            block = part.astype(float)
            if valid_part is not None:
                block[~valid_part] = np.nan
            blocks.append(block)
        assert np.array_equal(np.concatenate(blocks), expected, equal_nan=True)
