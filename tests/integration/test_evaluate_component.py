"""The ``evaluate`` component: train -> evaluate -> register in real runs, and its bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import conveyor
from conveyor import Dataset
from conveyor.components.model_evaluate import evaluate
from conveyor.config import load_settings
from conveyor.core.loader import load_pipeline
from conveyor.exceptions import NotFoundError
from conveyor.modeling.bundle import ModelBundle, save_bundle
from conveyor.modeling.evaluation_artifacts import EvaluationReport
from conveyor.modeling.evaluation_model import Blessing
from conveyor.modeling.metrics import EvaluationError
from conveyor.registry import ModelRegistry
from conveyor.runners.runner import RunResult
from conveyor.store.metadata.records import ArtifactRecord, ExecutionStatus, RunStatus
from conveyor.store.workspace import Workspace

pytestmark = pytest.mark.slow

# The label follows x1 in group 0 and x2 in group 1 (a fifth of the rows): a depth-4 tree
# learns both, a stump (depth 1) only x1 -- about as good overall, far worse on group=1.
PIPELINE = """
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from conveyor import Dataset, component, pipeline
from conveyor.components.model_evaluate import evaluate
from conveyor.components.model_explain import explain
from conveyor.components.registry import register
from conveyor.components.model_train import train


@component
def make_data(n: int = 900) -> Dataset:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "x1": rng.normal(size=n),
        "x2": rng.normal(size=n),
        "group": (rng.random(n) < 0.2).astype(int),
    })
    label = np.where(frame["group"] == 1, frame["x2"] > 0, frame["x1"] > 0).astype(int)
    frame["y"] = np.where(rng.random(n) < 0.03, 1 - label, label)
    root = Path(tempfile.mkdtemp()) / "data"
    for name, part in (("train", frame.iloc[:600]), ("eval", frame.iloc[600:])):
        (root / f"split={name}").mkdir(parents=True)
        part.to_parquet(root / f"split={name}" / "part-0.parquet", index=False)
    return Dataset.from_path(root)


@pipeline
def training(depth: int = 4, thresholds: list = [], alias: str = "production") -> None:
    data = make_data()
    tree = {"flavour": "sklearn", "class": "sklearn.tree.DecisionTreeClassifier",
            "params": {"max_depth": depth}}
    model = train(data, label="y", estimator=tree)
    why = explain(model, data, label="y", top_k=1, n_repeats=2)
    checked = evaluate(
        model, data, label="y", model_name="census", thresholds=thresholds,
        slices=["group", {"feature": "x1", "buckets": [-10, 0, 10]}],
        sensitive_features=["group"], explanation=why,
    )
    register(model, checked.blessing, name="census", alias=alias, evaluation=checked.evaluation)
