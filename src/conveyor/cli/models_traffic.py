"""``conveyor models traffic NAME [TARGET=PERCENT ...]``: show, set or clear traffic splits.

A split shares the requests for one alias of a model (the *route*, ``--route``, default
``production``) between targets -- other aliases of the model or versions (``v7`` or ``7``)
-- in percents summing to 100; ``--shadow`` targets get copies whose answers are logged,
never returned. Targets are resolved when a server reads the split, so a split follows its
aliases as they move; a running ``conveyor serve`` applies a change within its reload
interval.

- no assignment: show the splits (route, target, the version it resolves to now, percent);
- ``TARGET=PERCENT ...``: set the route's split (audited, ``--reason`` optional);
- ``--clear``: remove it, so the route answers with its own version again.

Malformed assignments (``canary``, ``canary=abc``) exit 2 naming the argument; what the
registry refuses (percents not summing to 100, unknown targets) exits 2 with its message and
changes nothing. Mounted by the root app as ``conveyor models traffic``.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from conveyor.cli.models import ActorOpt, JsonOpt, NameArg, print_change
from conveyor.cli.render import iso, out_console, print_json, timestamp
from conveyor.cli.state import read_store
from conveyor.registry import ModelRegistry, TrafficSplit

__all__ = ["parse_assignments", "traffic_command"]

_ASSIGNMENT_HINT = "TARGET=PERCENT"


def _assignment(text: str) -> tuple[str, float]:
    target, sep, percent = text.partition("=")
    if not sep or not target.strip():
        raise typer.BadParameter(
            f"{text!r} is not TARGET=PERCENT (e.g. canary=10)", param_hint=_ASSIGNMENT_HINT
        )
    try:
        value = float(percent)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise typer.BadParameter(
            f"{text!r}: the percent {percent.strip()!r} is not a finite number",
            param_hint=_ASSIGNMENT_HINT,
        )
    return target.strip(), value


def parse_assignments(texts: list[str]) -> dict[str, float]:
    """``["production=90", "canary=10"]`` -> ``{"production": 90.0, "canary": 10.0}``.

    Raises:
        typer.BadParameter: an argument that is not ``TARGET=PERCENT`` with a number, or a
            target given twice; the message quotes the argument.

    Example:
        >>> parse_assignments(["production=90", "canary=10"])
        {'production': 90.0, 'canary': 10.0}
    """
    weights: dict[str, float] = {}
    for text in texts:
        target, percent = _assignment(text)
        if target in weights:
            raise typer.BadParameter(
                f"{text!r}: target {target!r} is given twice", param_hint=_ASSIGNMENT_HINT
            )
        weights[target] = percent
    return weights


def _version_of(target: str, aliases: dict[str, int]) -> int | None:
    if target in aliases:
        return aliases[target]
    digits = target[1:] if target.startswith("v") else ""
    return int(digits) if digits.isdigit() else None


def _split_dict(split: TrafficSplit, aliases: dict[str, int]) -> dict[str, Any]:
    return {
        "route": split.route,
        "weights": split.weights,
        "shadows": list(split.shadows),
        "versions": {t: _version_of(t, aliases) for t in [*split.weights, *split.shadows]},
        "updated_at": iso(split.updated_at),
        "updated_by": split.updated_by,
    }


def _percent(value: float) -> str:
    return f"{value:.4g}%"


def _show(
    name: str, splits: dict[str, TrafficSplit], aliases: dict[str, int], as_json: bool
) -> None:
    if as_json:
        routes = {route: _split_dict(split, aliases) for route, split in splits.items()}
        print_json({"name": name, "aliases": aliases, "routes": routes})
        return
    console = out_console()
    if not splits:
        console.print(
            f"{name} has no traffic splits: each alias answers with its own version", markup=False
        )
        return
    table = Table("route", "target", "version", "percent", "updated")
    for route, split in splits.items():
        changed = f"{timestamp(split.updated_at)} by {split.updated_by}"
        ordered = sorted(split.weights.items(), key=lambda item: (-item[1], item[0]))
        rows = [(t, _percent(p)) for t, p in ordered] + [(t, "shadow") for t in split.shadows]
        for target, share in rows:
            version = _version_of(target, aliases)
            shown = Text("missing", style="red") if version is None else Text(str(version))
            table.add_row(route, target, shown, share, changed)
            route, changed = "", ""  # the route and its change only on its first row
    console.print(Group(Text(f"model {name}: traffic splits", style="bold"), table))


def traffic_command(
    ctx: typer.Context,
    name: NameArg,
    assignments: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[TARGET=PERCENT]...",
            help="TARGET=PERCENT, e.g. production=90 canary=10 (an alias or a version such "
            "as v7); percents sum to 100. None: show the splits.",
            show_default=False,
        ),
    ] = None,
    route: Annotated[
        str, typer.Option("--route", help="The alias whose requests are split.")
    ] = "production",
    shadow: Annotated[
        list[str] | None,
        typer.Option(
            "--shadow",
            help="A target that gets a copy of each request (answer logged, never returned); "
            "repeatable.",
            show_default=False,
        ),
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Remove the route's split: its alias answers alone.")
    ] = False,
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason", "-r", help="Why (recorded in the audit trail).", show_default=False
        ),
    ] = None,
    actor: ActorOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Show, set (TARGET=PERCENT ...) or --clear the traffic split of an alias."""
    weights = parse_assignments(assignments or [])
    shadows = shadow or []
    if clear and (weights or shadows):
        raise typer.BadParameter("--clear takes no TARGET=PERCENT and no --shadow")
    if shadows and not weights:
        raise typer.BadParameter(
            "--shadow needs the weighted targets too, e.g. production=100 --shadow canary"
        )
    with read_store(ctx) as store:
        registry = ModelRegistry(store)
        if clear:
            entry = registry.clear_traffic(name, route=route, actor=actor, reason=reason)
            print_change(
                entry, json_output, f"{name}: {route} has no traffic split; nothing changed"
            )
        elif weights:
            entry = registry.set_traffic(
                name, weights, route=route, shadows=shadows, actor=actor, reason=reason
            )
            print_change(
                entry, json_output, f"{name}: {route} already has this split; nothing changed"
            )
        else:
            _show(name, registry.traffic(name), registry.aliases(name), json_output)
