"""The charts of the timeline report: online metrics and drift over time, with event markers.

Both charts are matplotlib figures (object API, through :func:`conveyor.data.report_plots.
plot_figure`) saved as inline SVG like the other reports. Panels share the time axis: each
window is a point at its end (when its value is known), one line per series, a version's
shadow traffic dashed in its version's colour. Every marked event (:data:`~conveyor.ct.
report_model.MARK_KINDS`) is a vertical line in its kind's colour on every panel, numbered
on the top panel, and links (``href="#event-N"``) to its row in the page's events table.

matplotlib is imported on first use.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from conveyor.ct.report_model import MARK_KINDS, DriftLine, Threshold, Timeline, TimelineMark
from conveyor.data.report_plots import SERIES_COLORS, figure_svg, plot_figure, plot_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["MARK_STYLES", "MAX_DRIFT_PANELS", "drift_chart_svg", "mark_style", "metric_chart_svg"]

LineStyle = Literal["-", "--", "-.", ":"]

MARK_STYLES: dict[str, tuple[str, LineStyle, float]] = {
    "alert": ("#d97706", ":", 1.2),
    "trigger": ("#0891b2", "--", 1.2),
    "run_started": ("#64748b", "--", 1.0),
    "run_finished": ("#65a30d", "-", 1.0),
    "run_failed": ("#dc2626", "-", 1.6),
    "run_interrupted": ("#c026d3", "-", 1.4),
    "not_blessed": ("#a16207", "-.", 1.2),
    "registered": ("#475569", ":", 1.0),
    "canary_started": ("#2563eb", "-", 1.6),
    "promoted": ("#15803d", "-", 2.4),
    "rolled_back": ("#991b1b", "-", 2.4),
    "traffic": ("#7c3aed", ":", 1.2),
    "alias_set": ("#0f766e", ":", 1.0),
    "alias_removed": ("#6b7280", ":", 1.0),
    "archived": ("#6b7280", "-.", 1.0),
    "unarchived": ("#6b7280", "-.", 1.0),
}
"""Colour, line style and width of each marked kind (distinct colours for the kinds the
controller acts on: trigger, runs, canary, promotion, rollback)."""

MAX_DRIFT_PANELS = 12
"""Drift lines drawn at most (worst first); the page lists the others."""

_THRESHOLD_COLOR = "#374151"
_RULE_COLOR = "#d97706"
_DRIFTED_COLOR = "#c62828"
_SHARES = frozenset({"feedback_coverage"})


def _x(value: dt.datetime) -> float:
    """A time as matplotlib's date number (what its date axis works in)."""
    from matplotlib.dates import date2num

    return float(date2num(value))


def mark_style(kind: str) -> tuple[str, LineStyle, float]:
    """Colour, line style and width of ``kind``'s marker (grey for an unknown kind)."""
    return MARK_STYLES.get(kind, ("#6b7280", ":", 1.0))


def _version_colors(timeline: Timeline) -> dict[int | None, str]:
    versions = sorted({w.version for w in timeline.windows}, key=lambda v: (v is None, v or 0))
    return {v: SERIES_COLORS[i % len(SERIES_COLORS)] for i, v in enumerate(versions)}


def _span(timeline: Timeline) -> tuple[dt.datetime, dt.datetime] | None:
    times = [w.start for w in timeline.windows] + [m.time for m in timeline.marks if m.marked]
    if not times:
        return None
    left = timeline.since if timeline.since is not None else min(times)
    right = max([timeline.now, *times])
    # a margin, so markers at either end are not drawn on the frame
    margin = max((right - left) * 0.015, dt.timedelta(seconds=30))
    return left - margin, right + margin


def _draw_series(axes: Axes, timeline: Timeline, key: str, colors: dict[int | None, str]) -> bool:
    """Draw ``key`` for every series; True when at least one value was drawn."""
    drawn = False
    for (version, kind), windows in timeline.series().items():
        points = [(w.end, w.values.get(key)) for w in windows if w.complete]
        points = [(t, v) for t, v in points if v is not None]
        if not points:
            continue
        times, values = zip(*points, strict=True)
        style = "--" if kind != "served" else "-"
        axes.plot(
            times, values, style, color=colors[version], marker="o", markersize=2.5,
            linewidth=1.3, label=plot_label(windows[0].label),
        )  # fmt: skip
        bad = [(w.end, w.values.get(key)) for w in windows if key in w.drifted]
        if bad:
            bad_times, bad_values = zip(*bad, strict=True)
            axes.plot(bad_times, bad_values, "x", color=_DRIFTED_COLOR, markersize=5)
        drawn = True
    return drawn


def _clusters(
    marks: Sequence[tuple[int, TimelineMark]], span: tuple[dt.datetime, dt.datetime]
) -> list[list[tuple[int, TimelineMark]]]:
    """Marks grouped while each is within 2% of the time axis of the previous one: a group's
    numbers share one label, so labels of nearby marks do not print over each other."""
    close = (span[1] - span[0]) * 0.02
    groups: list[list[tuple[int, TimelineMark]]] = []
    for item in sorted(marks, key=lambda pair: (pair[1].time, pair[0])):
        if groups and item[1].time - groups[-1][-1][1].time <= close:
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def _numbers(group: Sequence[tuple[int, TimelineMark]]) -> str:
    numbers = [number for number, _ in group]
    if len(numbers) > 2 and numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"{numbers[0]}-{numbers[-1]}"
    return ",".join(str(n) for n in numbers)


