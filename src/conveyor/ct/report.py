"""The timeline report of a model: online metrics and drift over time, and what was done.

:func:`build_timeline` gathers, for one registered model and a period:

- the **windows** of every series (version x route kind) from
  :class:`~conveyor.monitoring.Monitor`, cut as the policy's ``[monitoring]`` says, reduced to
  the online metric(s), feedback coverage and drift scores;
- the **activity events** of the model (and of the pipelines that produce it, per the policy)
  from :attr:`MetadataStore.activity <conveyor.store.metadata.MetadataStore.activity>`;
- the **registry changes** (promotions, rollbacks, traffic splits, archiving...) from the
  audit trail. A change the controller also recorded as an event (a ``promoted`` event and its
  ``promote`` audit entry) becomes one mark carrying both the reason and the change.

:func:`~conveyor.ct.report_page.render_timeline_html` turns the :class:`Timeline` into one
self-contained HTML page; ``conveyor report MODEL`` writes it. Nothing here writes to a store.

Example:
    >>> from conveyor.ct.report import build_timeline, render_timeline_html
    >>> timeline = build_timeline(workspace, "census", policy=load_policy("conveyor.toml"))
    ...                                                                  # doctest: +SKIP
    >>> Path("census.html").write_text(render_timeline_html(timeline))  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from conveyor.ct.alerting import window_spec
from conveyor.ct.durations import format_duration
from conveyor.ct.policy_model import MonitoringPolicy, Policy
from conveyor.ct.report_model import (
    MARK_KINDS,
    DriftLine,
    RouteShare,
    Threshold,
    Timeline,
    TimelineMark,
    WindowPoint,
)
from conveyor.ct.report_page import render_timeline_html
from conveyor.exceptions import ConveyorError
from conveyor.monitoring.metric_names import METRICS
from conveyor.monitoring.results import WindowResult, metric_key
from conveyor.registry import AuditAction, AuditRecord, ModelRegistry
from conveyor.store.metadata.activity_records import ActivityEvent

if TYPE_CHECKING:
    from conveyor.monitoring.monitor import Monitor
    from conveyor.store.metadata.activity import ActivityStore
    from conveyor.store.workspace import Workspace

__all__ = [
    "MARK_KINDS",
    "MAX_EVENTS",
    "ReportError",
    "Timeline",
    "TimelineMark",
    "WindowPoint",
    "audit_kind",
    "build_timeline",
    "change_text",
    "drift_lines",
    "merge_marks",
    "online_metrics",
    "policy_monitor",
    "policy_thresholds",
    "render_timeline_html",
]

MAX_EVENTS = 2000
"""Events (and registry changes) shown at most: the newest ones; a note says when cut."""

COVERAGE = "feedback_coverage"
PREDICTION_DRIFT = "prediction_drift"
_FALLBACK_METRICS = ("accuracy", "roc_auc", "f1", "rmse", "mae", "r2")
# A registry change and the activity event reporting it are written in separate
# transactions, seconds apart; minutes apart they are two different acts.
_SAME_ACT = dt.timedelta(minutes=5)
_AUDIT_KINDS: dict[AuditAction, str] = {
    AuditAction.REGISTER: "registered",
    AuditAction.ROLLBACK: "rolled_back",
    AuditAction.REMOVE_ALIAS: "alias_removed",
    AuditAction.ARCHIVE: "archived",
    AuditAction.UNARCHIVE: "unarchived",
    AuditAction.TRAFFIC: "traffic",
}


PRODUCTION = "production"


def audit_kind(entry: AuditRecord) -> str:
    """The mark kind of a registry change: ``promoted`` only for a move of ``production``
    (what a ``promoted`` event means); moving any other alias (a canary) is ``alias_set``."""
    if entry.action in (AuditAction.PROMOTE, AuditAction.SET_ALIAS):
        return "promoted" if entry.alias == PRODUCTION else "alias_set"
    return _AUDIT_KINDS.get(entry.action, str(entry.action))


class ReportError(ConveyorError):
    """A timeline report cannot be built as asked (a naive time, an empty period)."""


def policy_monitor(workspace: Workspace, monitoring: MonitoringPolicy) -> Monitor:
    """A :class:`~conveyor.monitoring.Monitor` cutting windows as ``[monitoring]`` says.

    Slices are left out: the report draws overall metrics, and slices cost a pass each.
    """
    from conveyor.monitoring.monitor import Monitor

    return Monitor(
        workspace,
        window=window_spec(monitoring),
        label_delay=monitoring.label_delay,
        min_coverage=monitoring.min_feedback_coverage,
    )


def _aware(value: dt.datetime | None, what: str) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        raise ReportError(f"{what}={value!r} has no time zone; pass an aware datetime (UTC)")
    return None if value is None else value.astimezone(dt.UTC)


def build_timeline(
    workspace: Workspace,
    model: str,
    *,
    policy: Policy | None = None,
    since: dt.datetime | None = None,
    now: dt.datetime | None = None,
    max_events: int = MAX_EVENTS,
) -> Timeline:
    """Everything the timeline report of ``model`` shows, for ``[since, now]``.

    Args:
        workspace: The open workspace (registry, activity log, prediction log, feedback).
        model: A registered model.
        policy: Gives the windows (``[monitoring]``), the online metric (``[controller]
            metric``), the alert thresholds drawn, and the pipelines whose events count.
            Default: an empty policy (windows of 1000 predictions, accuracy).
        since: Start of the period (aware); default: everything.
        now: End of the period (aware); default: the current time.
        max_events: The newest events and registry changes kept.

    Raises:
        NotFoundError: ``model`` is not registered (with a did-you-mean).
        ReportError: a naive ``since`` or ``now``, or ``since`` not before ``now``.
    """
    policy = policy if policy is not None else Policy()
    when = _aware(now, "now") or dt.datetime.now(dt.UTC)
    start = _aware(since, "since")
    if start is not None and start >= when:
        raise ReportError(f"since ({start.isoformat()}) must be before now ({when.isoformat()})")
    if isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 1:
        raise ReportError(f"max_events must be a number from 1, got {max_events!r}")
    registry = ModelRegistry(workspace.metadata)
    aliases = registry.aliases(model)  # NotFoundError with a did-you-mean
    results = policy_monitor(workspace, policy.monitoring).results(model, since=start, now=when)
    metrics = online_metrics(policy, model, results)
    drift = drift_lines(results)
    keys = [*metrics, COVERAGE, *(line.key for line in drift)]
    pipelines = [n for n, target in policy.pipelines.items() if target.model == model]
    events, events_cut = _events(
        workspace.metadata.activity, model, pipelines, start, when, max_events
    )
    audit, audit_cut = _audit(registry, model, start, when, max_events)
    marks = merge_marks(events, audit)
    cut = events_cut or audit_cut or len(marks) > max_events
    notes = _notes(model, results, metrics, start, when, cut, max_events)
    window = policy.monitoring.window
    return Timeline(
        model=model,
        now=when,
        since=start,
        window=f"{window} predictions" if isinstance(window, int) else format_duration(window),
        label_delay=policy.monitoring.label_delay,
        metrics=metrics,
        drift=drift,
        windows=tuple(_point(result, keys) for result in results),
        marks=tuple(marks[-max_events:]),
        aliases=aliases,
        routes=_routes(registry, model),
        thresholds=policy_thresholds(policy, model),
        notes=tuple(notes),
    )


# -- what is drawn ---------------------------------------------------------------------------
def online_metrics(policy: Policy, model: str, results: Sequence[WindowResult]) -> tuple[str, ...]:
    """The online metrics to draw: the controller's metric, then those of the model's alert
    rules, among those the windows measure; else the first measured of accuracy, ROC AUC,
    F1, RMSE, MAE, R2 (a regression model has no accuracy)."""
    present = {key for result in results for key in result.metrics}
    wanted = [policy.controller.metric]
    wanted += [
        rule.metric
        for rule in policy.alerts
        if rule.model == model
        and rule.feature is None
        and METRICS[rule.metric].kind == "performance"
    ]
    chosen = tuple(m for m in dict.fromkeys(wanted) if m in present)
    if chosen or not present:
        return chosen or (policy.controller.metric,)
    fallback = next((m for m in _FALLBACK_METRICS if m in present), None)
    return (fallback,) if fallback is not None else ()


def drift_lines(results: Sequence[WindowResult]) -> tuple[DriftLine, ...]:
    """One line per drift key (inputs and predictions), its threshold taken from the newest
    window judged; ordered worst first (most drifted windows, then name)."""
    newest: dict[str, DriftLine] = {}
    drifted: dict[str, int] = {}
    for result in sorted(results, key=lambda r: r.end):
        for key, verdict in result.drift.items():
            newest[key] = DriftLine(key, verdict.threshold, verdict.higher_is_drift, verdict.method)
            drifted[key] = drifted.get(key, 0) + int(verdict.drifted)
    order = sorted(newest, key=lambda key: (-drifted[key], key != PREDICTION_DRIFT, key))
    return tuple(newest[key] for key in order)


def policy_thresholds(policy: Policy, model: str) -> tuple[Threshold, ...]:
    """The thresholds of ``model``'s alert rules that name one key (no ``"*"``, no slice)."""
    found = []
    for rule in policy.alerts:
        if rule.model != model or rule.threshold is None or rule.feature == "*":
            continue
        info = METRICS[rule.metric]
        if info.kind == "performance" and rule.feature is not None:
            continue  # a slice: not drawn
        feature = rule.feature if info.per_feature else None
        found.append(Threshold(metric_key(rule.metric, feature), rule.threshold, rule.name))
    return tuple(found)


