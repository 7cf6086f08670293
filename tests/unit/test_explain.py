"""Explanations through the bundle: equal to scikit-learn's inspection functions."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestClassifier
from sklearn.inspection import partial_dependence, permutation_importance
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline

from conveyor.core.materializers import materializer_for
from conveyor.data.schema import FeatureSchema, Schema
from conveyor.modeling.bundle import LoadedBundle, load_bundle, save_bundle
from conveyor.modeling.explain import ExplainError, Explanation, explain_model
from conveyor.modeling.explain_report import render_explanation_svgs
from conveyor.modeling.metrics import EvaluationError
from conveyor.modeling.transform import fit_preprocessor

FEATURES = {"x1": "float", "x2": "float", "n": "int", "city": "string", "flag": "bool"}


def _data(n: int, seed: int, *, task: str = "binary") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "n": rng.integers(0, 40, n),
            "city": rng.choice(["a", "b", "c"], n),
            "flag": rng.choice([True, False], n),
        }
    )
    signal = frame["x1"] + 0.5 * frame["x2"] + (frame["city"] == "a") + rng.normal(0, 0.3, n)
    if task == "regression":
        frame["y"] = signal * 10.0
    elif task == "multiclass":
        frame["y"] = np.select([signal < -0.3, signal < 0.8], ["low", "mid"], "high")
    else:
        frame["y"] = np.where(signal > 0.3, "yes", "no")
    return frame


def _schema() -> Schema:
    features = {name: FeatureSchema(type=kind) for name, kind in FEATURES.items()}
    return Schema(label="y", features={**features, "y": FeatureSchema(type="string")})


def _bundle(
    tmp_path: Path, model: BaseEstimator, train: pd.DataFrame, task: str
) -> tuple[LoadedBundle, Any]:
    """A bundle of ``model`` with the default preprocessing, and the equal sklearn pipeline."""
    prep = fit_preprocessor(train, _schema())
    x = train.drop(columns="y")
    model.fit(prep.transform(x), train["y"])
    folder = tmp_path / f"bundle-{type(model).__name__}-{task}"
    save_bundle(folder, model, signature=x, task=task, preprocessing=prep)
    return load_bundle(folder), make_pipeline(prep, model)


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedBundle, Any, pd.DataFrame]:
    bundle, pipeline = _bundle(
        tmp_path_factory.mktemp("b"), LogisticRegression(), _data(400, 0), "binary"
    )
    return bundle, pipeline, _data(300, 1)


def test_permutation_importance_equals_scikit_learns(binary: Any) -> None:
    bundle, pipeline, frame = binary
    explanation = explain_model(bundle, frame, "y", metric="roc_auc", n_repeats=4, seed=7)
    x, y = frame.drop(columns="y"), frame["y"]
    expected = permutation_importance(
        pipeline, x, y, scoring="roc_auc", n_repeats=4, random_state=7
    )
    ours = {f.feature: f for f in explanation.permutation.features}
    for i, name in enumerate(x.columns):
        assert ours[name].mean == expected.importances_mean[i]
        assert ours[name].std == expected.importances_std[i]
        assert ours[name].repeats == expected.importances[i].tolist()
    assert explanation.permutation.baseline > 0.9
    means = [f.mean for f in explanation.permutation.features]
    assert means == sorted(means, reverse=True) and explanation.top_features[0] == "x1"


def test_a_loss_is_negated_so_importance_stays_positive(binary: Any) -> None:
    bundle, pipeline, frame = binary
    explanation = explain_model(bundle, frame, "y", metric="log_loss", n_repeats=3, seed=1)
    assert not explanation.permutation.higher_is_better
    x, y = frame.drop(columns="y"), frame["y"]
    expected = permutation_importance(
        pipeline, x, y, scoring="neg_log_loss", n_repeats=3, random_state=1
    )
    ours = {f.feature: f.mean for f in explanation.permutation.features}
    np.testing.assert_allclose([ours[c] for c in x.columns], expected.importances_mean, rtol=1e-9)
    assert ours["x1"] > 0.1


def test_partial_dependence_equals_scikit_learns(binary: Any) -> None:
    bundle, pipeline, frame = binary
    explanation = explain_model(bundle, frame, "y", top_k=5, seed=0, ice_lines=300)
    curve = next(c for c in explanation.dependence if c.feature == "x1")
    assert curve.kind == "numeric" and curve.outputs == ["yes"] and len(curve.grid) == 20
    quantiles = np.quantile(frame["x1"], [0.05, 0.95])
    assert curve.grid[0] == pytest.approx(quantiles[0]) and curve.grid[-1] == quantiles[1]
    expected = partial_dependence(
        pipeline,
        frame.drop(columns="y"),
        ["x1"],
        custom_values={"x1": np.asarray(curve.grid)},
        kind="both",
        method="brute",
    )
    np.testing.assert_allclose(curve.average[0], expected["average"][0], rtol=1e-12, atol=0)
    # With every row as an ICE line, the lines are scikit-learn's and average to the PD.
    np.testing.assert_allclose(curve.ice[0], expected["individual"][0], rtol=1e-12, atol=0)
    np.testing.assert_allclose(np.mean(curve.ice[0], axis=0), curve.average[0], rtol=1e-12)


def test_grids_per_feature_kind_and_downsampled_ice(binary: Any) -> None:
    bundle, _, frame = binary
    explanation = explain_model(bundle, frame, "y", top_k=5, n_repeats=2)
    curves = {c.feature: c for c in explanation.dependence}
    assert set(curves) == set(FEATURES)
    assert curves["city"].kind == "categorical" and curves["city"].grid == ["a", "b", "c"]
    assert curves["flag"].grid == ["False", "True"]
    quantiles = np.quantile(frame["n"].astype(float), np.linspace(0.05, 0.95, 20))
    assert curves["n"].grid == np.unique(np.round(quantiles)).tolist()  # integers stay integers
    assert np.asarray(curves["x2"].ice).shape == (1, 50, 20)
    city = curves["city"].average[0]
    assert city[0] > city[1]  # city "a" raises the score


def test_top_k_and_max_rows(binary: Any) -> None:
    bundle, _, frame = binary
    explanation = explain_model(bundle, frame, "y", top_k=2, n_repeats=1, max_rows=120)
    assert explanation.n_rows == 120 and explanation.n_rows_total == 300
    assert explanation.top_features == [f.feature for f in explanation.permutation.features][:2]


def test_same_seed_same_explanation_other_seed_other_permutations(binary: Any) -> None:
    bundle, _, frame = binary
    options = {"n_repeats": 3, "max_rows": 200, "top_k": 2}
    first = explain_model(bundle, frame, "y", seed=5, **options)
    again = explain_model(bundle, frame, "y", seed=5, **options)
    other = explain_model(bundle, frame, "y", seed=6, **options)
    assert first.model_dump_json() == again.model_dump_json()
    assert first.importances() != other.importances()


def test_regression_and_multiclass_outputs(tmp_path: Path) -> None:
    bundle, pipeline = _bundle(
        tmp_path, LinearRegression(), _data(300, 2, task="regression"), "regression"
    )
    frame = _data(150, 3, task="regression")
    explanation = explain_model(bundle, frame, "y", top_k=1, n_repeats=2, seed=4)
    assert explanation.permutation.metric == "r2" and explanation.classes is None
    expected = permutation_importance(
        pipeline, frame.drop(columns="y"), frame["y"], scoring="r2", n_repeats=2, random_state=4
    )
    ours = explanation.importances()
    assert [ours[c] for c in frame.columns[:-1]] == expected.importances_mean.tolist()
    assert explanation.dependence[0].outputs == ["prediction"]
    multi, _ = _bundle(
        tmp_path, LogisticRegression(), _data(400, 5, task="multiclass"), "multiclass"
    )
    found = explain_model(multi, _data(150, 6, task="multiclass"), "y", top_k=1, n_repeats=1)
    assert found.permutation.metric == "log_loss"
    assert found.dependence[0].outputs == ["high", "low", "mid"]
    assert np.asarray(found.dependence[0].average).sum(axis=0) == pytest.approx(1.0)


def test_shap_per_raw_feature_for_tree_models(tmp_path: Path) -> None:
    pytest.importorskip("shap")
    forest = RandomForestClassifier(n_estimators=15, max_depth=5, random_state=0)
    bundle, _ = _bundle(tmp_path, forest, _data(300, 7), "binary")
    explanation = explain_model(bundle, _data(120, 8), "y", top_k=1, n_repeats=1)
    assert explanation.shap is not None and explanation.shap_note is None
    assert set(explanation.shap.mean_abs) == set(FEATURES)  # one-hot columns summed back
    values = list(explanation.shap.mean_abs.values())
    assert values == sorted(values, reverse=True) and next(iter(explanation.shap.mean_abs)) == "x1"
    assert list(render_explanation_svgs(explanation))[:2] == ["importance", "shap"]


def test_no_shap_for_other_models_or_without_the_library(
    binary: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle, _, frame = binary
    if "shap" in sys.modules or _installed("shap"):
        found = explain_model(bundle, frame, "y", top_k=0, n_repeats=1)
        assert found.shap is None and "SHAP skipped" in (found.shap_note or "")
    monkeypatch.setitem(sys.modules, "shap", None)  # import shap -> ImportError
    found = explain_model(bundle, frame, "y", top_k=0, n_repeats=1)
    assert found.shap is None and "pip install 'conveyor-ml[explain]'" in (found.shap_note or "")


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"metric": "roc_acu"}, EvaluationError, r"unknown metric 'roc_acu' \(did you mean"),
        ({"metric": "rmse"}, EvaluationError, "'rmse' is for regression tasks, not binary"),
        ({"n_repeats": 0}, ExplainError, "n_repeats must be an integer >= 1, not 0"),
        ({"grid_points": 1}, ExplainError, "grid_points must be an integer >= 2"),
    ],
)
def test_bad_options(binary: Any, kwargs: dict[str, Any], error: type, message: str) -> None:
    bundle, _, frame = binary
    with pytest.raises(error, match=message):
        explain_model(bundle, frame, "y", **kwargs)


def test_bad_data(binary: Any) -> None:
    bundle, _, frame = binary
    with pytest.raises(ExplainError, match=r"column 'why' is not in the data \(valid: 'city'"):
        explain_model(bundle, frame, "why")
    with pytest.raises(ExplainError, match="0 rows"):
        explain_model(bundle, frame.iloc[:0], "y")
    with pytest.raises(ExplainError, match="does not fit the model: column 'x1': expected float"):
        explain_model(bundle, frame.assign(x1="text"), "y")


def test_materializer_round_trip(binary: Any, tmp_path: Path) -> None:
    bundle, _, frame = binary
    explanation = explain_model(bundle, frame, "y", top_k=2, n_repeats=2)
    entry = materializer_for(Explanation)
    assert entry.artifact_type == "Explanation"
    props = entry.get().save(explanation, tmp_path)
    assert props == {
        "metric": "roc_auc",
        "top_features": explanation.top_features,
        "n_rows": 300,
        "shap": False,
    }
    assert entry.get().load(tmp_path, Explanation) == explanation


def test_nan_importances_survive_json(binary: Any, tmp_path: Path) -> None:
    bundle, _, frame = binary
    one_class = frame[frame["y"] == "yes"]  # ROC AUC is undefined with one class
    explanation = explain_model(bundle, one_class, "y", top_k=0, n_repeats=1)
    assert all(np.isnan(f.mean) for f in explanation.permutation.features)
    text = explanation.model_dump_json()
    assert "NaN" in text and np.isnan(Explanation.model_validate_json(text).permutation.baseline)


def test_svgs_for_the_report(binary: Any) -> None:
    bundle, _, frame = binary
    explanation = explain_model(bundle, frame, "y", top_k=3, n_repeats=2)
    svgs = render_explanation_svgs(explanation)
    features = explanation.top_features
    assert list(svgs) == ["importance", *(f"dependence:{f}" for f in features)]
    for svg in svgs.values():
        assert svg.startswith("<svg") and svg.endswith("</svg>") and "xlink:" not in svg
    ids = [i for svg in svgs.values() for i in re.findall(r'\bid="([^"]+)"', svg)]
    assert len(ids) == len(set(ids))  # several plots in one page share no id
    assert render_explanation_svgs(explanation) == svgs
    assert all(f">{name}<" in svgs["importance"] for name in FEATURES)  # text stays text


def test_the_component_explains_one_split(binary: Any, tmp_path: Path) -> None:
    from conveyor import Dataset
    from conveyor.components.model_explain import explain
    from conveyor.modeling.bundle import ModelBundle

    bundle, _, frame = binary
    (tmp_path / "split=eval").mkdir()
    frame.to_parquet(tmp_path / "split=eval" / "part-0.parquet", index=False)
    handle = ModelBundle.from_path(bundle.path)
    found = explain(handle, Dataset.from_path(tmp_path), "y", top_k=1, n_repeats=2, seed=2)
    expected = explain_model(bundle, frame, "y", top_k=1, n_repeats=2, seed=2)
    assert found.model_dump_json() == expected.model_dump_json()
    with pytest.raises(ExplainError, match=r"no split 'evl' \(did you mean 'eval'\?\)"):
        explain(handle, Dataset.from_path(tmp_path), "y", split="evl")
