"""The ``tune`` component through ``conveyor.run``: study in the metadata database, resume,
``train(tuned=...)``, and a bad space failing the run before any trial."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import conveyor
from conveyor.config import load_settings
from conveyor.core.loader import load_pipeline
from conveyor.modeling.bundle import load_bundle
from conveyor.modeling.tuning import TuningResult
from conveyor.runners.runner import RunResult
from conveyor.store.metadata.records import ExecutionStatus
from conveyor.store.workspace import Workspace

pytestmark = pytest.mark.slow

optuna = pytest.importorskip("optuna")

PIPELINE = """
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from conveyor import Dataset, component, pipeline
from conveyor.components.model_train import train
from conveyor.components.model_tune import tune


@component
def make_data(n: int = 300) -> Dataset:
    rng = np.random.default_rng(42)
    frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n)})
    score = frame["x1"] + 0.5 * frame["x2"] + rng.normal(0, 0.4, n)
    frame["y"] = np.where(score > 0.3, "yes", "no")
    root = Path(tempfile.mkdtemp()) / "data"
    cut = int(n * 0.7)
    for name, part in (("train", frame.iloc[:cut]), ("eval", frame.iloc[cut:])):
        (root / f"split={name}").mkdir(parents=True)
        part.to_parquet(root / f"split={name}" / "part-0.parquet", index=False)
    return Dataset.from_path(root)


@pipeline
def tuning(space: dict = {}, n_trials: int = 3) -> None:
    data = make_data()
    tuned = tune(data, label="y", space=space, n_trials=n_trials, seed=1)
    train(data, label="y", tuned=tuned, seed=1)
"""

SPACE = {
    "model": {
        "choice": {
            "logreg": {
                "flavour": "sklearn",
                "class": "sklearn.linear_model.LogisticRegression",
                "params": {"C": {"float": [0.01, 10.0], "log": True}},
            },
            "xgb": {
                "flavour": "xgboost",
                "early_stopping_rounds": 5,
                "params": {"n_estimators": 40, "max_depth": {"int": [2, 5]}},
            },
        }
    }
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    return tmp_path


def _run(project: Path, **params: Any) -> RunResult:
    pipeline = load_pipeline(str(project / "pipeline.py"), reload=True)
    return conveyor.run(pipeline, home=project / "home", max_workers=1, **params)


def _outputs(project: Path, run_id: int) -> dict[str, Any]:
    """Step name -> (execution, output artifact record, loaded TuningResult / bundle)."""
    ws = Workspace.open(load_settings(home=project / "home"))
    try:
        found: dict[str, Any] = {}
        for execution in ws.metadata.list_executions(run_id):
            artifact = ws.metadata.execution_outputs(execution.id).get("output")
            loaded = None
            if artifact is not None and artifact.type_name == "TuningResult":
                with ws.artifacts.local_folder(artifact.uri) as folder:
                    loaded = TuningResult.model_validate_json((folder / "tuning.json").read_text())
            elif artifact is not None and artifact.type_name == "ModelBundle":
                with ws.artifacts.local_folder(artifact.uri) as folder:
                    loaded = load_bundle(folder).manifest
            found[execution.step_name] = (execution, artifact, loaded)
        return found
    finally:
        ws.close()


def _storage(project: Path) -> str:
    return f"sqlite:///{project / 'home' / 'metadata.db'}"


def test_tune_feeds_train_and_keeps_every_trial_in_the_metadata_database(project: Path) -> None:
    result = _run(project, space=SPACE, n_trials=4)
    assert result.ok, result.error
    steps = _outputs(project, result.run_id)
    _, artifact, tuned = steps["tune"]
    assert artifact.type_name == "TuningResult"
    assert artifact.properties["metric"] == "roc_auc" and artifact.properties["n_trials"] == 4
    assert artifact.properties["best_value"] == tuned.best_value
    _, _, manifest = steps["train"]
    assert manifest.lineage["params"]["estimator"] == tuned.best_estimator  # train(tuned=...)
    study = optuna.load_study(study_name=tuned.study_name, storage=_storage(project))
    assert tuned.study_name.startswith("conveyor/tuning/tune/")
    assert len(study.trials) == 4
    for trial in study.trials:  # parameters, metrics, state, duration
        assert trial.params and trial.state.name in ("COMPLETE", "PRUNED")
        assert trial.duration is not None
        if trial.state.name == "COMPLETE":
            assert trial.user_attrs["metrics"]["roc_auc"] == trial.value


def test_an_interrupted_study_resumes_without_redoing_trials(project: Path) -> None:
    first = _run(project, space=SPACE, n_trials=3)  # the first half, then "interrupted"
    assert first.ok, first.error
    done = _outputs(project, first.run_id)["tune"][2]
    second = _run(project, space=SPACE, n_trials=6)
    assert second.ok, second.error
    execution, _, resumed = _outputs(project, second.run_id)["tune"]
    assert resumed.study_name == done.study_name and resumed.n_trials == 6
    assert [t.number for t in resumed.trials] == list(range(6))
    assert [t.params for t in resumed.trials[:3]] == [t.params for t in done.trials]
    log = Path(execution.log_uri.removeprefix("file://")).read_text()
    assert sum(line.startswith("trial ") for line in log.splitlines()) == 3  # only the rest


def test_a_bad_space_fails_the_run_before_any_trial(project: Path) -> None:
    bad = json.loads(json.dumps(SPACE))
    bad["model"]["choice"]["xgb"]["params"]["max_depth"] = {"int": [5, 2]}
    result = _run(project, space=bad)
    assert not result.ok
    steps = _outputs(project, result.run_id)
    tune_exec = steps["tune"][0]
    assert tune_exec.status == ExecutionStatus.FAILED
    assert "space.model.choice.xgb.params.max_depth: low 5 > high 2" in (tune_exec.error or "")
    assert steps["train"][0].status == ExecutionStatus.SKIPPED
    assert optuna.get_all_study_names(storage=_storage(project)) == []  # no trial, no study