def _draw_marks(
    axes: Axes,
    marks: Sequence[tuple[int, TimelineMark]],
    span: tuple[dt.datetime, dt.datetime],
    numbered: bool,
) -> None:
    for number, mark in marks:
        color, style, width = mark_style(mark.kind)
        line = axes.axvline(
            _x(mark.time), color=color, linestyle=style, linewidth=width, alpha=0.85
        )
        line.set_url(f"#event-{number}")
    if not numbered:
        return
    for group in _clusters(marks, span):
        number, first = group[0]
        text = axes.annotate(
            _numbers(group), xy=(_x(first.time), 1.0), xycoords=("data", "axes fraction"),
            xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
            fontsize=6, color=mark_style(first.kind)[0],
        )  # fmt: skip
        text.set_url(f"#event-{number}")


def _draw_thresholds(axes: Axes, thresholds: Sequence[Threshold], line: DriftLine | None) -> None:
    if line is not None:
        side = "higher" if line.higher_is_drift else "lower"
        label = f"threshold {line.threshold:g} ({line.method}; {side} is drift)"
        axes.axhline(line.threshold, color=_THRESHOLD_COLOR, linestyle="--", linewidth=1.0)
        axes.annotate(
            plot_label(label, 60), xy=(1.0, line.threshold), xycoords=("axes fraction", "data"),
            xytext=(-2, 2), textcoords="offset points", ha="right", va="bottom", fontsize=6,
            color=_THRESHOLD_COLOR,
        )  # fmt: skip
    for threshold in thresholds:
        axes.axhline(threshold.value, color=_RULE_COLOR, linestyle=":", linewidth=1.0)
        axes.annotate(
            plot_label(f"alert {threshold.rule}: {threshold.value:g}", 60),
            xy=(0.0, threshold.value), xycoords=("axes fraction", "data"), xytext=(2, 2),
            textcoords="offset points", ha="left", va="bottom", fontsize=6, color=_RULE_COLOR,
        )  # fmt: skip


def _scale(axes: Axes, key: str, line: DriftLine | None) -> None:
    """Shares on [0, 1] and distances from 0, so a flat line does not look like a swing."""
    if key in _SHARES:
        axes.set_ylim(-0.02, 1.02)
    elif line is not None and line.higher_is_drift:
        axes.set_ylim(bottom=0)


def _legend(figure: Figure, axes: Axes, marks: Sequence[tuple[int, TimelineMark]]) -> None:
    from matplotlib.lines import Line2D

    handles, labels = axes.get_legend_handles_labels()
    for kind in MARK_KINDS:
        if any(mark.kind == kind for _, mark in marks):
            color, style, width = mark_style(kind)
            handles.append(Line2D([], [], color=color, linestyle=style, linewidth=width))
            labels.append(kind)
    if handles:
        figure.legend(handles, labels, loc="outside right upper")


def _time_axis(axes: Axes, span: tuple[dt.datetime, dt.datetime]) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator(tz=dt.UTC)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz=dt.UTC))
    axes.set_xlim(_x(span[0]), _x(span[1]))


def _chart(
    timeline: Timeline,
    panels: Sequence[tuple[str, str, DriftLine | None]],
    height: float,
    salt: str,
) -> str | None:
    """Panels sharing the time axis: (key, title, drift line) each; None if nothing drew."""
    span = _span(timeline)
    if span is None or not panels:
        return None
    colors = _version_colors(timeline)
    marks = [(n, m) for n, m in enumerate(timeline.marks, start=1) if m.marked]
    drew = False
    with plot_figure(9.0, 0.5 + height * len(panels)) as figure:
        grid = figure.subplots(len(panels), 1, sharex=True, squeeze=False)
        axes_list = list(grid[:, 0])
        for position, (axes, (key, title, line)) in enumerate(zip(axes_list, panels, strict=True)):
            drew = _draw_series(axes, timeline, key, colors) or drew
            _draw_thresholds(axes, [t for t in timeline.thresholds if t.metric == key], line)
            _draw_marks(axes, marks, span, numbered=position == 0)
            _scale(axes, key, line)
            axes.set_title(plot_label(title, 80), loc="left", pad=9 if position == 0 else 4)
        _time_axis(axes_list[-1], span)
        _legend(figure, axes_list[0], marks)
        svg = figure_svg(figure, salt)
    return svg.replace(' target="_blank"', "") if drew else None


def metric_chart_svg(timeline: Timeline) -> str | None:
    """The online metric(s) and the feedback coverage per version over time; None when no
    window has any of them."""
    panels: list[tuple[str, str, DriftLine | None]] = [
        (metric, f"online {metric}", None) for metric in timeline.metrics
    ]
    panels.append(("feedback_coverage", "feedback coverage (share of rows labelled)", None))
    return _chart(timeline, panels, 1.6, "timeline-metrics")


def drift_chart_svg(timeline: Timeline) -> str | None:
    """Drift scores over time, one panel per feature (and the predictions), worst first,
    with each one's threshold; None when no window has a drift score."""
    panels: list[tuple[str, str, DriftLine | None]] = []
    for line in timeline.drift[:MAX_DRIFT_PANELS]:
        name = "predictions" if line.key == "prediction_drift" else line.key.partition(":")[2]
        panels.append((line.key, f"drift of {name}", line))
    return _chart(timeline, panels, 1.15, "timeline-drift")
