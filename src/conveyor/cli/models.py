"""``conveyor models``: list, show, promote, roll back, archive, compare and audit models.

``conveyor models traffic`` (splits of an alias's requests) lives in
:mod:`conveyor.cli.models_traffic` and ``conveyor models evaluate`` in
:mod:`conveyor.cli.models_evaluate`; the root app mounts both on this sub-app.

Mounted by the root app as ``app.add_typer(models.app, name="models")``. Every command is a
thin layer over :class:`conveyor.registry.ModelRegistry`; the ones that move an alias or
archive a version need ``--reason`` (it goes to the audit trail with the actor: ``--actor``,
else ``CONVEYOR_ACTOR``, else the OS user). A refused change prints why and exits 2 with the
registry untouched. Like the other read commands, none of them creates a home.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from conveyor.cli.render import iso, out_console, print_json, timestamp
from conveyor.cli.state import read_store
from conveyor.exceptions import NotFoundError
from conveyor.registry import (
    AuditAction,
    AuditRecord,
    ModelRegistry,
    ModelSummary,
    ModelVersionRecord,
    blessing_verdict,
)

__all__ = [
    "ActorOpt",
    "JsonOpt",
    "NameArg",
    "app",
    "audit_dict",
    "parse_model_ref",
    "print_change",
    "split_text",
    "version_dict",
]

app = typer.Typer(no_args_is_help=True, help="Registered models: versions, aliases, audit.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
AliasOpt = Annotated[str, typer.Option("--alias", "-a", help="The alias to move.")]
ReasonOpt = Annotated[
    str, typer.Option("--reason", "-r", help="Why (recorded in the audit trail).")
]
ActorOpt = Annotated[
    str | None,
    typer.Option(
        "--actor", help="Who (default: env CONVEYOR_ACTOR, then the OS user).", show_default=False
    ),
]
NameArg = Annotated[str, typer.Argument(help="Model name.")]
VersionArg = Annotated[str, typer.Argument(help="Version number, 'latest' or an alias.")]


def parse_model_ref(text: str) -> tuple[str, str | None]:
    """``census`` -> ("census", None); ``census:3`` / ``census:production`` -> (name, ref)."""
    name, sep, ref = text.partition(":")
    if sep and not ref.strip():
        raise typer.BadParameter(f"{text!r}: give a version or alias after ':' (census:3)")
    return name, (ref.strip() if sep else None)


# -- JSON shapes -------------------------------------------------------------------------
def version_dict(record: ModelVersionRecord) -> dict[str, Any]:
    """A model version for ``--json`` output."""
    blessed = None if record.blessing is None else blessing_verdict(record.blessing)[0]
    return {
        "id": record.id,
        "name": record.name,
        "version": record.version,
        "status": record.status.value,
        "aliases": list(record.aliases),
        "blessed": blessed,
        "artifact_id": record.artifact_id,
        "artifact_uri": record.artifact_uri,
        "artifact_sha256": record.artifact_sha256,
        "run_id": record.run_id,
        "execution_id": record.execution_id,
        "metrics": record.metrics,
        "blessing": record.blessing,
        "params": record.params,
        "tags": record.tags,
        "description": record.description,
        "created_at": iso(record.created_at),
        "created_by": record.created_by,
    }


def audit_dict(entry: AuditRecord) -> dict[str, Any]:
    """An audit entry for ``--json`` output."""
    return {
        "id": entry.id,
        "name": entry.name,
        "action": entry.action.value,
        "alias": entry.alias,
        "from_version": entry.from_version,
        "to_version": entry.to_version,
        "actor": entry.actor,
        "reason": entry.reason,
        "at": iso(entry.at),
        "details": entry.details,
    }


def _summary_dict(summary: ModelSummary) -> dict[str, Any]:
    return {
        "name": summary.name,
        "latest_version": summary.latest_version,
        "active_versions": summary.active_versions,
        "aliases": summary.aliases,
    }


# -- rendering for people ----------------------------------------------------------------
def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _delta(value: Any) -> Text:
    if value is None:
        return Text("-", style="dim")
    text = f"{value:+.4g}" if isinstance(value, float) else f"{value:+d}"
    return Text(text, style="green" if value > 0 else "red" if value < 0 else "dim")


def _aliases_text(aliases: dict[str, int] | tuple[str, ...]) -> str:
    if isinstance(aliases, dict):
        return ", ".join(f"{a} -> {v}" for a, v in aliases.items()) or "-"
    return ", ".join(aliases) or "-"


def _blessed_text(record: ModelVersionRecord) -> Text:
    if record.blessing is None:
        return Text("-", style="dim")
    blessed = blessing_verdict(record.blessing)[0]
    return Text("yes", style="green") if blessed else Text("no", style="red")


def _headline_metrics(metrics: dict[str, Any], limit: int = 3) -> str:
    shown = [(k, v) for k, v in metrics.items() if k != "slices" and not isinstance(v, dict)]
    return ", ".join(f"{k}={_number(v)}" for k, v in shown[:limit]) or "-"


def split_text(split: dict[str, Any] | None) -> str:
    """A traffic split from audit details: ``"canary=10, production=90; shadows v5"``."""
    if not split:
        return "-"
    weights = ", ".join(f"{t}={_number(p)}" for t, p in split.get("weights", {}).items())
    shadows = ", ".join(split.get("shadows", []))
    return f"{weights}; shadows {shadows}" if shadows else weights


def _change_text(entry: AuditRecord) -> str:
    if entry.action == AuditAction.TRAFFIC:
        details = entry.details or {}
        return (
            f"{entry.alias}: {split_text(details.get('old'))} -> {split_text(details.get('new'))}"
        )
    if entry.alias is not None:
        start = "-" if entry.from_version is None else str(entry.from_version)
        end = "-" if entry.to_version is None else str(entry.to_version)
        return f"{entry.alias}: {start} -> {end}"
    return f"version {entry.to_version}"


def print_change(entry: AuditRecord | None, json_output: bool, unchanged: str) -> None:
    """Print a registry change (or ``unchanged`` when there was none), or its JSON."""
    if json_output:
        print_json(
            {"changed": entry is not None, "audit": None if entry is None else audit_dict(entry)}
        )
        return
    if entry is None:
        out_console().print(unchanged, markup=False)
        return
    why = f": {entry.reason}" if entry.reason else ""
    out_console().print(
        f"{entry.name}: {entry.action.value} {_change_text(entry)} (by {entry.actor}{why})",
        markup=False,
    )


# -- commands ----------------------------------------------------------------------------
@app.command("list")
def list_command(ctx: typer.Context, json_output: JsonOpt = False) -> None:
    """List registered models with their newest version and aliases."""
    with read_store(ctx) as store:
        summaries = ModelRegistry(store).models()
    if json_output:
        print_json([_summary_dict(s) for s in summaries])
        return
    console = out_console()
    if not summaries:
        console.print("no models registered yet; a pipeline's [bold]register[/] step adds them")
        return
    table = Table("model", "latest", "versions", "aliases")
    for s in summaries:
        table.add_row(
            s.name, _number(s.latest_version), str(s.active_versions), _aliases_text(s.aliases)
        )
    console.print(table)


@app.command("show")
def show_command(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME:ALIAS.")],
    archived: Annotated[
        bool, typer.Option("--archived", help="Include archived versions.")
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Show a model's versions, or one version (NAME:3, NAME:production) in detail."""
    name, version = parse_model_ref(ref)
    with read_store(ctx) as store:
        registry = ModelRegistry(store)
        if version is not None:
            record = registry.get(name, version)
            _show_version(record, json_output, _trained_because(store, record))
            return
        versions = registry.list(name, include_archived=archived)
        aliases = registry.aliases(name)
    if json_output:
        print_json(
            {"name": name, "aliases": aliases, "versions": [version_dict(v) for v in versions]}
        )
        return
    table = Table("version", "status", "aliases", "blessed", "metrics", "created", "by", "run")
    for v in versions:
        table.add_row(
            str(v.version),
            v.status.value,
            _aliases_text(v.aliases),
            _blessed_text(v),
            _headline_metrics(v.metrics),
            timestamp(v.created_at),
            v.created_by,
            _number(v.run_id),
        )
    out_console().print(Group(Text(f"model {name}", style="bold"), table))


