"""The pictures of the HTML reports, as SVG text to inline in a page.

Distributions are drawn with matplotlib (object API, no pyplot: no global figure state, safe
in threads and workers) and saved as SVG with text kept as text (``svg.fonttype = none``), so
a plot weighs ~10 KB. The SVG is then trimmed for inlining in HTML: no XML prolog or DOCTYPE,
no namespace URLs, no RDF metadata, ``href`` instead of ``xlink:href``, no ids on groups; the
ids matplotlib does need (clip paths, markers) are derived from a per-figure salt, so several
plots in one page never share an id and the same input always gives the same bytes.

Score bars (drift, skew) are a few hand-written SVG elements: much lighter than a figure.

matplotlib is imported on first use.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.data.statistics_model import Histogram

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "BASELINE_COLOR",
    "SERIES_COLORS",
    "Bars",
    "Curve",
    "bars_svg",
    "figure_svg",
    "histogram_svg",
    "plot_figure",
    "plot_label",
    "score_bar_svg",
]

# First series filled, the rest as lines; a previous span is grey and dashed.
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b")
_PREVIOUS_COLOR = "#6b7280"
_MAX_LABEL = 28
_RC: dict[Any, Any] = {
    "svg.fonttype": "none",
    "font.size": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 9,
    "legend.fontsize": 7,
    "legend.frameon": False,
}
_SVG_METADATA: dict[str, Any] = {"Date": None, "Creator": None, "Format": None, "Type": None}


@dataclass(frozen=True)
class Curve:
    """One histogram to overlay: its legend label and whether it is a previous span."""

    label: str
    histogram: Histogram
    previous: bool = False


@dataclass(frozen=True)
class Bars:
    """Counts of values for one series of a grouped bar chart; shares are count / total."""

    label: str
    counts: Mapping[str, int]
    total: int
    previous: bool = False


def _text(value: str, limit: int = _MAX_LABEL) -> str:
    """Text safe for matplotlib: no mathtext (``$``), no hidden legend entry (``_``), short."""
    value = value if len(value) <= limit else value[: limit - 1] + "…"
    value = value.replace("$", r"\$")
    return " " + value if value.startswith("_") else value


def _style(index: int, previous: bool) -> dict[str, Any]:
    if previous:
        return {"color": _PREVIOUS_COLOR, "linestyle": "--"}
    return {"color": _COLORS[index % len(_COLORS)], "linestyle": "-"}


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _to_svg(figure: Figure, salt: str) -> str:
    """Render ``figure`` to SVG text ready to inline in HTML (see the module docstring)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt}):
        figure.savefig(buffer, format="svg", metadata=_SVG_METADATA)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.DOTALL)
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    svg = svg.replace("xlink:href=", "href=")
    svg = re.sub(r'<g id="[^"]*"', "<g", svg)
    size = r'<svg\s+width="[^"]*"\s+height="[^"]*"'
    svg = re.sub(size, '<svg class="plot" role="img"', svg, count=1)
    return re.sub(r"\n\s*", "\n", svg).strip()


def histogram_svg(title: str, curves: Sequence[Curve], salt: str) -> str | None:
    """Overlaid histograms as density step lines (each keeps its own bin edges).

    Densities (count / (total * bin width)) make histograms of different sizes and edges
    comparable without re-binning. A histogram of one value (zero width) is drawn as a
    spike. Returns None when no curve has any count.
    """
    import matplotlib

    drawable = [c for c in curves if sum(c.histogram.counts) > 0 and c.histogram.edges]
    if not drawable:
        return None
    with matplotlib.rc_context(_RC):
        figure = _figure(7.0, 2.1)
        axes = figure.add_subplot()
        for index, curve in enumerate(drawable):
            _draw_density(axes, curve, index)
        axes.set_title(_text(title, 60), loc="left")
        axes.set_ylabel("density")
        axes.set_ylim(bottom=0)
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return _to_svg(figure, salt)


def _draw_density(axes: Axes, curve: Curve, index: int) -> None:
    counts = [float(c) for c in curve.histogram.counts]
    edges = [float(e) for e in curve.histogram.edges]
    total = sum(counts)
    label = _text(f"{curve.label} (n={int(total):,})", 40)
    style = _style(index, curve.previous)
    widths = [b - a for a, b in itertools.pairwise(edges)]
    if len(edges) != len(counts) + 1 or not any(w > 0 for w in widths):
        peak = max(1.0, axes.get_ylim()[1])
        axes.vlines([edges[0]], 0, peak, label=label, linewidth=2, **style)
        return
    density = [c / (total * w) if w > 0 else 0.0 for c, w in zip(counts, widths, strict=True)]
    axes.stairs(density, edges, label=label, linewidth=1.4, **style)
    if index == 0 and not curve.previous:
        axes.stairs(density, edges, fill=True, alpha=0.18, color=style["color"])


