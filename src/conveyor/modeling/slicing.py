"""Slices: metrics per feature value, numeric bucket and cross of two features.

A slice spec is written as plain data, as it appears in ``conveyor.toml`` or a pipeline
parameter, and parsed by :func:`parse_slices`::

    "sex"                                           one slice per value: "sex=Female", ...
    {"feature": "age", "buckets": [0, 30, 50, 120]} "age=[0, 30)", ..., "age=[50, 120]"
    {"feature": "age", "quantiles": 4}              four buckets at the data's quartiles
    ["sex", "race"]                                 crosses: "sex=Female & race=Black"
    ["sex", {"feature": "age", "quantiles": 4}]     a cross may bucket either side

Buckets are ``[lower, upper)``, the last one closed; values outside every bucket form
``"age=<below 0>"`` / ``"age=<above 120>"`` and missing values ``"sex=<missing>"``, so every
row lands in exactly one slice of each spec. Quantile edges come from the evaluated data:
when a candidate and its baseline are compared on different data, prefer fixed buckets.

:func:`compute_sliced_metrics` evaluates a frame of labels and predictions overall, per
slice and per sensitive feature, and returns an :class:`EvaluationResult`. Slices with fewer
rows than ``min_count`` are reported with ``flagged=True``; thresholds never gate them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.api import types as ptypes
from pydantic import BaseModel, ConfigDict

from conveyor.exceptions import did_you_mean
from conveyor.modeling.evaluation_model import EvaluationResult, SliceMetrics, Task
from conveyor.modeling.fairness import (
    MISSING,
    compute_fairness,
    format_number,
    format_value,
    value_order,
)
from conveyor.modeling.metrics import (
    DEFAULT_CALIBRATION_BINS,
    EvaluationError,
    calibration_bins,
    class_support,
    compute_metrics,
    confusion_matrix,
    pr_curve,
    resolve_labels,
    roc_curve,
)

__all__ = [
    "DEFAULT_MIN_COUNT",
    "SliceColumn",
    "SliceSpec",
    "check_slice_columns",
    "compute_sliced_metrics",
    "parse_slice",
    "parse_slices",
    "require_column",
    "slice_rows",
]

_COLUMN_KEYS = ("feature", "buckets", "quantiles")
#: Slices with fewer rows are reported but flagged, and never gated by thresholds.
DEFAULT_MIN_COUNT = 30


class SliceColumn(BaseModel):
    """One feature of a slice spec: by value, or bucketed by edges or by quantiles."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature: str
    buckets: tuple[float, ...] | None = None
    quantiles: int | None = None

    def to_plain(self) -> str | dict[str, Any]:
        """The spec back as plain data (a string when it is a plain feature)."""
        if self.buckets is None and self.quantiles is None:
            return self.feature
        return self.model_dump(exclude_none=True, mode="json")


