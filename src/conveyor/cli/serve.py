"""``conveyor serve``: serve every model that has an alias over TF Serving REST and V2.

Mount in the root app with ``app.command("serve")(serve.serve_command)``. The server needs the
``serving`` extra (starlette, uvicorn, prometheus-client); it is imported only when the command
runs. ``--workers N`` runs N worker processes (:mod:`conveyor.serving.workers`).
``--token-env VAR`` reads the bearer token for feedback and management endpoints from the
environment variable ``VAR`` (never from the command line, where ``ps`` would show it).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

from conveyor.cli.errors import fail
from conveyor.cli.render import err_console
from conveyor.cli.state import settings_from
from conveyor.config import Settings

if TYPE_CHECKING:
    from conveyor.serving.workers import WorkerConfig

__all__ = ["serve_command"]


def serve_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8080,
    models: Annotated[
        str | None,
        typer.Option(
            "--models",
            help="Comma-separated model names (default: every model that has an alias).",
            show_default=False,
        ),
    ] = None,
    memory_budget: Annotated[
        str,
        typer.Option(
            "--memory-budget", help="Memory for loaded models (2GB, 512MiB...); LRU beyond."
        ),
    ] = "2GB",
    token_env: Annotated[
        str | None,
        typer.Option(
            "--token-env",
            metavar="VAR",
            help="Environment variable holding the bearer token required by /v1/feedback.",
            show_default=False,
        ),
    ] = None,
    access_log: Annotated[
        bool,
        typer.Option("--access-log/--no-access-log", help="One JSON line per request on stderr."),
    ] = True,
    sticky_header: Annotated[
        str,
        typer.Option(
            "--sticky-header",
            help="Request header whose value keeps one caller on one version of a split route.",
        ),
    ] = "X-Sticky-Key",
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Worker processes, each with its own model cache, log writer and metrics.",
        ),
    ] = 1,
    grpc_port: Annotated[
        int | None,
        typer.Option(
            "--grpc-port",
            min=1,
            max=65535,
            help="Also serve the Open Inference Protocol over gRPC on this port.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve registered models (Open Inference Protocol /v2 and TF Serving /v1) until Ctrl-C."""
    try:
        import conveyor.serving.app  # noqa: F401  (imports every dependency of the extra)
        from conveyor.serving.server import parse_size
    except ImportError as exc:
        fail(f"serving needs the 'serving' extra (pip install 'conveyor-ml[serving]'): {exc}")
    try:
        budget = parse_size(memory_budget)
    except ValueError as exc:
        fail(f"--memory-budget: {exc}")
    names = [n.strip() for n in models.split(",") if n.strip()] if models is not None else None
    if names is not None and not names:
        fail("--models: give at least one model name")
    if not sticky_header.strip():
        fail("--sticky-header: give a header name")
    token: str | None = None
    if token_env is not None:
        token = os.environ.get(token_env, "").strip()
        if not token:
            fail(f"--token-env: the environment variable {token_env!r} is not set or empty")

    if grpc_port is not None and grpc_port == port:
        fail(f"--grpc-port: {grpc_port} is the HTTP port too; give another one")
    from conveyor.serving.workers import WorkerConfig, serve_workers

    settings = settings_from(ctx)
    config = WorkerConfig(
        home=str(settings.home),
        metadata_url=settings.metadata_url,
        artifact_url=settings.artifact_url,
        memory_budget_bytes=budget,
        models=names,
        token_env=token_env,
        sticky_header=sticky_header,
        access_log=access_log,
        grpc_port=grpc_port,
        grpc_host=host,
    )
    if workers == 1:
        _serve_in_process(settings, config, token, host, port)
        return
    _announce(config, _served_names(settings, names, budget), host, port, workers)
    serve_workers(config, host=host, port=port, workers=workers)


def _serve_in_process(
    settings: Settings, config: WorkerConfig, token: str | None, host: str, port: int
) -> None:
    """One worker: the app runs in this process, over one open workspace.

    The access log goes to stderr only once the app exists (each worker of ``--workers N``
    sets it up in its own process)."""
    from conveyor.serving.access_log import log_access_to_stderr
    from conveyor.serving.app import create_app
    from conveyor.serving.server import serve
    from conveyor.store.workspace import Workspace

    workspace = Workspace.open(settings)
    try:
        app = create_app(
            workspace,
            models=config.models,
            memory_budget_bytes=config.memory_budget_bytes,
            flush_interval_s=config.flush_interval_s,
            token=token,
            reload_interval_s=config.reload_interval_s,
            sticky_header=config.sticky_header,
            grpc_port=config.grpc_port,
            grpc_host=config.grpc_host,
        )
        _announce(config, app.state.serving.models.names(), host, port, workers=1)
        if config.access_log:
            log_access_to_stderr()
        serve(app, host=host, port=port)
    finally:
        workspace.close()


def _announce(config: WorkerConfig, served: list[str], host: str, port: int, workers: int) -> None:
    console = err_console()
    console.print(f"serving {', '.join(served) or 'nothing'}")
    if config.token_env is not None:
        console.print(f"feedback needs a bearer token (from ${config.token_env})")
    plural = "s" if workers > 1 else ""
    grpc = f" and gRPC {host}:{config.grpc_port}" if config.grpc_port is not None else ""
    console.print(
        f"listening on http://{host}:{port}{grpc}, {workers} worker{plural} (Ctrl-C to stop)"
    )


def _served_names(settings: Settings, names: list[str] | None, budget: int) -> list[str]:
    """The models the workers will serve, checked in the parent so a typo fails at once."""
    from conveyor.registry import ModelRegistry
    from conveyor.serving.models import ServedModels
    from conveyor.store.workspace import Workspace

    workspace = Workspace.open(settings)  # also marks dead runs interrupted, once
    try:
        served = ServedModels(ModelRegistry(workspace), models=names, memory_budget_bytes=budget)
        return served.names()
    finally:
        workspace.close()