def _point(result: WindowResult, keys: Iterable[str]) -> WindowPoint:
    values = {key: result.metrics[key] for key in keys if key in result.metrics}
    drifted = tuple(key for key, verdict in result.drift.items() if verdict.drifted)
    return WindowPoint(
        version=result.version,
        route_kind=result.route_kind,
        index=result.index,
        start=result.start,
        end=result.end,
        complete=result.complete,
        count=result.count,
        values=values,
        drifted=drifted,
    )


def _notes(
    model: str,
    results: Sequence[WindowResult],
    metrics: Sequence[str],
    since: dt.datetime | None,
    now: dt.datetime,
    cut: bool,
    limit: int,
) -> list[str]:
    notes = []
    if not results:
        period = f"between {since:%Y-%m-%d %H:%M} UTC and" if since else "before"
        notes.append(f"no prediction of {model} was logged {period} {now:%Y-%m-%d %H:%M} UTC")
    complete = sorted((r for r in results if r.complete), key=lambda r: r.end)
    for metric in metrics:
        if complete and all(r.metrics.get(metric) is None for r in complete):
            last = complete[-1]
            why = last.notes.get(metric) or last.notes.get("performance") or "not measured"
            notes.append(f"{metric} has no value in any window; the newest says: {why}")
    if results and not complete:
        notes.append("no window is complete yet: only counts are known")
    if cut:
        notes.append(f"only the newest {limit} events and registry changes are shown")
    return notes


