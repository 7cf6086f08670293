"""Performance metrics of one window in plain numpy, equal to the offline ones.

A monitor computes the same metrics for every window and every slice, hundreds of times per
check. :func:`conveyor.modeling.metrics.compute_metrics` (scikit-learn behind it) costs about
20 ms per call on 1,000 rows, mostly input validation; these formulas cost a fraction of a
millisecond and give the same values (``tests/unit/test_monitoring_metrics.py`` compares
them with ``compute_metrics`` on random data):

- classes are codes ``0..k-1`` (binary: 1 is the positive class, as ``labels[-1]``);
- ``precision``/``recall``/``f1``: positive class (binary) or the macro average over the
  classes present in the true or predicted labels (multiclass), 0 when a ratio is 0/0
  (``zero_division=0``);
- ``roc_auc``: the Mann-Whitney statistic with average ranks for ties, equal to the area
  under the trapezoidal ROC curve; multiclass: one-vs-rest macro average; NaN when a class
  has no rows;
- ``log_loss``: ``-mean(log(clip(p_true, eps, 1 - eps)))``, ``eps`` the float64 epsilon;
- ``rmse``, ``mae``, ``r2`` (``r2`` is 1 - SSE/SST, or 1.0/0.0 when SST is 0, NaN on one row).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["classification_metrics", "regression_metrics"]

_EPS = float(np.finfo(np.float64).eps)


def _ratio(num: npt.NDArray[np.float64], den: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out = np.zeros_like(num, dtype=float)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _label_metrics(
    y_true: npt.NDArray[np.int64], y_pred: npt.NDArray[np.int64], k: int, binary: bool
) -> dict[str, float]:
    confusion = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k).astype(float)
    tp = np.diag(confusion)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    precision, recall = _ratio(tp, predicted), _ratio(tp, actual)
    f1 = _ratio(2 * tp, predicted + actual)
    chosen = np.array([1]) if binary else np.flatnonzero((predicted + actual) > 0)
    return {
        "accuracy": float(tp.sum() / len(y_true)),
        "precision": float(precision[chosen].mean()),
        "recall": float(recall[chosen].mean()),
        "f1": float(f1[chosen].mean()),
    }


def _auc(positive: npt.NDArray[np.bool_], scores: npt.NDArray[np.float64]) -> float:
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(ordered)]
    average = (starts + ends + 1) / 2.0  # 1-based average rank of each run of ties
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(average, ends - starts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _score_metrics(
    y_true: npt.NDArray[np.int64], scores: npt.NDArray[np.float64], k: int
) -> dict[str, float]:
    if scores.ndim == 1:  # binary: the positive class's probability
        auc = _auc(y_true == 1, scores)
        p_true = np.where(y_true == 1, scores, 1.0 - scores)
    else:
        present = np.bincount(y_true, minlength=k) > 0
        aucs = [_auc(y_true == c, scores[:, c]) for c in range(k)]
        auc = float(np.mean(aucs)) if present.all() else math.nan
        p_true = scores[np.arange(len(y_true)), y_true]
    loss = -np.log(np.clip(p_true, _EPS, 1 - _EPS))
    return {"roc_auc": auc, "log_loss": float(loss.mean())}


def classification_metrics(
    y_true: npt.NDArray[np.int64],
    y_pred: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float64] | None,
    k: int,
    names: Sequence[str],
) -> dict[str, float]:
    """``names`` of a classifier's metrics on class codes (see the module docstring).

    Args:
        y_true: True class codes in ``0..k-1``.
        y_pred: Predicted class codes.
        scores: Binary: the positive class's probability, 1-D; multiclass: ``(n, k)``
            probabilities; None leaves out ``roc_auc`` and ``log_loss``.
        k: The number of classes.
        names: The metrics wanted.

    Example:
        >>> classification_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]), None, 2,
        ...                        ["accuracy", "recall"])
        {'accuracy': 0.6666666666666666, 'recall': 0.5}
    """
    values = _label_metrics(y_true, y_pred, k, binary=k == 2)
    if scores is not None:
        values |= _score_metrics(y_true, scores, k)
    return {name: values[name] for name in names if name in values}


def regression_metrics(
    y_true: npt.NDArray[np.float64], y_pred: npt.NDArray[np.float64], names: Sequence[str]
) -> dict[str, float]:
    """``rmse``, ``mae`` and ``r2`` (those in ``names``) of a regressor.

    Example:
        >>> regression_metrics(np.array([1.0, 2.0]), np.array([1.0, 3.0]), ["mae"])
        {'mae': 0.5}
    """
    error = y_true - y_pred
    sse = float(np.dot(error, error))
    sst = float(((y_true - y_true.mean()) ** 2).sum())
    if len(y_true) < 2:
        r2 = math.nan
    elif sst == 0.0:
        r2 = 1.0 if sse == 0.0 else 0.0
    else:
        r2 = 1.0 - sse / sst
    values = {
        "rmse": math.sqrt(sse / len(y_true)),
        "mae": float(np.abs(error).mean()),
        "r2": r2,
    }
    return {name: values[name] for name in names if name in values}
