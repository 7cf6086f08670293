"""``conveyor events``: what the continuous-training controller did, and why.

Reads the activity log of the metadata store (:attr:`MetadataStore.activity
<conveyor.store.metadata.MetadataStore.activity>`): alerts, trigger fires with their reasons,
runs started, finished or interrupted, canary windows, promotions and rollbacks. The table
shows the latest ``--limit`` events, newest last (like a log); ``--json`` prints the same
events as a JSON list of ``ActivityEvent.to_dict()``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from conveyor.cli.render import out_console, print_json, timestamp
from conveyor.cli.state import read_store
from conveyor.ct.durations import parse_duration
from conveyor.exceptions import NotFoundError
from conveyor.store.lineage import parse_node_id
from conveyor.store.metadata.activity_records import ActivityEvent, check_kinds

__all__ = ["KIND_STYLES", "events_command", "events_table"]

KIND_STYLES: dict[str, str] = {
    "controller_started": "dim",
    "controller_stopped": "dim",
    "alert": "yellow",
    "trigger": "bold cyan",
    "run_started": "cyan",
    "run_finished": "green",
    "run_failed": "bold red",
    "run_interrupted": "magenta",
    "skipped": "dim",
    "not_blessed": "yellow",
    "canary_started": "blue",
    "canary_window": "blue",
    "promoted": "bold green",
    "rolled_back": "bold red",
    "registered": "green",
}


def parse_since(text: str | None) -> dt.datetime | None:
    """``--since 2h``: the time that long ago (aware, UTC); None when the option is not given."""
    if text is None:
        return None
    try:
        return dt.datetime.now(dt.UTC) - parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--since'") from None


def _run_id(text: str | None) -> int | None:
    if text is None:
        return None
    kind, run_id = parse_node_id(text)
    if kind != "run":
        raise NotFoundError(f"--run {text!r} is not a run id (use 12, r12 or run:12)")
    return run_id


def events_table(events: Sequence[ActivityEvent]) -> Table:
    """The events as a rich table: time, kind, model:version, run, subject, reason."""
    table = Table("time", "kind", "model", "run", "subject", "reason")
    for event in events:
        table.add_row(
            timestamp(event.time),
            Text(event.kind, style=KIND_STYLES.get(event.kind, "")),
            event.model_ref or "-",
            f"r{event.run_id}" if event.run_id is not None else "-",
            event.subject or "-",
            Text(event.reason),
        )
    return table


def events_command(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Option("--model", help="Only events of this model.", show_default=False)
    ] = None,
    pipeline: Annotated[
        str | None,
        typer.Option("--pipeline", help="Only events of this pipeline.", show_default=False),
    ] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option(
            "--kind",
            "-k",
            help="Only events of this kind (repeatable): alert, trigger, run_started, "
            "run_finished, run_failed, promoted, rolled_back, ...",
            show_default=False,
        ),
    ] = None,
    run: Annotated[
        str | None,
        typer.Option("--run", help="Only events of this run (12, r12).", show_default=False),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help='Only events newer than this: "30m", "2h", "1d".', show_default=False
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="The latest N events.")] = 50,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")] = (
        False
    ),
) -> None:
    """Show what the continuous-training controller did and why, newest last."""
    kinds = check_kinds(kind) if kind else None
    after = parse_since(since)
    run_id = _run_id(run)
    with read_store(ctx) as store:
        found = store.activity.events(
            model=model,
            pipeline=pipeline,
            kinds=kinds,
            since=after,
            run_id=run_id,
            limit=limit,
            newest_first=True,
        )
    found.reverse()
    if json_output:
        print_json([event.to_dict() for event in found])
        return
    console = out_console()
    if not found:
        console.print("no events; the controller (conveyor watch) records them as it acts")
        return
    console.print(events_table(found))
