"""Model metrics: one registry of names, tasks and directions, computed with scikit-learn.

:data:`METRICS` is the single table that says which metrics exist, which task each belongs
to, what it needs (hard predictions or scores) and whether higher is better. Thresholds and
blessing (:mod:`conveyor.modeling.thresholds`) read directions from here and nowhere else.

Every value equals scikit-learn's function on the same data (the tests check this); values
undefined on the data at hand (ROC AUC with one class present, R2 of one row) are ``nan``
rather than a warning. ``calibration_error`` is the expected calibration error over
equal-width bins, binned like ``calibration_curve(strategy="uniform")``. Errors are
:class:`EvaluationError`, scikit-learn's ``ValueError`` translated here with the original chained.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn import metrics as skm

from conveyor.exceptions import ConveyorError, did_you_mean
from conveyor.modeling.evaluation_model import CalibrationBin, ConfusionMatrix, Curve, Task

__all__ = [
    "DEFAULT_CALIBRATION_BINS",
    "MAX_CURVE_POINTS",
    "METRICS",
    "TASKS",
    "EvaluationError",
    "MetricInfo",
    "calibration_bins",
    "class_support",
    "compute_metrics",
    "confusion_matrix",
    "expected_calibration_error",
    "higher_is_better",
    "metric_names",
    "pr_curve",
    "resolve_labels",
    "roc_curve",
    "validate_metrics",
]

TASKS: tuple[Task, ...] = ("binary", "multiclass", "regression")
DEFAULT_CALIBRATION_BINS = 10
MAX_CURVE_POINTS = 200


class EvaluationError(ConveyorError):
    """A metric, slice, fairness or threshold specification or its input data is invalid."""


@dataclass(frozen=True)
class MetricInfo:
    """What a metric is: the tasks that have it, its input, and its direction."""

    name: str
    tasks: frozenset[Task]
    needs: Literal["y_pred", "y_score"]
    higher_is_better: bool
    description: str


_CLS: frozenset[Task] = frozenset({"binary", "multiclass"})
_BIN: frozenset[Task] = frozenset({"binary"})
_REG: frozenset[Task] = frozenset({"regression"})
#: The metric table: name -> tasks, input, direction. The one place directions live.
METRICS: Mapping[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("accuracy", _CLS, "y_pred", True, "fraction of correct labels"),
        MetricInfo("precision", _CLS, "y_pred", True, "positive class; multiclass: macro"),
        MetricInfo("recall", _CLS, "y_pred", True, "positive class; multiclass: macro"),
        MetricInfo("f1", _CLS, "y_pred", True, "positive class; multiclass: macro"),
        MetricInfo("roc_auc", _CLS, "y_score", True, "ROC area; multiclass: one-vs-rest macro"),
        MetricInfo("pr_auc", _CLS, "y_score", True, "average precision; multiclass: macro"),
        MetricInfo("log_loss", _CLS, "y_score", False, "cross-entropy of the probabilities"),
        MetricInfo("calibration_error", _BIN, "y_score", False, "expected calibration error"),
        MetricInfo("rmse", _REG, "y_pred", False, "root mean squared error"),
        MetricInfo("mae", _REG, "y_pred", False, "mean absolute error"),
        MetricInfo("r2", _REG, "y_pred", True, "coefficient of determination"),
    )
}


def metric_names(task: Task) -> tuple[str, ...]:
    """The metrics a task can have, in table order.

    Example:
        >>> metric_names("regression")
        ('rmse', 'mae', 'r2')
    """
    _check_task(task)
    return tuple(name for name, info in METRICS.items() if task in info.tasks)


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better (the direction table).

    Example:
        >>> higher_is_better("roc_auc"), higher_is_better("log_loss")
        (True, False)
    """
    if metric not in METRICS:
        raise EvaluationError(f"unknown metric {metric!r}{did_you_mean(metric, METRICS)}")
    return METRICS[metric].higher_is_better


