"""The data of a model's timeline report: windows, marks and the serving state, as records.

:func:`conveyor.ct.report.build_timeline` fills a :class:`Timeline` from the prediction log
(through :class:`~conveyor.monitoring.Monitor`), the activity log and the registry;
:func:`conveyor.ct.report_page.render_timeline_html` draws it. The records are plain frozen
values, so a page can be rendered (and tested) from records made by hand, and
:meth:`Timeline.to_dict` is what ``conveyor report --json`` prints.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MARK_KINDS",
    "DriftLine",
    "RouteShare",
    "Threshold",
    "Timeline",
    "TimelineMark",
    "WindowPoint",
    "series_label",
]

MARK_KINDS: dict[str, str] = {
    "alert": "a monitoring rule broke",
    "trigger": "a trigger fired",
    "run_started": "a run started",
    "run_finished": "a run succeeded",
    "run_failed": "a run failed",
    "run_interrupted": "a run was interrupted",
    "not_blessed": "the new model did not beat production",
    "registered": "a version was registered",
    "canary_started": "a canary got its share of the traffic",
    "promoted": "a version became production",
    "rolled_back": "a version was rolled back",
    "traffic": "the traffic split changed",
    "alias_set": "another alias (a canary) was moved",
    "alias_removed": "an alias was removed",
    "archived": "a version was archived",
    "unarchived": "a version was unarchived",
}
"""The kinds drawn as vertical markers on the charts, in legend order. Other kinds
(``controller_started``, ``skipped``, ``canary_window``...) are listed in the events table
only: they happen at every poll or window and would hide the rest."""


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _plain(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def series_label(version: int | None, route_kind: str) -> str:
    """``v3``, ``v4 shadow``, ``unknown version``: how a series is named on the page.

    Example:
        >>> series_label(4, "shadow")
        'v4 shadow'
    """
    name = f"v{version}" if version is not None else "unknown version"
    return name if route_kind == "served" else f"{name} {route_kind}"


@dataclass(frozen=True)
class WindowPoint:
    """One monitoring window of one version's traffic, reduced to what the report draws.

    Attributes:
        version: The version that answered (None when the log did not say).
        route_kind: ``served`` or ``shadow``.
        index: The window's number in its series.
        start: Its first row's time (count windows) or aligned start (time windows).
        end: Its last row's time or aligned end; points are drawn here, when the value is
            known.
        complete: Whether the window is over; incomplete windows only count rows.
        count: Rows (predictions) in the window.
        values: The drawn metrics by flat key (``accuracy``, ``feedback_coverage``,
            ``prediction_drift``, ``drift:age``); None when not computed.
        drifted: The drift keys whose verdict was "drifted" in this window.
    """

    version: int | None
    route_kind: str
    index: int
    start: dt.datetime
    end: dt.datetime
    complete: bool
    count: int
    values: Mapping[str, float | None] = field(default_factory=dict)
    drifted: tuple[str, ...] = ()

    @property
    def series(self) -> tuple[int | None, str]:
        """What consecutive windows share: version and route kind."""
        return (self.version, self.route_kind)

    @property
    def label(self) -> str:
        """The series' name on the page (:func:`series_label`)."""
        return series_label(self.version, self.route_kind)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (ISO times, non-finite numbers as None)."""
        return {
            "version": self.version,
            "route_kind": self.route_kind,
            "index": self.index,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "complete": self.complete,
            "count": self.count,
            "values": {key: _plain(value) for key, value in self.values.items()},
            "drifted": list(self.drifted),
        }


@dataclass(frozen=True)
class DriftLine:
    """How a drift score is judged: the threshold line drawn on its chart.

    Attributes:
        key: ``drift:FEATURE`` or ``prediction_drift``.
        threshold: The threshold of the newest window that had a verdict.
        higher_is_drift: True for distances; False for p-values (lower is drift).
        method: The drift method (``wasserstein``, ``psi``, ``ks``...).
    """

    key: str
    threshold: float
    higher_is_drift: bool
    method: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "key": self.key,
            "threshold": _plain(self.threshold),
            "higher_is_drift": self.higher_is_drift,
            "method": self.method,
        }


@dataclass(frozen=True)
class Threshold:
    """A policy alert's threshold on an online metric, drawn as a dotted line.

    Attributes:
        metric: The flat metric key (``accuracy``).
        value: The threshold.
        rule: The alert rule's name.
    """

    metric: str
    value: float
    rule: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"metric": self.metric, "value": self.value, "rule": self.rule}


@dataclass(frozen=True)
class TimelineMark:
    """Something that happened to the model: an activity event or a registry change.

    Attributes:
        time: When it happened (UTC).
        kind: An activity kind (``trigger``, ``run_failed``, ``promoted``...) or, for a
            registry change no activity event reports, the change's kind (``promoted`` for
            a move of ``production``, ``alias_set`` for another alias, ``rolled_back``,
            ``registered``, ``traffic``, ``archived``...).
        source: Who recorded it: the activity event's source (``controller``, ``cli``) or
            ``registry``.
        reason: The sentence saying why.
        version: The version concerned, if any.
        run_id: The run concerned, if any.
        subject: The trigger or alert rule's name, if any.
        pipeline: The pipeline concerned, if any.
        change: The registry change, e.g. ``production: 3 -> 4 by alice``, when one is
            part of it.
        event_id: The activity event's id, if it is one.
        audit_id: The registry audit entry's id, if one is part of it.
    """

    time: dt.datetime
    kind: str
    source: str
    reason: str
    version: int | None = None
    run_id: int | None = None
    subject: str | None = None
    pipeline: str | None = None
    change: str | None = None
    event_id: int | None = None
    audit_id: int | None = None

    @property
    def marked(self) -> bool:
        """Whether it is drawn as a marker on the charts (see :data:`MARK_KINDS`)."""
        return self.kind in MARK_KINDS

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (ISO time)."""
        return {
            "time": _iso(self.time),
            "kind": self.kind,
            "source": self.source,
            "reason": self.reason,
            "version": self.version,
            "run_id": self.run_id,
            "subject": self.subject,
            "pipeline": self.pipeline,
            "change": self.change,
            "event_id": self.event_id,
            "audit_id": self.audit_id,
        }


