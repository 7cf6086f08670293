"""``conveyor run`` and ``conveyor compile``: build a pipeline's IR, then run or save it.

Bad input must change nothing, so the IR is built (file loaded, parameters validated,
graph checked) *before* the workspace is opened: a pipeline that cannot be built never
creates a home folder. Exit codes: 0 success, 1 the pipeline failed, 2 bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from conveyor.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, fail
from conveyor.cli.progress import QuietObserver, StepProgress
from conveyor.cli.render import (
    duration,
    out_console,
    print_json,
    seconds_between,
    status_text,
    steps_summary,
)
from conveyor.cli.state import safe_url, settings_from
from conveyor.config import Settings
from conveyor.core.ir import PipelineIR
from conveyor.core.loader import load_pipeline, parse_assignments, split_spec
from conveyor.exceptions import ParameterError, PipelineLoadError
from conveyor.runners.local import LocalRunner
from conveyor.runners.runner import RunResult
from conveyor.store.metadata.records import ExecutionRecord, ExecutionStatus
from conveyor.store.workspace import Workspace

__all__ = ["build_ir", "compile_command", "run_command"]

SpecArg = Annotated[
    str | None,
    typer.Argument(
        metavar="SPEC",
        help="FILE[:PIPELINE] (default: pipeline.py here, its only pipeline), "
        "or a compiled IR .json file.",
        show_default=False,
    ),
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--param", "-p", help="Pipeline parameter KEY=VALUE (repeatable).", metavar="KEY=VALUE"
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary instead.")]


def build_ir(spec: str | None, params: list[str] | None) -> PipelineIR:
    """Load ``spec`` (a pipeline file or a compiled IR file) into checked IR.

    Raises:
        PipelineLoadError: missing file, syntax error, unknown pipeline name.
        ParameterError: malformed, unknown or ill-typed parameter.
        PipelineDefinitionError: the graph is invalid.
    """
    if spec and spec.endswith(".json"):
        path = Path(spec)
        if params:
            raise ParameterError(
                f"{path} is compiled IR with its parameters fixed; "
                "compile again with -p to change them"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PipelineLoadError(f"cannot read pipeline IR {path}: {exc.strerror}") from exc
        return PipelineIR.from_json(text)
    assignments = parse_assignments(params or [])
    pipeline = load_pipeline(spec)
    path, _ = split_spec(spec)
    return pipeline.build(assignments, source=f"{path}:{pipeline.name}")


def compile_command(
    spec: SpecArg = None,
    param: ParamOpt = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write the IR here (default: stdout).", show_default=False
        ),
    ] = None,
) -> None:
    """Build a pipeline into its JSON IR (for runners, compilers and reviews)."""
    ir = build_ir(spec, param)
    text = ir.to_json()
    if output is None:
        typer.echo(text)
        return
    output.write_text(text + "\n", encoding="utf-8")
    out_console().print(f"wrote {output} ({len(ir.steps)} steps of pipeline {ir.name})")


def run_command(
    ctx: typer.Context,
    spec: SpecArg = None,
    param: ParamOpt = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Run every step again.")] = False,
    max_workers: Annotated[
        int | None,
        typer.Option(
            "--max-workers",
            min=1,
            help="Steps run at once (default: CPU cores).",
            show_default=False,
        ),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Run a pipeline locally and show its steps as they go.

    Exit code 0 when the run succeeded, 1 when it failed, 2 for bad input (nothing is
    written then).
    """
    ir = build_ir(spec, param)
    settings = settings_from(ctx, max_workers=max_workers)
    workspace = Workspace.open(settings)
    try:
        result = _execute(workspace, ir, no_cache, quiet=json_output)
        executions = workspace.metadata.list_executions(result.run_id)
        run = workspace.metadata.get_run(result.run_id)
        if json_output:
            print_json(
                _summary_dict(result, executions, settings) | {"pipeline": run.pipeline_name}
            )
        else:
            _print_summary(
                result, executions, settings, seconds_between(run.created_at, run.ended_at)
            )
    finally:
        workspace.close()
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


def _execute(workspace: Workspace, ir: PipelineIR, no_cache: bool, quiet: bool) -> RunResult:
    runner = LocalRunner(workspace, max_workers=workspace.settings.max_workers)
    try:
        if quiet:
            return runner.run(ir, no_cache=no_cache, observer=QuietObserver())
        with StepProgress(out_console()) as progress:
            return runner.run(ir, no_cache=no_cache, observer=progress)
    except KeyboardInterrupt:
        fail(
            "interrupted; the run is marked interrupted and resumes from the cache",
            EXIT_INTERRUPTED,
        )


def _summary_dict(
    result: RunResult, executions: list[ExecutionRecord], settings: Settings
) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "status": str(result.status),
        "error": result.error,
        "home": str(settings.home),
        "metadata_url": safe_url(settings.metadata_url),
        "steps": [
            {
                "name": e.step_name,
                "execution_id": e.id,
                "status": str(e.status),
                "cached": e.status == ExecutionStatus.CACHED,
                "attempts": e.attempts,
                "duration_s": seconds_between(e.started_at, e.ended_at),
                "error": e.error,
            }
            for e in executions
        ],
    }


def _print_summary(
    result: RunResult,
    executions: list[ExecutionRecord],
    settings: Settings,
    elapsed: float | None,
) -> None:
    console = out_console()
    summary = steps_summary(e.status for e in executions)
    status = status_text(result.status)
    console.print("run", result.run_id, status, f"in {duration(elapsed)}: {summary}")
    for execution in executions:
        if execution.status == ExecutionStatus.FAILED:
            console.print(f"[bold red]step {execution.step_name} failed:[/]", end=" ")
            console.print(execution.error or "(no error recorded)", markup=False)
    if result.error and not any(e.status == ExecutionStatus.FAILED for e in executions):
        console.print(result.error, markup=False, style="red")
    console.print(f"results in {settings.home}", markup=False)
    default_db = f"sqlite:///{settings.home / 'metadata.db'}"
    if settings.metadata_url != default_db:
        console.print(f"metadata in {safe_url(settings.metadata_url)}", markup=False)
    console.print(
        f"details: conveyor runs show {result.run_id}  |  conveyor lineage {result.run_id}",
        markup=False,
    )