def validate_metrics(task: Task, metrics: Sequence[str]) -> tuple[str, ...]:
    """Check that every name is a known metric the task can have; return them de-duplicated.

    Raises:
        EvaluationError: an unknown name (with a did-you-mean hint) or one of another task.

    Example:
        >>> validate_metrics("binary", ["accuracy", "roc_auc"])
        ('accuracy', 'roc_auc')
    """
    valid = metric_names(task)
    if isinstance(metrics, str):
        metrics = [metrics]
    for name in metrics:
        if name not in METRICS:
            raise EvaluationError(f"unknown metric {name!r}{did_you_mean(name, METRICS)}")
        if name not in valid:
            tasks = " or ".join(sorted(METRICS[name].tasks))
            raise EvaluationError(
                f"metric {name!r} is for {tasks} tasks, not {task}; "
                f"{task} metrics: {', '.join(valid)}"
            )
    return tuple(dict.fromkeys(metrics))


def compute_metrics(
    task: Task,
    y_true: Any,
    y_pred: Any = None,
    y_score: Any = None,
    metrics: Sequence[str] | None = None,
    labels: Sequence[Any] | None = None,
    *,
    n_bins: int = DEFAULT_CALIBRATION_BINS,
) -> dict[str, float]:
    """Compute metrics of one task on one set of rows.

    Args:
        task: ``"binary"``, ``"multiclass"`` or ``"regression"``.
        y_true: true labels or targets (array-like, 1-D).
        y_pred: predicted labels (classification) or values (regression).
        y_score: binary: probability (or score) of the positive class, 1-D, or two columns
            in ``labels`` order; multiclass: one probability column per label.
        metrics: names to compute; None: every metric of the task whose input is given.
        labels: class labels; binary: ``[negative, positive]``; multiclass: the column
            order of ``y_score``. Default: the sorted labels seen in ``y_true``/``y_pred``.
        n_bins: equal-width bins of ``calibration_error``.

    Returns:
        Metric name -> value, in the order asked (``nan`` where undefined on these rows).

    Raises:
        EvaluationError: unknown metric, metric of another task, missing input, bad shapes.

    Example:
        >>> compute_metrics("binary", [0, 1, 1, 0], y_pred=[0, 1, 0, 0], metrics=["accuracy"])
        {'accuracy': 0.75}
    """
    _check_task(task)
    names = _select(task, metrics, has_pred=y_pred is not None, has_score=y_score is not None)
    yt = _as_1d(y_true, "y_true")
    if len(yt) == 0:
        raise EvaluationError("cannot compute metrics on 0 rows")
    yp = None if y_pred is None else _as_1d(y_pred, "y_pred", len(yt))
    if task == "regression":
        assert yp is not None  # _select asked for it
        return {name: _regression(name, yt.astype(float), yp.astype(float)) for name in names}
    classes = resolve_labels(task, yt, yp, labels)
    scores = None if y_score is None else _as_scores(task, y_score, len(yt), classes)
    data = _Classification(task, yt, yp, scores, classes, n_bins)
    return {name: _classification(name, data) for name in names}


def resolve_labels(
    task: Task, y_true: Any, y_pred: Any = None, labels: Sequence[Any] | None = None
) -> list[Any]:
    """The class labels of a classification task, checked against the data.

    Binary: ``[negative, positive]``; when not given, the two sorted labels seen (a lone
    ``0``/``1``/``True``/``False`` label is completed). Regression: ``[]``.

    Example:
        >>> resolve_labels("binary", ["yes", "no", "yes"])
        ['no', 'yes']
    """
    if task == "regression":
        return []
    seen = _unique(
        [_as_1d(y_true, "y_true")] + ([] if y_pred is None else [_as_1d(y_pred, "y_pred")])
    )
    if labels is not None:
        return _check_given_labels(task, [_scalar(v) for v in labels], seen)
    if task == "binary" and len(seen) == 1 and seen[0] in (0, 1):
        kind = type(seen[0])
        return [kind(0), kind(1)]
    if task == "binary" and len(seen) != 2:
        raise EvaluationError(
            f"a binary task needs 2 labels, the data has {len(seen)}: {_show(seen)}; "
            + ("use task='multiclass'" if len(seen) > 2 else "pass labels=[negative, positive]")
        )
    return seen