# -- serving state and marks -----------------------------------------------------------------
def _routes(registry: ModelRegistry, model: str) -> tuple[RouteShare, ...]:
    splits = registry.traffic(model)
    shares = []
    for route, (weights, shadows) in sorted(registry.resolved_routes(model).items()):
        split = splits.get(route)
        shares.append(
            RouteShare(
                route=route,
                versions={v: round(w * 100.0, 6) for v, w in sorted(weights.items())},
                targets=None if split is None else dict(split.weights),
                shadows=tuple(shadows),
            )
        )
    return tuple(shares)


def _events(
    activity: ActivityStore,
    model: str,
    pipelines: Sequence[str],
    since: dt.datetime | None,
    now: dt.datetime,
    limit: int,
) -> tuple[list[ActivityEvent], bool]:
    """The model's events, and those of its pipelines that name no other model; newest
    ``limit`` of them, oldest first; True when some were left out."""
    asked = limit + 1
    found = {
        e.id: e for e in activity.events(model=model, since=since, limit=asked, newest_first=True)
    }
    for pipeline in pipelines:
        for event in activity.events(
            pipeline=pipeline, since=since, limit=asked, newest_first=True
        ):
            if event.model in (None, model):
                found[event.id] = event
    events = sorted((e for e in found.values() if e.time <= now), key=lambda e: (e.time, e.id))
    return events[-limit:], len(events) > limit


