"""``conveyor data validate FILE --schema S [--previous FILE] [--serving FILE] [--json]``.

For people who have only files: no pipeline, no store needed (unless the schema is given as
an artifact id). Exit codes: 0 valid (warnings allowed), 1 the data failed validation (an
anomaly of severity error, like a pipeline halted by its ``validate`` step), 2 bad input
(an unreadable file, an invalid schema YAML: the message names the file and line).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from conveyor.cli.errors import EXIT_FAILED, fail
from conveyor.cli.render import out_console, print_json
from conveyor.cli.schema import resolve_schema
from conveyor.data.validation_model import Severity, ValidationReport

__all__ = ["validate_command"]

SEVERITY_STYLES = {"error": "bold red", "warning": "yellow", "info": "dim"}

DataFile = Annotated[
    Path | None,
    typer.Option(help="A CSV, Parquet or JSON-lines file.", show_default=False),
]


def _anomaly_table(report: ValidationReport) -> Table:
    order = {sev: i for i, sev in enumerate(Severity)}
    table = Table("severity", "kind", "feature", "message")
    for anomaly in sorted(report.anomalies, key=lambda a: order[a.severity]):
        style = SEVERITY_STYLES[anomaly.severity.value]
        table.add_row(
            Text(anomaly.severity.value, style=style),
            anomaly.kind.value,
            anomaly.feature or "-",
            Text(anomaly.message),
        )
    return table


def _comparison_line(title: str, result: dict[str, object] | None) -> str | None:
    if result is None:
        return None
    columns = result.get("columns")
    count = len(columns) if isinstance(columns, list | dict) else 0
    drifted = result.get("drifted_columns")
    names = list(drifted) if isinstance(drifted, list) else []
    shown = f": {', '.join(map(str, names[:8]))}" if names else ""
    return f"{title}: {len(names)} of {count} features over threshold{shown}"


def _print_report(report: ValidationReport, html: Path | None) -> None:
    console = out_console()
    headline = report.summary(max_lines=0).splitlines()[0]
    style = "bold green" if report.ok else "bold red"
    console.print(
        Text("valid" if report.ok else "INVALID", style=style), Text(headline), soft_wrap=True
    )
    if report.anomalies:
        console.print(_anomaly_table(report))
    for title, result in (("drift vs previous", report.drift), ("skew vs serving", report.skew)):
        line = _comparison_line(title, result)
        if line:
            console.print(line, markup=False, soft_wrap=True)
    if html is not None:
        console.print(f"report: {html}", markup=False, soft_wrap=True)


def _check_file(path: Path | None, option: str) -> None:
    if path is not None and not path.exists():
        fail(f"{option} {path}: no such file or folder")


def validate_command(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="The data: CSV, Parquet, JSON-lines or folder.")
    ],
    schema: Annotated[
        str,
        typer.Option(
            "--schema", "-s", help="Schema YAML file or Schema artifact (a12).", show_default=False
        ),
    ],
    previous: DataFile = None,
    serving: DataFile = None,
    no_label: Annotated[
        bool, typer.Option("--no-label", help="The data has no label column (serving data).")
    ] = False,
    html: Annotated[
        Path | None,
        typer.Option(help="Also write the HTML report to this file.", show_default=False),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="The report as JSON.")] = False,
) -> None:
    """Validate a data file against a schema; drift vs --previous, skew vs --serving.

    Exit code 1 when any anomaly is an error, 2 when a file or the schema cannot be read.
    """
    from conveyor.data.validation import (
        load_source,
        schema_statistics,
        validate_split,
    )

    _check_file(file, "FILE")
    _check_file(previous, "--previous")
    _check_file(serving, "--serving")
    loaded, _ = resolve_schema(ctx, schema)
    data = load_source(file)
    stats = schema_statistics(data, loaded)
    report = validate_split(
        data,
        loaded,
        statistics=stats,
        previous=previous,
        serving=serving,
        expect_label=not no_label,
    )
    written = report.write_html(html, statistics=stats) if html is not None else None
    if json_output:
        print_json({"ok": report.ok, **report.model_dump(mode="json")})
    else:
        _print_report(report, written)
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)