def _trained_because(store: Any, record: ModelVersionRecord) -> Any:
    """The ``trigger`` event that started the run which trained ``record``, if any.

    This is the last link of the lineage from a model version back to why it was trained:
    version -> run (``run_id``) -> the run's ``trigger_event`` label -> the trigger event.
    """
    if record.run_id is None:
        return None
    try:
        events = store.activity.run_events(record.run_id)
    except NotFoundError:
        return None
    return next((e for e in events if e.kind == "trigger"), None)


def _show_version(record: ModelVersionRecord, json_output: bool, trigger: Any = None) -> None:
    if json_output:
        document = version_dict(record)
        document["trigger"] = None if trigger is None else trigger.to_dict()
        print_json(document)
        return
    lines = [
        Text(f"model {record.ref}", style="bold"),
        Text(f"status    {record.status.value}"),
        Text(f"aliases   {_aliases_text(record.aliases)}"),
        Text.assemble("blessed   ", _blessed_text(record)),
        Text(f"artifact  {record.artifact_id}  {record.artifact_uri}"),
        Text(f"sha256    {record.artifact_sha256}"),
        Text(f"lineage   run {_number(record.run_id)}, execution {_number(record.execution_id)}"),
        Text(f"created   {timestamp(record.created_at)} by {record.created_by}"),
    ]
    if trigger is not None:
        lines.append(
            Text(
                f"trained   because {trigger.reason} (trigger {trigger.subject!r}, "
                f"event {trigger.id})"
            )
        )
    if record.description:
        lines.append(Text(f"about     {record.description}"))
    metrics = Table("metric", "value")
    for key, value in record.metrics.items():
        if key != "slices" and not isinstance(value, dict):
            metrics.add_row(key, _number(value))
    out_console().print(Group(*lines, metrics))


