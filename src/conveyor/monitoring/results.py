"""What monitoring reports per window: :class:`WindowResult` and its flat metric keys.

Every measured value of a window sits in one flat map, ``metrics``, under a key that says what
it is, so alert rules, the controller and dashboards address values the same way:

===============================  ============================================================
key                              value
===============================  ============================================================
``count``                        rows (predictions) in the window
``requests``                     logged requests (a batch request holds several rows)
``latency_p50``, ``latency_p99``  request latency percentiles (ms)
``missing_rate:FEATURE``         share of null/NaN values of a serving input
``drift:FEATURE``                drift score of the input vs the version's training data
``prediction_drift``             drift score of the predictions vs the reference predictions
``feedback_coverage``            share of the window's rows that have ground truth
``METRIC``                       online performance (``accuracy``, ``rmse``, ...)
``METRIC[SLICE]``                the same on one slice, e.g. ``accuracy[sex=Female]``
``feedback_coverage[SLICE]``     ground-truth share of one slice
===============================  ============================================================

A value is ``None`` when it could not be computed; ``notes`` then says why, under the same
key (or under the metric's name, e.g. ``"drift"``, when one reason covers every feature).
``drift`` holds, per drift key, the method, its threshold, its direction and the verdict, so
a rule without a threshold can use the feature's own (see :mod:`conveyor.monitoring.rules`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["DriftVerdict", "RouteKind", "WindowResult", "metric_key", "split_metric_key"]

RouteKind = Literal["served", "shadow"]


def metric_key(metric: str, feature: str | None = None, slice_name: str | None = None) -> str:
    """The flat key of a metric: ``drift:age``, ``accuracy[sex=Female]``, ``count``.

    Example:
        >>> metric_key("drift", "age"), metric_key("accuracy", slice_name="sex=Female")
        ('drift:age', 'accuracy[sex=Female]')
    """
    key = f"{metric}:{feature}" if feature is not None else metric
    return f"{key}[{slice_name}]" if slice_name is not None else key


def split_metric_key(key: str) -> tuple[str, str | None, str | None]:
    """The inverse of :func:`metric_key`: ``(metric, feature, slice)``.

    Example:
        >>> split_metric_key("accuracy[age=[17, 30)]")
        ('accuracy', None, 'age=[17, 30)')
    """
    head, bracket, rest = key.partition("[")
    slice_name = rest[:-1] if bracket and rest.endswith("]") else None
    if bracket and slice_name is None:
        head = key
    metric, colon, feature = head.partition(":")
    return metric, (feature if colon else None), slice_name


@dataclass(frozen=True)
class DriftVerdict:
    """How one drift value was judged (for ``drift:FEATURE`` and ``prediction_drift``).

    Attributes:
        method: The drift method that produced the score (``auto`` resolved).
        threshold: The threshold it was compared with (the schema's, or the method default).
        higher_is_drift: True for distances; False for p-values (``ks``, ``chisquare``, ``z``),
            where a *lower* score is worse.
        drifted: The method's verdict against ``threshold``.
        source: Where the method and threshold came from (``schema skew``, ``schema drift``,
            ``default``).
    """

    method: str
    threshold: float
    higher_is_drift: bool
    drifted: bool
    source: str = "default"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "method": self.method,
            "threshold": _plain(self.threshold),
            "higher_is_drift": self.higher_is_drift,
            "drifted": self.drifted,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftVerdict:
        """The inverse of :meth:`to_dict`."""
        return cls(
            method=str(data["method"]),
            threshold=float(data["threshold"]),
            higher_is_drift=bool(data["higher_is_drift"]),
            drifted=bool(data["drifted"]),
            source=str(data.get("source", "default")),
        )


@dataclass(frozen=True)
class WindowResult:
    """Everything measured over one window of one model version's predictions.

    Attributes:
        model: The model name.
        version: The version that answered (None when the log holds no version number).
        route_kind: ``"served"`` (answers returned to callers, any alias: production,
            canary, ...) or ``"shadow"`` (route ends in ``:shadow``; answers only logged).
        index: The window number: for count windows the n-th block of ``size`` rows of this
            version and route kind since its first logged prediction; for time windows
            ``floor(start / duration)`` since the Unix epoch.
        start: Time of the window's first row (count) or its aligned start (time).
        end: Time of its last row (count) or its aligned end, exclusive (time).
        complete: Whether the window is over (count: ``size`` rows; time: ``end <= now``).
            Incomplete windows carry only ``count`` and are never evaluated by rules.
        routes: The route names seen in the window (``production``, ``canary:shadow``...).
        metrics: The flat metric map (see the module docstring); ``None`` = not computed.
        notes: Why a value is ``None`` (by key or by metric name), and other remarks.
        drift: The verdict behind each drift key.
        thresholds: Default thresholds from data validation for keys a rule may leave
            unset, e.g. ``missing_rate:age`` -> the schema's ``max_missing_fraction``.
        inputs: Per-input statistics (numeric: mean, std, min, p50, max; categorical:
            distinct and top values), with ``missing``.
        reference: What the window was compared with (training data, schema, prediction
            reference), as artifact ids and descriptions.
    """

    model: str
    version: int | None
    route_kind: RouteKind
    index: int
    start: dt.datetime
    end: dt.datetime
    complete: bool
    routes: tuple[str, ...] = ()
    metrics: dict[str, float | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    drift: dict[str, DriftVerdict] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """Rows in the window."""
        return int(self.metrics.get("count") or 0)

    @property
    def series(self) -> tuple[str, int | None, RouteKind]:
        """What consecutive windows share: model, version and route kind."""
        return (self.model, self.version, self.route_kind)

    def value(self, key: str) -> float | None:
        """The metric under ``key`` (None when absent or not computed)."""
        return self.metrics.get(key)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (ISO-8601 times; NaN and infinities as None)."""
        return {
            "model": self.model,
            "version": self.version,
            "route_kind": self.route_kind,
            "index": self.index,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "complete": self.complete,
            "routes": list(self.routes),
            "metrics": {k: _plain(v) for k, v in self.metrics.items()},
            "notes": dict(self.notes),
            "drift": {k: v.to_dict() for k, v in self.drift.items()},
            "thresholds": {k: _plain(v) for k, v in self.thresholds.items()},
            "inputs": _plain(self.inputs),
            "reference": _plain(self.reference),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowResult:
        """The inverse of :meth:`to_dict`."""
        return cls(
            model=str(data["model"]),
            version=None if data.get("version") is None else int(data["version"]),
            route_kind="shadow" if data.get("route_kind") == "shadow" else "served",
            index=int(data["index"]),
            start=dt.datetime.fromisoformat(data["start"]),
            end=dt.datetime.fromisoformat(data["end"]),
            complete=bool(data["complete"]),
            routes=tuple(data.get("routes") or ()),
            metrics={k: None if v is None else float(v) for k, v in data["metrics"].items()},
            notes=dict(data.get("notes") or {}),
            drift={k: DriftVerdict.from_dict(v) for k, v in (data.get("drift") or {}).items()},
            thresholds={k: float(v) for k, v in (data.get("thresholds") or {}).items()},
            inputs=dict(data.get("inputs") or {}),
            reference=dict(data.get("reference") or {}),
        )


def _plain(value: Any) -> Any:
    """Plain JSON values: numpy scalars unwrapped, non-finite floats as None."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, str | bytes):
        value = item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value
