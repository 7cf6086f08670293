"""transform -> train(preprocessing=...) -> explain through ``conveyor.run``."""

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
from conveyor.materializers.sklearn import SklearnMaterializer
from conveyor.modeling.bundle import load_bundle
from conveyor.runners.runner import RunResult
from conveyor.store.metadata.records import ArtifactRecord
from conveyor.store.workspace import Workspace

pytestmark = pytest.mark.slow

PIPELINE = """
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from conveyor import Dataset, component, pipeline
from conveyor.components.data_checks import infer_schema, statistics
from conveyor.components.model_explain import explain
from conveyor.components.model_train import train
from conveyor.components.model_transform import transform


def _rows(n, seed, shift=0.0, cities=("a", "b", "c")):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "id": np.arange(n) + seed * 100_000,
        "x1": rng.normal(shift, 1.0, n),
        "x2": rng.normal(shift, 1.0, n),
        "city": rng.choice(list(cities), n),
    })
    score = frame["x1"] + 0.5 * frame["x2"] + (frame["city"] == "a") + rng.normal(0, 0.3, n)
    frame["y"] = np.where(score > 0.3 + 1.5 * shift, "yes", "no")
    return frame


@component
def make_data(eval_shift: float = 0.0) -> Dataset:
    root = Path(tempfile.mkdtemp()) / "data"
    cities = ("a", "b", "c") if eval_shift == 0 else ("a", "b", "new-town")
    parts = {"train": _rows(400, 1), "eval": _rows(200, 2, eval_shift, cities)}
    for name, part in parts.items():
        (root / f"split={name}").mkdir(parents=True)
        part.to_parquet(root / f"split={name}" / "part-0.parquet", index=False)
    return Dataset.from_path(root)


FOREST = {"flavour": "sklearn", "class": "sklearn.ensemble.RandomForestClassifier",
          "params": {"n_estimators": 20, "max_depth": 6}}


@pipeline
def modeling(eval_shift: float = 0.0, seed: int = 0, numeric: str = "standard") -> None:
    data = make_data(eval_shift=eval_shift)
    schema = infer_schema(statistics(data, label="y"), label="y", identifiers=["id"])
    prep = transform(data, schema, numeric=numeric)
    bundle = train(data, label="y", estimator=FOREST, seed=seed, preprocessing=prep)
    explain(bundle, data, label="y", seed=seed, top_k=2, n_repeats=3)
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("modeling")
    (root / "pipeline.py").write_text(PIPELINE)
    return root


def _run(project: Path, **params: Any) -> RunResult:
    pipeline = load_pipeline(str(project / "pipeline.py"), reload=True)
    result = conveyor.run(pipeline, home=project / "home", max_workers=2, no_cache=True, **params)
    assert result.ok, result.error
    return result


def _outputs(project: Path, run_id: int) -> dict[str, ArtifactRecord]:
    ws = Workspace.open(load_settings(home=project / "home"))
    try:
        return {
            e.step_name: ws.metadata.execution_outputs(e.id)["output"]
            for e in ws.metadata.list_executions(run_id)
        }
    finally:
        ws.close()


def _folder(project: Path, artifact: ArtifactRecord) -> Path:
    ws = Workspace.open(load_settings(home=project / "home"))
    try:
        with ws.artifacts.local_folder(artifact.uri) as folder:
            return Path(folder)  # a local store: the folder stays where it is
    finally:
        ws.close()


@pytest.fixture(scope="module")
def first(project: Path) -> dict[str, ArtifactRecord]:
    return _outputs(project, _run(project, seed=3).run_id)


def test_the_transform_ships_inside_the_bundle(project: Path, first: dict[str, Any]) -> None:
    prep = first["transform"]
    assert prep.type_name == "Model"
    assert prep.properties["fitted_on"] == "train" and prep.properties["n_train"] == 400
    assert prep.properties["features"] == ["x1", "x2", "city"]
    assert prep.properties["excluded"] == {"id": "identifier", "y": "label"}
    bundle = load_bundle(_folder(project, first["train"]))
    assert bundle.manifest.preprocessing is not None
    assert bundle.manifest.lineage["inputs"]["preprocessing"]["sha256"] == prep.sha256
    fitted = SklearnMaterializer().load(_folder(project, prep), object)
    frame = pd.read_parquet(_folder(project, first["make_data"]) / "split=eval")
    features = frame.drop(columns="y")
    np.testing.assert_array_equal(bundle.transform(features), fitted.transform(features))
    expected = bundle.model.predict(fitted.transform(features))
    np.testing.assert_array_equal(bundle.predict(features), expected)


def test_explanation_artifact(project: Path, first: dict[str, Any]) -> None:
    artifact = first["explain"]
    assert artifact.type_name == "Explanation"
    data = json.loads((_folder(project, artifact) / "explanation.json").read_text())
    assert data["permutation"]["metric"] == "roc_auc" and data["n_rows"] == 200
    importances = [f["feature"] for f in data["permutation"]["features"]]
    assert importances[0] == "x1" and set(importances) == {"id", "x1", "x2", "city"}
    assert artifact.properties["top_features"] == importances[:2]
    assert len(data["dependence"]) == 2


def test_same_seed_same_explanation_and_eval_never_reaches_the_transform(
    project: Path, first: dict[str, Any]
) -> None:
    again = _outputs(project, _run(project, seed=3).run_id)
    assert again["explain"].sha256 == first["explain"].sha256  # identical importances
    assert again["transform"].sha256 == first["transform"].sha256
    # Eval moved far away, with a category train never had: the schema changes (it merges
    # every split), the stored transformer does not, byte for byte.
    shifted = _outputs(project, _run(project, seed=3, eval_shift=25.0).run_id)
    assert shifted["make_data"].sha256 != first["make_data"].sha256
    assert shifted["infer_schema"].sha256 != first["infer_schema"].sha256
    assert shifted["transform"].sha256 == first["transform"].sha256