@dataclass(frozen=True)
class RouteShare:
    """How the requests for one alias (a route) are answered now.

    Attributes:
        route: The alias the requests name (``production``).
        versions: Version -> percent of the requests it answers (summing to 100).
        targets: The split as set (target -> percent), None when the alias answers alone.
        shadows: Versions that get a copy of each request.
    """

    route: str
    versions: Mapping[int, float]
    targets: Mapping[str, float] | None = None
    shadows: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (version numbers as text keys)."""
        return {
            "route": self.route,
            "versions": {str(v): p for v, p in self.versions.items()},
            "targets": None if self.targets is None else dict(self.targets),
            "shadows": list(self.shadows),
        }


@dataclass(frozen=True)
class Timeline:
    """Everything the timeline report of one model shows.

    Attributes:
        model: The registered model.
        now: The end of the period (the evaluation time).
        since: The start of the period, None for everything logged.
        window: The monitoring window, described (``500 predictions``, ``1:00:00``).
        label_delay: How long ground truth may take (labels of younger windows are not due).
        metrics: The online metrics drawn (flat keys; the policy's controller metric first).
        drift: The drift lines drawn, worst first (``drift:FEATURE``, ``prediction_drift``).
        windows: Every window of every series, by series then index.
        marks: Every event and registry change of the period, oldest first.
        aliases: Alias -> version now.
        routes: The traffic of every alias now.
        thresholds: Policy alert thresholds on the online metrics.
        notes: Remarks shown under the header (labels not due, events cut, ...).

    Example:
        >>> timeline = build_timeline(workspace, "census")  # doctest: +SKIP
        >>> [m.kind for m in timeline.marks]  # doctest: +SKIP
        ['registered', 'promoted', 'alert', 'trigger', 'run_started', 'run_finished']
    """

    model: str
    now: dt.datetime
    since: dt.datetime | None = None
    window: str = ""
    label_delay: dt.timedelta = dt.timedelta(0)
    metrics: tuple[str, ...] = ()
    drift: tuple[DriftLine, ...] = ()
    windows: tuple[WindowPoint, ...] = ()
    marks: tuple[TimelineMark, ...] = ()
    aliases: Mapping[str, int] = field(default_factory=dict)
    routes: tuple[RouteShare, ...] = ()
    thresholds: tuple[Threshold, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def has_traffic(self) -> bool:
        """Whether any prediction of the model was logged in the period."""
        return any(w.count > 0 for w in self.windows)

    def series(self) -> dict[tuple[int | None, str], list[WindowPoint]]:
        """The windows grouped by (version, route kind), served before shadow."""
        grouped: dict[tuple[int | None, str], list[WindowPoint]] = {}
        ordered = sorted(
            self.windows,
            key=lambda w: (w.version is None, w.version or 0, w.route_kind != "served", w.index),
        )
        for window in ordered:
            grouped.setdefault(window.series, []).append(window)
        return grouped

    def to_dict(self) -> dict[str, Any]:
        """The timeline as JSON data (``conveyor report --json``)."""
        return {
            "model": self.model,
            "now": _iso(self.now),
            "since": _iso(self.since),
            "window": self.window,
            "label_delay_s": self.label_delay.total_seconds(),
            "metrics": list(self.metrics),
            "drift": [line.to_dict() for line in self.drift],
            "aliases": dict(self.aliases),
            "routes": [route.to_dict() for route in self.routes],
            "thresholds": [t.to_dict() for t in self.thresholds],
            "notes": list(self.notes),
            "windows": [w.to_dict() for w in self.windows],
            "marks": [m.to_dict() for m in self.marks],
        }