def confusion_matrix(y_true: Any, y_pred: Any, labels: Sequence[Any]) -> ConfusionMatrix:
    """Counts of true (rows) by predicted (columns) label, in ``labels`` order.

    Example:
        >>> confusion_matrix([0, 1, 1], [0, 1, 0], labels=[0, 1]).matrix
        [[1, 0], [1, 1]]
    """
    yt = _as_1d(y_true, "y_true")
    yp = _as_1d(y_pred, "y_pred", len(yt))
    matrix = skm.confusion_matrix(yt, yp, labels=list(labels))
    return ConfusionMatrix(labels=[str(v) for v in labels], matrix=matrix.tolist())


def class_support(y_true: Any, labels: Sequence[Any]) -> dict[str, int]:
    """Rows per true label, for every label (0 for absent ones).

    Example:
        >>> class_support(["a", "b", "a"], ["a", "b", "c"])
        {'a': 2, 'b': 1, 'c': 0}
    """
    yt = _as_1d(y_true, "y_true")
    return {str(label): int(np.sum(yt == label)) for label in labels}


def expected_calibration_error(
    y_true: Any, y_prob: Any, n_bins: int = DEFAULT_CALIBRATION_BINS
) -> float:
    """Expected calibration error of binary probabilities over ``n_bins`` equal-width bins.

    ``ECE = sum over bins b of (n_b / n) * |fraction of positives in b - mean prob in b|``.
    Bins are ``(lower, upper]`` (the first also holds 0), as scikit-learn's
    ``calibration_curve(strategy="uniform")`` bins them.

    Args:
        y_true: booleans or 0/1, True for the positive class.
        y_prob: probability of the positive class, in [0, 1].
        n_bins: number of bins.

    Example:
        >>> expected_calibration_error([0, 1, 1, 1], [0.25, 0.25, 0.75, 0.75], n_bins=2)
        0.25
    """
    truth, prob, ids = _binned(y_true, y_prob, n_bins)
    gaps = np.bincount(ids, weights=truth - prob, minlength=n_bins)
    # sum_b (n_b / n) * |mean(truth_b) - mean(prob_b)| == sum_b |sum(truth_b) - sum(prob_b)| / n
    return float(np.abs(gaps).sum() / len(truth))


def calibration_bins(
    y_true: Any, y_prob: Any, n_bins: int = DEFAULT_CALIBRATION_BINS
) -> list[CalibrationBin]:
    """The non-empty bins of a reliability diagram (see :func:`expected_calibration_error`).

    Example:
        >>> [b.count for b in calibration_bins([0, 1, 1], [0.1, 0.7, 0.9], n_bins=2)]
        [1, 2]
    """
    truth, prob, ids = _binned(y_true, y_prob, n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1).tolist()
    counts = np.bincount(ids, minlength=n_bins).tolist()
    prob_sums = np.bincount(ids, weights=prob, minlength=n_bins).tolist()
    true_sums = np.bincount(ids, weights=truth, minlength=n_bins).tolist()
    return [
        CalibrationBin(
            lower=edges[i],
            upper=edges[i + 1],
            count=counts[i],
            mean_predicted=prob_sums[i] / counts[i],
            fraction_positive=true_sums[i] / counts[i],
        )
        for i in range(n_bins)
        if counts[i]
    ]


def roc_curve(y_true: Any, y_score: Any, max_points: int = MAX_CURVE_POINTS) -> Curve | None:
    """ROC curve points (x=FPR, y=TPR), at most ``max_points``; None with one class present.

    ``y_true`` is booleans or 0/1, True for the positive class.

    Example:
        >>> roc_curve([0, 1, 1], [0.2, 0.9, 0.6]).y
        [0.0, 0.5, 1.0, 1.0]
    """
    truth = _truth(y_true)
    if truth.all() or not truth.any():
        return None
    fpr, tpr, thresholds = skm.roc_curve(truth, _as_1d(y_score, "y_score", len(truth)))
    return Curve.from_points(fpr, tpr, thresholds, max_points)


def pr_curve(y_true: Any, y_score: Any, max_points: int = MAX_CURVE_POINTS) -> Curve | None:
    """Precision-recall points (x=recall, y=precision); None without positives.

    ``y_true`` is booleans or 0/1, True for the positive class.
    The last point (recall 0, precision 1) has threshold ``inf``, like ROC's first.

    Example:
        >>> pr_curve([0, 1, 1], [0.2, 0.9, 0.6]).x
        [1.0, 1.0, 0.5, 0.0]
    """
    truth = _truth(y_true)
    if not truth.any():
        return None
    precision, recall, thresholds = skm.precision_recall_curve(
        truth, _as_1d(y_score, "y_score", len(truth))
    )
    return Curve.from_points(recall, precision, [*thresholds.tolist(), math.inf], max_points)


