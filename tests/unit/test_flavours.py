"""Flavours (registry, detection, training from specs) and the training library."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from conveyor.modeling import flavours as flavours_module
from conveyor.modeling.bundle import load_bundle
from conveyor.modeling.bundle_errors import FlavourError, TrainingError
from conveyor.modeling.bundle_signature import Signature
from conveyor.modeling.flavours import (
    Flavour,
    available_flavours,
    detect_flavour,
    get_flavour,
    register_flavour,
    require,
)
from conveyor.modeling.training import (
    EstimatorSpec,
    TrainContext,
    fit_model,
    infer_task,
    resolve_train_fn,
)

xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")


def _splits(n: int = 400, seed: int = 0, classes: int = 2) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "n": rng.integers(0, 5, n),
            "city": rng.choice(["a", "b", "c"], n),
        }
    )
    score = frame["x1"] + 0.5 * frame["x2"] + (frame["city"] == "a") + rng.normal(0, 0.3, n)
    labels = ["no", "yes"] if classes == 2 else ["low", "mid", "high"]
    frame["y"] = pd.cut(score, classes, labels=labels).astype(str)
    cut = int(n * 0.75)
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)


@pytest.fixture
def splits() -> tuple[pd.DataFrame, pd.DataFrame]:
    return _splits()


@pytest.fixture
def numeric(splits: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    train, eval_ = splits
    return train.drop(columns="city"), eval_.drop(columns="city")


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(flavours_module, "_targets", dict(flavours_module._targets))
    monkeypatch.setattr(flavours_module, "_instances", dict(flavours_module._instances))
    monkeypatch.setattr(flavours_module, "_user_order", list(flavours_module._user_order))
    yield


# -- registry and detection ----------------------------------------------------------------


def test_detection_prefers_boosters_over_their_sklearn_wrappers() -> None:
    assert detect_flavour(LogisticRegression()).name == "sklearn"
    assert detect_flavour(xgb.XGBClassifier()).name == "xgboost"
    assert detect_flavour(xgb.Booster()).name == "xgboost"
    assert detect_flavour(lgb.LGBMRegressor()).name == "lightgbm"
    with pytest.raises(FlavourError, match=r"no flavour saves a builtins.dict; pass flavour="):
        detect_flavour({})


def test_unknown_flavour_suggests_the_close_one() -> None:
    assert {"sklearn", "xgboost", "lightgbm"} <= set(available_flavours())
    with pytest.raises(
        FlavourError, match=r"unknown flavour 'xgbost' \(did you mean 'xgboost'\?\)"
    ):
        get_flavour("xgbost")


def test_a_missing_library_names_the_extra_to_install() -> None:
    with pytest.raises(FlavourError, match=r"pip install 'conveyor-ml\[torch\]'"):
        require("conveyor_no_such_module", "torch")


class ConstantModel:
    def __init__(self, value: float) -> None:
        self.value = value


class ConstantFlavour(Flavour):
    """A toy flavour: proves the interface is all a bundle needs."""

    name = "constant"

    def matches(self, model: Any) -> bool:
        return isinstance(model, ConstantModel)

    def save(self, model: Any, folder: Path) -> dict[str, Any]:
        (folder / "value.txt").write_text(repr(model.value))
        return {"library": "none"}

    def load(self, folder: Path) -> Any:
        return ConstantModel(float((folder / "value.txt").read_text()))

    def predict(self, model: Any, features: Any, signature: Signature) -> np.ndarray:
        return np.full(len(features), model.value)

    def predict_proba(self, model: Any, features: Any, signature: Signature) -> np.ndarray:
        raise FlavourError("no probabilities")


@pytest.mark.usefixtures("clean_registry")
def test_a_registered_flavour_is_detected_saved_and_loaded(tmp_path: Path) -> None:
    from conveyor.modeling.bundle import save_bundle

    register_flavour(ConstantFlavour)
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    manifest = save_bundle(tmp_path / "b", ConstantModel(4.5), signature=frame, task="regression")
    assert manifest.flavour == {"name": "constant", "library": "none"}
    assert list(load_bundle(tmp_path / "b").predict(frame)) == [4.5, 4.5]


@pytest.mark.usefixtures("clean_registry")
def test_register_flavour_refuses_what_is_not_a_flavour() -> None:
    with pytest.raises(FlavourError, match=r"is not a Flavour subclass"):
        register_flavour(ConstantModel)  # type: ignore[arg-type]
    with pytest.raises(FlavourError, match=r"needs 'module:Class' and name="):
        register_flavour("pkg.module:Thing")
    register_flavour("conveyor_no_such_module:Thing", name="ghost")
    with pytest.raises(FlavourError, match=r"cannot import flavour 'ghost'"):
        get_flavour("ghost")


# -- estimator specs -------------------------------------------------------------------------


def test_estimator_spec_errors_are_named() -> None:
    with pytest.raises(TrainingError, match=r"unknown estimator spec key 'param' \(did you mean"):
        EstimatorSpec.from_dict({"flavour": "sklearn", "param": {}})
    with pytest.raises(TrainingError, match=r"needs 'flavour'"):
        EstimatorSpec.from_dict({"class": "sklearn.svm.SVC"})
    with pytest.raises(TrainingError, match=r"early_stopping_rounds must be a positive int"):
        EstimatorSpec.from_dict({"flavour": "xgboost", "early_stopping_rounds": 0})


def test_sklearn_spec_classes_come_from_sklearn_only(numeric: Any) -> None:
    train, eval_ = numeric
    spec = {"flavour": "sklearn", "class": "os.system"}
    with pytest.raises(TrainingError, match=r"must be a 'sklearn.' class"):
        fit_model(train, eval_, label="y", estimator=spec)
    spec = {"flavour": "sklearn", "class": "sklearn.linear_model.LogisticRegression"}
    with pytest.raises(TrainingError, match=r"bad params \['bogus'\]"):
        fit_model(train, eval_, label="y", estimator=spec, params={"bogus": 1})
    spec["early_stopping_rounds"] = 5
    with pytest.raises(TrainingError, match=r"has no early stopping on an eval set"):
        fit_model(train, eval_, label="y", estimator=spec)


@pytest.mark.parametrize(
    "spec",
    [
        {"flavour": "sklearn", "class": "sklearn.ensemble.HistGradientBoostingClassifier"},
        {"flavour": "xgboost", "params": {"n_estimators": 400, "learning_rate": 0.3}},
        {"flavour": "lightgbm", "params": {"n_estimators": 400, "learning_rate": 0.3}},
    ],
    ids=lambda s: s["flavour"],
)
def test_early_stopping_records_the_best_iteration(
    tmp_path: Path, numeric: Any, spec: dict[str, Any]
) -> None:
    train, eval_ = numeric
    spec = {**spec, "early_stopping_rounds": 5}
    result = fit_model(train, eval_, label="y", estimator=spec, seed=1)
    best = result.metrics["best_iteration"]
    assert isinstance(best, int) and 0 <= best < 390, "early stopping never stopped"
    assert result.metrics["n_iterations"] >= best + 1
    curve = [p for p in result.history if p["name"].startswith("eval_")]
    assert len(curve) > best and [p["step"] for p in curve[:3]] == [0, 1, 2]
    manifest = result.save(tmp_path / "b")
    assert manifest.metrics["best_iteration"] == best and manifest.history in manifest.files
    loaded = load_bundle(tmp_path / "b")
    assert set(loaded.predict(eval_.drop(columns="y"))) <= {"no", "yes"}


def test_early_stopping_needs_an_eval_split(numeric: Any) -> None:
    train, _ = numeric
    spec = {"flavour": "xgboost", "early_stopping_rounds": 5}
    with pytest.raises(TrainingError, match=r"early_stopping_rounds needs an eval split"):
        fit_model(train, None, label="y", estimator=spec)


@pytest.mark.parametrize("flavour", ["xgboost", "lightgbm"])
def test_boosters_take_string_columns_as_categories(
    tmp_path: Path, splits: Any, flavour: str
) -> None:
    train, eval_ = splits
    result = fit_model(train, eval_, label="y", estimator={"flavour": flavour}, seed=0)
    result.save(tmp_path / "b")
    loaded = load_bundle(tmp_path / "b")
    request = eval_.drop(columns="y")
    accuracy = float(np.mean(loaded.predict(request) == eval_["y"].to_numpy()))
    assert accuracy > 0.7
    unseen = request.assign(city="zzz")  # an unknown category is missing, not an error
    assert len(loaded.predict_proba(unseen)) == len(request)


def test_multiclass_xgboost_uses_label_codes_and_keeps_labels(tmp_path: Path) -> None:
    train, eval_ = _splits(n=600, classes=3)
    result = fit_model(train, eval_, label="y", estimator={"flavour": "xgboost"})
    assert result.signature.task == "multiclass"
    assert result.signature.classes == ("high", "low", "mid")
    result.save(tmp_path / "b")
    probabilities = load_bundle(tmp_path / "b").predict_proba(eval_.drop(columns="y"))
    assert probabilities.shape == (len(eval_), 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0)


# -- reproducibility ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        {"flavour": "sklearn", "class": "sklearn.ensemble.RandomForestClassifier"},
        {"flavour": "xgboost", "params": {"subsample": 0.7, "colsample_bytree": 0.7}},
        {"flavour": "lightgbm", "params": {"bagging_fraction": 0.7, "bagging_freq": 1}},
    ],
    ids=lambda s: s["flavour"],
)
def test_same_data_and_seed_give_identical_predictions(
    tmp_path: Path, numeric: Any, spec: dict[str, Any]
) -> None:
    train, eval_ = numeric
    request = eval_.drop(columns="y")
    outputs = []
    for attempt, seed in enumerate((7, 7, 8)):
        fit_model(train, eval_, label="y", estimator=spec, seed=seed).save(tmp_path / f"{attempt}")
        outputs.append(load_bundle(tmp_path / f"{attempt}").predict_proba(request))
    assert np.array_equal(outputs[0], outputs[1])
    assert not np.array_equal(outputs[0], outputs[2]), "the seed is not used"
    assert load_bundle(tmp_path / "0").manifest.seed == 7


# -- training functions ------------------------------------------------------------------


def train_forest(ctx: TrainContext) -> Any:
    model = RandomForestClassifier(n_estimators=ctx.params.get("trees", 5), random_state=ctx.seed)
    model.fit(ctx.x_train, ctx.y_train)
    for step in range(3):
        ctx.log_metric("loss", 1.0 / (step + 1), step=step)
    ctx.log_metric("eval_accuracy", model.score(ctx.x_eval, ctx.y_eval))
    return model


def explode(ctx: TrainContext) -> Any:
    raise ValueError("boom: the GPU caught fire")


def test_a_training_function_gets_the_context_and_logs_metrics(
    tmp_path: Path, numeric: Any
) -> None:
    train, eval_ = numeric
    result = fit_model(train, eval_, label="y", train_fn=train_forest, params={"trees": 3})
    assert result.model.n_estimators == 3
    assert result.metrics["loss"] == pytest.approx(1 / 3) and "eval_accuracy" in result.metrics
    assert [p["step"] for p in result.history] == [0, 1, 2]
    manifest = result.save(tmp_path / "b", lineage={"run_id": 1})
    assert manifest.params == {"trees": 3} and manifest.lineage == {"run_id": 1}


def test_a_training_function_by_import_path(numeric: Any) -> None:
    assert resolve_train_fn(f"{__name__}:train_forest") is train_forest
    with pytest.raises(TrainingError, match=r"has no function 'train_forst' \(did you mean"):
        resolve_train_fn(f"{__name__}:train_forst")
    with pytest.raises(TrainingError, match=r"must be 'module:function'"):
        resolve_train_fn("no_colon")


def test_a_training_function_that_raises_is_a_training_error(numeric: Any) -> None:
    train, eval_ = numeric
    with pytest.raises(TrainingError, match=r"'explode' raised ValueError: boom") as info:
        fit_model(train, eval_, label="y", train_fn=explode)
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(TrainingError, match=r"returned None"):
        fit_model(train, eval_, label="y", train_fn=lambda ctx: None)


def test_exactly_one_of_spec_and_function(numeric: Any) -> None:
    train, eval_ = numeric
    with pytest.raises(TrainingError, match=r"exactly one of estimator"):
        fit_model(train, eval_, label="y")
    with pytest.raises(TrainingError, match=r"exactly one of estimator"):
        fit_model(train, eval_, label="y", estimator={"flavour": "xgboost"}, train_fn=explode)


def test_bad_labels_are_named(numeric: Any) -> None:
    train, eval_ = numeric
    spec = {"flavour": "xgboost"}
    with pytest.raises(TrainingError, match=r"label column 'target' is not in the train split"):
        fit_model(train, eval_, label="target", estimator=spec)
    broken = train.copy()
    broken.loc[3, "y"] = None
    with pytest.raises(TrainingError, match=r"label column 'y' has 1 missing value\(s\) in train"):
        fit_model(broken, eval_, label="y", estimator=spec)
    with pytest.raises(TrainingError, match=r"the eval split has labels not in train: \['maybe'\]"):
        fit_model(train, eval_.assign(y="maybe"), label="y", estimator=spec)
    with pytest.raises(TrainingError, match=r"eval.*: missing column 'x2'|missing column 'x2'"):
        fit_model(train, eval_.drop(columns="x2"), label="y", estimator=spec)


def test_task_inference() -> None:
    assert infer_task(pd.Series([1.5, 2.0])) == "regression"
    assert infer_task(pd.Series([True, False])) == "binary"
    assert infer_task(pd.Series(["a", "b", "c"])) == "multiclass"
    assert infer_task(pd.Series(range(100))) == "regression"


def test_preprocessing_is_applied_for_training_and_shipped(tmp_path: Path, splits: Any) -> None:
    train, eval_ = splits
    features = train.drop(columns="y")
    prep = ColumnTransformer(
        [("num", StandardScaler(), ["x1", "x2", "n"]), ("cat", OneHotEncoder(), ["city"])]
    ).fit(features)
    spec = {"flavour": "sklearn", "class": "sklearn.linear_model.LogisticRegression"}
    result = fit_model(train, eval_, label="y", estimator=spec, preprocessing=prep)
    result.save(tmp_path / "b")
    loaded = load_bundle(tmp_path / "b")
    assert loaded.preprocessing is not None
    expected = result.model.predict(prep.transform(eval_.drop(columns="y")))
    assert np.array_equal(loaded.predict(eval_.drop(columns="y")), expected)


def test_optional_libraries_are_imported_on_first_use_only() -> None:
    code = (
        "import sys, conveyor.modeling.bundle, conveyor.modeling.training, "
        "conveyor.components.model_train; print(sorted(m for m in ('xgboost', 'lightgbm') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
