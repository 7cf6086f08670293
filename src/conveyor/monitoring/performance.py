"""Online performance of one window once its ground truth is due: overall and per slice.

A window's labels are *due* ``label_delay`` after its end; before that the performance keys
(and ``feedback_coverage``) are None with a note saying when they will be computed, because
a partial set of early labels is a biased sample. Once due, ``feedback_coverage`` is the
share of the window's rows with a usable label; below ``min_coverage`` every metric stays
None with the coverage in the note. Slices follow :mod:`conveyor.modeling.slicing`
(``"sex"``, fixed buckets, crosses of two) and get the same treatment, each with its own
coverage.

Values are those of :func:`conveyor.modeling.metrics.compute_metrics` (offline
evaluation, scikit-learn) on the labelled rows, computed by the faster equivalent formulas of
:mod:`conveyor.monitoring.online_metrics`. Classification labels and predictions are matched
to the signature's classes (text form, numbers compared as numbers); a label that is not a
class leaves its row unlabelled, counted in the note.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from conveyor.monitoring.input_drift import Measured
from conveyor.monitoring.metric_names import METRICS
from conveyor.monitoring.online_metrics import classification_metrics, regression_metrics
from conveyor.monitoring.results import metric_key
from conveyor.monitoring.row_arrays import RowArrays, Rows

__all__ = ["Truth", "online_performance", "performance_metrics", "truth_of"]

_TASKS = ("binary", "multiclass", "regression")


def performance_metrics(task: str | None) -> list[str]:
    """The monitored performance metrics of a task (none for an unknown task)."""
    wanted = "regression" if task == "regression" else "classification" if task else None
    return [
        name for name, info in METRICS.items() if info.kind == "performance" and info.task == wanted
    ]


@dataclass(frozen=True)
class Truth:
    """Labels and predictions of every row, for one version's task and classes.

    Attributes:
        task: ``binary``, ``multiclass`` or ``regression``.
        k: The number of classes (0 for regression).
        valid: Rows with a usable label and prediction.
        unknown: Rows with a label that is not a class (or not a number), or no prediction.
        y_true: Class codes (classification) or values (regression), per row.
        y_pred: The same for the predictions.
        scores: Positive-class probability (binary) or all probabilities (multiclass); None
            without probabilities in the log.
    """

    task: str
    k: int
    valid: npt.NDArray[np.bool_]
    unknown: npt.NDArray[np.bool_]
    y_true: npt.NDArray[Any]
    y_pred: npt.NDArray[Any]
    scores: npt.NDArray[np.float64] | None


def _class_codes(values: pd.Series, classes: Sequence[Any]) -> npt.NDArray[np.int64]:
    numeric = all(isinstance(c, int | float) and not isinstance(c, bool) for c in classes)
    if numeric:
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        codes = np.full(len(numbers), -1, dtype=np.int64)
        for index, key in enumerate(np.asarray(classes, dtype=float)):
            codes[numbers == key] = index
        return codes
    names = [str(c).lower() if isinstance(c, bool) else str(c) for c in classes]
    lookup = pd.Series(np.arange(len(names), dtype=np.int64), index=names)
    return values.map(lookup).fillna(-1).to_numpy(dtype=np.int64)


def _codes(texts: pd.Series, classes: Sequence[Any]) -> npt.NDArray[np.int64]:
    """Index of each text in ``classes`` (-1 when it is none of them, or missing)."""
    positions, uniques = pd.factorize(texts)  # match the few distinct texts, not every row
    if not len(uniques):
        return np.full(len(positions), -1, dtype=np.int64)
    mapped = _class_codes(pd.Series(np.asarray(uniques, dtype=object)), classes)
    return np.where(positions >= 0, mapped[np.maximum(positions, 0)], -1)


def truth_of(arrays: RowArrays, task: str, classes: Sequence[Any] | None) -> Truth:
    """Every row's label and prediction for a version of ``task`` with ``classes``."""
    frame = arrays.frame
    has_label = frame["label"].notna().to_numpy(dtype=bool)
    if task == "regression":
        y_true = pd.to_numeric(frame["label"], errors="coerce").to_numpy(dtype=float)
        y_pred = arrays.value if arrays.value is not None else np.full(len(frame), np.nan)
        ok = has_label & np.isfinite(y_true) & np.isfinite(y_pred)
        return Truth(task, 0, ok, has_label & ~ok, y_true, y_pred, None)
    labels = list(classes or ())
    true_codes = _codes(frame["label"], labels)
    pred_codes = _codes(frame["out:label"], labels)
    ok = has_label & (true_codes >= 0) & (pred_codes >= 0)
    scores = None
    if arrays.proba is not None and arrays.proba.shape[1] >= len(labels) == 2:
        scores = arrays.proba[:, 1]
    elif arrays.proba is not None and arrays.proba.shape[1] >= len(labels) > 2:
        scores = arrays.proba[:, : len(labels)]
    return Truth(task, len(labels), ok, has_label & ~ok, true_codes, pred_codes, scores)


