"""Per-window input statistics, missing rates, input drift and prediction drift.

Pure functions over the rows of one window (positions in a
:class:`~conveyor.monitoring.row_arrays.RowArrays`) and the version's
:class:`~conveyor.monitoring.reference.VersionReference`. Drift goes through
:func:`conveyor.data.drift.compare_samples`, the function data validation's
``dataset_drift`` ends in, with each feature's method and threshold; the reference samples
are built once per version and keep their sorted values and counts between windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conveyor.data.drift import compare_samples
from conveyor.data.drift_samples import DriftSample, make_sample
from conveyor.exceptions import ConveyorError
from conveyor.monitoring.prediction_rows import InputColumn
from conveyor.monitoring.reference import VersionReference, prediction_sample
from conveyor.monitoring.results import DriftVerdict, metric_key
from conveyor.monitoring.row_arrays import RowArrays, Rows

__all__ = [
    "PREDICTION_METHOD",
    "Measured",
    "input_drift",
    "input_statistics",
    "missing_rates",
    "prediction_drift",
    "prediction_values",
]

_TOP = 5
PREDICTION_METHOD = "psi"
"""Prediction drift is the population stability index: a distance (higher is always worse),
cheap on any window size, with its default threshold 0.1."""


@dataclass
class Measured:
    """Values measured on one window, with the notes and verdicts that explain them."""

    metrics: dict[str, float | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    drift: dict[str, DriftVerdict] = field(default_factory=dict)

    def update(self, other: Measured) -> None:
        """Take over ``other``'s values."""
        self.metrics.update(other.metrics)
        self.notes.update(other.notes)
        self.drift.update(other.drift)


def _numeric_stats(numbers: np.ndarray) -> dict[str, Any]:
    finite = numbers[np.isfinite(numbers)]
    if not len(finite):
        return {}
    return {
        "mean": float(finite.mean()),
        "std": float(finite.std(ddof=1)) if len(finite) > 1 else None,
        "min": float(finite.min()),
        "p50": float(np.median(finite)),
        "max": float(finite.max()),
    }


def _categorical_stats(values: pa.Array) -> dict[str, Any]:
    present = pc.drop_null(values)
    if not len(present):
        return {}
    counts = pc.value_counts(present)
    order = np.argsort(-counts.field("counts").to_numpy(zero_copy_only=False), kind="stable")
    keys = counts.field("values").to_pylist()
    tallies = counts.field("counts").to_pylist()
    top = {str(keys[i]): int(tallies[i]) for i in order[:_TOP].tolist()}
    return {"distinct": len(counts), "top": top}


def input_statistics(
    arrays: RowArrays, rows: Rows, inputs: list[InputColumn]
) -> dict[str, dict[str, Any]]:
    """Per input: ``count``, ``missing`` and, for numbers, ``mean``, ``std``, ``min``, ``p50``,
    ``max``; for text and booleans, ``distinct`` and the ``top`` five values with counts."""
    stats: dict[str, dict[str, Any]] = {}
    for column in inputs:
        missing = arrays.missing[column.name][rows]
        entry: dict[str, Any] = {"count": int((~missing).sum()), "missing": int(missing.sum())}
        if column.name in arrays.numbers:
            entry |= _numeric_stats(arrays.numbers[column.name][rows])
        else:
            entry |= _categorical_stats(arrays.values[column.name].take(rows))
        stats[column.name] = entry
    return stats


def missing_rates(
    arrays: RowArrays, rows: Rows, inputs: list[InputColumn]
) -> dict[str, float | None]:
    """``missing_rate:NAME`` per input (None for an empty window)."""
    return {
        metric_key("missing_rate", c.name): (
            float(arrays.missing[c.name][rows].mean()) if len(rows) else None
        )
        for c in inputs
    }


def _verdict(result: Any, source: str) -> DriftVerdict:
    return DriftVerdict(
        method=result.method,
        threshold=float(result.threshold),
        higher_is_drift=bool(result.higher_is_drift),
        drifted=bool(result.drifted),
        source=source,
    )


def _current(arrays: RowArrays, rows: Rows, name: str) -> Any:
    if name in arrays.numbers:
        return arrays.numbers[name][rows]
    return arrays.values[name].take(rows)


def input_drift(arrays: RowArrays, rows: Rows, ref: VersionReference) -> Measured:
    """``drift:NAME`` per input against the version's training data."""
    out = Measured()
    if not ref.features:
        why = ref.notes.get("drift", f"{ref.model}:{ref.version} has no training data reference")
        out.notes["drift"] = why
        for column in ref.inputs:
            out.metrics[metric_key("drift", column.name)] = None
        return out
    for name, feature in ref.features.items():
        key = metric_key("drift", name)
        try:
            current = make_sample(
                _current(arrays, rows, name), feature.kind, column=name, side="current"
            )
            result = compare_samples(
                feature.sample,
                current,
                column=name,
                method=feature.method,
                threshold=feature.threshold,
            )
        except ConveyorError as exc:
            out.metrics[key] = None
            out.notes[key] = str(exc)
            continue
        out.metrics[key] = float(result.score)
        out.drift[key] = _verdict(result, feature.source)
    return out


def prediction_values(arrays: RowArrays, rows: Rows, task: str | None) -> Any:
    """The window's predictions as drift compares them (see
    :func:`~conveyor.monitoring.reference.prediction_sample`); None without a known task."""
    if task == "binary" and arrays.proba is not None and arrays.proba.shape[1] > 1:
        return arrays.proba[rows, 1]
    if task == "multiclass" and arrays.label is not None:
        return arrays.label.take(rows)
    if task == "regression" and arrays.value is not None:
        return arrays.value[rows]
    return None


def prediction_drift(
    arrays: RowArrays,
    rows: Rows,
    task: str | None,
    reference: DriftSample | None,
    source: str,
) -> Measured:
    """``prediction_drift`` of the window against ``reference`` (:data:`PREDICTION_METHOD`);
    ``source`` says what the reference is (the note when there is none)."""
    out = Measured()
    values = prediction_values(arrays, rows, task)
    if reference is None or values is None:
        out.metrics["prediction_drift"] = None
        out.notes["prediction_drift"] = source
        return out
    try:
        current = prediction_sample(task, values)
        result = compare_samples(reference, current, column="prediction", method=PREDICTION_METHOD)
    except ConveyorError as exc:
        out.metrics["prediction_drift"] = None
        out.notes["prediction_drift"] = str(exc)
        return out
    out.metrics["prediction_drift"] = float(result.score)
    out.drift["prediction_drift"] = _verdict(result, "default")
    return out
