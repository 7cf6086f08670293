"""``conveyor predictions tail|export``: read the prediction log the server writes.

The log lives under ``<artifact store>/predictions`` (see docs/prediction-log.md); these
commands are thin over :func:`conveyor.serving.prediction_log.tail` and ``export``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from conveyor.cli.render import out_console, print_json
from conveyor.cli.state import settings_from
from conveyor.exceptions import ConfigError

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Read the prediction log of `conveyor serve`.")

ModelOpt = Annotated[str | None, typer.Option("--model", help="Only this model.")]


def _root(ctx: typer.Context) -> str:
    from conveyor.serving.prediction_log import prediction_log_url

    return prediction_log_url(settings_from(ctx).artifact_url)


def _exists(root: str) -> bool:
    return "://" in root or Path(root).is_dir()


def _when(text: str | None, option: str) -> dt.datetime | None:
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"{option}: {text!r} is not an ISO 8601 time (2026-11-27T10:00)") from exc
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@app.command("tail")
def tail_command(
    ctx: typer.Context,
    n: Annotated[int, typer.Option("-n", min=1, help="How many of the latest.")] = 20,
    model: ModelOpt = None,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
) -> None:
    """The latest predictions: time, request id, model, version, route, latency, outputs."""
    from conveyor.serving.prediction_log import tail

    root = _root(ctx)
    rows = tail(root, n=n, model=model) if _exists(root) else []
    if json_output:
        print_json([_jsonable(r) for r in rows])
        return
    if not rows:
        out_console().print(f"no predictions in {root} yet")
        return
    table = Table("time", "request id", "model", "version", "route", "ms", "outputs")
    for row in rows:
        outputs = json.dumps(row.get("outputs"), default=str)
        table.add_row(
            str(row.get("time"))[:23], str(row.get("request_id")), str(row.get("model")),
            str(row.get("version")), str(row.get("route")), f"{row.get('latency_ms', 0):.1f}",
            outputs if len(outputs) <= 60 else outputs[:57] + "...",
        )  # fmt: skip
    out_console().print(table)


@app.command("export")
def export_command(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Output file (.parquet, .csv or .jsonl).")],
    since: Annotated[str | None, typer.Option("--since", help="ISO 8601 time, inclusive.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO 8601 time, exclusive.")] = None,
    model: ModelOpt = None,
) -> None:
    """Write the logged predictions (optionally a time window and one model) to a file."""
    from conveyor.serving.prediction_log import export

    suffix = path.suffix.lower().lstrip(".")
    formats = {"parquet": "parquet", "csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl"}
    if suffix not in formats:
        raise ConfigError(f"{path}: use a .parquet, .csv or .jsonl file name")
    root = _root(ctx)
    if not _exists(root):
        raise ConfigError(f"no prediction log in {root}: has `conveyor serve` answered anything?")
    count = export(
        root, path, since=_when(since, "--since"), until=_when(until, "--until"), model=model,
        format=formats[suffix],  # type: ignore[arg-type]
    )  # fmt: skip
    out_console().print(f"wrote {count} predictions to {path}")


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in row.items()}
