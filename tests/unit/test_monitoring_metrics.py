"""Online metrics equal the offline ones; metric keys and results serialise losslessly."""

from __future__ import annotations

import datetime as dt
import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.modeling.metrics import compute_metrics
from conveyor.monitoring import DriftVerdict, WindowResult, metric_key, split_metric_key
from conveyor.monitoring.online_metrics import classification_metrics, regression_metrics
from conveyor.monitoring.performance import performance_metrics

CLASSIFICATION = ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"]


def _offline(task: str, y_true: np.ndarray, y_pred: np.ndarray, scores: object, k: int) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's own deprecation and undefined warnings
        return compute_metrics(task, y_true, y_pred, scores, CLASSIFICATION, list(range(k)))  # type: ignore[arg-type]


def _same(online: dict[str, float], offline: dict[str, float]) -> None:
    assert online.keys() == offline.keys()
    for name, value in offline.items():
        if math.isnan(value):
            assert math.isnan(online[name]), name
        else:
            assert online[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 60),
    ties=st.booleans(),
)
def test_binary_metrics_equal_compute_metrics(seed: int, n: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, n)
    y_pred = rng.integers(0, 2, n)
    scores = rng.random(n).round(1 if ties else 6)
    online = classification_metrics(y_true, y_pred, scores, 2, CLASSIFICATION)
    _same(online, _offline("binary", y_true, y_pred, scores, 2))


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60), k=st.integers(3, 5))
def test_multiclass_metrics_equal_compute_metrics(seed: int, n: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, n)
    y_pred = rng.integers(0, k, n)
    raw = rng.random((n, k)).round(2) + 0.01
    scores = raw / raw.sum(axis=1, keepdims=True)
    online = classification_metrics(y_true, y_pred, scores, k, CLASSIFICATION)
    _same(online, _offline("multiclass", y_true, y_pred, scores, k))


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 40), constant=st.booleans())
def test_regression_metrics_equal_compute_metrics(seed: int, n: int, constant: bool) -> None:
    rng = np.random.default_rng(seed)
    y_true = np.full(n, 3.0) if constant else rng.normal(size=n)
    y_pred = y_true + rng.normal(scale=0.5, size=n) * rng.integers(0, 2)
    names = ["rmse", "mae", "r2"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        offline = compute_metrics("regression", y_true, y_pred, metrics=names)
    _same(regression_metrics(y_true, y_pred, names), offline)


def test_without_scores_only_label_metrics_are_computed() -> None:
    values = classification_metrics(np.array([0, 1]), np.array([1, 1]), None, 2, CLASSIFICATION)
    assert values == {"accuracy": 0.5, "precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3)}


def test_performance_metrics_follow_the_task() -> None:
    assert performance_metrics("binary") == [
        "accuracy",
        "f1",
        "precision",
        "recall",
        "roc_auc",
        "log_loss",
    ]
    assert performance_metrics("multiclass") == performance_metrics("binary")
    assert performance_metrics("regression") == ["rmse", "mae", "r2"]
    assert performance_metrics(None) == []


@given(
    metric=st.sampled_from(["drift", "accuracy", "missing_rate", "count"]),
    feature=st.one_of(st.none(), st.text(min_size=1).filter(lambda t: "[" not in t)),
    slice_name=st.one_of(st.none(), st.text(min_size=1)),
)
def test_metric_keys_round_trip(metric: str, feature: str | None, slice_name: str | None) -> None:
    key = metric_key(metric, feature, slice_name)
    assert split_metric_key(key) == (metric, feature, slice_name)


def test_window_result_is_json_and_round_trips() -> None:
    start = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    result = WindowResult(
        model="census",
        version=3,
        route_kind="shadow",
        index=12,
        start=start,
        end=start + dt.timedelta(hours=1),
        complete=True,
        routes=("production:shadow",),
        metrics={"count": 500.0, "drift:age": 0.31, "accuracy": None, "roc_auc": float("nan")},
        notes={"accuracy": "labels are due at ..."},
        drift={"drift:age": DriftVerdict("wasserstein", 0.25, True, True, "schema drift")},
        thresholds={"missing_rate:age": 0.0},
        inputs={"age": {"count": 500, "mean": np.float64(41.5)}},
        reference={"training_data": "a3"},
    )
    text = json.dumps(result.to_dict(), allow_nan=False)
    back = WindowResult.from_dict(json.loads(text))
    assert back.metrics == {"count": 500.0, "drift:age": 0.31, "accuracy": None, "roc_auc": None}
    assert back.drift == result.drift and back.start == start and back.route_kind == "shadow"
    assert back.inputs["age"]["mean"] == 41.5 and back.series == ("census", 3, "shadow")
