"""Fairness of a binary classifier across the groups of a sensitive feature.

For each group of one sensitive feature (``sex``, ``race``): the selection rate and the
error rates, then the disparities Fairlearn defines, with Fairlearn's conventions so the
figures are equal to ``fairlearn.metrics.MetricFrame`` and its ``demographic_parity_*`` /
``equalized_odds_*`` functions (``method="between_groups"``, ``agg="worst_case"``):

- a rate whose denominator is empty is 0, as scikit-learn's normalised confusion matrix
  gives it (a group without positives has a true positive rate of 0);
- a difference is ``max - min`` over groups, a ratio ``min / max`` (NaN when both are 0);
- equalized odds takes the larger of the TPR and FPR differences, and the smaller of their
  ratios -- NaN when the TPR ratio is undefined, exactly as Fairlearn's ``min(...)``.

Groups are named by :func:`format_value`, the same names slices use (missing values form
the group ``"<missing>"``), so the report can put both side by side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from conveyor.modeling.evaluation_model import FairnessResult, GroupMetrics
from conveyor.modeling.metrics import EvaluationError, resolve_labels

__all__ = [
    "GROUP_METRICS",
    "MISSING",
    "compute_fairness",
    "format_number",
    "format_value",
    "value_order",
]

MISSING = "<missing>"
#: The per-group metrics, in report order.
GROUP_METRICS = (
    "selection_rate",
    "accuracy",
    "precision",
    "true_positive_rate",
    "false_positive_rate",
    "false_negative_rate",
)


def format_number(value: float) -> str:
    """A number as slice names show it: integers without ``.0``, others in shortest form.

    Example:
        >>> format_number(30.0), format_number(37.25), format_number(-1)
        ('30', '37.25', '-1')
    """
    number = float(value)
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return repr(number)


def format_value(value: Any) -> str:
    """A feature value as a slice or group name: ``Female``, ``3``, ``True``, ``<missing>``.

    Example:
        >>> format_value("Female"), format_value(3.0), format_value(None)
        ('Female', '3', '<missing>')
    """
    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return MISSING
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, Real):
        return format_number(float(value))
    return str(value)


def value_order(name: str) -> tuple[int, float, str]:
    """Sort key for formatted values: numbers by value, then text, ``<missing>`` last.

    Example:
        >>> sorted(["10", "9", "b", "<missing>", "a"], key=value_order)
        ['9', '10', 'a', 'b', '<missing>']
    """
    if name == MISSING:
        return (2, 0.0, name)
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def compute_fairness(
    y_true: Any,
    y_pred: Any,
    sensitive: Any,
    *,
    labels: Sequence[Any] | None = None,
    feature: str | None = None,
) -> FairnessResult:
    """Per-group metrics and disparities of one sensitive feature (binary tasks).

    Args:
        y_true: true labels.
        y_pred: predicted labels.
        sensitive: the sensitive feature's value for each row (a Series names the feature).
        labels: ``[negative, positive]``; default: the sorted labels seen.
        feature: the feature's name; default: ``sensitive.name``.

    Returns:
        The groups' metrics (:data:`GROUP_METRICS`), the overall ones, and the demographic
        parity and equalized odds differences and ratios.

    Raises:
        EvaluationError: lengths differ, no rows, more than two labels.

    Example:
        >>> r = compute_fairness([1, 0, 1, 0], [1, 0, 0, 0], ["a", "a", "b", "b"], feature="g")
        >>> r.demographic_parity_difference, r.groups["a"].metrics["selection_rate"]
        (0.5, 0.5)
    """
    name = feature or str(getattr(sensitive, "name", None) or "sensitive")
    classes = resolve_labels("binary", y_true, y_pred, labels)
    truth = _positive(y_true, classes[-1], "y_true")
    pred = _positive(y_pred, classes[-1], "y_pred")
    groups = pd.Series(np.asarray(sensitive, dtype=object)).map(format_value)
    if not (len(truth) == len(pred) == len(groups)):
        raise EvaluationError(
            f"fairness on {name!r}: y_true, y_pred and the feature have "
            f"{len(truth)}, {len(pred)} and {len(groups)} rows"
        )
    if len(truth) == 0:
        raise EvaluationError(f"fairness on {name!r}: no rows")
    per_group = {
        key: GroupMetrics(count=len(rows), metrics=_rates(truth[rows], pred[rows]))
        for key, rows in _group_rows(groups).items()
    }
    return _result(name, str(classes[-1]), per_group, _rates(truth, pred))


def _result(
    name: str, positive: str, groups: dict[str, GroupMetrics], overall: dict[str, float]
) -> FairnessResult:
    def column(metric: str) -> list[float]:
        return [g.metrics[metric] for g in groups.values()]

    selection, tpr, fpr = (
        column("selection_rate"),
        column("true_positive_rate"),
        column("false_positive_rate"),
    )
    tpr_ratio, fpr_ratio = _ratio(tpr), _ratio(fpr)
    return FairnessResult(
        feature=name,
        positive_label=positive,
        groups=groups,
        overall=overall,
        demographic_parity_difference=max(selection) - min(selection),
        demographic_parity_ratio=_ratio(selection),
        equalized_odds_difference=max(max(tpr) - min(tpr), max(fpr) - min(fpr)),
        # Fairlearn's min(tpr_ratio, fpr_ratio) over a Series: a NaN TPR ratio wins.
        equalized_odds_ratio=tpr_ratio if math.isnan(fpr_ratio) else min(tpr_ratio, fpr_ratio),
    )


def _group_rows(names: pd.Series) -> dict[str, npt.NDArray[np.intp]]:
    """Row positions of each group, in :func:`value_order`."""
    indices = names.groupby(names).indices
    rows = {str(key): np.asarray(pos, dtype=np.intp) for key, pos in indices.items()}
    return {key: rows[key] for key in sorted(rows, key=value_order)}


def _rates(truth: npt.NDArray[np.bool_], pred: npt.NDArray[np.bool_]) -> dict[str, float]:
    tp = float(np.sum(truth & pred))
    fp = float(np.sum(~truth & pred))
    fn = float(np.sum(truth & ~pred))
    tn = float(np.sum(~truth & ~pred))
    values = {
        "selection_rate": (tp + fp) / len(truth),
        "accuracy": (tp + tn) / len(truth),
        "precision": _rate(tp, tp + fp),
        "true_positive_rate": _rate(tp, tp + fn),
        "false_positive_rate": _rate(fp, fp + tn),
        "false_negative_rate": _rate(fn, tp + fn),
    }
    return {metric: values[metric] for metric in GROUP_METRICS}


def _rate(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def _ratio(values: list[float]) -> float:
    low, high = min(values), max(values)
    return low / high if high else float("nan")


def _positive(values: Any, positive: Any, what: str) -> npt.NDArray[np.bool_]:
    array = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
    if array.ndim != 1:
        raise EvaluationError(f"{what} must be 1-D, got shape {array.shape}")
    return np.asarray(array == positive, dtype=bool)
