"""The standard ``register`` component in a real pipeline run (worker processes, SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest

import conveyor
from conveyor.components.registry import register
from conveyor.config import load_settings
from conveyor.core.loader import load_pipeline
from conveyor.registry import ModelRegistry, RegistryError
from conveyor.runners.runner import RunResult
from conveyor.store.metadata.records import ExecutionStatus, RunStatus
from conveyor.store.workspace import Workspace

pytestmark = pytest.mark.slow

PIPELINE = """
import numpy as np
from sklearn.linear_model import LogisticRegression

from conveyor import component, pipeline
from conveyor.components.registry import register


def _data(n, seed):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, 3))
    return features, (features[:, 0] + 0.1 * features[:, 1] > 0).astype(int)


@component
def train(n: int = 80, seed: int = 0) -> LogisticRegression:
    features, labels = _data(n, seed)
    return LogisticRegression(C=0.5).fit(features, labels)


@component
def evaluate(model: LogisticRegression, min_accuracy: float = 0.7) -> dict:
    features, labels = _data(200, 99)
    accuracy = float((model.predict(features) == labels).mean())
    passed = accuracy >= min_accuracy
    reason = {"metric": "accuracy", "passed": passed,
              "message": f"accuracy {accuracy:.3f} vs min {min_accuracy}"}
    return {"blessed": passed, "reasons": [reason], "metrics": {"accuracy": accuracy}}


@pipeline
def training(seed: int = 0, min_accuracy: float = 0.7, alias: str = "staging") -> None:
    model = train(seed=seed)
    register(model, evaluate(model, min_accuracy), name="census", alias=alias)
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("CONVEYOR_HOME", "CONVEYOR_METADATA_URL", "CONVEYOR_ARTIFACT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONVEYOR_ACTOR", "pipeline-bot")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


@pytest.fixture
def training(tmp_path: Path) -> conveyor.Pipeline:
    path = tmp_path / "training.py"
    path.write_text(PIPELINE)
    return load_pipeline(f"{path}:training", reload=True)


def _run(pipeline: conveyor.Pipeline, home: Path, **params: object) -> RunResult:
    result = conveyor.run(pipeline, home=home, max_workers=2, **params)
    assert result.status == RunStatus.SUCCEEDED, result.error
    return result


def _open(home: Path) -> Workspace:
    return Workspace.open(load_settings(home=home), recover=False)


def test_a_blessed_model_is_registered_with_its_lineage(
    training: conveyor.Pipeline, home: Path
) -> None:
    result = _run(training, home)
    ws = _open(home)
    try:
        executions = {e.step_name: e for e in ws.metadata.list_executions(result.run_id)}
        model_artifact = ws.metadata.execution_outputs(executions["train"].id)["output"]
        registry = ModelRegistry(ws)
        version = registry.get("census", "staging")
        assert (version.name, version.version, version.aliases) == ("census", 1, ("staging",))
        assert version.run_id == result.run_id
        assert version.execution_id == executions["register"].id
        assert version.artifact_id == model_artifact.id
        assert version.artifact_uri == model_artifact.uri
        assert ws.metadata.execution_inputs(version.execution_id)["model"].id == version.artifact_id
        assert version.blessing is not None and version.blessing["blessed"] is True
        assert version.metrics["accuracy"] > 0.7, "metrics come from the blessing"
        assert version.params["C"] == 0.5, "params come from the model artifact"
        assert version.created_by == "pipeline-bot"
        (promoted, registered) = registry.history("census")
        assert registered.reason == f"registered by run {result.run_id}, step 'register'"
        assert (promoted.action.value, promoted.alias, promoted.to_version) == (
            "promote",
            "staging",
            1,
        )
        output = ws.metadata.execution_outputs(executions["register"].id)["output"]
        assert output.type_name == "JSON"
    finally:
        ws.close()


def test_rerun_is_cached_and_registers_nothing_new(training: conveyor.Pipeline, home: Path) -> None:
    _run(training, home)
    again = _run(training, home)
    assert set(again.step_status.values()) == {ExecutionStatus.CACHED}
    ws = _open(home)
    try:
        assert [v.version for v in ModelRegistry(ws).list("census")] == [1]
    finally:
        ws.close()
    other = _run(training, home, seed=1)
    assert other.step_status["register"] == ExecutionStatus.SUCCEEDED
    ws = _open(home)
    try:
        registry = ModelRegistry(ws)
        assert [v.version for v in registry.list("census")] == [1, 2]
        assert registry.get("census", 2).run_id == other.run_id
        assert registry.aliases("census") == {"staging": 2}
    finally:
        ws.close()


def test_an_unblessed_model_is_not_registered_and_production_is_untouched(
    training: conveyor.Pipeline, home: Path
) -> None:
    _run(training, home, alias="production")
    ws = _open(home)
    try:
        before = ModelRegistry(ws).store.audit(limit=100)
    finally:
        ws.close()
    refused = _run(training, home, seed=3, min_accuracy=1.01, alias="production")
    assert refused.step_status["register"] == ExecutionStatus.SUCCEEDED
    ws = _open(home)
    try:
        registry = ModelRegistry(ws)
        assert [v.version for v in registry.list("census")] == [1]
        assert registry.aliases("census") == {"production": 1}
        assert registry.store.audit(limit=100) == before
        register_exec = next(
            e for e in ws.metadata.list_executions(refused.run_id) if e.step_name == "register"
        )
        outcome = ws.metadata.execution_outputs(register_exec.id)["output"]
        log = Path(register_exec.log_uri or "").read_text()
    finally:
        ws.close()
    assert outcome.properties["json_type"] == "dict"
    assert "not registered: model 'census' was not registered: it is not blessed" in log
    assert "vs min 1.01" in log


def test_register_outside_a_run_explains_itself() -> None:
    with pytest.raises(RegistryError, match="run it as a pipeline step"):
        register.fn(model=None, blessing=None)  # type: ignore[arg-type]