class SliceSpec(BaseModel):
    """A slice spec: one column (slice per value or bucket) or two (their cross).

    Example:
        >>> parse_slice(["sex", "race"]).name
        'sex x race'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    columns: tuple[SliceColumn, ...]

    @property
    def name(self) -> str:
        """``"sex"``, ``"age"``, or ``"sex x race"`` for a cross."""
        return " x ".join(c.feature for c in self.columns)


def parse_slice(spec: Any) -> SliceSpec:
    """Parse one slice spec from plain data (see the module docstring for the forms).

    Raises:
        EvaluationError: not a string, mapping or pair; unknown key; bad buckets or quantiles.

    Example:
        >>> parse_slice({"feature": "age", "buckets": [0, 30, 120]}).columns[0].buckets
        (0.0, 30.0, 120.0)
    """
    if isinstance(spec, SliceSpec):
        return spec
    if isinstance(spec, str | Mapping | SliceColumn):
        return SliceSpec(columns=(_parse_column(spec, spec),))
    if isinstance(spec, Sequence) and not isinstance(spec, bytes):
        if len(spec) != 2:
            raise EvaluationError(
                f"slice spec {spec!r}: a cross has exactly two features, got {len(spec)}"
            )
        columns = (_parse_column(spec[0], spec), _parse_column(spec[1], spec))
        if columns[0].feature == columns[1].feature:
            raise EvaluationError(f"slice spec {spec!r}: crosses a feature with itself")
        return SliceSpec(columns=columns)
    raise EvaluationError(
        f"slice spec {spec!r} must be a feature name, a mapping with 'feature' "
        "(and 'buckets' or 'quantiles'), or a pair of these for a cross"
    )


def parse_slices(specs: Sequence[Any]) -> list[SliceSpec]:
    """Parse slice specs; the same spec twice is an error.

    Example:
        >>> [s.name for s in parse_slices(["sex", {"feature": "age", "quantiles": 4}])]
        ['sex', 'age']
    """
    if isinstance(specs, str | Mapping):
        specs = [specs]
    parsed = [parse_slice(spec) for spec in specs]
    seen: set[SliceSpec] = set()
    for spec in parsed:
        if spec in seen:
            raise EvaluationError(f"slice spec {spec.name!r} is given twice")
        seen.add(spec)
    return parsed


def check_slice_columns(specs: Sequence[SliceSpec], frame: pd.DataFrame) -> None:
    """Check that every sliced column exists, and that bucketed ones are numeric.

    Raises:
        EvaluationError: names the spec and column, and lists the frame's columns.

    Example:
        >>> check_slice_columns(parse_slices(["sex"]), pd.DataFrame({"sex": ["F"]}))
    """
    for spec in specs:
        for column in spec.columns:
            where = f"slice {spec.name!r}"
            require_column(frame, column.feature, where)
            bucketed = column.buckets is not None or column.quantiles is not None
            dtype = frame[column.feature].dtype
            if bucketed and not (
                ptypes.is_numeric_dtype(dtype) and not ptypes.is_bool_dtype(dtype)
            ):
                raise EvaluationError(
                    f"{where}: buckets need a numeric column; {column.feature!r} has dtype {dtype}"
                )


def require_column(frame: pd.DataFrame, column: str, where: str) -> None:
    """Raise an :class:`EvaluationError` naming ``column`` and listing the frame's columns.

    Example:
        >>> require_column(pd.DataFrame({"a": [1]}), "a", "y_true")
    """
    if column in frame.columns:
        return
    columns = [str(c) for c in frame.columns]
    shown = ", ".join(repr(c) for c in columns[:20]) + (", ..." if len(columns) > 20 else "")
    hint = did_you_mean(column, columns)
    hint = hint if "did you mean" in hint else ""
    raise EvaluationError(f"{where}: column {column!r} is not in the data{hint}; columns: {shown}")


def slice_rows(
    frame: pd.DataFrame, spec: SliceSpec
) -> dict[str, tuple[dict[str, str], npt.NDArray[np.intp]]]:
    """The slices of one spec: name -> (feature values, row positions), in a stable order.

    Only slices with rows are returned. Row positions index ``frame`` by position.

    Example:
        >>> frame = pd.DataFrame({"age": [25, 40, 70]})
        >>> list(slice_rows(frame, parse_slice({"feature": "age", "buckets": [0, 30, 120]})))
        ['age=[0, 30)', 'age=[30, 120]']
    """
    check_slice_columns([spec], frame)
    keys = [_keys(frame[c.feature], c) for c in spec.columns]
    combined = np.zeros(len(frame), dtype=np.int64)
    for codes, labels in keys:  # one integer per combination, ordered by the first feature
        combined = combined * len(labels) + codes
    slices: dict[str, tuple[dict[str, str], npt.NDArray[np.intp]]] = {}
    order = np.argsort(combined, kind="stable")
    codes, starts = np.unique(combined[order], return_index=True)
    for code, rows in zip(codes.tolist(), np.split(order, starts[1:]), strict=True):
        values = _decode(code, spec, [labels for _, labels in keys])
        name = " & ".join(f"{feature}={value}" for feature, value in values.items())
        slices[name] = (values, np.asarray(rows, dtype=np.intp))
    return slices


def compute_sliced_metrics(
    frame: pd.DataFrame,
    y_true_col: str,
    *,
    task: Task,
    y_pred_col: str | None = None,
    y_score_col: str | Sequence[str] | None = None,
    slices: Sequence[Any] = (),
    metrics: Sequence[str] | None = None,
    labels: Sequence[Any] | None = None,
    sensitive_features: Sequence[str] = (),
    min_count: int = DEFAULT_MIN_COUNT,
    n_bins: int = DEFAULT_CALIBRATION_BINS,
    model_version: str | None = None,
) -> EvaluationResult:
    """Evaluate predictions overall, per slice and per sensitive feature.

    Args:
        frame: one row per example, with the label, prediction and score columns and the
            sliced and sensitive features.
        y_true_col: the true label (or target) column.
        task: ``"binary"``, ``"multiclass"`` or ``"regression"``.
        y_pred_col: the predicted label (or value) column.
        y_score_col: binary: the positive class's probability column; multiclass: one
            probability column per label, in ``labels`` order.
        slices: slice specs as plain data or :class:`SliceSpec` (see :func:`parse_slice`).
        metrics: metric names; None: every metric of the task whose input is given.
        labels: class labels (binary: ``[negative, positive]``); default: sorted labels seen.
        sensitive_features: columns to compute fairness over (binary tasks, needs y_pred_col).
        min_count: slices with fewer rows are flagged (reported, never gated).
        n_bins: equal-width bins of the calibration error and curve.
        model_version: recorded in the result (e.g. ``"census:3"``), for blessing reasons.

    Returns:
        The :class:`EvaluationResult`; every slice has the same metrics as ``overall``.

    Raises:
        EvaluationError: a missing column (named, with the frame's columns listed), an
            unknown metric or one the task cannot have, bad slice specs, bad labels.

    Example:
        >>> frame = pd.DataFrame({"y": [0, 1, 1, 0], "p": [0, 1, 0, 0], "sex": list("FFMM")})
        >>> result = compute_sliced_metrics(
        ...     frame, "y", task="binary", y_pred_col="p", slices=["sex"], metrics=["accuracy"]
        ... )
        >>> result.slices["sex=F"].metrics, result.slices["sex=M"].count
        ({'accuracy': 1.0}, 2)
    """
    specs = parse_slices(slices)
    score_cols = [y_score_col] if isinstance(y_score_col, str) else list(y_score_col or [])
    _check_frame(frame, task, y_true_col, y_pred_col, score_cols, specs, sensitive_features)
    if min_count < 0:
        raise EvaluationError(f"min_count must be >= 0, got {min_count}")
    y_true = frame[y_true_col].to_numpy()
    y_pred = None if y_pred_col is None else frame[y_pred_col].to_numpy()
    y_score = _scores(frame, score_cols)
    overall = compute_metrics(task, y_true, y_pred, y_score, metrics, labels, n_bins=n_bins)
    classes = resolve_labels(task, y_true, y_pred, labels)

    def on_rows(rows: npt.NDArray[np.intp]) -> dict[str, float]:
        y_pred_rows, y_score_rows = _take(y_pred, rows), _take(y_score, rows)
        return compute_metrics(
            task, y_true[rows], y_pred_rows, y_score_rows, list(overall), classes, n_bins=n_bins
        )

    per_slice = {
        name: SliceMetrics(
            spec=spec.name,
            values=values,
            count=len(rows),
            metrics=on_rows(rows),
            flagged=len(rows) < min_count,
        )
        for spec in specs
        for name, (values, rows) in slice_rows(frame, spec).items()
    }
    fairness = {
        feature: compute_fairness(y_true, y_pred, frame[feature], labels=classes, feature=feature)
        for feature in sensitive_features
    }
    return EvaluationResult(
        task=task,
        count=len(frame),
        overall=overall,
        labels=[str(c) for c in classes],
        support=class_support(y_true, classes) if classes else {},
        slices=per_slice,
        fairness=fairness,
        min_count=min_count,
        model_version=model_version,
        **_plots(task, y_true, y_pred, y_score, classes, n_bins),
    )


# -- parsing -------------------------------------------------------------------------------


def _parse_column(item: Any, spec: Any) -> SliceColumn:
    if isinstance(item, SliceColumn):
        return item
    if isinstance(item, str):
        if not item:
            raise EvaluationError(f"slice spec {spec!r}: empty feature name")
        return SliceColumn(feature=item)
    if not isinstance(item, Mapping):
        raise EvaluationError(f"slice spec {spec!r}: {item!r} is not a feature name or mapping")
    for key in item:
        if key not in _COLUMN_KEYS:
            raise EvaluationError(
                f"slice spec {spec!r}: unknown key {key!r}{did_you_mean(str(key), _COLUMN_KEYS)}"
            )
    feature = item.get("feature")
    if not isinstance(feature, str) or not feature:
        raise EvaluationError(f"slice spec {spec!r}: 'feature' must be a column name")
    buckets, quantiles = item.get("buckets"), item.get("quantiles")
    if buckets is not None and quantiles is not None:
        raise EvaluationError(f"slice spec {spec!r}: give 'buckets' or 'quantiles', not both")
    return SliceColumn(
        feature=feature,
        buckets=None if buckets is None else _parse_buckets(buckets, spec),
        quantiles=None if quantiles is None else _parse_quantiles(quantiles, spec),
    )


def _parse_buckets(buckets: Any, spec: Any) -> tuple[float, ...]:
    numbers = isinstance(buckets, Sequence) and not isinstance(buckets, str)
    if numbers:
        numbers = all(isinstance(b, int | float) and not isinstance(b, bool) for b in buckets)
    if not numbers or len(buckets) < 2:
        raise EvaluationError(
            f"slice spec {spec!r}: 'buckets' must be a list of at least two numbers (edges)"
        )
    edges = tuple(float(b) for b in buckets)
    if not all(math.isfinite(e) for e in edges) or any(a >= b for a, b in pairwise(edges)):
        raise EvaluationError(
            f"slice spec {spec!r}: bucket edges must be finite and strictly increasing"
        )
    return edges


def _parse_quantiles(quantiles: Any, spec: Any) -> int:
    if isinstance(quantiles, bool) or not isinstance(quantiles, int) or quantiles < 2:
        raise EvaluationError(
            f"slice spec {spec!r}: 'quantiles' must be an integer of at least 2, got {quantiles!r}"
        )
    return quantiles


# -- assigning rows to slices --------------------------------------------------------------


def _keys(values: pd.Series, column: SliceColumn) -> tuple[npt.NDArray[np.int64], list[str]]:
    """Each row's slice code (0..k-1) and the k slice values, for one column."""
    if column.buckets is None and column.quantiles is None:
        names = values.astype(object).map(format_value)
        labels = sorted(set(names), key=value_order)
        lookup = {label: i for i, label in enumerate(labels)}
        return names.map(lookup).to_numpy(dtype=np.int64), labels
    numbers = values.to_numpy(dtype=float, na_value=np.nan)
    edges = np.asarray(
        column.buckets if column.buckets is not None else _quantile_edges(numbers, column)
    )
    return _bucket_codes(numbers, edges)


def _quantile_edges(numbers: npt.NDArray[np.float64], column: SliceColumn) -> tuple[float, ...]:
    present = numbers[~np.isnan(numbers)]
    if len(present) == 0:
        return (0.0, 0.0)  # every row is missing; no bucket will have rows
    assert column.quantiles is not None
    edges = np.unique(np.quantile(present, np.linspace(0.0, 1.0, column.quantiles + 1)))
    return tuple(edges.tolist()) if len(edges) > 1 else (float(edges[0]), float(edges[0]))


def _bucket_codes(
    numbers: npt.NDArray[np.float64], edges: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.int64], list[str]]:
    n = len(edges) - 1  # buckets 0..n-1, then below, above, missing
    codes = np.searchsorted(edges, numbers, side="right") - 1
    codes[numbers == edges[-1]] = n - 1  # the last bucket is closed
    codes[numbers < edges[0]] = n
    codes[numbers > edges[-1]] = n + 1
    codes[np.isnan(numbers)] = n + 2
    labels = [
        f"[{format_number(edges[i])}, {format_number(edges[i + 1])}{']' if i == n - 1 else ')'}"
        for i in range(n)
    ]
    labels += [f"<below {format_number(edges[0])}>", f"<above {format_number(edges[-1])}>", MISSING]
    return codes.astype(np.int64), labels