# -- internals -----------------------------------------------------------------------------


def _truth(y_true: Any) -> npt.NDArray[np.bool_]:
    """Booleans (or 0/1) marking the positive class, checked."""
    array = _as_1d(y_true, "y_true")
    if not np.isin(array, [0, 1]).all():
        raise EvaluationError("y_true must be booleans or 0/1 here (True for the positive class)")
    return np.asarray(array == 1, dtype=bool)


def _binned(
    y_true: Any, y_prob: Any, n_bins: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.intp]]:
    """Truth as 0/1, probabilities, and each row's bin index (as calibration_curve bins)."""
    if n_bins < 1:
        raise EvaluationError(f"n_bins must be at least 1, got {n_bins}")
    truth = _truth(y_true).astype(float)
    prob = _probabilities(_as_1d(y_prob, "y_prob", len(truth)).astype(float), "calibration")
    if len(truth) == 0:
        raise EvaluationError("cannot compute calibration on 0 rows")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return truth, prob, np.searchsorted(edges[1:-1], prob)


@dataclass(frozen=True)
class _Classification:
    task: Task
    y_true: npt.NDArray[Any]
    y_pred: npt.NDArray[Any] | None
    y_score: npt.NDArray[np.float64] | None  # binary: 1-D positive; multiclass: (n, k)
    labels: list[Any]
    n_bins: int

    @property
    def positives(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self.y_true == self.labels[-1], dtype=bool)

    @property
    def indices(self) -> npt.NDArray[np.int64]:
        """y_true as column indices of y_score (sklearn wants sorted labels otherwise)."""
        return np.asarray(pd.Index(self.labels).get_indexer(self.y_true), dtype=np.int64)

    def all_classes_present(self) -> bool:
        return len(_unique([self.y_true])) == len(self.labels)


_LABEL_METRICS = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}


def _label_metric(name: str, d: _Classification) -> float:
    fn = _LABEL_METRICS[name]
    if d.task == "binary":
        value = fn(d.y_true, d.y_pred, pos_label=d.labels[-1], zero_division=0.0)
    else:
        value = fn(d.y_true, d.y_pred, average="macro", zero_division=0.0)
    return float(value)


def _score_metric(name: str, d: _Classification) -> float:
    scores = d.y_score
    assert scores is not None
    if name in ("roc_auc", "pr_auc") and not d.all_classes_present():
        return float("nan")  # undefined: a class has no rows
    if d.task == "binary":
        truth = d.positives
        if name == "roc_auc":
            return float(skm.roc_auc_score(truth, scores))
        if name == "pr_auc":
            return float(skm.average_precision_score(truth, scores))
        if name == "log_loss":
            return float(skm.log_loss(truth, _probabilities(scores, name), labels=[False, True]))
        return expected_calibration_error(truth, scores, d.n_bins)
    k = len(d.labels)
    if name == "roc_auc":
        ovr = skm.roc_auc_score(d.indices, scores, multi_class="ovr", labels=range(k))
        return float(ovr)  # macro average by default
    if name == "pr_auc":
        indicator = (d.indices[:, None] == np.arange(k)).astype(int)
        return float(skm.average_precision_score(indicator, scores, average="macro"))
    return float(skm.log_loss(d.indices, _probabilities(scores, name), labels=list(range(k))))


def _classification(name: str, d: _Classification) -> float:
    try:
        if name == "accuracy":
            return float(skm.accuracy_score(d.y_true, d.y_pred))
        return _label_metric(name, d) if name in _LABEL_METRICS else _score_metric(name, d)
    except ValueError as exc:  # scikit-learn's complaint, at our boundary
        raise EvaluationError(f"cannot compute {name!r}: {exc}") from exc


_REGRESSION = {
    "rmse": skm.root_mean_squared_error,
    "mae": skm.mean_absolute_error,
    "r2": skm.r2_score,
}


