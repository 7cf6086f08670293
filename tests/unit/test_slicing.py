"""Slice specs parse from plain data; per-slice metrics equal scikit-learn on the slice's rows."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from conveyor.modeling.evaluation_model import EvaluationResult
from conveyor.modeling.metrics import EvaluationError, compute_metrics
from conveyor.modeling.slicing import (
    SliceColumn,
    compute_sliced_metrics,
    parse_slice,
    parse_slices,
    slice_rows,
)


@pytest.fixture
def census() -> pd.DataFrame:
    """A census-like frame: label depends on age and sex, scores are noisy probabilities."""
    rng = np.random.default_rng(7)
    n = 2000
    frame = pd.DataFrame(
        {
            "age": rng.integers(17, 90, n).astype(float),
            "sex": rng.choice(["Female", "Male"], n, p=[0.4, 0.6]),
            "race": rng.choice(["White", "Black", "Asian", "Other"], n, p=[0.7, 0.15, 0.1, 0.05]),
        }
    )
    logit = (frame["age"] - 45) / 15 + (frame["sex"] == "Male") * 0.8 + rng.normal(0, 1, n)
    frame["label"] = np.where(logit > 0.5, ">50K", "<=50K")
    frame["score"] = 1 / (1 + np.exp(-(logit + rng.normal(0, 1, n))))
    frame["pred"] = np.where(frame["score"] > 0.5, ">50K", "<=50K")
    frame.index = frame.index * 3 + 11  # not a RangeIndex: positions must be used throughout
    return frame


def evaluate(frame: pd.DataFrame, **kwargs) -> EvaluationResult:
    args = {"task": "binary", "y_pred_col": "pred", "y_score_col": "score", "min_count": 30}
    return compute_sliced_metrics(frame, "label", **{**args, **kwargs})


# -- parsing -------------------------------------------------------------------------------


def test_parse_all_forms():
    specs = parse_slices(
        [
            "sex",
            {"feature": "age", "buckets": [0, 30, 50, 120]},
            {"feature": "age", "quantiles": 4},
            ["sex", "race"],
            ["sex", {"feature": "age", "buckets": [0, 40, 120]}],
        ]
    )
    assert [s.name for s in specs] == ["sex", "age", "age", "sex x race", "sex x age"]
    assert specs[1].columns == (SliceColumn(feature="age", buckets=(0.0, 30.0, 50.0, 120.0)),)
    assert specs[2].columns[0].quantiles == 4
    assert specs[4].columns[1].to_plain() == {"feature": "age", "buckets": [0.0, 40.0, 120.0]}
    assert parse_slice("sex").columns[0].to_plain() == "sex"
    assert parse_slices("sex") == [parse_slice("sex")]


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (3, r"slice spec 3 must be a feature name, a mapping with 'feature'"),
        ("", r"empty feature name"),
        (["a", "b", "c"], r"a cross has exactly two features, got 3"),
        (["a", "a"], r"crosses a feature with itself"),
        (
            {"feature": "age", "bucket": [0, 1]},
            r"unknown key 'bucket' \(did you mean 'buckets'\?\)",
        ),
        ({"buckets": [0, 1]}, r"'feature' must be a column name"),
        ({"feature": "age", "buckets": [3]}, r"'buckets' must be a list of at least two numbers"),
        ({"feature": "age", "buckets": [0, "x"]}, r"'buckets' must be a list of at least two"),
        ({"feature": "age", "buckets": [0, 50, 30]}, r"edges must be finite and strictly incr"),
        ({"feature": "age", "quantiles": 1}, r"'quantiles' must be an integer of at least 2"),
        ({"feature": "age", "quantiles": True}, r"'quantiles' must be an integer"),
        ({"feature": "age", "quantiles": 4, "buckets": [0, 1]}, r"'buckets' or 'quantiles', not"),
    ],
)
def test_bad_specs_are_clear_errors(spec, match):
    with pytest.raises(EvaluationError, match=match):
        parse_slice(spec)


def test_duplicate_spec_is_an_error():
    with pytest.raises(EvaluationError, match=r"slice spec 'sex' is given twice"):
        parse_slices(["sex", "sex"])


def test_slice_on_a_missing_column_names_it_and_lists_columns(census):
    with pytest.raises(
        EvaluationError,
        match=r"slice 'sexe': column 'sexe' is not in the data \(did you mean 'sex'\?\); "
        r"columns: 'age', 'sex', 'race', 'label', 'score', 'pred'",
    ):
        evaluate(census, slices=["sexe"])
    with pytest.raises(EvaluationError, match=r"slice 'sex x income': column 'income' is not in"):
        evaluate(census, slices=[["sex", "income"]])
    with pytest.raises(EvaluationError, match=r"y_score_col: column 'proba' is not in the data"):
        evaluate(census, y_score_col="proba")


def test_buckets_need_a_numeric_column(census):
    with pytest.raises(EvaluationError, match=r"buckets need a numeric column; 'sex' has dtype"):
        evaluate(census, slices=[{"feature": "sex", "quantiles": 2}])


# -- assigning rows ------------------------------------------------------------------------


def test_bucket_names_and_edges():
    frame = pd.DataFrame({"age": [-5, 0, 29.5, 30, 49, 50, 120, 121, None]})
    rows = slice_rows(frame, parse_slice({"feature": "age", "buckets": [0, 30, 50, 120]}))
    counts = {name: len(r) for name, (_, r) in rows.items()}
    assert counts == {
        "age=[0, 30)": 2,
        "age=[30, 50)": 2,
        "age=[50, 120]": 2,  # the last bucket is closed
        "age=<below 0>": 1,
        "age=<above 120>": 1,
        "age=<missing>": 1,
    }
    assert rows["age=[50, 120]"][0] == {"age": "[50, 120]"}
    assert rows["age=[50, 120]"][1].tolist() == [5, 6]


def test_quantile_buckets_split_the_data_evenly():
    frame = pd.DataFrame({"x": np.arange(100.0)})
    rows = slice_rows(frame, parse_slice({"feature": "x", "quantiles": 4}))
    assert list(rows) == ["x=[0, 24.75)", "x=[24.75, 49.5)", "x=[49.5, 74.25)", "x=[74.25, 99]"]
    assert [len(r) for _, r in rows.values()] == [25, 25, 25, 25]
    constant = slice_rows(
        pd.DataFrame({"x": [3.0] * 5}), parse_slice({"feature": "x", "quantiles": 4})
    )
    assert {name: len(r) for name, (_, r) in constant.items()} == {"x=[3, 3]": 5}


def test_values_are_ordered_naturally_and_missing_last():
    frame = pd.DataFrame({"n": [10, 9, 2, 9], "s": pd.Categorical(["b", None, "a", "b"])})
    assert list(slice_rows(frame, parse_slice("n"))) == ["n=2", "n=9", "n=10"]
    assert list(slice_rows(frame, parse_slice("s"))) == ["s=a", "s=b", "s=<missing>"]


def test_crosses_name_both_features(census):
    rows = slice_rows(census, parse_slice(["sex", "race"]))
    assert "sex=Female & race=Black" in rows
    assert rows["sex=Female & race=Black"][0] == {"sex": "Female", "race": "Black"}
    mask = ((census["sex"] == "Female") & (census["race"] == "Black")).to_numpy()
    assert rows["sex=Female & race=Black"][1].tolist() == np.flatnonzero(mask).tolist()
    assert sum(len(r) for _, r in rows.values()) == len(census)
    assert list(rows)[:4] == [
        f"sex=Female & race={r}" for r in ["Asian", "Black", "Other", "White"]
    ]


# -- sliced metrics ------------------------------------------------------------------------


def test_every_slice_equals_sklearn_on_its_rows(census):
    result = evaluate(
        census,
        slices=["sex", {"feature": "age", "buckets": [0, 30, 50, 120]}, ["sex", "race"]],
        labels=["<=50K", ">50K"],
    )
    assert result.overall == compute_metrics(
        "binary", census["label"], census["pred"], census["score"], labels=["<=50K", ">50K"]
    )
    masks = {
        "sex=Female": census["sex"] == "Female",
        "age=[30, 50)": (census["age"] >= 30) & (census["age"] < 50),
        "sex=Male & race=Asian": (census["sex"] == "Male") & (census["race"] == "Asian"),
    }
    for name, mask in masks.items():
        part = census[mask]
        truth = part["label"] == ">50K"
        ours = result.slices[name]
        assert ours.count == len(part)
        assert ours.metrics["accuracy"] == pytest.approx(
            skm.accuracy_score(part["label"], part["pred"]), abs=1e-12
        )
        assert ours.metrics["f1"] == pytest.approx(
            skm.f1_score(part["label"], part["pred"], pos_label=">50K"), abs=1e-12
        )
        assert ours.metrics["roc_auc"] == pytest.approx(
            skm.roc_auc_score(truth, part["score"]), abs=1e-12
        )
        assert ours.metrics["log_loss"] == pytest.approx(
            skm.log_loss(truth, part["score"], labels=[False, True]), abs=1e-12
        )
    assert result.slices["sex=Female"].spec == "sex"
    assert result.slices["age=[30, 50)"].values == {"age": "[30, 50)"}


def test_small_slices_are_reported_but_flagged(census):
    result = evaluate(census, slices=[["sex", "race"]], min_count=60)
    flagged = {name for name, s in result.slices.items() if s.flagged}
    assert flagged == {name for name, s in result.slices.items() if s.count < 60}
    assert "sex=Female & race=Other" in flagged  # ~40 rows
    assert result.min_count == 60


def test_result_has_plots_support_and_fairness(census):
    result = evaluate(
        census, slices=["sex"], sensitive_features=["sex", "race"], model_version="m:1"
    )
    assert result.labels == ["<=50K", ">50K"] and result.count == len(census)
    assert result.support == census["label"].value_counts().sort_index().to_dict()
    assert result.confusion_matrix is not None
    assert (
        result.confusion_matrix.matrix
        == skm.confusion_matrix(census["label"], census["pred"], labels=["<=50K", ">50K"]).tolist()
    )
    assert result.roc_curve is not None and len(result.roc_curve.x) <= 200
    assert result.pr_curve is not None and result.calibration is not None
    assert sum(b.count for b in result.calibration) == len(census)
    assert set(result.fairness) == {"sex", "race"}
    assert result.fairness["sex"].positive_label == ">50K"
    back = EvaluationResult.model_validate_json(result.model_dump_json())
    assert back.model_dump() == result.model_dump() and back.model_version == "m:1"
    json.loads(result.model_dump_json())


def test_undefined_metric_on_a_one_class_slice_is_nan():
    frame = pd.DataFrame(
        {
            "y": [0, 1, 0, 1, 1, 1],
            "p": [0, 1, 1, 1, 1, 0],
            "s": [0.1, 0.9, 0.6, 0.8, 0.7, 0.4],
            "g": list("aaaabb"),
        }
    )
    result = compute_sliced_metrics(
        frame, "y", task="binary", y_pred_col="p", y_score_col="s", slices=["g"], min_count=0
    )
    assert math.isnan(result.slices["g=b"].metrics["roc_auc"])
    assert result.slices["g=b"].metrics["accuracy"] == 0.5


def test_multiclass_and_regression():
    rng = np.random.default_rng(1)
    proba = rng.dirichlet([1, 1, 1], 300)
    frame = pd.DataFrame(proba, columns=["p_a", "p_b", "p_c"])
    frame["y"] = rng.choice(["a", "b", "c"], 300)
    frame["pred"] = np.array(["a", "b", "c"])[proba.argmax(axis=1)]
    frame["g"] = rng.choice(["x", "y"], 300)
    result = compute_sliced_metrics(
        frame,
        "y",
        task="multiclass",
        y_pred_col="pred",
        y_score_col=["p_a", "p_b", "p_c"],
        slices=["g"],
    )
    part = frame[frame["g"] == "x"]
    assert result.slices["g=x"].metrics["roc_auc"] == pytest.approx(
        skm.roc_auc_score(part["y"], part[["p_a", "p_b", "p_c"]].to_numpy(), multi_class="ovr"),
        abs=1e-12,
    )
    assert result.confusion_matrix is not None and result.roc_curve is None
    frame["target"] = rng.normal(size=300)
    frame["guess"] = frame["target"] + rng.normal(size=300)
    reg = compute_sliced_metrics(
        frame, "target", task="regression", y_pred_col="guess", slices=["g"]
    )
    assert list(reg.overall) == ["rmse", "mae", "r2"] and reg.confusion_matrix is None
    assert reg.slices["g=y"].metrics["mae"] == pytest.approx(
        skm.mean_absolute_error(
            frame.loc[frame.g == "y", "target"], frame.loc[frame.g == "y", "guess"]
        )
    )


def test_bad_frames_are_clear_errors(census):
    with pytest.raises(
        EvaluationError, match=r"column 'label' has 2 missing values \(index \[11, 26\]\)"
    ):
        evaluate(census.assign(label=census["label"].where(~census.index.isin([11, 26]))))
    with pytest.raises(
        EvaluationError, match=r"fairness \(sensitive_features\) needs a binary task"
    ):
        compute_sliced_metrics(
            census, "age", task="regression", y_pred_col="age", sensitive_features=["sex"]
        )
    with pytest.raises(
        EvaluationError, match=r"sensitive feature 'gender': column 'gender' is not"
    ):
        evaluate(census, sensitive_features=["gender"])
    with pytest.raises(
        EvaluationError, match=r"unknown metric 'roc_acu' \(did you mean 'roc_auc'\?\)"
    ):
        evaluate(census, metrics=["roc_acu"])
    with pytest.raises(EvaluationError, match=r"min_count must be >= 0"):
        evaluate(census, min_count=-1)
