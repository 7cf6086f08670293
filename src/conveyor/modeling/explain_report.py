"""The pictures of an :class:`~conveyor.modeling.explain.Explanation`, as inline SVG.

:func:`render_explanation_svgs` returns ``{key: svg}`` for the evaluation report to embed:

============================ =============================================================
key                          picture
============================ =============================================================
``importance``               permutation importance per feature, mean with a std whisker
``shap``                     mean |SHAP value| per feature (when the explanation has them)
``dependence:<feature>``     partial dependence (thick) over ICE curves (thin), top features
============================ =============================================================

Figures are drawn and trimmed for inlining by the data reports' helpers
(:mod:`conveyor.data.report_plots`: ``plot_figure``, ``figure_svg``): text kept as text, no
ids shared between plots (each has its own salt, ``explain-...``), and the same explanation
always gives the same bytes. matplotlib is imported on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from conveyor.data.report_plots import SERIES_COLORS, figure_svg, plot_figure, plot_label
from conveyor.modeling.explain import DependenceCurve, Explanation

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["render_explanation_svgs"]

_MAX_BARS = 20
_ICE_COLOR = "#9aa5b1"


def render_explanation_svgs(explanation: Explanation) -> dict[str, str]:
    """Every picture of ``explanation``, keyed as in the module docstring, in that order.

    Example:
        >>> svgs = render_explanation_svgs(explanation)
        >>> list(svgs)
        ['importance', 'shap', 'dependence:age', 'dependence:education']
        >>> html = "".join(f"<figure>{svg}</figure>" for svg in svgs.values())
    """
    perm = explanation.permutation
    change = "drop" if perm.higher_is_better else "increase"
    features = perm.features[:_MAX_BARS]
    svgs = {
        "importance": _bars_svg(
            f"Permutation importance ({perm.metric}, {perm.n_repeats} repeats, seed {perm.seed})",
            [f.feature for f in features],
            [f.mean for f in features],
            [f.std for f in features],
            f"{change} in {perm.metric} when the feature is shuffled",
            "explain-importance",
        )
    }
    if explanation.shap is not None:
        names = list(explanation.shap.mean_abs)[:_MAX_BARS]
        svgs["shap"] = _bars_svg(
            f"SHAP ({explanation.shap.explainer}, {explanation.shap.n_rows} rows)",
            names,
            [explanation.shap.mean_abs[n] for n in names],
            None,
            "mean |SHAP value|",
            "explain-shap",
        )
    for index, curve in enumerate(explanation.dependence):
        svgs[f"dependence:{curve.feature}"] = _dependence_svg(curve, f"explain-pd-{index}")
    return svgs


def _bars_svg(
    title: str,
    names: Sequence[str],
    values: Sequence[float],
    errors: Sequence[float] | None,
    xlabel: str,
    salt: str,
) -> str:
    """Horizontal bars, the first name on top, a zero line, optional error whiskers."""
    with plot_figure(7.0, 0.8 + 0.22 * max(len(names), 1)) as figure:
        axes = figure.add_subplot()
        positions = range(len(names))
        axes.barh(positions, values, xerr=errors, color=SERIES_COLORS[0], alpha=0.85, capsize=2)
        axes.axvline(0.0, color="#1d2430", linewidth=0.8)
        axes.set_yticks(positions, [plot_label(n) for n in names])
        axes.invert_yaxis()
        axes.set_xlabel(xlabel)
        axes.set_title(plot_label(title, 80), loc="left")
        return figure_svg(figure, salt)


def _dependence_svg(curve: DependenceCurve, salt: str) -> str:
    """Partial dependence of one feature over its ICE curves (a line per output)."""
    with plot_figure(4.6, 2.6) as figure:
        axes = figure.add_subplot()
        if curve.kind == "numeric":
            _draw_numeric(axes, curve)
        else:
            _draw_categorical(axes, curve)
        what = "prediction" if curve.outputs == ["prediction"] else "probability"
        axes.set_ylabel(what)
        axes.set_xlabel(plot_label(curve.feature, 40))
        lines = len(curve.ice[0]) if curve.ice else 0
        axes.set_title(
            plot_label(f"{curve.feature}: partial dependence, {lines} ICE curves", 60), loc="left"
        )
        if len(curve.outputs) > 1 or what == "probability":
            axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return figure_svg(figure, salt)


def _draw_numeric(axes: Axes, curve: DependenceCurve) -> None:
    x = [float(v) for v in curve.grid]
    for index, output in enumerate(curve.outputs):
        color = SERIES_COLORS[index % len(SERIES_COLORS)]
        ice_color = _ICE_COLOR if len(curve.outputs) == 1 else color
        for line in curve.ice[index]:
            axes.plot(x, line, color=ice_color, linewidth=0.5, alpha=0.35)
        label = "average" if output == "prediction" else plot_label(f"P({output})", 30)
        axes.plot(x, curve.average[index], color=color, linewidth=2.2, label=label)


def _draw_categorical(axes: Axes, curve: DependenceCurve) -> None:
    positions = list(range(len(curve.grid)))
    width = 0.8 / len(curve.outputs)
    for index, output in enumerate(curve.outputs):
        color = SERIES_COLORS[index % len(SERIES_COLORS)]
        offsets = [p - 0.4 + width * (index + 0.5) for p in positions]
        label = "average" if output == "prediction" else plot_label(f"P({output})", 30)
        axes.bar(offsets, curve.average[index], width=width, color=color, alpha=0.6, label=label)
        for line in curve.ice[index]:  # one dot per row and category: rows are not ordered
            axes.scatter(offsets, line, s=3, color=_ICE_COLOR, alpha=0.5, linewidths=0)
    axes.set_xticks(positions, [plot_label(str(v), 16) for v in curve.grid])
