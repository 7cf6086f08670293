"""One window in, one :class:`~conveyor.monitoring.results.WindowResult` out.

:func:`measure_window` puts the per-window measurements together: traffic (count, requests,
latency percentiles), missing rates, input statistics, input drift, prediction drift and
online performance. An incomplete window carries only its count; an empty (time) window
its zero count and latency None.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np

from conveyor.data.drift_samples import DriftSample
from conveyor.monitoring.input_drift import (
    Measured,
    input_drift,
    input_statistics,
    missing_rates,
    prediction_drift,
)
from conveyor.monitoring.performance import Truth, online_performance
from conveyor.monitoring.reference import VersionReference
from conveyor.monitoring.results import WindowResult
from conveyor.monitoring.row_arrays import RowArrays, Rows
from conveyor.monitoring.windows import Window, WindowSpec

__all__ = ["PredictionReference", "VersionContext", "measure_window"]


@dataclass(frozen=True)
class PredictionReference:
    """What prediction drift compares with: a sample, what it is, and (for the fallback)
    the index of the window it was taken from."""

    sample: DriftSample | None
    source: str
    window_index: int | None = None


@dataclass(frozen=True)
class VersionContext:
    """Everything one series' windows are measured against."""

    ref: VersionReference
    truth: Truth | None
    prediction: PredictionReference
    spec: WindowSpec
    label_delay: dt.timedelta
    min_coverage: float
    now: dt.datetime


def _traffic(arrays: RowArrays, rows: Rows) -> Measured:
    out = Measured()
    first = rows[arrays.first[rows]]
    latency = arrays.latency[first]
    latency = latency[np.isfinite(latency)]
    has = len(latency) > 0
    out.metrics["count"] = float(len(rows))
    out.metrics["requests"] = float(len(first))
    out.metrics["latency_p50"] = float(np.percentile(latency, 50)) if has else None
    out.metrics["latency_p99"] = float(np.percentile(latency, 99)) if has else None
    return out


def _content(arrays: RowArrays, window: Window, ctx: VersionContext) -> Measured:
    rows, ref = window.rows, ctx.ref
    out = Measured(metrics=dict(missing_rates(arrays, rows, ref.inputs)))
    out.update(input_drift(arrays, rows, ref))
    predicted = ctx.prediction
    if predicted.window_index is not None and predicted.window_index == window.index:
        out.metrics["prediction_drift"] = None
        out.notes["prediction_drift"] = "this window is the prediction reference"
    else:
        out.update(prediction_drift(arrays, rows, ref.task, predicted.sample, predicted.source))
    out.update(
        online_performance(
            arrays,
            rows,
            ctx.truth,
            window_end=window.end,
            now=ctx.now,
            label_delay=ctx.label_delay,
            min_coverage=ctx.min_coverage,
        )
    )
    return out


def _reference(ctx: VersionContext) -> dict[str, Any]:
    described: dict[str, Any] = dict(ctx.ref.found)
    described["prediction_reference"] = ctx.prediction.source
    described["window"] = ctx.spec.to_dict()
    described["label_delay_s"] = ctx.label_delay.total_seconds()
    if ctx.ref.notes:
        described["notes"] = dict(ctx.ref.notes)
    return described


def measure_window(
    model: str, window: Window, arrays: RowArrays, ctx: VersionContext
) -> WindowResult:
    """The result of one window of ``model`` (see the module docstring)."""
    rows = window.rows
    version_text, route_kind = window.series
    base: dict[str, Any] = {
        "model": model,
        "version": int(version_text) if version_text.isdigit() else None,
        "route_kind": route_kind,
        "index": window.index,
        "start": window.start,
        "end": window.end,
        "complete": window.complete,
        "routes": arrays.routes_of(rows),
    }
    if not window.complete:
        note = f"incomplete: {len(rows)} rows so far (window of {ctx.spec.describe()})"
        return WindowResult(**base, metrics={"count": float(len(rows))}, notes={"window": note})
    measured = _traffic(arrays, rows)
    if len(rows):
        measured.update(_content(arrays, window, ctx))
    else:
        measured.notes["window"] = "no predictions in this window"
    limits = ctx.ref.missing_limits
    return WindowResult(
        **base,
        metrics=measured.metrics,
        notes=measured.notes,
        drift=measured.drift,
        thresholds={
            f"missing_rate:{c.name}": limits[c.name] for c in ctx.ref.inputs if c.name in limits
        },
        inputs=input_statistics(arrays, rows, ctx.ref.inputs) if len(rows) else {},
        reference=_reference(ctx),
    )