def _decode(code: int, spec: SliceSpec, labels: list[list[str]]) -> dict[str, str]:
    values: dict[str, str] = {}
    for column, column_labels in zip(reversed(spec.columns), reversed(labels), strict=True):
        code, index = divmod(code, len(column_labels))
        values[column.feature] = column_labels[index]
    return dict(reversed(values.items()))


# -- evaluation ----------------------------------------------------------------------------


def _check_frame(
    frame: pd.DataFrame,
    task: Task,
    y_true_col: str,
    y_pred_col: str | None,
    score_cols: list[str],
    specs: Sequence[SliceSpec],
    sensitive_features: Sequence[str],
) -> None:
    require_column(frame, y_true_col, "y_true_col")
    if y_pred_col is not None:
        require_column(frame, y_pred_col, "y_pred_col")
    for column in score_cols:
        require_column(frame, column, "y_score_col")
    check_slice_columns(specs, frame)
    for feature in sensitive_features:
        require_column(frame, feature, f"sensitive feature {feature!r}")
    if sensitive_features and (task != "binary" or y_pred_col is None):
        raise EvaluationError(
            "fairness (sensitive_features) needs a binary task with y_pred_col; "
            f"got task={task!r}, y_pred_col={y_pred_col!r}"
        )
    for column in [y_true_col, *([y_pred_col] if y_pred_col else []), *score_cols]:
        missing = frame[column].isna().to_numpy()
        if missing.any():
            where = frame.index[missing][:5].tolist()
            more = ", ..." if missing.sum() > 5 else ""
            raise EvaluationError(
                f"column {column!r} has {int(missing.sum())} missing values "
                f"(index {str(where)[:-1]}{more}])"
            )


