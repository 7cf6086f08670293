"""``conveyor runs list`` and ``conveyor runs show RUN``.

Runs started by the continuous-training controller carry labels (``trigger``,
``trigger_event``): ``runs list`` then shows a *trigger* column, and ``runs show`` prints the
labels and the run's activity events (the trigger that asked for it, its start and end).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from conveyor.cli.events import events_table
from conveyor.cli.render import (
    artifact_dict,
    duration,
    execution_dict,
    out_console,
    print_json,
    run_dict,
    seconds_between,
    status_text,
    steps_summary,
    timestamp,
)
from conveyor.cli.state import read_store
from conveyor.exceptions import NotFoundError
from conveyor.store.lineage import parse_node_id
from conveyor.store.metadata.activity_records import LABEL_TRIGGER, ActivityEvent, run_labels
from conveyor.store.metadata.records import ExecutionRecord, ExecutionStatus, RunRecord, RunStatus
from conveyor.store.metadata.store import MetadataStore

__all__ = ["app", "cache_text", "parse_run_id"]

app = typer.Typer(no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def parse_run_id(text: str) -> int:
    """``12``, ``r12`` or ``run:12`` -> 12; NotFoundError for anything else."""
    kind, run_id = parse_node_id(text)
    if kind != "run":
        raise NotFoundError(f"{text!r} is not a run id (use 12, r12 or run:12)")
    return run_id


def _parse_status(value: str | None) -> RunStatus | None:
    if value is None:
        return None
    try:
        return RunStatus(value.lower())
    except ValueError:
        valid = ", ".join(s.value for s in RunStatus)
        raise typer.BadParameter(f"{value!r} is not a run status (valid: {valid})") from None


@app.command("list")
def list_command(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Newest N runs.")] = 20,
    pipeline: Annotated[
        str | None,
        typer.Option("--pipeline", help="Only runs of this pipeline.", show_default=False),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Only runs in this state: running, succeeded, failed, interrupted.",
            show_default=False,
        ),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """List runs, newest first."""
    wanted = _parse_status(status)
    with read_store(ctx) as store:
        runs = store.list_runs(limit=limit, pipeline_name=pipeline, status=wanted)
        rows = [(run, store.list_executions(run.id)) for run in runs]
    if json_output:
        print_json(
            [run_dict(run, executions) | {"labels": run_labels(run)} for run, executions in rows]
        )
        return
    console = out_console()
    if not rows:
        console.print("no runs yet; start one with [bold]conveyor run[/]")
        return
    triggers = {run.id: run_labels(run).get(LABEL_TRIGGER) for run, _ in rows}
    shown = any(triggers.values())
    table = Table("id", "pipeline", "status", "started", "duration", "steps")
    if shown:
        table.add_column("trigger")
    for run, executions in rows:
        cells: list[str | Text] = [
            str(run.id),
            run.pipeline_name,
            status_text(run.status),
            timestamp(run.created_at),
            duration(seconds_between(run.created_at, run.ended_at)),
            steps_summary(e.status for e in executions),
        ]
        if shown:
            cells.append(triggers[run.id] or "-")
        table.add_row(*cells)
    console.print(table)


def cache_text(store: MetadataStore, execution: ExecutionRecord) -> str:
    """Why a step was a cache hit or miss, in words.

    A hit names the execution and run it reused; a miss shows the runner's explanation.
    """
    if execution.status == ExecutionStatus.CACHED and execution.cached_from is not None:
        try:
            origin_run = f" of run {store.get_execution(execution.cached_from).run_id}"
        except NotFoundError:
            origin_run = ""
        return f"hit from execution {execution.cached_from}{origin_run}"
    explanation = execution.cache_explanation
    if not explanation:
        return "-"
    if explanation.startswith(("miss", "hit")):
        return explanation
    return f"miss: {explanation}"


def _outputs_text(outputs: dict[str, Any]) -> str:
    return (
        "\n".join(f"{name} -> a{art.id} ({art.type_name})" for name, art in outputs.items()) or "-"
    )


@app.command("show")
def show_command(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run id: 12, r12 or run:12.")],
    json_output: JsonOpt = False,
) -> None:
    """Show one run: header, steps (status, attempts, cache, outputs) and failures."""
    run_id = parse_run_id(run)
    with read_store(ctx) as store:
        record = store.get_run(run_id)
        executions = store.list_executions(run_id)
        outputs = {e.id: store.execution_outputs(e.id) for e in executions}
        caches = {e.id: cache_text(store, e) for e in executions}
        activity = store.activity.run_events(run_id)
    if json_output:
        steps = [
            execution_dict(e)
            | {"cache": caches[e.id]}
            | {"outputs": {n: artifact_dict(a) for n, a in outputs[e.id].items()}}
            for e in executions
        ]
        extra = {"labels": run_labels(record), "events": [e.to_dict() for e in activity]}
        print_json(run_dict(record, executions) | extra | {"steps": steps})
        return
    console = out_console()
    console.print(_header(record, executions))
    table = Table("step", "status", "attempts", "duration", "cache", "outputs")
    for e in executions:
        table.add_row(
            e.step_name,
            status_text(e.status),
            str(e.attempts) if e.attempts else "-",
            duration(seconds_between(e.started_at, e.ended_at)),
            Text(caches[e.id]),
            _outputs_text(outputs[e.id]),
        )
    console.print(table)
    _print_events(console, activity)
    _print_failures(console, executions)


def _header(record: RunRecord, executions: list[ExecutionRecord]) -> Group:
    lines = [
        Text.assemble(("run ", "bold"), (str(record.id), "bold"), "  ", status_text(record.status)),
        Text(f"pipeline  {record.pipeline_name}"),
        Text(f"params    {json.dumps(record.params, default=str) if record.params else '-'}"),
        Text(f"started   {timestamp(record.created_at)}"),
        Text(f"ended     {timestamp(record.ended_at)}"),
        Text(f"duration  {duration(seconds_between(record.created_at, record.ended_at))}"),
        Text(f"steps     {steps_summary(e.status for e in executions)}"),
    ]
    labels = run_labels(record)
    if labels:
        shown = " ".join(f"{key}={value}" for key, value in sorted(labels.items()))
        lines.append(Text(f"labels    {shown}"))
    if record.error:
        lines.append(Text(f"error     {record.error}", style="red"))
    return Group(*lines)


def _print_events(console: Console, activity: list[ActivityEvent]) -> None:
    """The continuous-training events of the run: why it ran, how it ended."""
    if not activity:
        return
    console.print()
    console.print(Text("events", style="bold"))
    console.print(events_table(activity))


def _print_failures(console: Console, executions: list[ExecutionRecord]) -> None:
    """Error, traceback and log of every failed step, unwrapped so it can be copied."""
    for e in executions:
        if e.status not in (ExecutionStatus.FAILED, ExecutionStatus.INTERRUPTED):
            continue
        console.print()
        console.print(
            Text.assemble(
                (f"step {e.step_name} (execution {e.id}) ", "bold"), status_text(e.status)
            )
        )
        console.print(e.error or "(no error recorded)", style="red", markup=False, soft_wrap=True)
        if e.traceback:
            console.print(e.traceback.rstrip(), markup=False, highlight=False, soft_wrap=True)
        if e.log_uri:
            console.print(f"log: {e.log_uri}", markup=False, soft_wrap=True)
