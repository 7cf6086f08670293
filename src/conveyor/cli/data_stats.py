"""``conveyor data stats FILE``: statistics of a Parquet/CSV/JSON-lines file or folder.

Works on plain files, without a pipeline or a conveyor home. Prints one table for numeric
features (count, missing %, mean, std, min, median, max, zeros), one for categorical features
(count, missing %, distinct, top values) and the label's class distribution and imbalance; or,
with ``--json``, the :class:`~conveyor.data.statistics_model.SplitStatistics` as JSON.
Unreadable files and unknown columns exit 2 with a message naming the file or column.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from conveyor.cli.errors import fail
from conveyor.cli.render import err_console, out_console, print_json
from conveyor.data.statistics_model import (
    FeatureKind,
    FeatureStatistics,
    FeatureType,
    LabelStatistics,
    SplitStatistics,
)
from conveyor.exceptions import ConveyorError

__all__ = ["print_statistics", "stats_command"]

TOP_SHOWN = 5
"""Top values shown per categorical feature in the table (``--json`` has all ``--top-k``)."""


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()] if text else []


def stats_command(
    file: Annotated[
        Path,
        typer.Argument(
            help="A Parquet, CSV or JSON-lines file, or a folder of them.", show_default=False
        ),
    ],
    label: Annotated[
        str | None,
        typer.Option("--label", help="Label column: class distribution and imbalance."),
    ] = None,
    categorical: Annotated[
        str | None,
        typer.Option(
            "--categorical", help="Comma-separated numeric columns to treat as categories."
        ),
    ] = None,
    top_k: Annotated[
        int, typer.Option("--top-k", min=0, help="Most frequent values kept per category.")
    ] = 20,
    bins: Annotated[int, typer.Option("--bins", min=1, help="Histogram bins.")] = 10,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the statistics as JSON.")
    ] = False,
) -> None:
    """Describe every column of FILE: counts, missing values, moments, quantiles, top values."""
    from conveyor.data.statistics import compute_statistics  # DuckDB: only when used

    try:
        with _busy(json_output):
            stats = compute_statistics(
                file, label=label, categorical=_names(categorical), top_k=top_k, bins=bins
            )
    except ConveyorError as exc:
        fail(str(exc))
    if json_output:
        print_json(stats.model_dump(mode="json"))
        return
    print_statistics(stats, title=str(file))


@contextmanager
def _busy(quiet: bool) -> Iterator[None]:
    """A transient spinner on stderr while statistics are computed (terminals only)."""
    console = err_console()
    if quiet or not console.is_terminal:
        yield
        return
    with console.status("computing statistics..."):
        yield


def print_statistics(stats: SplitStatistics, title: str) -> None:
    """The rich tables of ``stats``: numeric features, categorical features, label."""
    console = out_console()
    features = list(stats.features.values())
    console.print(
        Text(f"{title}: {stats.num_rows:,} rows, {len(features)} features", style="bold"),
        soft_wrap=True,
    )
    numeric = [f for f in features if f.kind == FeatureKind.NUMERIC]
    if numeric:
        console.print(_numeric_table(numeric))
    categorical = [f for f in features if f.kind == FeatureKind.CATEGORICAL]
    if categorical:
        console.print(_categorical_table(categorical))
    if stats.label is not None:
        console.print(_label_table(stats.label))
        ratio = stats.label.imbalance_ratio
        console.print(f"imbalance ratio (most / least frequent class): {ratio:.3g}")
    errors = [f.numeric.quantile_rank_error for f in numeric if f.numeric]
    if errors and max(errors) > 0:
        note = f"quantiles are estimates: rank error at most {max(errors):.2g} (see --json)"
        console.print(Text(note, style="dim"), soft_wrap=True)


def _percent(feature: FeatureStatistics) -> str:
    return f"{100 * feature.missing_fraction:.1f}%"


def _value(value: float | None, feature: FeatureStatistics) -> str:
    if value is None:
        return "-"
    if feature.type == FeatureType.DATETIME:
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{value:.6g}"


def _numeric_table(features: list[FeatureStatistics]) -> Table:
    table = Table(title="numeric features")
    for name in ("feature", "type", "count", "missing", "mean", "std", "min", "median"):
        table.add_column(name, justify="left" if name in ("feature", "type") else "right")
    table.add_column("max", justify="right")
    table.add_column("zeros", justify="right")
    for f in features:
        s = f.numeric
        assert s is not None
        median = s.quantiles.get("0.5")
        std = f"{s.std:.6g}" if s.std is not None else "-"
        if f.type == FeatureType.DATETIME and s.std is not None:
            std = f"{s.std / 86400:.4g} days"
        table.add_row(
            f.name, str(f.type), f"{f.count:,}", _percent(f), _value(s.mean, f), std,
            _value(s.min, f), _value(median, f), _value(s.max, f), f"{s.zeros:,}",
        )  # fmt: skip
    return table


def _categorical_table(features: list[FeatureStatistics]) -> Table:
    table = Table(title="categorical features")
    for name in ("feature", "type", "count", "missing", "distinct", "top values", "avg length"):
        table.add_column(
            name, justify="left" if name in ("feature", "type", "top values") else "right"
        )
    for f in features:
        s = f.categorical
        assert s is not None
        shown = ", ".join(
            f"{_short(vc.value)} ({100 * vc.count / f.count:.1f}%)" for vc in s.top[:TOP_SHOWN]
        )
        more = ", ..." if s.distinct > TOP_SHOWN else ""
        distinct = f"{s.distinct:,}" + ("" if s.distinct_is_exact else " (approx.)")
        length = f"{s.avg_length:.1f}" if s.avg_length is not None else "-"
        table.add_row(
            f.name, str(f.type), f"{f.count:,}", _percent(f), distinct, shown + more, length
        )
    return table


def _short(value: str, limit: int = 24) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _label_table(label: LabelStatistics) -> Table:
    total = sum(label.distribution.values())
    table = Table("class", "rows", "share", title=f"label {label.column!r}")
    for value, count in label.distribution.items():
        table.add_row(_short(value), f"{count:,}", f"{100 * count / total:.1f}%")
    return table
