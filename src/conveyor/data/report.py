"""HTML reports of statistics and validation results: one self-contained file each.

A report is a single HTML page that works offline: inline CSS, plots as inline SVG, no
script, no link, no font or image from anywhere, so it can be mailed, attached to a CI run or
stored in an artifact. Every piece of text that comes from data (feature names, category
values, messages) is escaped.

- :func:`render_statistics_html`: a feature table per split (type, count, missing share,
  moments and median, or distinct count and top values), the label distribution, and per
  feature the distributions of every split and of the previous span overlaid.
- :func:`render_validation_html`: a pass/fail banner, the anomalies by severity, drift and
  skew scores against their thresholds and, given statistics, the same tables and plots
  with the features that have anomalies flagged.

Both are pure functions of their arguments plus ``generated_at`` (default: now): pass a fixed
time to get identical bytes for identical inputs, e.g. when a component stores the page in an
artifact whose fingerprint should not change from run to run.

The pieces live in private siblings: ``report_html`` (page, CSS, escaping), ``report_plots``
(matplotlib SVG and score bars), ``report_statistics`` and ``report_validation`` (sections).
"""

from __future__ import annotations

from datetime import UTC, datetime

from conveyor.data.report_html import e, page
from conveyor.data.report_statistics import (
    feature_names,
    identity_meta,
    previous_label,
    statistics_sections,
)
from conveyor.data.report_validation import severity_flags, validation_sections
from conveyor.data.statistics_model import DatasetStatistics
from conveyor.data.validation_model import ValidationReport

__all__ = ["render_statistics_html", "render_validation_html"]


def _meta(
    stats: DatasetStatistics | None, previous: DatasetStatistics | None, identity: str | None
) -> list[str]:
    meta = identity_meta(stats, identity)
    if previous is not None:
        split = "train" if "train" in previous.splits else next(iter(previous.splits), "")
        meta.append(f"compared with {e(previous_label(previous, split))}")
    return meta


def render_statistics_html(
    stats: DatasetStatistics,
    *,
    previous: DatasetStatistics | None = None,
    title: str | None = None,
    identity: str | None = None,
    generated_at: datetime | None = None,
) -> str:
    """One self-contained HTML page describing a Statistics artifact.

    Args:
        stats: statistics of every split of a dataset version.
        previous: statistics of the previous span, overlaid on the plots (its ``train``
            split, or its first one).
        title: page title (default: ``"Statistics: <dataset> span <n>"``).
        identity: what the page is about, shown under the title (e.g. ``"artifact a12"``).
        generated_at: time shown on the page (default: now).

    Returns:
        The HTML document (write it as UTF-8).

    Example:
        >>> page = render_statistics_html(stats, previous=last_span_stats)
        >>> Path("statistics.html").write_text(page, encoding="utf-8")
    """
    span = f" span {stats.span}" if stats.span is not None else ""
    title = title or f"Statistics: {stats.dataset or 'dataset'}{span}"
    body = statistics_sections(stats, previous, {})
    return page(title, _meta(stats, previous, identity), body, generated_at or datetime.now(UTC))


def render_validation_html(
    report: ValidationReport,
    *,
    statistics: DatasetStatistics | None = None,
    previous: DatasetStatistics | None = None,
    title: str | None = None,
    identity: str | None = None,
    generated_at: datetime | None = None,
) -> str:
    """One self-contained HTML page for a ValidationReport artifact.

    Args:
        report: the validation result (anomalies, drift, skew).
        statistics: statistics of the validated dataset; adds the feature tables and plots.
        previous: statistics of the previous span, overlaid on the plots.
        title: page title (default: ``"Validation: <dataset>/<split>"``).
        identity: what the page is about, shown under the title (e.g. ``"artifact a13"``).
        generated_at: time shown on the page (default: now).

    Returns:
        The HTML document (write it as UTF-8).

    Example:
        >>> page = render_validation_html(report, statistics=stats, previous=last_span_stats)
    """
    title = title or f"Validation: {report.dataset or 'dataset'}/{report.split}"
    names = feature_names(statistics) if statistics is not None else []
    body = validation_sections(report, names)
    if statistics is not None:
        body.extend(statistics_sections(statistics, previous, severity_flags(report)))
    meta = _meta(statistics, previous, identity)
    return page(title, meta, body, generated_at or datetime.now(UTC))