def _audit(
    registry: ModelRegistry,
    model: str,
    since: dt.datetime | None,
    now: dt.datetime,
    limit: int,
) -> tuple[list[AuditRecord], bool]:
    entries = registry.history(model, limit=limit + 1)
    cut = len(entries) > limit
    kept = [a for a in entries[:limit] if a.at <= now and (since is None or a.at >= since)]
    return kept[::-1], cut


def _split_text(split: object) -> str:
    if not isinstance(split, dict) or not split.get("weights"):
        return "-"
    weights = ", ".join(f"{t}={p:g}" for t, p in split["weights"].items())
    shadows = ", ".join(str(s) for s in split.get("shadows") or [])
    return f"{weights}; shadows {shadows}" if shadows else weights


def _audit_version(entry: AuditRecord) -> int | None:
    """The version a registry change is about: the one it moved to, else the one it left."""
    return entry.to_version if entry.to_version is not None else entry.from_version


def change_text(entry: AuditRecord) -> str:
    """A registry change in a few words: ``production: 3 -> 4 by alice``.

    Example:
        >>> change_text(entry)  # doctest: +SKIP
        'production: - -> canary=10, production=90 by controller'
    """
    if entry.action == AuditAction.TRAFFIC:
        details = entry.details or {}
        what = (
            f"{entry.alias}: {_split_text(details.get('old'))} -> {_split_text(details.get('new'))}"
        )
    elif entry.alias is not None:
        old = "-" if entry.from_version is None else entry.from_version
        new = "-" if entry.to_version is None else entry.to_version
        what = f"{entry.alias}: {old} -> {new}"
    else:
        what = f"version {_audit_version(entry)} {audit_kind(entry)}"
    return f"{what} by {entry.actor}"


def _event_mark(event: ActivityEvent) -> TimelineMark:
    return TimelineMark(
        time=event.time,
        kind=event.kind,
        source=event.source,
        reason=event.reason,
        version=event.version,
        run_id=event.run_id,
        subject=event.subject,
        pipeline=event.pipeline,
        event_id=event.id,
    )


def _twins(marks: Sequence[TimelineMark], audit: Sequence[AuditRecord]) -> dict[int, int]:
    """Audit entry index -> index of the activity mark reporting the same act.

    A pair has the same kind, the event's version is one the entry moved from or to, and
    they are at most five minutes apart. Pairs are made closest first, a move of the
    ``production`` alias before any other (a ``promoted`` event means "became production"),
    and each side is used once.
    """
    candidates = []
    for a, entry in enumerate(audit):
        kind = audit_kind(entry)
        versions = {entry.from_version, entry.to_version} - {None}
        for m, mark in enumerate(marks):
            gap = abs(mark.time - entry.at)
            if mark.kind == kind and mark.version in versions and gap <= _SAME_ACT:
                candidates.append((entry.alias != PRODUCTION, gap, a, m))
    pairs: dict[int, int] = {}
    for _, _, a, m in sorted(candidates):
        if a not in pairs and m not in pairs.values():
            pairs[a] = m
    return pairs


def merge_marks(
    events: Sequence[ActivityEvent], audit: Sequence[AuditRecord]
) -> list[TimelineMark]:
    """Events and registry changes as marks, oldest first.

    A change that an event of the same kind and version reports within five minutes is
    folded into that event's mark (see :func:`_twins`): the mark keeps the event's reason and
    gains the change (plus the change's own reason when it says something else).

    Example:
        >>> [m.kind for m in merge_marks(events, history)]  # doctest: +SKIP
        ['registered', 'canary_started', 'traffic', 'promoted']
    """
    marks = [_event_mark(event) for event in events]
    entries = sorted(audit, key=lambda a: (a.at, a.id))
    twins = _twins(marks, entries)
    for index, entry in enumerate(entries):
        change = change_text(entry)
        if index in twins:
            mark = marks[twins[index]]
            if entry.reason and entry.reason != mark.reason:
                change = f"{change}: {entry.reason}"
            marks[twins[index]] = replace(mark, change=change, audit_id=entry.id)
            continue
        marks.append(
            TimelineMark(
                time=entry.at,
                kind=audit_kind(entry),
                source="registry",
                reason=entry.reason,
                version=_audit_version(entry),
                change=change,
                audit_id=entry.id,
            )
        )
    return sorted(marks, key=lambda m: (m.time, m.event_id or 0, m.audit_id or 0))
