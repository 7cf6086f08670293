"""``conveyor report MODEL``: the timeline of a model as one self-contained HTML page.

Online metric(s) and feedback coverage per version over time, drift scores per feature with
their thresholds, and every trigger, run, canary, promotion and rollback marked on them, with
the events table below (:mod:`conveyor.ct.report`). The page is written to
``<home>/reports/<MODEL>-timeline.html`` (or ``--out``; a temporary name, then renamed) and
its path printed; ``--json`` prints the timeline data with the page's path under ``report``.

The windows follow the policy's ``[monitoring]`` (``--policy FILE``, else the nearest
``conveyor.toml`` when it holds a policy, else the defaults). An unknown model exits 2 with
a did-you-mean and creates nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from conveyor.cli.events import parse_since
from conveyor.cli.render import err_console, out_console, print_json, write_page
from conveyor.cli.state import read_store, settings_from
from conveyor.config import Settings
from conveyor.ct.policy import POLICY_SECTIONS, load_policy
from conveyor.ct.policy_model import Policy
from conveyor.registry import ModelRegistry
from conveyor.store.workspace import Workspace

if TYPE_CHECKING:
    from conveyor.ct.report_model import Timeline

__all__ = ["report_command", "report_path"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def report_path(home: Path, model: str) -> Path:
    """``<home>/reports/<model>-timeline.html``, the model name made safe for a file name."""
    return home / "reports" / f"{_UNSAFE.sub('_', model)}-timeline.html"


def _policy(settings: Settings, policy_file: Path | None) -> Policy:
    if policy_file is not None:
        return load_policy(policy_file)
    if settings.config_file is not None and any(s in settings.extra for s in POLICY_SECTIONS):
        return load_policy(settings)
    return Policy()


def _summary(timeline: Timeline) -> str:
    series = timeline.series()
    versions = sorted({w.version for w in timeline.windows if w.version is not None})
    shown = ", ".join(f"v{v}" for v in versions) or "none"
    if not timeline.has_traffic:
        traffic = "no traffic yet"
    else:
        done = sum(1 for w in timeline.windows if w.complete)
        traffic = f"{done} complete windows in {len(series)} series (versions {shown})"
    return f"{timeline.model}: {traffic}; {len(timeline.marks)} events"


def report_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="A registered model, e.g. census.")],
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="Policy file (default: the nearest conveyor.toml, if it holds a policy).",
            show_default=False,
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help='Only the last "6h", "2d", "1w" (default: everything).',
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Where to write the page (default: <home>/reports/MODEL-timeline.html).",
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the timeline as JSON.")] = (
        False
    ),
) -> None:
    """Write the timeline of a model: metrics and drift over time, with every event marked."""
    from conveyor.ct.report import build_timeline, render_timeline_html

    start = parse_since(since)
    settings = settings_from(ctx)
    loaded = _policy(settings, policy)
    with read_store(ctx) as store:
        ModelRegistry(store).aliases(model)  # unknown model: exit 2 before creating anything
    workspace = Workspace.open(settings)
    try:
        with err_console().status(f"reading the monitoring windows of {model}..."):
            timeline = build_timeline(workspace, model, policy=loaded, since=start)
    finally:
        workspace.close()
    target = out if out is not None else report_path(settings.home, model)
    path = write_page(target, render_timeline_html(timeline), fix="pick another --out")
    if json_output:
        print_json({"report": str(path), **timeline.to_dict()})
        return
    console = out_console()
    console.print(_summary(timeline), markup=False, soft_wrap=True)
    for note in timeline.notes:
        console.print(f"note: {note}", markup=False, soft_wrap=True, style="yellow")
    console.print(f"report: {path}", markup=False, soft_wrap=True)
