"""``conveyor artifacts list`` and ``conveyor artifacts show ID``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from conveyor.cli.render import (
    artifact_dict,
    human_size,
    out_console,
    print_json,
    status_text,
    timestamp,
)
from conveyor.cli.state import read_store
from conveyor.exceptions import NotFoundError
from conveyor.store.lineage import parse_node_id
from conveyor.store.metadata.records import EventKind, ExecutionStatus
from conveyor.store.metadata.store import MetadataStore

__all__ = ["app", "artifact_usage", "parse_artifact_id"]

app = typer.Typer(no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def parse_artifact_id(text: str) -> int:
    """``56``, ``a56`` or ``artifact:56`` -> 56; NotFoundError for anything else."""
    kind, artifact_id = parse_node_id(text if not text.strip().isdigit() else f"a{text.strip()}")
    if kind != "artifact":
        raise NotFoundError(f"{text!r} is not an artifact id (use 56, a56 or artifact:56)")
    return artifact_id


@app.command("list")
def list_command(
    ctx: typer.Context,
    type_name: Annotated[
        str | None,
        typer.Option(
            "--type", "-t", help="Only artifacts of this type (e.g. Dataset).", show_default=False
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Newest N artifacts.")] = 20,
    json_output: JsonOpt = False,
) -> None:
    """List artifacts, newest first."""
    with read_store(ctx) as store:
        artifacts = store.list_artifacts(type_name=type_name, limit=limit)
    if json_output:
        print_json([artifact_dict(a) for a in artifacts])
        return
    console = out_console()
    if not artifacts:
        console.print("no artifacts" + (f" of type {type_name}" if type_name else ""))
        return
    table = Table("id", "type", "size", "sha256", "created", "properties")
    for a in artifacts:
        table.add_row(
            str(a.id),
            a.type_name,
            human_size(a.size),
            a.sha256[:12],
            timestamp(a.created_at),
            _short_properties(a.properties),
        )
    console.print(table)


def _short_properties(properties: dict[str, Any], limit: int = 60) -> str:
    """``"auc=0.91, rows=150"``, cut at ``limit`` characters."""
    text = ", ".join(f"{key}={value}" for key, value in properties.items()) or "-"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def artifact_usage(store: MetadataStore, artifact_id: int) -> dict[str, list[dict[str, Any]]]:
    """Producers and consumers of an artifact, one entry per event.

    Returns ``{"producers": [...], "consumers": [...]}``; each entry names the execution,
    its run, step and status, and the output/input name. A producer whose execution is
    ``cached`` reused the artifact rather than computing it.
    """
    usage: dict[str, list[dict[str, Any]]] = {"producers": [], "consumers": []}
    for event in store.events_for_artifact(artifact_id):
        execution = store.get_execution(event.execution_id)
        entry = {
            "execution_id": execution.id,
            "run_id": execution.run_id,
            "step": execution.step_name,
            "status": str(execution.status),
            "name": event.name,
            "cached": execution.status == ExecutionStatus.CACHED,
        }
        usage["producers" if event.kind == EventKind.OUTPUT else "consumers"].append(entry)
    return usage


@app.command("show")
def show_command(
    ctx: typer.Context,
    artifact: Annotated[str, typer.Argument(help="Artifact id: 56, a56 or artifact:56.")],
    json_output: JsonOpt = False,
) -> None:
    """Show one artifact: type, location, fingerprint, size, properties, producer, consumers."""
    artifact_id = parse_artifact_id(artifact)
    with read_store(ctx) as store:
        record = store.get_artifact(artifact_id)
        usage = artifact_usage(store, artifact_id)
    if json_output:
        print_json(artifact_dict(record) | usage)
        return
    console = out_console()
    console.print(Text(f"artifact a{record.id}", style="bold"))
    properties = json.dumps(record.properties, indent=2, default=str).replace("\n", "\n" + " " * 12)
    for label, value in (
        ("type", record.type_name),
        ("uri", record.uri),
        ("sha256", record.sha256),
        ("size", f"{human_size(record.size)} ({record.size} bytes)"),
        ("created", timestamp(record.created_at)),
        ("properties", properties if record.properties else "-"),
    ):
        console.print(f"{label:<12}{value}", markup=False, soft_wrap=True)
    for title, entries in (
        ("produced by", usage["producers"]),
        ("consumed by", usage["consumers"]),
    ):
        console.print(Text(title, style="bold"))
        if not entries:
            console.print("  -")
        for entry in entries:
            where = f"step {entry['step']}, run {entry['run_id']}"
            line = Text(f"  execution {entry['execution_id']} ({where}) ")
            line.append_text(status_text(entry["status"]))
            line.append(f" as {entry['name']!r}")
            if entry["cached"]:
                line.append(" (reused from the cache)", style="blue")
            console.print(line)
