"""The statistics part of the HTML reports: feature tables, label, distributions.

:func:`statistics_sections` turns a :class:`DatasetStatistics` (and optionally the previous
span's) into HTML sections; both report pages use it. Features with anomalies can be
flagged (a badge in the tables, a coloured frame around the plot).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from conveyor.data.report_html import NONE, SEVERITY_COLOR, anchor, badge, cut, e, num, table
from conveyor.data.report_plots import Bars, Curve, bars_svg, histogram_svg
from conveyor.data.statistics_model import (
    DatasetStatistics,
    FeatureKind,
    FeatureStatistics,
    SplitStatistics,
)
from conveyor.data.validation_model import Severity

__all__ = ["feature_names", "identity_meta", "previous_label", "statistics_sections"]

Flags = Mapping[str, Severity]
Series = list[tuple[str, FeatureStatistics, bool]]  # label, statistics, is previous span
_TOP_VALUES = 3
_MAX_VALUE = 40


def feature_names(stats: DatasetStatistics) -> list[str]:
    """Features of every split in column order (the first split's first)."""
    names: dict[str, None] = {}
    for split in stats.splits.values():
        names.update(dict.fromkeys(split.features))
    return list(names)


def previous_label(previous: DatasetStatistics, split: str) -> str:
    """How the previous span is named in legends: ``"span 3 · train"``."""
    span = f"span {previous.span}" if previous.span is not None else "previous span"
    return f"{span} · {split}"


def identity_meta(stats: DatasetStatistics | None, identity: str | None) -> list[str]:
    """HTML pieces of the header line: the artifact, dataset, span and splits."""
    parts = [e(identity)] if identity else []
    if stats is not None:
        parts.append(f"dataset <b>{e(stats.dataset or 'unnamed')}</b>")
        if stats.span is not None:
            parts.append(f"span {e(stats.span)}")
        splits = ", ".join(f"{e(n)} ({s.num_rows:,} rows)" for n, s in stats.splits.items())
        parts.append(f"splits: {splits}" if splits else "no splits")
    return parts


# -- feature tables ------------------------------------------------------------------------


def _median(feature: FeatureStatistics) -> float | None:
    for key, value in (feature.numeric.quantiles if feature.numeric else {}).items():
        try:
            if abs(float(key) - 0.5) < 1e-9:
                return value
        except ValueError:
            continue
    return None


def _name_cell(name: str, names: Sequence[str], flags: Flags) -> str:
    link = f'<a href="#{anchor(name, names)}">{e(name)}</a>'
    flag = flags.get(name)
    return f"<td>{link} {badge(flag.value, SEVERITY_COLOR[flag]) if flag else ''}</td>"


def _common_cells(feature: FeatureStatistics) -> str:
    missing = feature.missing_fraction
    style = ' style="color:#c62828;font-weight:600"' if missing >= 0.05 else ""
    return (
        f"<td>{e(feature.type.value)}</td><td class='n'>{num(feature.count)}</td>"
        f"<td class='n'{style}>{missing:.1%}</td>"
    )


def _numeric_rows(features: Sequence[FeatureStatistics], names: Sequence[str], flags: Flags) -> str:
    rows = []
    for f in features:
        n = f.numeric
        values = (n.mean, n.std, n.min, _median(f), n.max, n.zeros) if n else (None,) * 6
        cells = "".join(f"<td class='n'>{num(v)}</td>" for v in values)
        rows.append(f"<tr>{_name_cell(f.name, names, flags)}{_common_cells(f)}{cells}</tr>")
    return "".join(rows)


def _top_values(feature: FeatureStatistics) -> str:
    top = feature.categorical.top if feature.categorical else []
    if not top:
        return NONE
    shown = []
    for v in top[:_TOP_VALUES]:
        share = f" {v.count / feature.count:.1%}" if feature.count else ""
        shown.append(f"<code>{e(cut(v.value, _MAX_VALUE))}</code>{share}")
    more = f" … +{len(top) - _TOP_VALUES} more" if len(top) > _TOP_VALUES else ""
    return ", ".join(shown) + more


def _categorical_rows(
    features: Sequence[FeatureStatistics], names: Sequence[str], flags: Flags
) -> str:
    rows = []
    for f in features:
        c = f.categorical
        distinct = NONE if c is None else num(c.distinct) + ("" if c.distinct_is_exact else " ≈")
        length = num(c.avg_length) if c is not None else NONE
        cells = f"<td class='n'>{distinct}</td><td>{_top_values(f)}</td><td class='n'>{length}</td>"
        rows.append(f"<tr>{_name_cell(f.name, names, flags)}{_common_cells(f)}{cells}</tr>")
    return "".join(rows)


def _split_tables(split: SplitStatistics, names: Sequence[str], flags: Flags) -> str:
    features = list(split.features.values())
    numeric = [f for f in features if f.kind is FeatureKind.NUMERIC]
    categorical = [f for f in features if f.kind is FeatureKind.CATEGORICAL]
    common = ["feature", "type", "count", "missing"]
    parts = []
    if numeric:
        headers = [*common, "mean", "std", "min", "median", "max", "zeros"]
        parts.append(f"<h3>Numeric</h3>{table(headers, _numeric_rows(numeric, names, flags))}")
    if categorical:
        headers = [*common, "distinct", "top values", "avg length"]
        rows = _categorical_rows(categorical, names, flags)
        parts.append(f"<h3>Categorical</h3>{table(headers, rows)}")
    return "".join(parts) or '<p class="note">no features</p>'


def _features_section(stats: DatasetStatistics, flags: Flags) -> str:
    names = feature_names(stats)
    blocks = []
    for index, (name, split) in enumerate(stats.splits.items()):
        summary = f"split {e(name)}: {split.num_rows:,} rows, {len(split.features)} features"
        opened = " open" if index == 0 else ""
        tables = _split_tables(split, names, flags)
        blocks.append(f"<details{opened}><summary>{summary}</summary>{tables}</details>")
    return "<section><h2>Features</h2>" + "".join(blocks) + "</section>"


# -- label and distributions ---------------------------------------------------------------


def _reference_split(stats: DatasetStatistics | None) -> tuple[str, SplitStatistics] | None:
    """The split a previous span is drawn from: ``train`` if there is one, else the first."""
    if stats is None or not stats.splits:
        return None
    name = "train" if "train" in stats.splits else next(iter(stats.splits))
    return name, stats.splits[name]


def _series(name: str, stats: DatasetStatistics, previous: DatasetStatistics | None) -> Series:
    """(label, statistics, is previous) of feature ``name`` in every split, then previous."""
    found = [
        (split, s.features[name], False) for split, s in stats.splits.items() if name in s.features
    ]
    reference = _reference_split(previous)
    if previous is not None and reference is not None and name in reference[1].features:
        found.append((previous_label(previous, reference[0]), reference[1].features[name], True))
    return found


def _feature_plot(name: str, series: Series, salt: str) -> str | None:
    if series[0][1].kind is FeatureKind.NUMERIC:
        curves = [
            Curve(label, f.numeric.histogram, prev)
            for label, f, prev in series
            if f.numeric is not None and f.numeric.histogram is not None
        ]
        return histogram_svg(name, curves, salt)
    bars = [
        Bars(label, {v.value: v.count for v in f.categorical.top}, f.count, prev)
        for label, f, prev in series
        if f.categorical is not None
    ]
    return bars_svg(name, bars, salt)


def _distributions_section(
    stats: DatasetStatistics, previous: DatasetStatistics | None, flags: Flags
) -> str:
    names = feature_names(stats)
    figures = []
    for index, name in enumerate(names):
        series = _series(name, stats, previous)
        svg = _feature_plot(name, series, f"f{index}") if series else None
        flag = flags.get(name)
        css = f' class="flag-{flag.value}"' if flag else ""
        kind = badge(series[0][1].kind.value, "grey") if series else ""
        body = svg or '<p class="note">nothing to draw (no values)</p>'
        figures.append(
            f'<figure id="{anchor(name, names)}"{css}>'
            f"<figcaption>{e(name)} {kind}</figcaption>{body}</figure>"
        )
    note = (
        "Numeric features: density of each split's equal-width histogram, on its own bins. "
        "Categorical features: share of the most frequent values (a value outside a split's "
        "top values shows as 0). Dashed or hatched: the previous span."
    )
    grid = f'<div class="grid">{"".join(figures)}</div>'
    return f'<section><h2>Distributions</h2><p class="note">{e(note)}</p>{grid}</section>'


def _distribution_text(bars: Bars) -> str:
    if not bars.total:
        return NONE
    ordered = sorted(bars.counts.items(), key=lambda item: -item[1])[:8]
    return ", ".join(
        f"<code>{e(cut(v, _MAX_VALUE))}</code> {c / bars.total:.1%}" for v, c in ordered
    )


def _label_section(stats: DatasetStatistics, previous: DatasetStatistics | None) -> str:
    series = [
        Bars(name, s.label.distribution, sum(s.label.distribution.values()))
        for name, s in stats.splits.items()
        if s.label is not None
    ]
    reference = _reference_split(previous)
    if previous is not None and reference is not None and reference[1].label is not None:
        distribution = reference[1].label.distribution
        label = previous_label(previous, reference[0])
        series.append(Bars(label, distribution, sum(distribution.values()), previous=True))
    if not series:
        return ""
    rows = [
        f"<tr><td>{e(b.label)}</td><td class='n'>{num(b.total)}</td>"
        f"<td>{_distribution_text(b)}</td></tr>"
        for b in series
    ]
    column = stats.label or next(s.label.column for s in stats.splits.values() if s.label)
    svg = bars_svg(f"label: {column}", series, "label", xlabel="share of rows") or ""
    heading = f"<h2>Label <code>{e(column)}</code></h2>"
    return f"<section>{heading}{table(['split', 'rows', 'classes'], rows)}{svg}</section>"


def statistics_sections(
    stats: DatasetStatistics, previous: DatasetStatistics | None, flags: Flags
) -> list[str]:
    """The feature tables, the label and the distributions, as HTML sections.

    Args:
        stats: statistics of every split.
        previous: the previous span's statistics, overlaid on the plots (None: no overlay).
        flags: worst anomaly severity per feature, shown next to the feature.
    """
    return [
        _features_section(stats, flags),
        _label_section(stats, previous),
        _distributions_section(stats, previous, flags),
    ]