def bars_svg(
    title: str,
    series: Sequence[Bars],
    salt: str,
    *,
    max_values: int = 12,
    xlabel: str = "share of non-missing values",
) -> str | None:
    """Grouped horizontal bars: share of each value per series, most frequent first.

    Values are those of the first series (then any others) up to ``max_values``; a value
    missing from a series' counts (e.g. outside its top-k) is drawn as 0. Returns None when
    there is nothing to draw.
    """
    import matplotlib

    values = _ordered_values(series, max_values)
    if not values:
        return None
    with matplotlib.rc_context(_RC):
        figure = _figure(7.0, 0.7 + 0.1 * len(values) * max(2, len(series)))
        axes = figure.add_subplot()
        height = 0.8 / len(series)
        for index, bars in enumerate(series):
            shares = [bars.counts.get(v, 0) / bars.total if bars.total else 0.0 for v in values]
            offsets = [i - 0.4 + height * (index + 0.5) for i in range(len(values))]
            look = {"color": _style(index, bars.previous)["color"], "alpha": 0.85}
            look["hatch"] = "//" if bars.previous else None
            label = _text(f"{bars.label} (n={bars.total:,})", 40)
            axes.barh(offsets, shares, height=height, label=label, **look)
        axes.set_yticks(range(len(values)), [_text(v) for v in values])
        axes.invert_yaxis()
        axes.set_xlabel(xlabel)
        axes.set_title(_text(title, 60), loc="left")
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return _to_svg(figure, salt)


def _ordered_values(series: Sequence[Bars], limit: int) -> list[str]:
    seen: dict[str, None] = {}
    for bars in series:
        for value, _ in sorted(bars.counts.items(), key=lambda item: -item[1]):
            seen.setdefault(value)
    return list(seen)[:limit]


def score_bar_svg(score: float | None, threshold: float | None, drifted: bool) -> str:
    """A 160x14 bar for ``score`` with a tick at ``threshold``: red when drifted, else green.

    The scale runs from 0 to 1.25 x the larger of score and threshold, so both always show;
    an infinite score fills the bar. No score (None or NaN): no bar.
    """
    if score is None or math.isnan(score):
        return ""
    width = 160.0
    finite = [abs(v) for v in (score, threshold) if v is not None and math.isfinite(v)]
    top = max(finite, default=1.0) * 1.25 or 1.0
    bar = width * min(abs(score) / top, 1.0)
    color = "#c62828" if drifted else "#2e7d32"
    parts = [
        f'<svg class="bar" width="{width:g}" height="14" viewBox="0 0 {width:g} 14" role="img">',
        f'<rect x="0" y="2" width="{width:g}" height="10" fill="#eef0f3"/>',
        f'<rect x="0" y="2" width="{bar:.1f}" height="10" fill="{color}"/>',
    ]
    if threshold is not None and math.isfinite(threshold):
        tick = width * min(abs(threshold) / top, 1.0)
        parts.append(
            f'<line x1="{tick:.1f}" x2="{tick:.1f}" y1="0" y2="14" stroke="#1d2430" '
            'stroke-width="2"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


# -- the same machinery for other reports' own figures -------------------------------------

#: Series colours, first to last; a baseline (previous span, production model) is grey.
SERIES_COLORS = _COLORS
BASELINE_COLOR = _PREVIOUS_COLOR


@contextmanager
def plot_figure(width: float, height: float) -> Iterator[Figure]:
    """A figure in the reports' style; draw on it and call :func:`figure_svg` in the block.

    Example:
        >>> with plot_figure(7.0, 2.0) as figure:
        ...     figure.add_subplot().plot([0, 1], [0, 1])
        ...     svg = figure_svg(figure, "my-plot")
    """
    import matplotlib

    with matplotlib.rc_context(_RC):
        yield _figure(width, height)


def figure_svg(figure: Figure, salt: str) -> str:
    """``figure`` as SVG ready to inline in a page; ``salt`` makes its ids unique there."""
    return _to_svg(figure, salt)


def plot_label(value: str, limit: int = _MAX_LABEL) -> str:
    """Text safe for a matplotlib label: no mathtext, no hidden legend entry, at most ``limit``."""
    return _text(value, limit)
