"""The :class:`Monitor`: window results and alerts for one model, from the prediction log.

One call to :meth:`Monitor.results` runs three DuckDB queries over the log (versions seen,
the rows, and for count windows read from ``since`` the rows logged before it), looks up
each version's reference once (cached on the monitor), cuts the rows into windows and
measures every complete window. :meth:`Monitor.check` adds :func:`evaluate_rules`. The
monitor writes nothing: the controller stores results and alerts.

Prediction drift needs reference predictions: the version's predictions on its evaluation
data when lineage reaches it, otherwise the **first complete window of the same version and
route kind** (that window itself then has no prediction drift, with a note saying so).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from conveyor.exceptions import ConveyorError
from conveyor.modeling.slicing import SliceSpec, parse_slices
from conveyor.monitoring.alert_model import Alert, AlertRule
from conveyor.monitoring.errors import MonitoringError
from conveyor.monitoring.input_drift import prediction_values
from conveyor.monitoring.measure import PredictionReference, VersionContext, measure_window
from conveyor.monitoring.performance import Truth, truth_of
from conveyor.monitoring.prediction_rows import InputColumn, InputType, LogReader
from conveyor.monitoring.reference import VersionReference, find_reference, prediction_sample
from conveyor.monitoring.results import WindowResult
from conveyor.monitoring.row_arrays import RowArrays
from conveyor.monitoring.rules import evaluate_rules
from conveyor.monitoring.windows import EPOCH, SeriesKey, Window, WindowSpec, assign_windows
from conveyor.serving.prediction_log import as_utc
from conveyor.store.workspace import Workspace

__all__ = ["Monitor"]

DEFAULT_MIN_COVERAGE = 0.5


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _parse_slices(slices: Sequence[Any]) -> list[SliceSpec]:
    try:
        specs = parse_slices(slices)
    except ConveyorError as exc:
        raise MonitoringError(f"monitoring slices: {exc}") from exc
    for spec in specs:
        for column in spec.columns:
            if column.quantiles is not None:
                raise MonitoringError(
                    f"slice {spec.name!r}: quantile buckets would differ from window to window; "
                    f"give fixed edges instead, e.g. {{'feature': {column.feature!r}, "
                    "'buckets': [0, 30, 50, 120]}"
                )
    return specs


class Monitor:
    """Windowed statistics, drift, online performance and alerts over the prediction log.

    Args:
        workspace: The open workspace: its registry and lineage give each version's
            references; ``<artifact_url>/predictions`` and ``<artifact_url>/feedback`` are read.
        window: How predictions are grouped (:class:`WindowSpec`).
        label_delay: How long after a window ends its labels are expected; online
            performance is computed only for windows older than that.
        slices: Slice specs for online performance (``"sex"``, ``{"feature": "age",
            "buckets": [17, 30, 45, 60, 91]}``, or a pair of these for a cross).
        min_coverage: Below this share of labelled rows, performance metrics are None.
        log_root: The serving folder holding ``predictions/`` and ``feedback/``
            (default: the workspace's artifact URL, where the server writes them).

    Raises:
        MonitoringError: A negative label delay, a coverage outside [0, 1], bad slices.

    Example:
        >>> monitor = Monitor(ws, window=WindowSpec(size=1000), label_delay=timedelta(days=1),
        ...                   slices=["sex"])
        >>> for result in monitor.results("census", since=yesterday):  # doctest: +SKIP
        ...     print(result.version, result.index, result.metrics.get("drift:age"))
    """

    def __init__(
        self,
        workspace: Workspace,
        window: WindowSpec,
        label_delay: dt.timedelta = dt.timedelta(0),
        slices: Sequence[Any] = (),
        *,
        min_coverage: float = DEFAULT_MIN_COVERAGE,
        log_root: str | None = None,
    ) -> None:
        if label_delay < dt.timedelta(0):
            raise MonitoringError(f"label_delay must not be negative, got {label_delay}")
        if not 0.0 <= min_coverage <= 1.0:
            raise MonitoringError(f"min_coverage must be in [0, 1], got {min_coverage!r}")
        self.workspace = workspace
        self.window = window
        self.label_delay = label_delay
        self.slices = _parse_slices(slices)
        self.min_coverage = float(min_coverage)
        root = log_root if log_root is not None else workspace.settings.artifact_url
        self.reader = LogReader(str(root).rstrip("/"))
        self._references: dict[tuple[str, str], VersionReference] = {}
        self._first_windows: dict[tuple[str, SeriesKey], PredictionReference] = {}
        self._counted: dict[str, tuple[dt.datetime, dict[SeriesKey, int]]] = {}

    def __repr__(self) -> str:
        return f"Monitor(window={self.window.describe()!r}, label_delay={self.label_delay})"

    def reference(self, model: str, version: str | int) -> VersionReference:
        """The reference of ``model`` version ``version`` (looked up once, then cached)."""
        key = (model, str(version))
        if key not in self._references:
            self._references[key] = find_reference(self.workspace, model, str(version))
        return self._references[key]

    def results(
        self, model: str, since: dt.datetime | None = None, now: dt.datetime | None = None
    ) -> list[WindowResult]:
        """Every window of ``model`` with predictions in ``[since, now)``.

        Args:
            model: The model name as logged.
            since: Leave out windows that begin before it (default: the whole log).
            now: The evaluation time (default: the current time); later predictions and
                feedback are ignored, so a past ``now`` reproduces an earlier evaluation.

        Returns:
            Window results ordered by version, route kind (served first) and window index;
            the last window of each series may be incomplete.
        """
        when = as_utc(now) if now is not None else _utcnow()
        start = as_utc(since) if since is not None else None
        if start is not None and start >= when:
            return []
        versions = self.reader.versions(model, start, when)
        if not versions:
            return []
        refs = {v: self.reference(model, v) for v in versions}
        inputs = self._inputs(model, refs, start, when)
        classes = max(len(r.classes or ()) for r in refs.values())
        frame = self.reader.rows(model, inputs, since=start, now=when, classes=classes)
        offsets = (
            self._rows_before(model, start)
            if self.window.size is not None and start is not None
            else {}
        )
        windows = assign_windows(frame, self.window, now=when, since=start, offsets=offsets)
        arrays = RowArrays.from_frame(frame, inputs, classes, self.slices)
        results = self._measure_all(model, windows, arrays, refs, when, start)
        results.sort(key=lambda r: (r.version is None, r.version or 0, r.route_kind, r.index))
        return results

    def check(
        self,
        model: str,
        rules: Sequence[AlertRule],
        last_fired: Mapping[str, dt.datetime],
        now: dt.datetime | None = None,
        *,
        since: dt.datetime | None = None,
    ) -> tuple[list[WindowResult], list[Alert]]:
        """The window results of ``model`` and the alerts its rules raise over them.

        Rules of other models are ignored. See :func:`evaluate_rules` for the semantics.
        """
        when = as_utc(now) if now is not None else _utcnow()
        results = self.results(model, since=since, now=when)
        mine = [rule for rule in rules if rule.model == model]
        return results, evaluate_rules(mine, results, last_fired=last_fired, now=when)

    def _measure_all(
        self,
        model: str,
        windows: Sequence[Window],
        arrays: RowArrays,
        refs: Mapping[str, VersionReference],
        now: dt.datetime,
        since: dt.datetime | None,
    ) -> list[WindowResult]:
        """Every window measured against its version's context (built once per series)."""
        contexts: dict[SeriesKey, VersionContext] = {}
        truths: dict[str, Truth | None] = {}
        results = []
        for window in windows:
            series = window.series
            ref = refs[series[0]]
            if series[0] not in truths:
                truths[series[0]] = truth_of(arrays, ref.task, ref.classes) if ref.task else None
            if series not in contexts:
                contexts[series] = VersionContext(
                    ref=ref,
                    truth=truths[series[0]],
                    prediction=self._prediction_reference(
                        model, series, ref, windows, arrays, now, since
                    ),
                    spec=self.window,
                    label_delay=self.label_delay,
                    min_coverage=self.min_coverage,
                    now=now,
                )
            results.append(measure_window(model, window, arrays, contexts[series]))
        return results

    def _rows_before(self, model: str, start: dt.datetime) -> dict[SeriesKey, int]:
        """Rows per series logged before ``start``, counted incrementally: a controller's
        ``since`` only moves forward, so each poll counts the rows between the last ``since``
        and this one instead of the whole log before it. (Rows are logged with their arrival
        time within about a second; the controller's ``since`` lags by the lookback.)"""
        cached = self._counted.get(model)
        if cached is not None and cached[0] <= start:
            boundary, counts = cached
            counts = dict(counts)
            if boundary < start:
                for series, n in self.reader.rows_before(model, start, since=boundary).items():
                    counts[series] = counts.get(series, 0) + n
        else:
            counts = self.reader.rows_before(model, start)
        self._counted[model] = (start, counts)
        return dict(counts)

    # -- inputs and references ---------------------------------------------------------

    def _inputs(
        self,
        model: str,
        refs: Mapping[str, VersionReference],
        since: dt.datetime | None,
        now: dt.datetime,
    ) -> list[InputColumn]:
        """The union of the versions' signature inputs (text where their types differ)."""
        types: dict[str, InputType] = {}
        for ref in refs.values():
            for column in ref.inputs:
                seen = types.setdefault(column.name, column.type)
                if seen != column.type:
                    types[column.name] = "text"
        if any(not ref.inputs for ref in refs.values()):
            for column in self.reader.input_columns(model, since, now):
                types.setdefault(column.name, column.type)
        for ref in refs.values():
            if not ref.inputs:
                ref.inputs = [InputColumn(n, t) for n, t in types.items()]
        return [InputColumn(n, t) for n, t in types.items()]

    def _prediction_reference(
        self,
        model: str,
        series: SeriesKey,
        ref: VersionReference,
        windows: Sequence[Window],
        arrays: RowArrays,
        now: dt.datetime,
        since: dt.datetime | None,
    ) -> PredictionReference:
        """The version's evaluation predictions, else its series' first complete window."""
        if ref.prediction is not None:
            return PredictionReference(ref.prediction, str(ref.found["prediction_reference"]))
        key = (model, series)
        if key in self._first_windows:
            return self._first_windows[key]
        # The first complete window ever: read again when ``since`` hid it.
        mine = [w for w in windows if w.series == series]
        source: RowArrays | None = arrays
        if since is None and mine:
            first = min(mine, key=lambda w: w.index)
            index, rows = first.index, first.rows if first.complete else None
        else:
            index, source, rows = self._first_rows(model, series, ref, now)
        values = None
        if source is not None and rows is not None and len(rows) > 0:
            values = prediction_values(source, rows, ref.task)
        found = None
        if values is not None:
            what = f"the first complete window of version {series[0] or '?'} ({series[1]})"
            with contextlib.suppress(ConveyorError):
                found = PredictionReference(prediction_sample(ref.task, values), what, index)
        if found is None:
            note = ref.notes.get("prediction_drift", "no reference predictions")
            return PredictionReference(None, note + " (no complete window yet)")
        self._first_windows[key] = found
        return found

    def _first_rows(
        self, model: str, series: SeriesKey, ref: VersionReference, now: dt.datetime
    ) -> tuple[int, RowArrays | None, Any]:
        classes = len(ref.classes or ())
        if self.window.size is not None:
            frame = self.reader.rows(
                model,
                [],
                since=None,
                now=now,
                classes=classes,
                series=series,
                limit=self.window.size,
            )
            if len(frame) < self.window.size:
                return 0, None, None
            return 0, RowArrays.from_frame(frame, [], classes), np.arange(len(frame))
        assert self.window.duration is not None
        first = self.reader.first_time(model, series, now)
        if first is None:
            return 0, None, None
        step = self.window.duration
        index = (first - EPOCH) // step
        start = EPOCH + index * step
        if start + step > now:
            return index, None, None
        frame = self.reader.rows(
            model, [], since=start, now=start + step, classes=classes, series=series
        )
        return index, RowArrays.from_frame(frame, [], classes), np.arange(len(frame))
