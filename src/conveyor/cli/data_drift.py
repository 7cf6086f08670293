"""``conveyor data drift REFERENCE CURRENT``: per-column drift between two CSV/Parquet files.

Works on plain files, without a pipeline or a conveyor home. Prints a table (column, kind,
method, score, threshold, drifted) and a summary line, or ``--json``. Drift is a finding, not
a failure: the exit code is 0 either way, unless ``--fail-on-drift`` asks for 1 when the
dataset drifted. Unreadable files and bad options exit 2 with a message naming the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from conveyor.cli.errors import EXIT_FAILED, fail
from conveyor.cli.render import err_console, out_console, print_json
from conveyor.data.drift import (
    DEFAULT_METHOD_KEY,
    METHODS,
    ColumnDrift,
    DriftReport,
    dataset_drift,
)
from conveyor.exceptions import ConveyorError

__all__ = ["drift_command", "parse_method_option"]

_METHOD_HELP = (
    "auto (Evidently's choice per column), tfdv (linf for categories, js for numbers), or one "
    "of psi, jensenshannon, wasserstein, ks, chisquare, z, linf, js. Per column: "
    "'psi,age=ks' (psi for all, ks for age)."
)


def parse_method_option(text: str) -> str | dict[str, str]:
    """``"psi"`` -> ``"psi"``; ``"psi,age=ks"`` -> ``{"*": "psi", "age": "ks"}``.

    Example:
        >>> parse_method_option("age=ks")
        {'age': 'ks'}
    """
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if len(parts) == 1 and "=" not in parts[0]:
        return parts[0]
    mapping: dict[str, str] = {}
    for part in parts:
        column, sep, name = part.rpartition("=")
        key = column.strip() if sep else DEFAULT_METHOD_KEY
        if not name.strip() or (sep and not key):
            raise typer.BadParameter(
                f"{part!r} is not METHOD or COLUMN=METHOD", param_hint="--method"
            )
        mapping[key] = name.strip()
    return mapping


def _names(text: str | None) -> list[str] | None:
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


def drift_command(
    reference: Annotated[
        Path, typer.Argument(help="Baseline data: a CSV or Parquet file.", show_default=False)
    ],
    current: Annotated[
        Path, typer.Argument(help="Data to check: a CSV or Parquet file.", show_default=False)
    ],
    method: Annotated[str, typer.Option("--method", "-m", help=_METHOD_HELP)] = "auto",
    columns: Annotated[
        str | None,
        typer.Option("--columns", help="Comma-separated columns (default: all of REFERENCE)."),
    ] = None,
    categorical: Annotated[
        str | None,
        typer.Option("--categorical", help="Comma-separated columns to treat as categories."),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option("--threshold", help="Threshold for every column (default: the method's)."),
    ] = None,
    drift_share: Annotated[
        float,
        typer.Option("--drift-share", min=0.0, max=1.0, help="Dataset drift at this share."),
    ] = 0.5,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help="Exit 1 when the dataset drifted.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
) -> None:
    """Compare the distribution of every column of CURRENT with REFERENCE."""
    try:
        with _busy(json_output):
            report = dataset_drift(
                reference,
                current,
                columns=_names(columns),
                method=parse_method_option(method),
                thresholds={DEFAULT_METHOD_KEY: threshold} if threshold is not None else None,
                categorical=_names(categorical) or (),
                drift_share=drift_share,
            )
    except ConveyorError as exc:
        fail(str(exc))
    if json_output:
        print_json({"reference": str(reference), "current": str(current)} | report.to_dict())
    else:
        _print_report(report, reference, current)
    if fail_on_drift and report.dataset_drifted:
        raise typer.Exit(EXIT_FAILED)


@contextmanager
def _busy(quiet: bool) -> Iterator[None]:
    """A transient spinner on stderr while drift is computed (terminals only)."""
    console = err_console()
    if quiet or not console.is_terminal:
        yield
        return
    with console.status("computing drift..."):
        yield


def _print_report(report: DriftReport, reference: Path, current: Path) -> None:
    console = out_console()
    table = Table(
        "column",
        "kind",
        "method",
        "score",
        "threshold",
        "drifted",
        title=f"{reference} -> {current}",
    )
    for col in report.columns.values():
        table.add_row(
            col.column, col.kind, col.method, _number(col.score), _threshold(col), _verdict(col)
        )
    console.print(table)
    for name, reason in report.skipped.items():
        console.print(Text(f"skipped {name}: {reason}", style="dim"), soft_wrap=True)
    console.print(_summary(report), soft_wrap=True)


def _number(value: float) -> str:
    return f"{value:.4g}"


def _threshold(col: ColumnDrift) -> str:
    # "<= 0.05" for p-values, ">= 0.1" for distances: the side of the threshold that is drift.
    method = METHODS.get(col.method)
    inclusive = "=" if method is None or method.inclusive else ""
    return f"{'>' if col.higher_is_drift else '<'}{inclusive} {col.threshold:g}"


def _verdict(col: ColumnDrift) -> Text:
    return Text("yes", style="bold red") if col.drifted else Text("no", style="green")


def _summary(report: DriftReport) -> Text:
    drifted, total = len(report.drifted_columns), len(report.columns)
    text = Text(f"{drifted} of {total} columns drifted (share {report.share_drifted:.2f}); ")
    text.append("dataset drift: ")
    if report.dataset_drifted:
        text.append("yes", style="bold red")
    else:
        text.append("no", style="green")
    text.append(f" (at share >= {report.drift_share_threshold:g})")
    return text
