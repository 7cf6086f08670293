"""A real pipeline: ingest -> statistics -> infer_schema -> validate -> train, span by span.

Span 1 is clean and gives the schema; it is then curated (a drift threshold on ``age``).
Span 2 is clean: validate passes and train runs. Span 3 is bad (ages shifted, a new
category, an extra column): validate fails with a readable summary and its HTML report,
train is skipped, and the datasets of the earlier runs are untouched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import conveyor
from conveyor.config import load_settings
from conveyor.core.loader import load_pipeline
from conveyor.data.schema import Comparator, Schema, load_schema, save_schema
from conveyor.store.metadata.records import ExecutionStatus, RunStatus
from conveyor.store.workspace import Workspace

PIPELINE = """
from conveyor import Dataset, component, pipeline
from conveyor.components import infer_schema, ingest, statistics, validate
from conveyor.data.validation_model import ValidationReport


@component
def train(data: Dataset, report: ValidationReport) -> dict:
    return {"rows": data.properties["num_rows"], "warnings": len(report.warnings)}


@pipeline
def checks(current: str, previous: str = "", curated: str = "") -> None:
    data = ingest(source=current, name="census", key="id")
    stats = statistics(data, label="income")
    schema = infer_schema(stats, curated=curated or None, identifiers=["id"])
    if previous:
        before = ingest(source=previous, name="census", key="id")
        report = validate(stats, schema, data, previous=before)
    else:
        report = validate(stats, schema, data)
    train(data, report)
"""


def census(n: int, seed: int, *, start: int = 0, bad: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "id": np.arange(start, start + n),
            "age": rng.integers(17, 80, n) + (30 if bad else 0),
            "hours": rng.normal(40, 8, n).round(1),
            "workclass": rng.choice(["Private", "State-gov", "Self-emp"], n, p=[0.6, 0.2, 0.2]),
            "income": rng.choice(["<=50K", ">50K"], n, p=[0.75, 0.25]),
        }
    )
    if bad:
        frame.loc[: n // 10, "workclass"] = "Never-worked"
        frame["country"] = "US"
    return frame


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for span, frame in enumerate(
        [census(1500, 1), census(1500, 2, start=1500), census(1500, 3, start=3000, bad=True)], 1
    ):
        folder = tmp_path / "landing" / f"span={span}"
        folder.mkdir(parents=True)
        frame.to_csv(folder / "data.csv", index=False)
    (tmp_path / "checks.py").write_text(PIPELINE)
    return tmp_path


def run(project: Path, **params: str) -> conveyor.api.RunResult:  # type: ignore[name-defined]
    pipeline = load_pipeline(str(project / "checks.py"), reload=True)
    return conveyor.run(pipeline, home=project / "home", **params)


@pytest.mark.slow
def test_bad_span_stops_the_pipeline_before_training(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)  # the curated schema's path is relative to the project
    span = {n: str(project / "landing" / f"span={n}") for n in (1, 2, 3)}
    first = run(project, current=span[1])
    assert first.ok, first.error
    assert first.step_status["train"] == ExecutionStatus.SUCCEEDED

    workspace = Workspace.open(load_settings(home=project / "home"))
    try:
        [record] = workspace.metadata.list_artifacts(type_name="Schema")
        with workspace.artifacts.local_folder(record.uri) as folder:
            inferred = load_schema(folder / "schema.yaml")
        assert inferred.label == "income" and inferred.features["id"].identifier
        assert inferred.features["workclass"].domain == ["Private", "Self-emp", "State-gov"]
        curated = inferred.model_copy(deep=True)
        curated.features["age"].drift = Comparator(method="psi", threshold=0.2)
        save_schema(curated, project / "schema.yaml")

        second = run(project, current=span[2], previous=span[1], curated="schema.yaml")
        assert second.ok, second.error
        assert second.step_status["train"] == ExecutionStatus.SUCCEEDED
        datasets_before = workspace.metadata.list_artifacts(type_name="Dataset")

        third = run(project, current=span[3], previous=span[2], curated="schema.yaml")
        assert third.status == RunStatus.FAILED
        assert third.step_status["validate"] == ExecutionStatus.FAILED
        assert third.step_status["train"] == ExecutionStatus.SKIPPED
        _check_failure(workspace, third.run_id, project)
        for dataset in datasets_before:  # earlier versions still there, byte for byte
            assert workspace.artifacts.verify(dataset.uri).sha256 == dataset.sha256
        reports = workspace.metadata.list_artifacts(type_name="ValidationReport")
        assert len(reports) == 2 and all(r.properties["ok"] for r in reports)
    finally:
        workspace.close()


def _check_failure(workspace: Workspace, run_id: int, project: Path) -> None:
    [execution] = [
        e for e in workspace.metadata.list_executions(run_id) if e.step_name == "validate"
    ]
    error = execution.error or ""
    assert error.startswith("ValidationFailed: census/train,eval: ")
    for text in ("out_of_range", "age", "unseen_categories", "Never-worked", "drift", "psi"):
        assert text in error, error
    assert "schema: curated: schema.yaml" in error
    html = project / "home" / "logs" / f"run-{run_id}" / "validate-validation.html"
    assert html.is_file() and str(html) in error
    assert "Never-worked" in html.read_text()


def test_curated_schema_errors_name_the_file(project: Path) -> None:
    from conveyor.components.data_checks import _curated
    from conveyor.data.errors import SchemaError

    (project / "schema.yaml").write_text("features:\n  age:\n    type: int\n    mx: 3\n")
    with pytest.raises(SchemaError, match=r"schema.yaml:4: feature 'age', unknown field 'mx'"):
        _curated(str(project / "schema.yaml"))
    with pytest.raises(SchemaError, match=r"curated schema .*missing.yaml does not exist"):
        _curated(str(project / "missing.yaml"))
    good = Schema.from_yaml("features:\n  age:\n    type: int\n")
    save_schema(good, project / "schema.yaml")
    assert _curated(str(project / "schema.yaml")).source == f"curated: {project / 'schema.yaml'}"