def _scores(frame: pd.DataFrame, columns: list[str]) -> npt.NDArray[np.float64] | None:
    if not columns:
        return None
    try:
        values = frame[columns].to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise EvaluationError(f"score columns {columns} must be numeric: {exc}") from exc
    return values[:, 0] if len(columns) == 1 else values


def _take(values: npt.NDArray[Any] | None, rows: npt.NDArray[np.intp]) -> npt.NDArray[Any] | None:
    return None if values is None else values[rows]


def _plots(
    task: Task,
    y_true: npt.NDArray[Any],
    y_pred: npt.NDArray[Any] | None,
    y_score: npt.NDArray[np.float64] | None,
    classes: list[Any],
    n_bins: int,
) -> dict[str, Any]:
    """Confusion matrix, and for binary scores the calibration bins and ROC / PR curves."""
    plots: dict[str, Any] = {}
    if task != "regression" and y_pred is not None:
        plots["confusion_matrix"] = confusion_matrix(y_true, y_pred, classes)
    if task == "binary" and y_score is not None and y_score.ndim == 1:
        positives = y_true == classes[-1]
        if y_score.min() >= 0.0 and y_score.max() <= 1.0:  # probabilities, not margins
            plots["calibration"] = calibration_bins(positives, y_score, n_bins)
        plots["roc_curve"] = roc_curve(positives, y_score)
        plots["pr_curve"] = pr_curve(positives, y_score)
    return plots