"""

GATE = [
    {"metric": "roc_auc", "min": 0.7},
    {"metric": "accuracy", "max_drop": 0.15, "slices": True},
]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("CONVEYOR_HOME", "CONVEYOR_METADATA_URL", "CONVEYOR_ARTIFACT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    return tmp_path


def _run(project: Path, **params: Any) -> RunResult:
    pipeline = load_pipeline(f"{project / 'pipeline.py'}:training", reload=True)
    return conveyor.run(pipeline, home=project / "home", max_workers=1, **params)


def _outputs(ws: Workspace, run_id: int, step: str) -> dict[str, ArtifactRecord]:
    execution = next(e for e in ws.metadata.list_executions(run_id) if e.step_name == step)
    return ws.metadata.execution_outputs(execution.id)


def _read(record: ArtifactRecord, name: str) -> str:
    return (Path(record.uri) / name).read_text(encoding="utf-8")


def test_first_model_is_blessed_alone_then_a_worse_one_is_refused(project: Path) -> None:
    first = _run(project, thresholds=GATE)
    assert first.status == RunStatus.SUCCEEDED, first.error
    second = _run(project, depth=1, thresholds=GATE)
    assert second.status == RunStatus.SUCCEEDED, second.error
    assert second.step_status["register"] == ExecutionStatus.SUCCEEDED
    ws = Workspace.open(load_settings(home=project / "home"), recover=False)
    try:
        _check_first(ws, first.run_id)
        _check_second(ws, second.run_id)
    finally:
        ws.close()


def _check_first(ws: Workspace, run_id: int) -> None:
    outputs = _outputs(ws, run_id, "evaluate")
    assert (outputs["evaluation"].type_name, outputs["blessing"].type_name) == (
        "Evaluation",
        "Blessing",
    )
    blessing = Blessing.model_validate_json(_read(outputs["blessing"], "blessing.json"))
    assert blessing.blessed and blessing.baseline_version is None
    assert blessing.note == (
        "no baseline: judged on absolute thresholds alone (1 relative check not run); "
        "no 'production' version of 'census' yet: no model named 'census' in the registry "
        "(there are none)"
    )
    assert outputs["blessing"].properties["failed_checks"] == 0
    version = ModelRegistry(ws).get("census", "production")
    trained = _outputs(ws, run_id, "train")["output"]
    assert (version.version, version.artifact_id) == (1, trained.id)
    assert version.metrics["roc_auc"] > 0.9
    assert version.metrics["slices"]["group=1"]["accuracy"] > 0.85, "slices come from evaluate"
    page = _read(outputs["evaluation"], "report.html")
    assert "Blessed" in page and "<h2>Explanation</h2>" in page, "explain's plots are drawn"


def _check_second(ws: Workspace, run_id: int) -> None:
    registry = ModelRegistry(ws)
    assert [v.version for v in registry.list("census")] == [1]
    assert registry.aliases("census") == {"production": 1}, "production is untouched"
    outputs = _outputs(ws, run_id, "evaluate")
    assert outputs["blessing"].properties["blessed"] is False
    assert outputs["blessing"].properties["baseline_version"] == "census:1"
    report = EvaluationReport.model_validate_json(_read(outputs["evaluation"], "evaluation.json"))
    assert report.baseline is not None and report.baseline.model_version == "census:1"
    failures = report.blessing.failures
    assert [(r.metric, r.slice) for r in failures] == [("accuracy", "group=1")]
    assert "accuracy on slice 'group=1': worse by" in failures[0].message
    assert report.comparison.overall["accuracy"].better is False
    outcome = json.loads(_read(_outputs(ws, run_id, "register")["output"], "data.json"))
    assert outcome["registered"] is False
    assert any("accuracy on slice 'group=1'" in r for r in outcome["reasons"])
    page = _read(outputs["evaluation"], "report.html")
    assert "Not blessed" in page and "census:1" in page and "<svg" in page


def test_a_threshold_the_task_cannot_have_fails_the_step_and_registers_nothing(
    project: Path,
) -> None:
    result = _run(project, thresholds=[{"metric": "rmse", "max": 1.0}])
    assert result.status == RunStatus.FAILED
    assert result.step_status["evaluate"] == ExecutionStatus.FAILED
    assert result.step_status["register"] == ExecutionStatus.SKIPPED
    assert "a binary task has no 'rmse'" in (result.error or "")
    ws = Workspace.open(load_settings(home=project / "home"), recover=False)
    try:
        assert ModelRegistry(ws).models() == []
        assert ws.metadata.list_artifacts(type_name="Evaluation") == []
    finally:
        ws.close()


# -- bad input, checked before any model is loaded (the component as a plain function) -----


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelBundle, Dataset]:
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("plain")
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=120), "sex": rng.choice(["F", "M"], 120)})
    frame["y"] = (frame["x"] + rng.normal(0, 0.5, 120) > 0).astype(int)
    (root / "data" / "split=eval").mkdir(parents=True)
    frame.to_parquet(root / "data" / "split=eval" / "part-0.parquet", index=False)
    model = LogisticRegression().fit(frame[["x"]], frame["y"])
    save_bundle(root / "bundle", model, signature=frame[["x"]], task="binary")
    bundle = ModelBundle(uri="", path=root / "bundle", type_name="ModelBundle", sha256="")
    return bundle, Dataset.from_path(root / "data")


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"metrics": ["acuracy"]}, EvaluationError, r"unknown metric 'acuracy' \(did you mean"),
        ({"thresholds": [{"metric": "r2", "min": 0}]}, EvaluationError, "binary task has no 'r2'"),
        ({"slices": ["sexe"]}, EvaluationError, r"column 'sexe' is not in the data \(did you"),
        ({"sensitive_features": ["race"]}, EvaluationError, "sensitive feature 'race'"),
        ({"slices": [{"feature": "sex", "bucket": [1]}]}, EvaluationError, "unknown key 'bucket'"),
        ({"split": "test"}, NotFoundError, "has no split 'test'"),
    ],
)
def test_bad_input_is_a_clear_error(
    inputs: tuple[ModelBundle, Dataset], options: dict[str, Any], error: type, match: str
) -> None:
    bundle, data = inputs
    with pytest.raises(error, match=match):
        evaluate(bundle, data, label="y", **options)


def test_outside_a_run_the_model_is_judged_alone_and_says_why(
    inputs: tuple[ModelBundle, Dataset],
) -> None:
    bundle, data = inputs
    out = evaluate(
        bundle, data, label="y", slices=["sex"], thresholds=[{"metric": "accuracy", "min": 0.6}]
    )
    assert out.blessing.blessed
    assert out.blessing.note == (
        "no baseline: judged on absolute thresholds alone; outside a pipeline run there is "
        "no registry to find a baseline in"
    )
    assert out.evaluation.baseline is None and set(out.evaluation.candidate.slices) == {
        "sex=F",
        "sex=M",
    }
    assert out.evaluation.as_of == bundle.manifest.created_at
