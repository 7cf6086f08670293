"""``conveyor trigger`` and ``conveyor policy check``: the continuous-training policy by hand.

``conveyor trigger PIPELINE`` checks the policy and the parameters, then queues a manual request
under ``<home>/ct/requests/`` for the controller (:func:`conveyor.ct.request_manual_run`);
``--dry-run`` queues nothing and prints every trigger's decision now, fired or not, and why.
``conveyor policy check`` loads the policy and prints a summary. A bad policy exits 2 with every
problem, one ``FILE:LINE`` each. The policy is ``--policy FILE`` or the nearest conveyor.toml.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from conveyor.cli.render import out_console, print_json
from conveyor.cli.state import settings_from
from conveyor.core.loader import parse_assignments
from conveyor.ct import (
    ManualRequest,
    Policy,
    TriggerDecision,
    build_context,
    explain_all,
    format_duration,
    load_policy,
    load_state,
    read_requests,
    request_manual_run,
)
from conveyor.ct.errors import display_path
from conveyor.ct.manual import check_request, current_actor

__all__ = ["check_command", "policy_app", "policy_dict", "trigger_command"]

policy_app = typer.Typer(no_args_is_help=True, help="Check the continuous-training policy.")

PolicyOpt = Annotated[
    Path | None,
    typer.Option(
        "--policy", help="Policy file (default: the nearest conveyor.toml).", show_default=False
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--param", "-p", help="Pipeline parameter KEY=VALUE (repeatable).", metavar="KEY=VALUE"
    ),
]


def _load(ctx: typer.Context, policy_file: Path | None) -> Policy:
    return load_policy(policy_file if policy_file is not None else settings_from(ctx))


def _when(value: Any) -> str:
    return format_duration(value) if isinstance(value, dt.timedelta) else str(value)


def policy_dict(policy: Policy) -> dict[str, Any]:
    """The checked policy as JSON (durations as text, paths absolute)."""
    m, c = policy.monitoring, policy.controller
    return {
        "source": str(policy.source),
        "monitoring": {
            "window": _when(m.window),
            "label_delay": _when(m.label_delay),
            "min_feedback_coverage": m.min_feedback_coverage,
            "slices": list(m.slices),
        },
        "pipelines": {
            name: {"file": str(t.file), "function": t.function, "model": t.model,
                   "params": dict(t.params)}
            for name, t in policy.pipelines.items()
        },
        "alerts": [
            {"name": a.name, "model": a.model, "metric": a.metric, "feature": a.feature,
             "threshold": a.threshold, "windows": a.windows, "cooldown": _when(a.cooldown),
             "line": a.line}
            for a in policy.alerts
        ],
        "triggers": [
            {"name": t.name, "pipeline": t.pipeline, "on": t.kind, "what": t.describe(),
             "params": dict(t.params), "line": t.line}
            for t in policy.all_triggers()
        ],
        "controller": {
            "poll": _when(c.poll), "debounce": _when(c.debounce),
            "min_interval": _when(c.min_interval), "canary_percent": c.canary_percent,
            "promote_after": c.promote_after, "metric": c.metric, "tolerance": c.tolerance,
        },
    }  # fmt: skip


def _print_policy(policy: Policy) -> None:
    console = out_console()
    source = display_path(policy.source) if policy.source else "policy"
    implicit = len(policy.all_triggers()) - len(policy.triggers)
    console.print(
        f"[green]{source}: policy OK[/] — {len(policy.pipelines)} pipeline(s), "
        f"{len(policy.alerts)} alert rule(s), {len(policy.triggers)} trigger(s)"
        + (f" (+{implicit} implicit manual)" if implicit else "")
    )
    pipelines = Table("pipeline", "function", "file", "model", "params")
    for name, t in policy.pipelines.items():
        params = ", ".join(f"{k}={v!r}" for k, v in t.params.items())
        pipelines.add_row(name, t.function, display_path(t.file), t.model or "-", params or "-")
    console.print(pipelines)
    if policy.alerts:
        alerts = Table("alert", "model", "metric", "feature", "threshold", "windows", "cooldown")
        for a in policy.alerts:
            threshold = "schema" if a.threshold is None else f"{a.threshold:g}"
            alerts.add_row(
                a.name, a.model, a.metric, a.feature or "-", threshold, str(a.windows),
                _when(a.cooldown),
            )  # fmt: skip
        console.print(alerts)
    triggers = Table("trigger", "pipeline", "on", "what")
    for trigger in policy.all_triggers():
        triggers.add_row(trigger.name, trigger.pipeline, trigger.kind, trigger.describe())
    console.print(triggers)
    m, c = policy.monitoring, policy.controller
    console.print(
        f"monitoring: window {_when(m.window)}, label delay {_when(m.label_delay)}, "
        f"feedback coverage >= {m.min_feedback_coverage:g}"
        + (f", slices {', '.join(m.slices)}" if m.slices else "")
    )
    console.print(
        f"controller: poll {_when(c.poll)}, debounce {_when(c.debounce)}, at most one run per "
        f"pipeline every {_when(c.min_interval)}; canary {c.canary_percent:g}% for "
        f"{c.promote_after} window(s), {c.metric} at most {c.tolerance:g} worse"
    )


@policy_app.command("check")
def check_command(ctx: typer.Context, policy: PolicyOpt = None, json_out: JsonOpt = False) -> None:
    """Load and check the policy; print a summary, or every problem (exit 2)."""
    loaded = _load(ctx, policy)
    if json_out:
        print_json(policy_dict(loaded))
    else:
        _print_policy(loaded)


def _print_decisions(decisions: list[TriggerDecision], now: dt.datetime) -> None:
    console = out_console()
    table = Table("trigger", "pipeline", "on", "fires", "reason", title=None)
    for d in decisions:
        fires = Text("yes", style="bold green") if d.fire else Text("no", style="dim")
        table.add_row(d.trigger, d.pipeline, d.kind, fires, d.reason)
    console.print(table)
    firing = sorted({d.pipeline for d in decisions if d.fire})
    summary = f"would start: {', '.join(firing)}" if firing else "nothing would start"
    console.print(f"dry run at {now:%Y-%m-%d %H:%M:%S} UTC: {summary}; nothing was queued")


def trigger_command(
    ctx: typer.Context,
    pipeline: Annotated[
        str, typer.Argument(metavar="PIPELINE", help="A pipeline of the policy (pipelines.NAME).")
    ],
    param: ParamOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Queue nothing; show what would fire now and why.")
    ] = False,
    policy: PolicyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Ask the controller to run PIPELINE now (queues a manual request)."""
    loaded = _load(ctx, policy)
    params = parse_assignments(param or [])
    home = settings_from(ctx).home
    now = dt.datetime.now(dt.UTC)
    if not dry_run:
        request = request_manual_run(home, loaded, pipeline, params, now=now)
        if json_out:
            print_json({**request.to_json(), "path": str(request.path)})
            return
        shown = ", ".join(f"{k}={v}" for k, v in params.items())
        out_console().print(
            f"queued manual request [bold]{request.id}[/] for pipeline {pipeline}"
            + (f" ({shown})" if shown else "")
            + f"\n  {request.path}\nthe controller runs it at its next poll"
        )
        return
    check_request(loaded, pipeline, params)
    asked = ManualRequest("dry-run", pipeline, params, now, current_actor())
    state = load_state(home).with_requests([*read_requests(home), asked])
    decisions = explain_all(loaded, state, now, build_context(loaded.all_triggers()))
    if json_out:
        print_json([d.to_json() for d in decisions])
    else:
        _print_decisions(decisions, now)
