"""Metrics equal scikit-learn's functions; the calibration error matches a worked example."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.preprocessing import label_binarize

from conveyor.modeling.evaluation_model import EvaluationResult
from conveyor.modeling.metrics import (
    METRICS,
    EvaluationError,
    calibration_bins,
    class_support,
    compute_metrics,
    confusion_matrix,
    expected_calibration_error,
    higher_is_better,
    metric_names,
    pr_curve,
    resolve_labels,
    roc_curve,
    validate_metrics,
)

TOL = 1e-12
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sklearn_binary(y_true, y_pred, y_score, positive):
    """The reference: scikit-learn called directly, the positive class given explicitly."""
    truth = np.asarray(y_true) == positive
    prob_true, prob_pred = calibration_curve(truth, y_score, n_bins=10, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], y_score), minlength=10)
    ece = float(np.sum(counts[counts > 0] * np.abs(prob_true - prob_pred)) / len(truth))
    return {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "precision": skm.precision_score(y_true, y_pred, pos_label=positive, zero_division=0),
        "recall": skm.recall_score(y_true, y_pred, pos_label=positive, zero_division=0),
        "f1": skm.f1_score(y_true, y_pred, pos_label=positive, zero_division=0),
        "roc_auc": skm.roc_auc_score(truth, y_score),
        "pr_auc": skm.average_precision_score(truth, y_score),
        "log_loss": skm.log_loss(truth, y_score, labels=[False, True]),
        "calibration_error": ece,
    }


def assert_close(ours: dict[str, float], reference: dict[str, float]) -> None:
    assert list(ours) == list(reference)
    for name, value in reference.items():
        assert ours[name] == pytest.approx(value, abs=TOL, rel=0), name


# -- binary --------------------------------------------------------------------------------

scores = st.one_of(
    st.floats(0.0, 1.0, allow_nan=False),
    st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.7, 1.0]),  # ties and bin edges
)


@st.composite
def binary_data(draw):
    n = draw(st.integers(2, 80))
    y_true = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    assume(0 < sum(y_true) < n)  # both classes, so every metric is defined
    y_pred = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    y_score = draw(st.lists(scores, min_size=n, max_size=n))
    return np.array(y_true), np.array(y_pred), np.array(y_score)


@SETTINGS
@given(binary_data())
def test_binary_metrics_equal_sklearn(data):
    y_true, y_pred, y_score = data
    ours = compute_metrics("binary", y_true, y_pred, y_score)
    assert_close(ours, sklearn_binary(y_true, y_pred, y_score, positive=1))


@SETTINGS
@given(binary_data())
def test_string_labels_with_a_positive_class_that_sorts_first(data):
    y_true, y_pred, y_score = data
    names = np.array(["rejected", "approved"])  # 1 -> "approved", which sorts first
    y_true_s, y_pred_s = names[y_true], names[y_pred]
    labels = ["rejected", "approved"]  # [negative, positive]
    ours = compute_metrics("binary", y_true_s, y_pred_s, y_score, labels=labels)
    assert_close(ours, sklearn_binary(y_true_s, y_pred_s, y_score, positive="approved"))
    default = compute_metrics("binary", y_true_s, y_pred_s, metrics=["recall"])  # sorted labels
    assert default["recall"] == skm.recall_score(
        y_true_s, y_pred_s, pos_label="rejected", zero_division=0
    )


def test_two_probability_columns_use_the_positive_one():
    y_true = np.array([0, 1, 1, 0, 1])
    p = np.array([0.2, 0.7, 0.6, 0.4, 0.9])
    two = compute_metrics("binary", y_true, y_score=np.column_stack([1 - p, p]))
    assert two == compute_metrics("binary", y_true, y_score=p)
    assert set(two) == {"roc_auc", "pr_auc", "log_loss", "calibration_error"}


def test_undefined_metrics_are_nan_not_warnings():
    ones = compute_metrics("binary", [1, 1, 1], [1, 0, 1], [0.9, 0.2, 0.8], ["roc_auc", "pr_auc"])
    assert all(math.isnan(v) for v in ones.values())
    assert math.isnan(compute_metrics("regression", [1.0], [2.0], metrics=["r2"])["r2"])


def test_precision_without_predicted_positives_is_zero_as_sklearn():
    value = compute_metrics("binary", [0, 1], [0, 0], metrics=["precision"])["precision"]
    assert value == skm.precision_score([0, 1], [0, 0], zero_division=0) == 0.0


# -- calibration, worked by hand -----------------------------------------------------------


def test_expected_calibration_error_hand_worked_example():
    """Ten rows, five equal-width bins [0, .2], (.2, .4], (.4, .6], (.6, .8], (.8, 1].

    bin (0, .2]:  p = .1, .1, .2       y = 0, 0, 1   mean p = .4/3   positives 1/3
                  |1/3 - .4/3| = .6/3 = .2,          weight 3/10 -> .06
    bin (.2, .4]: p = .3               y = 0         |0 - .3| = .3,  weight 1/10 -> .03
    bin (.4, .6]: empty                              contributes 0
    bin (.6, .8]: p = .7, .8           y = 1, 0      mean p = .75   positives .5
                  |.5 - .75| = .25,                  weight 2/10 -> .05
    bin (.8, 1]:  p = .9, .9, 1.0, .95 y = 1, 1, 1, 1 mean p = .9375 positives 1
                  |1 - .9375| = .0625,               weight 4/10 -> .025
    ECE = .06 + .03 + .05 + .025 = .165   (0.2 and 0.8 sit on edges: they go to the lower bin)
    """
    y_prob = [0.1, 0.1, 0.2, 0.3, 0.7, 0.8, 0.9, 0.9, 1.0, 0.95]
    y_true = [0, 0, 1, 0, 1, 0, 1, 1, 1, 1]
    assert expected_calibration_error(y_true, y_prob, n_bins=5) == pytest.approx(0.165, abs=TOL)
    bins = calibration_bins(y_true, y_prob, n_bins=5)
    assert [b.count for b in bins] == [3, 1, 2, 4]
    assert [b.fraction_positive for b in bins] == pytest.approx([1 / 3, 0.0, 0.5, 1.0])
    assert [b.mean_predicted for b in bins] == pytest.approx([0.4 / 3, 0.3, 0.75, 0.9375])
    assert (bins[2].lower, bins[2].upper) == pytest.approx((0.6, 0.8))
    prob_true, prob_pred = calibration_curve(y_true, y_prob, n_bins=5)
    assert [b.fraction_positive for b in bins] == pytest.approx(prob_true, abs=TOL)
    assert [b.mean_predicted for b in bins] == pytest.approx(prob_pred, abs=TOL)


def test_perfectly_calibrated_scores_have_zero_error():
    assert expected_calibration_error([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.0


# -- multiclass ----------------------------------------------------------------------------


@st.composite
def multiclass_data(draw, k=3):
    n = draw(st.integers(k, 60))
    y_true = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    assume(len(set(y_true.tolist())) == k)
    y_pred = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    raw = np.array(draw(st.lists(st.floats(0.01, 1.0), min_size=n * k, max_size=n * k)))
    proba = raw.reshape(n, k)
    return y_true, y_pred, proba / proba.sum(axis=1, keepdims=True)


@SETTINGS
@given(multiclass_data())
def test_multiclass_metrics_equal_sklearn(data):
    y_true, y_pred, proba = data
    ours = compute_metrics("multiclass", y_true, y_pred, proba)
    reference = {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "precision": skm.precision_score(y_true, y_pred, average="macro", zero_division=0),
        "recall": skm.recall_score(y_true, y_pred, average="macro", zero_division=0),
        "f1": skm.f1_score(y_true, y_pred, average="macro", zero_division=0),
        "roc_auc": skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro"),
        "pr_auc": skm.average_precision_score(y_true, proba, average="macro"),
        "log_loss": skm.log_loss(y_true, proba),
    }
    assert_close(ours, reference)


def test_multiclass_score_columns_follow_the_given_label_order():
    rng = np.random.default_rng(3)
    y_true = rng.choice(["cat", "dog", "eel"], size=50)
    proba = rng.dirichlet([1, 1, 1], size=50)
    order = ["eel", "cat", "dog"]  # proba's columns, not sorted
    ours = compute_metrics("multiclass", y_true, y_score=proba, labels=order)
    sorted_proba = proba[:, [1, 2, 0]]  # columns cat, dog, eel
    assert ours["roc_auc"] == pytest.approx(
        skm.roc_auc_score(y_true, sorted_proba, multi_class="ovr"), abs=TOL
    )
    assert ours["log_loss"] == pytest.approx(skm.log_loss(y_true, sorted_proba), abs=TOL)
    indicator = label_binarize(y_true, classes=["cat", "dog", "eel"])
    assert ours["pr_auc"] == pytest.approx(
        skm.average_precision_score(indicator, sorted_proba), abs=TOL
    )


# -- regression ----------------------------------------------------------------------------

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@SETTINGS
@given(st.lists(st.tuples(finite, finite), min_size=2, max_size=60))
def test_regression_metrics_equal_sklearn(pairs):
    y_true, y_pred = np.array(pairs).T
    ours = compute_metrics("regression", y_true, y_pred)
    assert ours["rmse"] == pytest.approx(skm.root_mean_squared_error(y_true, y_pred), rel=TOL)
    assert ours["mae"] == pytest.approx(skm.mean_absolute_error(y_true, y_pred), rel=TOL)
    assert ours["r2"] == pytest.approx(skm.r2_score(y_true, y_pred), rel=TOL, abs=TOL)


# -- helpers, registry ---------------------------------------------------------------------


def test_confusion_matrix_and_support_equal_sklearn():
    y_true, y_pred = ["b", "a", "b", "c", "b"], ["b", "b", "a", "c", "b"]
    labels = ["c", "b", "a"]
    result = confusion_matrix(y_true, y_pred, labels)
    assert result.matrix == skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    assert result.labels == labels
    assert class_support(y_true, labels) == {"c": 1, "b": 3, "a": 1}


def test_curves_equal_sklearn_and_are_downsampled():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, 5000)
    y_score = rng.random(5000)
    roc, pr = roc_curve(y_true, y_score), pr_curve(y_true, y_score)
    assert roc is not None and pr is not None
    fpr, tpr, _ = skm.roc_curve(y_true, y_score)
    precision, recall, _ = skm.precision_recall_curve(y_true, y_score)
    for curve, (x, y) in ((roc, (fpr, tpr)), (pr, (recall, precision))):
        assert len(curve.x) == len(curve.y) == len(curve.thresholds) <= 200
        assert (curve.x[0], curve.y[0], curve.x[-1], curve.y[-1]) == (x[0], y[0], x[-1], y[-1])
        assert set(zip(curve.x, curve.y, strict=True)) <= set(zip(x, y, strict=True))
    small = roc_curve([0, 1, 1], [0.2, 0.9, 0.6])
    assert small is not None and small.thresholds[0] == math.inf
    assert roc_curve([1, 1], [0.2, 0.3]) is None


def test_direction_table_covers_every_metric():
    assert {
        name for task in ("binary", "multiclass", "regression") for name in metric_names(task)
    } == set(METRICS)
    assert [m for m in METRICS if not higher_is_better(m)] == [
        "log_loss",
        "calibration_error",
        "rmse",
        "mae",
    ]


def test_resolve_labels():
    assert resolve_labels("binary", [1, 1]) == [0, 1]
    assert resolve_labels("binary", [True]) == [False, True]
    assert resolve_labels("binary", np.array(["no", "yes"])) == ["no", "yes"]
    assert resolve_labels("regression", [1.0, 2.0]) == []


def test_result_is_strict_json_and_round_trips_nan():
    result = EvaluationResult(task="binary", count=2, overall={"roc_auc": math.nan, "f1": 0.5})
    text = result.model_dump_json()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    back = EvaluationResult.model_validate_json(text)
    assert math.isnan(back.overall["roc_auc"]) and back.overall["f1"] == 0.5


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metrics": ["acuracy"]}, r"unknown metric 'acuracy' \(did you mean 'accuracy'\?\)"),
        ({"metrics": ["zzz"]}, r"unknown metric 'zzz' \(valid: 'accuracy', "),
        ({"metrics": ["rmse"]}, r"'rmse' is for regression tasks, not binary; binary metrics: "),
        ({"metrics": ["roc_auc"], "y_score": None}, r"'roc_auc' needs y_score \(scores or prob"),
        ({"y_pred": [0, 1]}, r"y_pred has 2 rows, y_true has 3"),
        ({"y_pred": [0, 1, 2]}, r"binary task needs 2 labels, the data has 3: \[0, 1, 2\]; use "),
        ({"labels": ["no", "yes"]}, r"the data has labels \[0, 1\] not in labels=\['no', 'yes'\]"),
        ({"y_pred": [0, None, 1]}, r"y_pred has 1 missing values \(rows \[1\]"),
        ({"y_score": [0.5, 2.0, 0.1], "metrics": ["log_loss"]}, r"log_loss needs probabilities"),
        ({"y_score": [[0.5], [0.5], [0.5]]}, r"y_score has shape \(3, 1\), expected \(n,\)"),
        ({"y_pred": None, "y_score": None}, r"no metric to compute: give y_pred or y_score"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, match):
    args = {"y_pred": [0, 1, 1], "y_score": [0.2, 0.8, 0.6], **kwargs}
    with pytest.raises(EvaluationError, match=match):
        compute_metrics("binary", [0, 1, 0], **args)


def test_bad_task_and_multiclass_only_metric_errors():
    with pytest.raises(EvaluationError, match=r"unknown task 'binry' \(did you mean 'binary'\?\)"):
        compute_metrics("binry", [0, 1], [0, 1])  # type: ignore[arg-type]
    with pytest.raises(EvaluationError, match=r"'calibration_error' is for binary tasks, not mult"):
        validate_metrics("multiclass", ["calibration_error"])
    with pytest.raises(EvaluationError, match=r"y_score has shape \(2, 2\), expected \(n, 3\)"):
        compute_metrics("multiclass", [0, 1], y_score=[[1, 0], [0, 1]], labels=[0, 1, 2])
    with pytest.raises(EvaluationError, match="cannot compute metrics on 0 rows"):
        compute_metrics("regression", [], [])
