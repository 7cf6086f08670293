"""The ``train`` component through ``conveyor.run``: real workers, real stores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import conveyor
from conveyor.config import load_settings
from conveyor.core.loader import load_pipeline
from conveyor.modeling.bundle import LoadedBundle, load_bundle
from conveyor.runners.runner import RunResult
from conveyor.store.metadata.records import ExecutionStatus, RunStatus
from conveyor.store.workspace import Workspace

pytestmark = pytest.mark.slow

pytest.importorskip("xgboost")

PIPELINE = """
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from conveyor import Dataset, component, pipeline
from conveyor.components.model_train import train
from conveyor.modeling.bundle import ModelBundle


@component
def make_data(n: int = 400) -> Dataset:
    rng = np.random.default_rng(42)
    frame = pd.DataFrame({
        "x1": rng.normal(size=n),
        "x2": rng.normal(size=n),
        "city": rng.choice(["a", "b", "c"], n),
    })
    score = frame["x1"] + 0.5 * frame["x2"] + (frame["city"] == "a") + rng.normal(0, 0.3, n)
    frame["y"] = np.where(score > 0.3, "yes", "no")
    root = Path(tempfile.mkdtemp()) / "data"
    cut = int(n * 0.75)
    for name, part in (("train", frame.iloc[:cut]), ("eval", frame.iloc[cut:])):
        (root / f"split={name}").mkdir(parents=True)
        part.to_parquet(root / f"split={name}" / "part-0.parquet", index=False)
    return Dataset.from_path(root)


@component
def inspect(bundle: ModelBundle) -> dict:
    loaded = bundle.open()  # a downstream step gets a handle and loads it verified
    return {"flavour": loaded.manifest.flavour_name, "sha256": loaded.manifest.sha256}


@pipeline
def training(
    spec: dict | None = None, train_fn: str | None = None, seed: int = 0, params: dict = {}
) -> None:
    bundle = train(
        make_data(), label="y", estimator=spec, train_fn=train_fn, seed=seed, params=params
    )
    inspect(bundle)
"""

TRAINERS = """
from sklearn.ensemble import RandomForestClassifier
from sklearn.compose import make_column_transformer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder


def forest(ctx):
    encode = make_column_transformer((OneHotEncoder(), ["city"]), remainder="passthrough")
    model = make_pipeline(encode, RandomForestClassifier(n_estimators=5, random_state=ctx.seed))
    model.fit(ctx.x_train, ctx.y_train)
    for step, value in enumerate([0.9, 0.5, 0.4]):
        ctx.log_metric("loss", value, step=step)
    return model


def explode(ctx):
    raise ValueError("boom: the training data is cursed")
"""

XGB_SPEC = {"flavour": "xgboost", "params": {"n_estimators": 300}, "early_stopping_rounds": 5}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    (tmp_path / "trainers.py").write_text(TRAINERS)  # next to the pipeline: importable
    return tmp_path


def _run(project: Path, **params: Any) -> RunResult:
    pipeline = load_pipeline(str(project / "pipeline.py"), reload=True)
    return conveyor.run(pipeline, home=project / "home", max_workers=1, no_cache=True, **params)


def _bundle(project: Path, run_id: int) -> tuple[LoadedBundle, dict[str, Any]]:
    ws = Workspace.open(load_settings(home=project / "home"))
    try:
        train_exec = next(e for e in ws.metadata.list_executions(run_id) if e.step_name == "train")
        artifact = ws.metadata.execution_outputs(train_exec.id)["output"]
        assert artifact.type_name == "ModelBundle"
        with ws.artifacts.local_folder(artifact.uri) as folder:
            return load_bundle(folder), {**artifact.properties, "execution_id": train_exec.id}
    finally:
        ws.close()


def _inspected(project: Path, run_id: int) -> dict[str, Any]:
    ws = Workspace.open(load_settings(home=project / "home"))
    try:
        step = next(e for e in ws.metadata.list_executions(run_id) if e.step_name == "inspect")
        with ws.artifacts.local_folder(ws.metadata.execution_outputs(step.id)["output"].uri) as f:
            return json.loads((f / "data.json").read_text())  # type: ignore[no-any-return]
    finally:
        ws.close()


def _request() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {"x1": rng.normal(size=50), "x2": rng.normal(size=50), "city": rng.choice(["a", "b"], 50)}
    )


def test_train_from_an_xgboost_spec_with_early_stopping(project: Path) -> None:
    result = _run(project, spec=XGB_SPEC, seed=3)
    assert result.ok, result.error
    bundle, props = _bundle(project, result.run_id)
    manifest = bundle.manifest
    assert manifest.flavour_name == "xgboost" and manifest.task == "binary"
    assert manifest.classes == ("no", "yes")
    best = manifest.metrics["best_iteration"]
    assert 0 <= best < 295 and manifest.flavour["n_iterations"] == best + 1
    assert props["metrics"]["best_iteration"] == best and props["bundle_sha256"] == manifest.sha256
    assert props["n_train"] == 300 and props["n_eval"] == 100 and props["seed"] == 3
    assert manifest.lineage["run_id"] == result.run_id
    assert manifest.lineage["execution_id"] == props["execution_id"]
    assert manifest.lineage["inputs"]["data"]["sha256"]
    assert manifest.lineage["params"]["estimator"] == XGB_SPEC
    assert manifest.environment["packages"]["xgboost"]
    assert set(bundle.predict(_request())) <= {"no", "yes"}
    assert _inspected(project, result.run_id) == {"flavour": "xgboost", "sha256": manifest.sha256}


def test_same_data_and_seed_give_identical_predictions(project: Path) -> None:
    outputs = []
    for _ in range(2):
        result = _run(project, spec=XGB_SPEC, seed=11)
        assert result.ok, result.error
        bundle, _ = _bundle(project, result.run_id)
        outputs.append(bundle.predict_proba(_request()))
    assert np.array_equal(outputs[0], outputs[1])


def test_train_from_a_training_function(project: Path) -> None:
    result = _run(project, train_fn="trainers:forest", params={"note": "hi"})
    assert result.ok, result.error
    bundle, props = _bundle(project, result.run_id)
    assert bundle.manifest.flavour_name == "sklearn"
    assert props["metrics"]["loss"] == 0.4
    assert bundle.manifest.params == {"note": "hi"}
    history = (bundle.path / bundle.manifest.history).read_text()  # type: ignore[operator]
    assert '"step":2' in history
    assert len(bundle.predict(_request())) == 50


def test_a_failing_training_function_fails_the_run_and_stores_no_bundle(project: Path) -> None:
    result = _run(project, train_fn="trainers:explode")
    assert result.status == RunStatus.FAILED
    assert result.step_status["train"] == ExecutionStatus.FAILED
    ws = Workspace.open(load_settings(home=project / "home"))
    try:
        train_exec = next(
            e for e in ws.metadata.list_executions(result.run_id) if e.step_name == "train"
        )
        assert "'explode' raised ValueError: boom: the training data is cursed" in (
            train_exec.error or ""
        )
        assert ws.metadata.execution_outputs(train_exec.id) == {}
        assert ws.metadata.list_artifacts(type_name="ModelBundle") == []
    finally:
        ws.close()


def test_neither_spec_nor_function_is_a_clear_error(project: Path) -> None:
    result = _run(project)
    assert result.status == RunStatus.FAILED
    assert "give exactly one of estimator (a spec) and train_fn" in (result.error or "")