def _regression(name: str, y_true: npt.NDArray[Any], y_pred: npt.NDArray[Any]) -> float:
    if not (np.isfinite(y_true).all() and np.isfinite(y_pred).all()):
        raise EvaluationError(f"cannot compute {name!r}: y_true and y_pred must be finite")
    if name == "r2" and len(y_true) < 2:
        return float("nan")  # undefined (scikit-learn warns and returns nan)
    return float(_REGRESSION[name](y_true, y_pred))


def _select(
    task: Task, metrics: Sequence[str] | None, *, has_pred: bool, has_score: bool
) -> tuple[str, ...]:
    given = {"y_pred": has_pred, "y_score": has_score and task != "regression"}
    if metrics is None:
        chosen = tuple(m for m in metric_names(task) if given[METRICS[m].needs])
        if not chosen:
            raise EvaluationError(f"no metric to compute: give y_pred or y_score ({task} task)")
        return chosen
    chosen = validate_metrics(task, metrics)
    for name in chosen:
        needs = METRICS[name].needs
        if not given[needs]:
            what = "scores or probabilities" if needs == "y_score" else "predicted labels"
            raise EvaluationError(f"metric {name!r} needs {needs} ({what}), which was not given")
    return chosen


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise EvaluationError(f"unknown task {task!r}{did_you_mean(task, TASKS)}")


def _as_1d(values: Any, name: str, length: int | None = None) -> npt.NDArray[Any]:
    array = values.to_numpy() if isinstance(values, pd.Series | pd.Index) else np.asarray(values)
    if array.ndim != 1:
        raise EvaluationError(f"{name} must be 1-D, got shape {array.shape}")
    if length is not None and len(array) != length:
        raise EvaluationError(f"{name} has {len(array)} rows, y_true has {length}")
    missing = pd.isna(array)
    if missing.any():
        rows = np.flatnonzero(missing)[:5].tolist()
        raise EvaluationError(f"{name} has {int(missing.sum())} missing values (rows {rows} ...)")
    return array


def _as_scores(task: Task, y_score: Any, length: int, labels: list[Any]) -> npt.NDArray[np.float64]:
    array = np.asarray(y_score.to_numpy() if hasattr(y_score, "to_numpy") else y_score, dtype=float)
    if task == "binary" and array.ndim == 2 and array.shape[1] == 2:
        array = array[:, 1]  # columns in labels order: [negative, positive]
    expected = "(n,) or (n, 2)" if task == "binary" else f"(n, {len(labels)}), one column per label"
    ok_shape = array.ndim == 1 if task == "binary" else array.shape[1:] == (len(labels),)
    if not ok_shape or len(array) != length:
        raise EvaluationError(
            f"y_score has shape {array.shape}, expected {expected} with n={length}"
            + ("" if task == "binary" else f"; labels: {_show(labels)}")
        )
    if not np.isfinite(array).all():
        raise EvaluationError("y_score has missing or infinite values")
    return array


def _probabilities(scores: npt.NDArray[np.float64], name: str) -> npt.NDArray[np.float64]:
    if scores.size and (scores.min() < 0.0 or scores.max() > 1.0):
        raise EvaluationError(
            f"{name} needs probabilities in [0, 1]; scores range "
            f"from {scores.min():.4g} to {scores.max():.4g}"
        )
    return scores


def _check_given_labels(task: Task, labels: list[Any], seen: list[Any]) -> list[Any]:
    if len(set(labels)) != len(labels):
        raise EvaluationError(f"labels must be unique, got {_show(labels)}")
    if task == "binary" and len(labels) != 2:
        raise EvaluationError(
            f"a binary task needs labels=[negative, positive], got {_show(labels)}"
        )
    unknown = [v for v in seen if v not in set(labels)]
    if unknown:
        raise EvaluationError(f"the data has labels {_show(unknown)} not in labels={_show(labels)}")
    return labels


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _unique(arrays: list[npt.NDArray[Any]]) -> list[Any]:
    values = {_scalar(v) for array in arrays for v in pd.unique(pd.Series(array))}
    try:
        return sorted(values)
    except TypeError:  # mixed types: a stable order all the same
        return sorted(values, key=lambda v: (type(v).__name__, str(v)))


def _show(values: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}]"
