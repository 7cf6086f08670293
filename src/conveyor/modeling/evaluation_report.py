"""The HTML page of an evaluation: candidate vs baseline, per slice, fairness, curves, verdict.

:func:`render_evaluation_html` turns an
:class:`~conveyor.modeling.evaluation_artifacts.EvaluationReport` (and, optionally, an
explanation) into one self-contained page, built like the data reports
(:mod:`conveyor.data.report`): inline CSS, plots as inline SVG drawn with matplotlib, no
script, no link; every text that comes from data (feature values, slice names, messages) is
escaped. Sections, top to bottom:

1. the blessing verdict and every reason (failed checks first);
2. overall metrics, candidate and baseline side by side with deltas (green: better);
3. per slice spec, a table and grouped bars (candidate vs baseline) of the headline metrics
   -- the thresholded ones first;
4. fairness per sensitive feature: disparities side by side and per-group metrics;
5. confusion matrices, ROC / precision-recall / calibration curves;
6. the explanation's plots (permutation importance, partial dependence / ICE), when given;
7. what was measured: data, split, slices, metrics, thresholds, bundles.

The page is a pure function of its arguments: dated :attr:`EvaluationReport.generated_at`
(the candidate bundle's time) unless told otherwise, so the same report gives the same bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from conveyor.data.report_html import NONE, badge, e, num, page, table
from conveyor.data.report_plots import (
    BASELINE_COLOR,
    SERIES_COLORS,
    figure_svg,
    plot_figure,
    plot_label,
)
from conveyor.modeling.evaluation_artifacts import EvaluationReport, MetricDelta
from conveyor.modeling.evaluation_model import ConfusionMatrix, EvaluationResult, Reason
from conveyor.modeling.explain import Explanation
from conveyor.modeling.explain_report import render_explanation_svgs
from conveyor.modeling.metrics import higher_is_better

__all__ = ["headline_metrics", "render_evaluation_html"]

_DEFAULT_HEADLINE = {
    "binary": ("roc_auc", "accuracy", "f1"),
    "multiclass": ("accuracy", "f1", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}
_MAX_SLICES_DRAWN = 24
_FAIRNESS_FIGURES = (
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "equalized_odds_ratio",
)
_GREEN, _RED = "#2e7d32", "#c62828"


def headline_metrics(report: EvaluationReport, limit: int = 3) -> list[str]:
    """The metrics drawn per slice: thresholded ones first, then the task's usual ones.

    Example:
        >>> headline_metrics(report)
        ['accuracy', 'roc_auc', 'f1']
    """
    known = report.candidate.overall
    wanted = [str(t["metric"]) for t in report.config.thresholds]
    wanted += _DEFAULT_HEADLINE[report.candidate.task]
    wanted += list(known)
    return [m for m in dict.fromkeys(wanted) if m in known][:limit]


def render_evaluation_html(
    report: EvaluationReport,
    *,
    explanation: Explanation | Mapping[str, Any] | None = None,
    title: str | None = None,
    generated_at: datetime | None = None,
) -> str:
    """One self-contained HTML page for an evaluation (see the module docstring).

    Args:
        report: the evaluation (candidate, baseline, comparison, blessing).
        explanation: an :class:`~conveyor.modeling.explain.Explanation` (or its JSON as a
            mapping) whose permutation importance, SHAP values and partial dependence / ICE
            curves are drawn; default: the one the report holds.
        title: page title (default: ``"Evaluation: <model name>"``).
        generated_at: time shown on the page (default: the report's ``generated_at``).

    Returns:
        The HTML document (write it as UTF-8).

    Example:
        >>> Path("evaluation.html").write_text(render_evaluation_html(report), encoding="utf-8")
    """
    body = [
        _verdict(report),
        _overall(report),
        _slices(report),
        _fairness(report),
        _matrices(report),
        _curves(report),
        _explanation(explanation if explanation is not None else report.explanation),
        _config(report),
    ]
    when = generated_at or report.generated_at
    return page(title or f"Evaluation: {report.model_name}", _meta(report), body, when)


def _meta(report: EvaluationReport) -> list[str]:
    cand = report.candidate
    base = report.baseline
    where = f"split {report.split}" if report.split else "all rows"
    return [
        f"candidate <b>{e(cand.model_version or 'candidate')}</b>",
        f"baseline <b>{e(base.model_version)}</b>" if base else "no baseline",
        f"{e(cand.task)} · {e(where)} · {cand.count:,} rows · label <code>{e(report.label)}</code>",
    ]


# -- verdict -------------------------------------------------------------------------------


def _status(reason: Reason) -> str:
    if reason.skipped:
        return badge("skipped", "grey")
    return badge("passed", "green") if reason.passed else badge("failed", "red")


def _verdict(report: EvaluationReport) -> str:
    blessing = report.blessing
    kind, word = ("pass", "Blessed") if blessing.blessed else ("fail", "Not blessed")
    banner = (
        f'<div class="banner {kind}"><b>{word}</b><div class="note">{e(blessing.note)}</div></div>'
    )
    ordered = sorted(blessing.reasons, key=lambda r: (r.passed, r.skipped))
    rows = [
        f'<tr class="{"" if r.passed else "error"}"><td>{_status(r)}</td><td>{e(r.metric)}</td>'
        f'<td>{e(r.slice or "overall")}</td><td class="n">{num(r.candidate_value)}</td>'
        f'<td class="n">{num(r.baseline_value)}</td><td>{e(r.threshold)}</td>'
        f'<td class="msg">{e(r.message)}</td></tr>'
        for r in ordered
    ]
    headers = ("check", "metric", "slice", "candidate", "baseline", "threshold", "why")
    checks = table(headers, rows) if rows else '<p class="note">no thresholds were given</p>'
    return f"<h2>Verdict</h2>{banner}{checks}"


# -- metric tables -------------------------------------------------------------------------


def _delta_cell(delta: MetricDelta | None) -> str:
    if delta is None or delta.delta is None:
        return f'<td class="n">{NONE}</td>'
    color = "" if delta.better is None else _GREEN if delta.better else _RED
    style = f' style="color:{color}"' if color else ""
    return f'<td class="n"{style}>{delta.delta:+.4g}</td>'


def _value_cells(delta: MetricDelta | None, with_baseline: bool) -> str:
    cells = f'<td class="n">{num(None if delta is None else delta.candidate)}</td>'
    if with_baseline:
        base = None if delta is None else delta.baseline
        cells += f'<td class="n">{num(base)}</td>{_delta_cell(delta)}'
    return cells


def _overall(report: EvaluationReport) -> str:
    has_base = report.baseline is not None
    rows = [
        f"<tr><td>{e(metric)}</td><td>{'↑' if higher_is_better(metric) else '↓'}</td>"
        f"{_value_cells(delta, has_base)}</tr>"
        for metric, delta in report.comparison.overall.items()
    ]
    headers = ["metric", "better", "candidate", *(("baseline", "delta") if has_base else ())]
    return f"<h2>Overall</h2>{table(headers, rows)}"


def _slices(report: EvaluationReport) -> str:
    if not report.candidate.slices:
        return ""
    metrics = headline_metrics(report)
    has_base = report.baseline is not None
    specs: dict[str, list[str]] = {}
    for name, sliced in report.candidate.slices.items():
        specs.setdefault(sliced.spec, []).append(name)
    parts = [
        "<h2>Slices</h2>",
        f'<p class="note">slices under {report.candidate.min_count} rows are flagged '
        "(reported, never gated); green deltas are better than the baseline</p>",
    ]
    for index, (spec, names) in enumerate(specs.items()):
        headers = ["slice", "rows"]
        for metric in metrics:
            headers += [metric, *(("baseline", "delta") if has_base else ())]
        rows = [_slice_row(report, name, metrics, has_base) for name in names]
        svg = _slice_bars(report, names, metrics, f"eval-slices-{index}")
        figure = f"<figure>{svg}</figure>" if svg else ""
        parts.append(f"<h3>{e(spec)}</h3>{table(headers, rows)}{figure}")
    return "".join(parts)


def _slice_row(report: EvaluationReport, name: str, metrics: list[str], has_base: bool) -> str:
    sliced = report.candidate.slices[name]
    deltas = report.comparison.slices.get(name, {})
    flag = f" {badge('few rows', 'amber')}" if sliced.flagged else ""
    cells = "".join(_value_cells(deltas.get(m), has_base) for m in metrics)
    return f'<tr><td>{e(name)}{flag}</td><td class="n">{sliced.count:,}</td>{cells}</tr>'


def _slice_bars(
    report: EvaluationReport, names: list[str], metrics: list[str], salt: str
) -> str | None:
    """Grouped horizontal bars per slice: candidate (colour) and baseline (grey, hatched)."""
    shown = names[:_MAX_SLICES_DRAWN]
    if not shown or not metrics:
        return None
    series: list[tuple[str, EvaluationResult, str, str | None]] = [
        ("candidate", report.candidate, SERIES_COLORS[0], None)
    ]
    if report.baseline is not None:
        series.append(("baseline", report.baseline, BASELINE_COLOR, "//"))
    height = 0.8 / len(series)
    with plot_figure(7.0, 0.8 + 0.1 * len(shown) * max(2, len(series))) as figure:
        axes_list = figure.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
        for axes, metric in zip(axes_list, metrics, strict=True):
            for i, (label, result, color, hatch) in enumerate(series):
                values = [_slice_value(result, n, metric) for n in shown]
                offsets = [k - 0.4 + height * (i + 0.5) for k in range(len(shown))]
                model = plot_label(result.model_version or label, 30)
                axes.barh(offsets, values, height=height, color=color, hatch=hatch, label=model)
            axes.set_title(plot_label(metric), loc="left")
        axes_list[0].set_yticks(range(len(shown)), [plot_label(n) for n in shown])
        axes_list[0].invert_yaxis()
        axes_list[-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return figure_svg(figure, salt)


def _slice_value(result: EvaluationResult, name: str, metric: str) -> float:
    sliced = result.slices.get(name)
    value = None if sliced is None else sliced.metrics.get(metric)
    return math.nan if value is None else value  # undefined: no bar


# -- fairness and confusion matrices -------------------------------------------------------


def _fairness(report: EvaluationReport) -> str:
    if not report.candidate.fairness:
        return ""
    parts = ["<h2>Fairness</h2>"]
    for feature, result in report.candidate.fairness.items():
        base = None if report.baseline is None else report.baseline.fairness.get(feature)
        rows = [
            f'<tr><td>{e(name)}</td><td class="n">{num(getattr(result, name))}</td>'
            f'<td class="n">{num(None if base is None else getattr(base, name))}</td></tr>'
            for name in _FAIRNESS_FIGURES
        ]
        disparity = table(("disparity", "candidate", "baseline"), rows)
        metric_names = list(next(iter(result.groups.values())).metrics) if result.groups else []
        groups = [
            f'<tr><td>{e(group)}</td><td class="n">{g.count:,}</td>'
            + "".join(f'<td class="n">{num(g.metrics.get(m))}</td>' for m in metric_names)
            + "</tr>"
            for group, g in result.groups.items()
        ]
        group_table = table(["group", "rows", *metric_names], groups)
        positive = f"positive label {e(result.positive_label)}"
        parts.append(f'<h3>{e(feature)}</h3><p class="note">{positive}</p>{disparity}{group_table}')
    return "".join(parts)


def _matrix(matrix: ConfusionMatrix, caption: str) -> str:
    rows = []
    for label, counts in zip(matrix.labels, matrix.matrix, strict=True):
        total = sum(counts) or 1
        cells = "".join(
            f'<td class="n" style="background:rgba(31,119,180,{0.6 * c / total:.2f})">{c:,}</td>'
            for c in counts
        )
        rows.append(f"<tr><th>{e(label)}</th>{cells}</tr>")
    headers = ["true \\ predicted", *matrix.labels]
    return f"<figure><figcaption>{e(caption)}</figcaption>{table(headers, rows)}</figure>"


def _matrices(report: EvaluationReport) -> str:
    results = [r for r in (report.candidate, report.baseline) if r is not None]
    shown = [
        _matrix(r.confusion_matrix, r.model_version or "model")
        for r in results
        if r.confusion_matrix is not None
    ]
    if not shown:
        return ""
    return f'<h2>Confusion matrices</h2><div class="grid">{"".join(shown)}</div>'


# -- curves --------------------------------------------------------------------------------


def _curves(report: EvaluationReport) -> str:
    results = [r for r in (report.candidate, report.baseline) if r is not None]
    if not any(r.roc_curve is not None for r in results):
        return ""
    with plot_figure(7.0, 2.4) as figure:
        roc, pr, calibration = figure.subplots(1, 3)
        for i, result in enumerate(results):
            look: dict[str, Any] = {"color": SERIES_COLORS[0], "linestyle": "-"}
            if i > 0:
                look = {"color": BASELINE_COLOR, "linestyle": "--"}
            name = plot_label(result.model_version or "model", 30)
            if result.roc_curve is not None:
                roc.plot(result.roc_curve.x, result.roc_curve.y, label=name, **look)
            if result.pr_curve is not None:
                pr.plot(result.pr_curve.x, result.pr_curve.y, **look)
            bins = result.calibration or []
            predicted = [b.mean_predicted for b in bins]
            calibration.plot(predicted, [b.fraction_positive for b in bins], marker="o", **look)
        for axes, title, xlabel, ylabel in (
            (roc, "ROC", "false positive rate", "true positive rate"),
            (pr, "precision-recall", "recall", "precision"),
            (calibration, "calibration", "mean predicted", "fraction positive"),
        ):
            axes.set_title(title, loc="left")
            axes.set_xlabel(xlabel)
            axes.set_ylabel(ylabel)
            axes.set_xlim(0, 1)
            axes.set_ylim(0, 1.02)
        for axes in (roc, calibration):
            axes.plot([0, 1], [0, 1], color="#b0b7bf", linestyle=":", linewidth=1)
        roc.legend(loc="lower right")
        svg = figure_svg(figure, "eval-curves")
    return f"<h2>Curves</h2><figure>{svg}</figure>"


# -- explanation ---------------------------------------------------------------------------


def _explanation(given: Explanation | Mapping[str, Any] | None) -> str:
    if given is None:
        return ""
    explanation = given if isinstance(given, Explanation) else Explanation.model_validate(given)
    svgs = render_explanation_svgs(explanation)
    wide = [f"<figure>{svg}</figure>" for key, svg in svgs.items() if ":" not in key]
    curves = [f"<figure>{svg}</figure>" for key, svg in svgs.items() if ":" in key]
    perm = explanation.permutation
    rows = f"{explanation.n_rows:,} of {explanation.n_rows_total:,} rows"
    note = f"{e(perm.metric)} {num(perm.baseline)} on {rows}"
    if explanation.shap_note:
        note += f"; no SHAP values: {e(explanation.shap_note)}"
    grid = f'<h3>Partial dependence and ICE</h3><div class="grid">{"".join(curves)}</div>'
    return f'<h2>Explanation</h2><p class="note">{note}</p>{"".join(wide)}{grid if curves else ""}'


# -- configuration -------------------------------------------------------------------------


def _json(value: object) -> str:
    return f"<code>{e(json.dumps(value, sort_keys=True, default=str))}</code>"


def _config(report: EvaluationReport) -> str:
    config = report.config
    metrics: Sequence[str] | str = config.metrics or "all of the task's"
    rows = [
        ("model", e(report.model_name)),
        ("data", f"<code>{e(report.data_uri or NONE)}</code>"),
        ("data sha256", f"<code>{e(report.data_sha256 or NONE)}</code>"),
        ("split", e(report.split or "all rows")),
        ("label", f"<code>{e(report.label)}</code>"),
        ("slices", _json(config.slices)),
        ("metrics", _json(metrics)),
        ("thresholds", _json(config.thresholds)),
        ("sensitive features", _json(config.sensitive_features)),
        ("min_count", str(config.min_count)),
        ("candidate bundle", f"<code>{e(report.candidate_sha256 or NONE)}</code>"),
        ("baseline bundle", f"<code>{e(report.baseline_sha256 or NONE)}</code>"),
    ]
    if report.baseline_note:
        rows.append(("baseline", e(report.baseline_note)))
    html_rows = [f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in rows]
    return f"<h2>What was measured</h2>{table(('setting', 'value'), html_rows)}"
