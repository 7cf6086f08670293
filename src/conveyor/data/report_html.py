"""Building blocks of the HTML reports: the page, its CSS, escaping, cells and badges.

Everything here returns HTML text. Arguments are plain values, escaped here, except where a
docstring says an argument is ready HTML (``page``'s ``meta`` and ``body``, ``table``'s
``rows``). The page links to nothing: inline CSS, no script, no fonts, no images.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from conveyor.data.validation_model import Severity

__all__ = [
    "NONE",
    "SEVERITY_COLOR",
    "anchor",
    "badge",
    "cut",
    "e",
    "num",
    "page",
    "table",
]

_CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",sans-serif;
margin:0 auto;max-width:1180px;padding:1.5rem;color:#1d2430;background:#fff}
h1{font-size:1.45rem;margin:0 0 .2rem}
h2{font-size:1.12rem;margin:2rem 0 .5rem;padding-bottom:.25rem;border-bottom:1px solid #e3e6ea}
h3{font-size:.95rem;margin:1rem 0 .3rem}
.meta{color:#5b6573;font-size:.82rem;margin:0}
.note{color:#5b6573;font-size:.82rem}
table{border-collapse:collapse;width:100%;font-size:.83rem;margin:.4rem 0 1rem}
th,td{padding:.28rem .5rem;text-align:left;border-bottom:1px solid #eceff2;vertical-align:top}
th{background:#f3f5f7;font-weight:600;white-space:nowrap}
tbody tr:nth-child(even){background:#fafbfc}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.msg{max-width:34rem}
tr.error td{background:#fdecea}tr.warning td{background:#fff5db}
.badge{display:inline-block;padding:0 .5rem;border-radius:.7rem;font-size:.72rem;
font-weight:600;color:#fff;white-space:nowrap}
.red{background:#c62828}.amber{background:#c77700}.green{background:#2e7d32}
.grey{background:#78848f}
.banner{padding:.75rem 1rem;border-radius:.35rem;margin:1rem 0;font-size:1rem}
.banner.pass{background:#e8f5e9;border-left:6px solid #2e7d32}
.banner.fail{background:#fdecea;border-left:6px solid #c62828}
.banner pre{margin:.4rem 0 0;font-size:.8rem;white-space:pre-wrap}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:.75rem}
figure{margin:0;padding:.4rem .5rem;border:1px solid #e3e6ea;border-radius:.35rem}
figure.flag-error{border-color:#c62828}figure.flag-warning{border-color:#c77700}
figcaption{font-weight:600;font-size:.85rem}
svg.plot{width:100%;height:auto;display:block}
details>summary{cursor:pointer;font-weight:600;margin:.6rem 0 .2rem}
a{color:#1f5fa8;text-decoration:none}a:hover{text-decoration:underline}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85em}
footer{margin-top:2rem;color:#8a939e;font-size:.75rem}
"""

SEVERITY_COLOR = {Severity.ERROR: "red", Severity.WARNING: "amber", Severity.INFO: "grey"}
NONE = "&ndash;"  # an empty cell


def e(value: object) -> str:
    """Escape any value for HTML text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def cut(text: str, limit: int) -> str:
    """``text`` shortened to ``limit`` characters with an ellipsis (not escaped)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def num(value: float | None) -> str:
    """Numbers for tables: integers with separators, others with 4 significant digits."""
    if value is None:
        return NONE
    if not math.isfinite(value):
        return "∞" if value > 0 else "-∞" if value < 0 else "nan"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.4g}"


def badge(text: str, color: str) -> str:
    """A coloured pill: ``color`` is one of red, amber, green, grey."""
    return f'<span class="badge {color}">{e(text)}</span>'


def anchor(name: str, names: Sequence[str]) -> str:
    """A stable, safe anchor id for a feature: its position, never its text."""
    return f"feature-{names.index(name)}" if name in names else "feature-unknown"


def table(headers: Sequence[str], rows: Iterable[str]) -> str:
    """A table with escaped ``headers``; ``rows`` are ready ``<tr>`` HTML."""
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def page(title: str, meta: Sequence[str], body: Sequence[str], generated_at: datetime) -> str:
    """The whole document; ``meta`` (header line pieces) and ``body`` are ready HTML."""
    when = generated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    meta_line = " · ".join([*meta, f"generated {when}"])
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>"
        f'<header><h1>{e(title)}</h1><p class="meta">{meta_line}</p></header>'
        f"{''.join(body)}"
        "<footer>made by conveyor · a single file: no script, no external resource</footer>"
        "</body></html>\n"
    )