def _values(truth: Truth, rows: Rows, names: list[str]) -> tuple[dict[str, float], str]:
    y_true, y_pred = truth.y_true[rows], truth.y_pred[rows]
    if truth.task == "regression":
        return regression_metrics(y_true, y_pred, names), ""
    scores = None if truth.scores is None else truth.scores[rows]
    if scores is not None and not np.isfinite(scores).all():
        scores = None
    why = "" if scores is not None else "needs class probabilities in the log"
    return classification_metrics(y_true, y_pred, scores, truth.k, names), why


def _fill(
    out: Measured, names: list[str], slice_name: str | None, coverage: float | None, why: str
) -> None:
    out.metrics[metric_key("feedback_coverage", slice_name=slice_name)] = coverage
    for name in names:
        key = metric_key(name, slice_name=slice_name)
        out.metrics[key] = None
        out.notes[key] = why


def _measure(
    out: Measured,
    truth: Truth,
    rows: Rows,
    slice_name: str | None,
    names: list[str],
    min_coverage: float,
) -> None:
    """Coverage and metrics of ``rows`` (a window, or one slice of it)."""
    labelled = rows[truth.valid[rows]]
    coverage = len(labelled) / len(rows) if len(rows) else 0.0
    if not len(labelled) or coverage < min_coverage:
        why = f"feedback coverage {coverage:.1%} is below the minimum {min_coverage:.1%}"
        _fill(out, names, slice_name, coverage, why)
        return
    out.metrics[metric_key("feedback_coverage", slice_name=slice_name)] = coverage
    values, why = _values(truth, labelled, names)
    for name in names:
        key = metric_key(name, slice_name=slice_name)
        value = values.get(name)
        if value is None or not math.isfinite(value):
            out.metrics[key] = None
            out.notes[key] = why or f"undefined on these {len(labelled)} labelled rows"
        else:
            out.metrics[key] = float(value)


def online_performance(
    arrays: RowArrays,
    rows: Rows,
    truth: Truth | None,
    *,
    window_end: dt.datetime,
    now: dt.datetime,
    label_delay: dt.timedelta,
    min_coverage: float,
) -> Measured:
    """Performance metrics of one window, overall and per slice (see the module docstring).

    ``truth`` is None when the version's task is unknown (no bundle manifest).
    """
    out = Measured()
    if truth is None or truth.task not in _TASKS:
        out.notes["performance"] = "the model's task is unknown: no readable bundle manifest"
        return out
    names = performance_metrics(truth.task)
    due = window_end + label_delay
    if now < due:
        why = f"labels are due at {due.isoformat()} (label delay {label_delay})"
        _fill(out, names, None, None, why)
        out.notes["feedback_coverage"] = why
        return out
    unknown = int(truth.unknown[rows].sum())
    if unknown:
        out.notes["labels"] = f"{unknown} labelled rows left out: label or prediction not usable"
    _measure(out, truth, rows, None, names, min_coverage)
    for name, local in arrays.window_slices(rows):
        _measure(out, truth, rows[local], name, names, min_coverage)
    out.notes.update(arrays.notes)
    return out
