"""Validation: anomalies from statistics, exact counts from data, drift/skew, the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_schema import categorical, numeric, split

from conveyor.core.materializers import artifact_type_of, load_folder, materializer_for
from conveyor.data.errors import DataSourceError
from conveyor.data.schema import Comparator, FeatureSchema, Schema
from conveyor.data.statistics_model import DatasetStatistics, FeatureType
from conveyor.data.validation import (
    Violations,
    check_statistics,
    compare_distributions,
    count_violations,
    split_files,
    validate_dataset,
)
from conveyor.data.validation_model import Anomaly, AnomalyKind, Severity, ValidationReport

SCHEMA = Schema(
    label="income",
    features={
        "age": FeatureSchema(type="int", min=17, max=90),
        "hours": FeatureSchema(type="float", max_missing_fraction=0.1, required=False),
        "workclass": FeatureSchema(type="string", domain=["Private", "State-gov"]),
        "income": FeatureSchema(type="string", domain=["<=50K", ">50K"]),
    },
)


def kinds(anomalies: list[Anomaly]) -> list[tuple[str, str | None, str]]:
    return [(a.kind.value, a.feature, a.severity.value) for a in anomalies]


# -- statistics against the schema -------------------------------------------------------------


def test_clean_split_has_no_anomalies() -> None:
    stats = split(
        "train",
        numeric("age", 17, 90),
        numeric("hours", 1, 99, kind="float", missing=5),
        categorical("workclass", {"Private": 60, "State-gov": 40}),
        categorical("income", {"<=50K": 70, ">50K": 30}),
    )
    assert check_statistics(stats, SCHEMA) == []


def test_each_column_anomaly_with_its_severity() -> None:
    stats = split(
        "eval",
        numeric("age", 17, 90, kind="float"),  # type change
        categorical("workclass", {"Private": 60, "State-gov": 40}, missing=20),  # 20/120 missing
        categorical("country", {"US": 1}),  # unexpected
    )  # hours (optional) and income (the label) are absent
    found = check_statistics(stats, SCHEMA, split="eval")
    assert kinds(found) == [
        ("missing_column", "hours", "info"),
        ("label_missing", "income", "error"),
        ("unexpected_column", "country", "warning"),
        ("type_change", "age", "error"),
        ("missing_fraction", "workclass", "error"),
    ]
    assert all(a.split == "eval" for a in found)
    assert found[4].observed == pytest.approx(20 / 120) and found[4].expected == 0.0
    assert "20 values missing (16.7%), at most 0.0% allowed" in found[4].message


def test_strict_schema_makes_new_columns_errors_and_serving_data_may_lack_the_label() -> None:
    strict = SCHEMA.model_copy(update={"allow_new_columns": False})
    stats = split(
        "serving",
        numeric("age", 20, 30),
        categorical("workclass", {"Private": 1}),
        numeric("extra", 0, 1),
    )
    found = check_statistics(stats, strict, expect_label=False)
    assert kinds(found) == [
        ("missing_column", "hours", "info"),
        ("unexpected_column", "extra", "error"),
    ]


def test_empty_split_is_one_error() -> None:
    found = check_statistics(split("eval", rows=0), SCHEMA)
    assert kinds(found) == [("empty_dataset", None, "error")]


def test_estimates_from_statistics_without_data() -> None:
    # age histogram [0, 50) 50 values, [50, 100] 50 values; schema range [17, 90]:
    # 17/50 of the first bin and 10/50 of the second lie outside -> 17 + 10 = 27 of 100
    stats = split(
        "train",
        numeric("age", 0, 100),
        numeric("hours", 0, 1, kind="float"),
        categorical("workclass", {"Private": 90, "Self-emp": 7, "Never-worked": 3}),
        categorical("income", {"<=50K": 1}),
    )
    found = check_statistics(stats, SCHEMA)
    assert kinds(found) == [
        ("out_of_range", "age", "error"),
        ("unseen_categories", "workclass", "error"),
    ]
    assert found[0].observed == pytest.approx(0.27)
    assert found[1].observed == pytest.approx(0.10)
    assert "e.g. 'Self-emp', 'Never-worked'" in found[1].message


def test_exact_counts_replace_estimates_and_limits_apply() -> None:
    stats = split(
        "train",
        numeric("age", 0, 100),
        categorical("workclass", {"Private": 99, "Self-emp": 1}),
        categorical("income", {"<=50K": 1}),
    )
    counts = {"age": Violations(100, 2), "workclass": Violations(100, 0, 1, ["Self-emp"])}
    tolerant = SCHEMA.model_copy(deep=True)
    tolerant.features["workclass"].max_unseen_fraction = 0.01  # TFDV min_domain_mass 0.99
    found = check_statistics(stats, tolerant, counts)
    assert kinds(found) == [("missing_column", "hours", "info"), ("out_of_range", "age", "error")]
    assert found[1].message == "2 values (2.0%) outside [17, 90], at most 0.0% allowed"


# -- exact counts from data ----------------------------------------------------------------------


def test_count_violations_streams_parquet(tmp_path: Path) -> None:
    table = pa.table(
        {
            "age": pa.array([10, 20, 30, None, 95] * 3, pa.int64()),
            "workclass": pa.array(["Private", "Self-emp", None, "State-gov", "Other"] * 3),
            "income": pa.array(["<=50K"] * 15),
        }
    )
    pq.write_table(table, tmp_path / "part-0.parquet", row_group_size=4)
    pq.write_table(table, tmp_path / "part-1.parquet", row_group_size=4)
    counts = count_violations(tmp_path, SCHEMA)
    assert counts["age"] == Violations(checked=24, out_of_range=12)
    assert counts["workclass"].unseen == 12 and counts["workclass"].checked == 24
    assert sorted(counts["workclass"].unseen_examples) == ["Other", "Self-emp"]
    assert counts["income"].unseen == 0
    assert count_violations(table, SCHEMA)["age"].out_of_range == 6  # tables too


def test_count_violations_casts_codes_to_text() -> None:
    schema = Schema(features={"code": FeatureSchema(type="int", domain=["1", "2"])})
    found = count_violations(pa.table({"code": [1, 2, 3, 3, None]}), schema)
    assert found["code"] == Violations(checked=4, out_of_range=0, unseen=2, unseen_examples=["3"])


def test_split_files(tmp_path: Path) -> None:
    for name in ("train", "eval"):
        (tmp_path / f"split={name}").mkdir()
        pq.write_table(pa.table({"a": [1]}), tmp_path / f"split={name}" / "part-0.parquet")
    assert split_files(tmp_path, "eval") == [tmp_path / "split=eval" / "part-0.parquet"]
    with pytest.raises(DataSourceError, match=r"no split 'test' \(splits: eval, train\)"):
        split_files(tmp_path, "test")
    flat = tmp_path / "flat"
    flat.mkdir()
    pq.write_table(pa.table({"a": [1]}), flat / "data.parquet")
    assert split_files(flat, "train") == [flat / "data.parquet"]


# -- drift and skew ------------------------------------------------------------------------------


def census_table(rng: np.random.Generator, n: int, shift: float = 0.0) -> pa.Table:
    return pa.table(
        {
            "age": rng.integers(17, 60, n) + int(shift),
            "hours": rng.normal(40 + shift, 5, n),
            "workclass": rng.choice(["Private", "State-gov"], n, p=[0.7, 0.3]),
            "income": rng.choice(["<=50K", ">50K"], n, p=[0.75, 0.25]),
            "id": [f"id{i}" for i in range(n)],
        }
    )


def test_drift_is_an_error_only_with_a_threshold_in_the_schema() -> None:
    rng = np.random.default_rng(0)
    reference, current = census_table(rng, 2000), census_table(rng, 2000, shift=10)
    reference = reference.append_column("hours_id", reference.column("hours"))
    current = current.append_column("hours_id", current.column("hours"))
    schema = SCHEMA.model_copy(deep=True)
    schema.features["id"] = FeatureSchema(type="string")
    schema.features["hours_id"] = FeatureSchema(type="float", identifier=True)
    schema.features["age"].drift = Comparator(method="psi", threshold=0.2)
    report = compare_distributions(reference, current, schema, kind="drift")
    # neither the high-cardinality text nor the identifier is compared
    assert sorted(report.columns) == ["age", "hours", "income", "workclass"]
    assert report.columns["age"].method == "psi"
    assert set(report.drifted_columns) == {"age", "hours"}
    from conveyor.data.validation import drift_anomalies

    found = drift_anomalies(report, schema, "drift")
    assert kinds(found) == [("drift", "age", "error"), ("drift", "hours", "warning")]
    assert "psi" in found[0].message and "vs the previous span" in found[0].message
    assert "default threshold" in found[1].message


def test_skew_leaves_out_the_label() -> None:
    rng = np.random.default_rng(1)
    serving = census_table(rng, 500).drop_columns(["income"])
    report = compare_distributions(census_table(rng, 500), serving, SCHEMA, kind="skew")
    assert "income" not in report.columns and "age" in report.columns


# -- the whole dataset, the report --------------------------------------------------------------


def _dataset(folder: Path, tables: dict[str, pa.Table]) -> Path:
    for name, table in tables.items():
        (folder / f"split={name}").mkdir(parents=True)
        pq.write_table(table, folder / f"split={name}" / "part-0.parquet")
    return folder


def test_validate_dataset_covers_every_split_and_drift(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    schema = SCHEMA.model_copy(deep=True)
    schema.features["age"].max = 200
    schema.features["hours"].drift = Comparator(method="wasserstein", threshold=0.1)
    old = _dataset(tmp_path / "old", {"train": census_table(rng, 1000)})
    new = _dataset(
        tmp_path / "new", {"train": census_table(rng, 1000, 20), "eval": census_table(rng, 100)}
    )
    stats = DatasetStatistics(
        dataset="census",
        splits={
            "train": split(
                "train",
                numeric("age", 37, 79),
                numeric("hours", 40, 80, kind="float"),
                categorical("workclass", {"Private": 1}),
                categorical("income", {">50K": 1}),
            ),
            "eval": split("eval", rows=0),
        },
    )
    report = validate_dataset(stats, schema, data=new, previous=old)
    assert report.split == "train,eval" and report.dataset == "census"
    assert ("empty_dataset", None, "error") in kinds(report.anomalies)
    assert ("drift", "hours", "error") in kinds(report.anomalies)
    assert report.drift is not None and "hours" in report.drift["drifted_columns"]
    assert not report.ok and report.skew is None


def test_report_summary_is_bounded_and_ordered() -> None:
    anomalies = [
        Anomaly(kind="drift", feature=f"f{i}", severity="warning", message="drifted")
        for i in range(30)
    ]
    anomalies.append(
        Anomaly(kind="missing_column", feature="age", severity="error", message="missing")
    )
    report = ValidationReport(dataset="census", split="eval", anomalies=anomalies)
    lines = report.summary(max_lines=5).splitlines()
    assert lines[0] == "census/eval: 1 error, 30 warnings (schema: inferred)"
    assert lines[1].strip().startswith("error") and "age: missing" in lines[1]
    assert lines[-1] == "  ... and 26 more"
    assert len(lines) == 7
    assert not report.ok and len(report.errors) == 1 and len(report.warnings) == 30


def test_report_materializer_round_trips(tmp_path: Path) -> None:
    report = ValidationReport(
        dataset="census",
        split="train",
        anomalies=[
            Anomaly(
                kind=AnomalyKind.TYPE_CHANGE,
                feature="age",
                severity=Severity.ERROR,
                message="type is float, the schema says int",
                observed=FeatureType.FLOAT,
                expected="int",
                split="train",
            )
        ],
        drift={"drifted_columns": ["age"], "columns": {}},
    )
    assert artifact_type_of(ValidationReport) == "ValidationReport"
    entry = materializer_for(ValidationReport)
    properties = entry.get().save(report, tmp_path)
    assert properties == {
        "ok": False,
        "errors": 1,
        "warnings": 0,
        "anomalies": 1,
        "dataset": "census",
        "split": "train",
    }
    loaded = load_folder(entry, tmp_path, ValidationReport, "ValidationReport")
    assert loaded.anomalies[0].observed == "float"
    assert loaded.model_dump(mode="json") == report.model_dump(mode="json")
    assert '"format_version": 1' in (tmp_path / "report.json").read_text()
