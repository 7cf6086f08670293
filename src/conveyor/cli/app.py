"""The ``conveyor`` command: root options, command registration and error mapping.

Errors are turned into exit codes in one place, :meth:`ConveyorGroup.invoke`: a
:class:`~conveyor.exceptions.ConveyorError` prints its message in red on stderr (no
traceback: the message is the interface) and exits 1 for a
:class:`~conveyor.exceptions.RunError`, 2 otherwise. Typer's own usage errors exit 2.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from conveyor.cli import (
    artifacts,
    ct,
    events,
    init,
    lineage,
    models,
    models_evaluate,
    models_traffic,
    predictions,
    report,
    run,
    runs,
    runs_compare,
    serve,
    show,
    watch,
)
from conveyor.cli.data import data_app, schema_app
from conveyor.cli.errors import exit_code_for, fail
from conveyor.cli.state import CliState
from conveyor.exceptions import ConveyorError

__all__ = ["ConveyorGroup", "app"]


class ConveyorGroup(TyperGroup):
    """The root command group; maps conveyor errors to messages and exit codes."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ConveyorError as exc:
            fail(str(exc), exit_code_for(exc))


def _version() -> str:
    try:
        return metadata.version("conveyor-ml")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        return "unknown"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"conveyor {_version()}")
        raise typer.Exit(0)


app = typer.Typer(
    cls=ConveyorGroup,
    name="conveyor",
    help="Continuous-training ML pipelines: run, inspect and trace them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="Folder of the embedded stores (default: env CONVEYOR_HOME, conveyor.toml, "
            "then .conveyor/ in the current directory).",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_show_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Continuous-training ML pipelines: run, inspect and trace them."""
    ctx.obj = CliState(home=home)


app.command("init")(init.init_command)
app.command("run")(run.run_command)
app.command("compile")(run.compile_command)
runs.app.command("compare")(runs_compare.compare_command)
app.add_typer(runs.app, name="runs", help="List and inspect pipeline runs.")
app.add_typer(artifacts.app, name="artifacts", help="List and inspect artifacts.")
app.command("lineage")(lineage.lineage_command)
app.command("show")(show.show_command)
app.command("serve")(serve.serve_command)
app.add_typer(predictions.app, name="predictions", help="Read the prediction log.")
app.add_typer(data_app, name="data", help="Describe, compare and validate data.")
app.add_typer(schema_app, name="schema", help="Show and compare data schemas.")
models.app.command("evaluate")(models_evaluate.evaluate_command)
models.app.command("traffic")(models_traffic.traffic_command)
app.add_typer(models.app, name="models", help="The model registry: versions and aliases.")
app.command("trigger")(ct.trigger_command)
app.add_typer(ct.policy_app, name="policy", help="Check the continuous-training policy.")
app.command("events")(events.events_command)
app.command("watch")(watch.watch_command)
app.command("report")(report.report_command)
