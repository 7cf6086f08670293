"""The validation part of the HTML reports: verdict banner, anomalies, drift and skew.

Drift and skew come as :meth:`conveyor.data.drift.DriftReport.to_dict` results (the form a
:class:`ValidationReport` stores): ``{"columns": {name: {column, kind, method, score,
threshold, drifted, higher_is_drift, ...}}, "dataset_drifted", "share_drifted",
"drift_share_threshold", "skipped", ...}``. Scores may be the strings ``"inf"``/``"nan"``.
Unknown keys are ignored, missing ones shown as empty, so older reports still render.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from conveyor.data.report_html import NONE, SEVERITY_COLOR, anchor, badge, cut, e, num, table
from conveyor.data.report_plots import score_bar_svg
from conveyor.data.validation_model import Anomaly, Severity, ValidationReport

__all__ = ["severity_flags", "validation_sections"]

_MAX_CELL = 120
_ORDER = {sev: i for i, sev in enumerate(Severity)}  # error, warning, info


def severity_flags(report: ValidationReport) -> dict[str, Severity]:
    """The worst severity among each feature's anomalies."""
    flags: dict[str, Severity] = {}
    for a in report.anomalies:
        worst = flags.get(a.feature) if a.feature is not None else None
        if a.feature is not None and (worst is None or _ORDER[a.severity] < _ORDER[worst]):
            flags[a.feature] = a.severity
    return flags


def _feature_link(name: str, names: Sequence[str]) -> str:
    return f'<a href="#{anchor(name, names)}">{e(name)}</a>' if name in names else e(name)


def _banner(report: ValidationReport) -> str:
    counts = ", ".join(
        f"{n} {sev.value}{'s' if n != 1 else ''}"
        for sev in Severity
        if (n := sum(a.severity is sev for a in report.anomalies))
    )
    verdict = badge("PASSED", "green") if report.ok else badge("FAILED", "red")
    return (
        f'<div class="banner {"pass" if report.ok else "fail"}">{verdict} '
        f"<b>{e(report.dataset or 'dataset')}/{e(report.split)}</b>: "
        f"{e(counts or 'no anomalies')} · schema: {e(report.schema_source)}"
        f"<pre>{e(report.summary())}</pre></div>"
    )


def _json_cell(value: Any) -> str:
    if value is None:
        return NONE
    if isinstance(value, bool):
        return e(value)
    if isinstance(value, int | float):
        return num(value)
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return e(cut(text, _MAX_CELL))


def _anomaly_row(anomaly: Anomaly, names: Sequence[str]) -> str:
    where = "(dataset)" if anomaly.feature is None else _feature_link(anomaly.feature, names)
    return (
        f'<tr class="{anomaly.severity.value}">'
        f"<td>{badge(anomaly.severity.value, SEVERITY_COLOR[anomaly.severity])}</td>"
        f"<td>{e(anomaly.kind.value)}</td><td>{e(anomaly.split or '')}</td><td>{where}</td>"
        f'<td class="msg">{e(anomaly.message)}</td>'
        f"<td class='n'>{_json_cell(anomaly.observed)}</td>"
        f"<td class='n'>{_json_cell(anomaly.expected)}</td></tr>"
    )


def _anomalies_section(report: ValidationReport, names: Sequence[str]) -> str:
    if not report.anomalies:
        return '<section><h2>Anomalies</h2><p class="note">none</p></section>'
    ranked = sorted(report.anomalies, key=lambda a: _ORDER[a.severity])
    headers = ["severity", "kind", "split", "feature", "message", "observed", "expected"]
    rows = (_anomaly_row(a, names) for a in ranked)
    return f"<section><h2>Anomalies ({len(ranked)})</h2>{table(headers, rows)}</section>"


def _drift_entries(drift: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-column entries, each with its ``column`` (also when ``columns`` is a list)."""
    columns = drift.get("columns") or {}
    if isinstance(columns, Mapping):
        return [{"column": key, **entry} for key, entry in columns.items()]
    return [dict(entry) for entry in columns if isinstance(entry, Mapping)]


def _float(value: Any) -> float | None:
    """A number from a JSON value ("inf" and "nan" included); None when there is none."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _drift_row(entry: Mapping[str, Any], names: Sequence[str]) -> str:
    score, threshold = _float(entry.get("score")), _float(entry.get("threshold"))
    drifted = bool(entry.get("drifted"))
    if score is None:
        verdict = badge("not computed", "grey")
    else:
        verdict = badge("drifted", "red") if drifted else badge("ok", "green")
    side = "&gt;" if entry.get("higher_is_drift", True) else "&lt;"
    row = '<tr class="error">' if drifted else "<tr>"
    return (
        f"{row}"
        f"<td>{_feature_link(str(entry.get('column', '?')), names)}</td>"
        f"<td>{e(entry.get('kind', ''))}</td><td>{e(entry.get('method', ''))}</td>"
        f"<td class='n'>{num(score)}</td><td class='n'>{side} {num(threshold)}</td>"
        f"<td>{score_bar_svg(score, threshold, drifted)}</td><td>{verdict}</td></tr>"
    )


def _drift_note(
    drift: Mapping[str, Any], entries: Sequence[Mapping[str, Any]], against: str
) -> str:
    drifted = sum(bool(entry.get("drifted")) for entry in entries)
    note = f"{drifted} of {len(entries)} compared features drifted against {against}"
    share = _float(drift.get("drift_share_threshold"))
    if "dataset_drifted" in drift and share is not None:
        verdict = "drifted" if drift["dataset_drifted"] else "did not drift"
        note += f"; the dataset {verdict} (it does when at least {share:.0%} of features do)"
    note += ". Bar: the score; tick: the threshold (p-value methods drift below it)."
    skipped = drift.get("skipped") or {}
    if isinstance(skipped, Mapping) and skipped:
        listed = "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:10])
        note += f" Not compared: {cut(listed, 300)}."
    return note


def _drift_section(
    title: str, against: str, drift: Mapping[str, Any] | None, names: Sequence[str]
) -> str:
    if drift is None:
        return ""
    entries = _drift_entries(drift)
    entries.sort(key=lambda entry: not entry.get("drifted"))  # drifted first, else in order
    headers = ["feature", "kind", "method", "score", "drift if", "score vs threshold", ""]
    rows = (_drift_row(entry, names) for entry in entries)
    note = f'<p class="note">{e(_drift_note(drift, entries, against))}</p>'
    return f"<section><h2>{e(title)}</h2>{note}{table(headers, rows)}</section>"


def validation_sections(report: ValidationReport, names: Sequence[str]) -> list[str]:
    """Banner, anomalies, drift and skew of ``report`` as HTML sections.

    Args:
        report: the validation result.
        names: features that have a plot on the page (their names link to it).
    """
    return [
        _banner(report),
        _anomalies_section(report, names),
        _drift_section("Drift", "the previous span", report.drift, names),
        _drift_section("Training/serving skew", "serving data", report.skew, names),
    ]
