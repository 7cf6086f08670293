"""HTML reports: self-contained, complete, escaped, small, deterministic."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pytest

from conveyor.data.report import render_statistics_html, render_validation_html
from conveyor.data.report_plots import score_bar_svg
from conveyor.data.statistics_model import (
    DatasetStatistics,
    FeatureStatistics,
    Histogram,
    LabelStatistics,
    NumericStatistics,
    SplitStatistics,
    StringStatistics,
    ValueCount,
)
from conveyor.data.validation_model import Anomaly, ValidationReport

EVIL = "<script>alert(1)</script>"
WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def numeric(name: str, values: Sequence[float], missing: int = 0) -> FeatureStatistics:
    data = np.asarray(values, dtype=float)
    counts, edges = np.histogram(data, bins=10)
    stats = NumericStatistics(
        mean=float(data.mean()),
        std=float(data.std(ddof=1)),
        min=float(data.min()),
        max=float(data.max()),
        zeros=int((data == 0).sum()),
        quantiles={"0.25": float(np.quantile(data, 0.25)), "0.5": float(np.median(data))},
        histogram=Histogram(edges=edges.tolist(), counts=counts.tolist()),
    )
    return FeatureStatistics(
        name=name, type="float", kind="numeric", count=len(data), missing=missing, numeric=stats
    )


def categorical(name: str, counts: dict[str, int], missing: int = 0) -> FeatureStatistics:
    top = [ValueCount(value=v, count=c) for v, c in sorted(counts.items(), key=lambda i: -i[1])]
    stats = StringStatistics(distinct=len(counts), top=top, avg_length=4.0)
    return FeatureStatistics(
        name=name,
        type="string",
        kind="categorical",
        count=sum(counts.values()),
        missing=missing,
        categorical=stats,
    )


def split(name: str, features: list[FeatureStatistics], positives: int) -> SplitStatistics:
    label = LabelStatistics(
        column="income",
        distribution={">50K": positives, "<=50K": 100 - positives},
        imbalance_ratio=(100 - positives) / positives,
    )
    return SplitStatistics(
        split=name, num_rows=100, features={f.name: f for f in features}, label=label
    )


def make_stats(shift: float = 0.0, span: int = 2, extra: int = 0) -> DatasetStatistics:
    rng = np.random.default_rng(span)

    def features() -> list[FeatureStatistics]:
        found = [
            numeric("age", rng.normal(40 + shift, 10, 100)),
            numeric(EVIL, rng.normal(0, 1, 100)),
            categorical("sex", {"Male": 67, "Female": 33}),
            categorical("price $ band", {"$100-$200": 40, "<b>bold</b>": 30, "_hidden": 30}),
        ]
        found += [numeric(f"x{i}", rng.normal(i, 1, 100)) for i in range(extra)]
        return found

    splits = {"train": split("train", features(), 24), "eval": split("eval", features(), 26)}
    return DatasetStatistics(dataset="census", span=span, label="income", splits=splits)


def assert_self_contained(page: str) -> None:
    lowered = page.lower()
    for forbidden in ("http://", "https://", "<script", "<link ", "<iframe", "<img", "@import"):
        assert forbidden not in lowered, forbidden
    assert "<svg" in page
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "duplicate element ids"


def test_statistics_page_is_self_contained_and_complete() -> None:
    stats = make_stats(span=3)
    page = render_statistics_html(stats, previous=make_stats(span=2), generated_at=WHEN)
    assert_self_contained(page)
    for name in ("age", "sex", "price $ band"):
        assert name in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold</b>" not in page
    assert "span 2 · train" in page  # the previous span is overlaid
    assert "2024-05-01 12:00:00 UTC" in page
    assert "Statistics: census span 3" in page
    assert page.count('<svg class="plot"') == 5  # four features + label


def test_statistics_page_is_deterministic_and_small() -> None:
    stats = make_stats(extra=16)  # 20 features
    first = render_statistics_html(stats, previous=make_stats(1.0, extra=16), generated_at=WHEN)
    again = render_statistics_html(stats, previous=make_stats(1.0, extra=16), generated_at=WHEN)
    assert first == again
    assert len(first.encode()) < 1_000_000


def test_statistics_without_values_or_splits_still_render() -> None:
    empty_feature = FeatureStatistics(
        name="empty",
        type="float",
        kind="numeric",
        count=0,
        missing=5,
        numeric=NumericStatistics(mean=None, std=None, min=None, max=None, zeros=0),
    )
    one_value = numeric("constant", [7.0] * 20)
    assert one_value.numeric is not None
    one_value.numeric.histogram = Histogram(edges=[7.0, 7.0], counts=[20])  # zero width
    stats = DatasetStatistics(
        splits={
            "all": SplitStatistics(
                split="all", num_rows=5, features={"empty": empty_feature, "constant": one_value}
            )
        }
    )
    page = render_statistics_html(stats, title="nothing much", generated_at=WHEN)
    assert "nothing to draw" in page and "100.0%" in page  # all missing
    assert "constant" in page and page.count('<svg class="plot"') == 1  # a spike at 7
    assert render_statistics_html(DatasetStatistics(splits={}), generated_at=WHEN)


def drift_entry(
    column: str, score: object, threshold: float, drifted: bool, higher: bool = True
) -> dict[str, object]:
    return {
        "column": column,
        "kind": "numeric",
        "method": "psi" if higher else "ks",
        "score": score,
        "threshold": threshold,
        "drifted": drifted,
        "higher_is_drift": higher,
        "reference_count": 100,
        "current_count": 100,
        "details": {},
    }


def failing_report() -> ValidationReport:
    anomalies = [
        Anomaly(kind="unexpected_column", feature=EVIL, severity="info", message=f"new {EVIL}"),
        Anomaly(
            kind="drift",
            feature="age",
            severity="error",
            message="psi 0.3 > 0.2",
            observed=0.3,
            expected=0.2,
        ),
        Anomaly(
            kind="missing_fraction",
            feature="sex",
            severity="warning",
            message="6% missing",
            observed=0.06,
            expected={"max": 0.05, "note": "<i>"},
        ),
        Anomaly(kind="empty_dataset", feature=None, severity="error", message="no rows"),
    ]
    drift = {
        "dataset_drifted": False,
        "share_drifted": 0.25,
        "drift_share_threshold": 0.5,
        "columns": {
            "sex": drift_entry("sex", 0.01, 0.1, False),
            "age": drift_entry("age", 0.3, 0.2, True),
            EVIL: drift_entry(EVIL, 0.001, 0.05, True, higher=False),
            "x": drift_entry("x", "inf", 0.2, True),
            "y": drift_entry("y", "nan", 0.2, False),
        },
        "skipped": {"when": "a date column"},
    }
    return ValidationReport(
        dataset="census", split="train", anomalies=anomalies, drift=drift, schema_source="curated"
    )


def test_validation_page_shows_verdict_anomalies_and_drift() -> None:
    report = failing_report()
    page = render_validation_html(
        report, statistics=make_stats(1.0, span=3), previous=make_stats(span=2), generated_at=WHEN
    )
    assert_self_contained(page)
    assert "FAILED" in page and "2 errors, 1 warning, 1 info" in page
    errors_at, info_at = page.index('<tr class="error"><td><span'), page.index('<tr class="info">')
    assert errors_at < info_at  # errors first
    assert "&lt;i&gt;" in page and "<i>" not in page
    drift = page[page.index("<h2>Drift</h2>") :]
    assert "3 of 5 compared features drifted" in drift and "Not compared: when" in drift
    assert drift.index(">age<") < drift.index(">sex<")  # drifted first
    assert "&lt; 0.05" in drift and "∞" in drift and "not computed" in drift
    assert 'fill="#c62828"' in drift and 'fill="#2e7d32"' in drift
    for name in ("age", "sex", "price $ band", "&lt;script&gt;alert(1)&lt;/script&gt;"):
        assert name in page
    assert 'class="flag-error"' in page  # the age plot is framed


def test_validation_page_that_passes_without_statistics() -> None:
    report = ValidationReport(dataset=None, split="eval", schema_source="inferred")
    page = render_validation_html(report, generated_at=WHEN)
    assert "PASSED" in page and "no anomalies" in page and "Validation: dataset/eval" in page
    assert "http" not in page and "<script" not in page


def test_validation_page_with_a_real_drift_report() -> None:
    pd = pytest.importorskip("pandas")
    from conveyor.data.drift import dataset_drift

    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"age": rng.normal(40, 10, 2000), "sex": rng.choice(["M", "F"], 2000)})
    current = pd.DataFrame({"age": rng.normal(48, 10, 2000), "sex": rng.choice(["M", "F"], 2000)})
    drift = dataset_drift(reference, current).to_dict()
    report = ValidationReport(dataset="census", split="train", drift=drift, skew=drift)
    page = render_validation_html(report, generated_at=WHEN)
    assert_self_contained(page)
    assert "Training/serving skew" in page
    assert page.count("drifted</span>") == 2  # age, in the drift and the skew tables


def test_score_bar() -> None:
    assert score_bar_svg(None, 0.1, False) == ""
    assert score_bar_svg(float("nan"), 0.1, False) == ""
    full = score_bar_svg(float("inf"), 0.2, True)
    assert 'width="160.0"' in full and "#c62828" in full
    half = score_bar_svg(0.1, 0.2, False)
    assert 'width="64.0"' in half and 'x1="128.0"' in half