@app.command("promote")
def promote_command(
    ctx: typer.Context,
    name: NameArg,
    version: VersionArg,
    reason: ReasonOpt,
    alias: AliasOpt = "production",
    actor: ActorOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Point an alias (default: production) at a version, with a reason."""
    with read_store(ctx) as store:
        entry = ModelRegistry(store).promote(name, version, alias, reason=reason, actor=actor)
    unchanged = f"{name}: {alias} already points at version {version}; nothing changed"
    print_change(entry, json_output, unchanged)


@app.command("rollback")
def rollback_command(
    ctx: typer.Context,
    name: NameArg,
    reason: ReasonOpt,
    alias: AliasOpt = "production",
    actor: ActorOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Move an alias (default: production) back to the version that held it before."""
    with read_store(ctx) as store:
        entry = ModelRegistry(store).rollback(name, alias, reason=reason, actor=actor)
    print_change(entry, json_output, "")


@app.command("archive")
def archive_command(
    ctx: typer.Context,
    name: NameArg,
    version: VersionArg,
    reason: ReasonOpt,
    actor: ActorOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Archive a version that holds no alias (kept for lineage, hidden from listings)."""
    with read_store(ctx) as store:
        entry = ModelRegistry(store).archive(name, version, reason=reason, actor=actor)
    print_change(entry, json_output, "")


@app.command("unarchive")
def unarchive_command(
    ctx: typer.Context,
    name: NameArg,
    version: VersionArg,
    reason: ReasonOpt,
    actor: ActorOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Make an archived version active again."""
    with read_store(ctx) as store:
        entry = ModelRegistry(store).unarchive(name, version, reason=reason, actor=actor)
    print_change(entry, json_output, "")


@app.command("diff")
def diff_command(
    ctx: typer.Context,
    name: NameArg,
    a: Annotated[str, typer.Argument(help="First version or alias.")],
    b: Annotated[str, typer.Argument(help="Second version or alias.")],
    json_output: JsonOpt = False,
) -> None:
    """Compare two versions: metrics and per-slice metrics side by side (delta = B - A)."""
    with read_store(ctx) as store:
        diff = ModelRegistry(store).diff(name, a, b)
    if json_output:
        print_json(diff)
        return
    va, vb = diff["a"]["version"], diff["b"]["version"]
    console = out_console()
    console.print(Text(f"model {name}: version {va} (A) vs {vb} (B)", style="bold"))
    metrics = Table("metric", f"A (v{va})", f"B (v{vb})", "delta")
    for metric, row in diff["metrics"].items():
        metrics.add_row(metric, _number(row["a"]), _number(row["b"]), _delta(row["delta"]))
    console.print(metrics)
    if diff["slices"]:
        slices = Table("slice", "metric", f"A (v{va})", f"B (v{vb})", "delta")
        for slice_name, rows in diff["slices"].items():
            for metric, row in rows.items():
                slices.add_row(
                    slice_name, metric, _number(row["a"]), _number(row["b"]), _delta(row["delta"])
                )
        console.print(slices)
    for param, row in diff["params"].items():
        console.print(f"param {param}: {row['a']!r} -> {row['b']!r}", markup=False)


@app.command("history")
def history_command(
    ctx: typer.Context,
    name: NameArg,
    alias: Annotated[
        str | None, typer.Option("--alias", "-a", help="Only this alias.", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Newest N entries.")] = 50,
    json_output: JsonOpt = False,
) -> None:
    """The audit trail of a model (or one alias), newest first."""
    with read_store(ctx) as store:
        entries = ModelRegistry(store).history(name, alias, limit=limit)
    if json_output:
        print_json([audit_dict(e) for e in entries])
        return
    table = Table("when", "action", "change", "actor", "reason")
    for e in entries:
        table.add_row(timestamp(e.at), e.action.value, _change_text(e), e.actor, Text(e.reason))
    out_console().print(table)
