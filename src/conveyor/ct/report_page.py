"""The HTML page of a model's timeline: :func:`render_timeline_html`.

Built like the other reports (:mod:`conveyor.data.report_html`): one file, inline CSS, charts
as inline SVG, no script, no link to anything outside the page; every text from the stores
(reasons, subjects, aliases) is escaped. Top to bottom:

1. what serves now: aliases, the traffic of each route, the monitoring settings;
2. the online metric(s) and feedback coverage per version over time;
3. drift scores per feature (and of the predictions) over time, with thresholds;
4. a summary per series (version x route kind);
5. the events table -- every activity event and registry change, numbered; the chart markers
   link to their rows;
6. the values of every window (folded).

A model without traffic gets the header, a banner saying so, and its events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from conveyor.ct.durations import format_duration
from conveyor.ct.report_model import MARK_KINDS, Timeline, TimelineMark, WindowPoint
from conveyor.ct.report_plots import (
    MAX_DRIFT_PANELS,
    drift_chart_svg,
    mark_style,
    metric_chart_svg,
)
from conveyor.data.report_html import NONE, e, num, page, table

__all__ = ["MAX_WINDOW_ROWS", "render_timeline_html"]

MAX_WINDOW_ROWS = 500
"""Windows listed at most in the folded values table (the newest)."""
_DRIFT_COLUMNS = 6  # the worst drift lines get a column in the values table


def _time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _swatch(kind: str) -> str:
    color, style, _ = mark_style(kind)
    line = {"-": "solid", "--": "dashed", ":": "dotted", "-.": "dashed"}.get(style, "solid")
    return (
        f'<span class="swatch" style="display:inline-block;width:1.4rem;height:0;'
        f'border-top:3px {line} {color};vertical-align:middle;margin-right:.3rem"></span>'
    )


def _kind(kind: str) -> str:
    color = mark_style(kind)[0] if kind in MARK_KINDS else "#78848f"
    return f'<span class="badge" style="background:{color}">{e(kind)}</span>'


def _serving(timeline: Timeline) -> str:
    aliases = ", ".join(
        f"<b>{e(alias)}</b> &rarr; v{version}"
        for alias, version in sorted(timeline.aliases.items())
    )
    rows = []
    for route in timeline.routes:
        answered = ", ".join(f"v{v} {num(p)}%" for v, p in route.versions.items()) or NONE
        split = (
            ", ".join(f"{e(t)}={num(p)}%" for t, p in route.targets.items())
            if route.targets
            else "its alias alone"
        )
        shadows = ", ".join(f"v{v}" for v in route.shadows) or NONE
        rows.append(
            f"<tr><td>{e(route.route)}</td><td>{answered}</td><td>{split}</td>"
            f"<td>{shadows}</td></tr>"
        )
    parts = [f'<h2 id="serving">Serving now</h2><p>aliases: {aliases or NONE}</p>']
    if rows:
        parts.append(table(["route", "answered by", "split as set", "shadows"], rows))
    settings = (
        f"windows of {e(timeline.window)}; label delay {e(format_duration(timeline.label_delay))}; "
        f"online metric{'s' if len(timeline.metrics) > 1 else ''}: "
        f"{e(', '.join(timeline.metrics) or 'none')}"
    )
    parts.append(f'<p class="note">{settings}</p>')
    parts += [f'<p class="note">note: {e(note)}</p>' for note in timeline.notes]
    return "".join(parts)


def _legend(timeline: Timeline) -> str:
    kinds = [k for k in MARK_KINDS if any(m.kind == k for m in timeline.marks)]
    if not kinds:
        return ""
    items = " &nbsp; ".join(
        f'<span class="mark-key" title="{e(MARK_KINDS[k])}">{_swatch(k)}{e(k)}</span>'
        for k in kinds
    )
    return (
        f'<p class="note legend">markers: {items}. Numbers on the charts are the rows of the '
        '<a href="#events">events table</a>; click a marker to go to its row.</p>'
    )


def _charts(timeline: Timeline) -> str:
    parts = ['<h2 id="metrics">Online metrics</h2>']
    metrics = metric_chart_svg(timeline)
    if metrics is None:
        parts.append(
            '<p class="note">no window has an online metric or a feedback coverage yet '
            "(labels arrive with feedback, after the label delay).</p>"
        )
    else:
        parts.append(f'<figure class="chart">{metrics}</figure>')
    parts.append('<h2 id="drift">Drift</h2>')
    drift = drift_chart_svg(timeline)
    if drift is None:
        parts.append('<p class="note">no window has a drift score.</p>')
    else:
        parts.append(
            '<p class="note">one point per complete window; &times; marks a window judged '
            "drifted; the dashed line is the feature's threshold.</p>"
            f'<figure class="chart">{drift}</figure>'
        )
    rest = [line.key for line in timeline.drift[MAX_DRIFT_PANELS:]]
    if rest:
        parts.append(f'<p class="note">not drawn (less drifted): {e(", ".join(rest))}</p>')
    return "".join(parts)


def _series_table(timeline: Timeline) -> str:
    metric = timeline.metrics[0] if timeline.metrics else None
    headers = ["series", "windows", "rows", "from", "to", f"last {metric or 'metric'}"]
    headers += ["last coverage", "windows drifted"]
    rows = []
    for windows in timeline.series().values():
        done = [w for w in windows if w.complete]
        last = done[-1] if done else None
        value = last.values.get(metric) if last is not None and metric else None
        coverage = last.values.get("feedback_coverage") if last is not None else None
        drifted = sum(1 for w in done if w.drifted)
        rows.append(
            f"<tr><td>{e(windows[0].label)}</td><td class='n'>{len(done)}"
            f"{' + 1 open' if len(done) < len(windows) else ''}</td>"
            f"<td class='n'>{num(sum(w.count for w in windows))}</td>"
            f"<td>{_time(windows[0].start)}</td><td>{_time(windows[-1].end)}</td>"
            f"<td class='n'>{num(value)}</td><td class='n'>{num(coverage)}</td>"
            f"<td class='n'>{drifted}</td></tr>"
        )
    return '<h2 id="series">Series</h2>' + table(headers, rows)


def _event_row(number: int, mark: TimelineMark) -> str:
    run = f"r{mark.run_id}" if mark.run_id is not None else NONE
    version = f"v{mark.version}" if mark.version is not None else NONE
    return (
        f'<tr id="event-{number}" class="mark-{e(mark.kind)}"><td class="n">{number}</td>'
        f"<td>{_time(mark.time)}</td><td>{_kind(mark.kind)}</td><td>{e(mark.source)}</td>"
        f"<td>{version}</td><td>{run}</td><td>{e(mark.subject) if mark.subject else NONE}</td>"
        f'<td class="msg">{e(mark.reason) if mark.reason else NONE}</td>'
        f"<td>{e(mark.change) if mark.change else NONE}</td></tr>"
    )


def _events(marks: Sequence[TimelineMark]) -> str:
    title = '<h2 id="events">Events</h2>'
    if not marks:
        return title + (
            '<p class="note">no events in this period: the controller (<code>conveyor watch'
            "</code>) records what it does, the registry records every alias move.</p>"
        )
    headers = ["#", "time (UTC)", "kind", "source", "version", "run", "subject", "reason"]
    rows = [_event_row(n, mark) for n, mark in enumerate(marks, start=1)]
    return title + table([*headers, "registry change"], rows)


def _window_row(window: WindowPoint, keys: Sequence[str]) -> str:
    cells = "".join(f"<td class='n'>{num(window.values.get(k))}</td>" for k in keys)
    drifted = ", ".join(k.partition(":")[2] or k for k in window.drifted) or NONE
    state = "" if window.complete else " (open)"
    return (
        f"<tr><td>{e(window.label)}</td><td class='n'>{window.index}{state}</td>"
        f"<td>{_time(window.start)}</td><td>{_time(window.end)}</td>"
        f"<td class='n'>{num(window.count)}</td>{cells}<td>{e(drifted)}</td></tr>"
    )


def _windows(timeline: Timeline) -> str:
    drift = [line.key for line in timeline.drift[:_DRIFT_COLUMNS]]
    keys = list(dict.fromkeys([*timeline.metrics, "feedback_coverage", *drift]))
    ordered = sorted(timeline.windows, key=lambda w: (w.end, w.version or 0, w.route_kind))
    shown = ordered[-MAX_WINDOW_ROWS:]
    headers = ["series", "window", "start", "end", "rows", *keys, "drifted"]
    cut = (
        f' <span class="note">(the newest {len(shown)} of {len(ordered)})</span>'
        if len(shown) < len(ordered)
        else ""
    )
    return (
        f'<details id="windows"><summary>Values of every window{cut}</summary>'
        f"{table(headers, [_window_row(w, keys) for w in shown])}</details>"
    )


def render_timeline_html(timeline: Timeline) -> str:
    """The timeline report of one model as a self-contained HTML page.

    The page is a pure function of ``timeline`` (dated by ``timeline.now``), so the same
    timeline gives the same bytes.

    Example:
        >>> html = render_timeline_html(build_timeline(workspace, "census"))  # doctest: +SKIP
    """
    period = (
        f"{_time(timeline.since)} to {_time(timeline.now)} UTC"
        if timeline.since is not None
        else f"until {_time(timeline.now)} UTC"
    )
    production = timeline.aliases.get("production")
    meta = [
        f"model <b>{e(timeline.model)}</b>",
        f"production v{production}" if production is not None else "no production version",
        *(f"{e(a)} v{v}" for a, v in sorted(timeline.aliases.items()) if a != "production"),
        e(period),
    ]
    body = [_serving(timeline)]
    if timeline.has_traffic:
        body += [_legend(timeline), _charts(timeline), _series_table(timeline)]
    else:
        body.append(
            '<div class="banner fail no-traffic"><b>No traffic yet.</b> No prediction of '
            f"{e(timeline.model)} was logged in this period, so there is nothing to chart: serve "
            "it (<code>conveyor serve</code>) and come back once requests arrive.</div>"
        )
    body.append(_events(timeline.marks))
    if timeline.windows:
        body.append(_windows(timeline))
    return page(f"{timeline.model} — timeline", meta, body, timeline.now)
