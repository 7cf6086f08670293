"""``conveyor serve``: serve every model that has an alias over TF Serving REST and V2.

Mount in the root app with ``app.command("serve")(serve.serve_command)``. The server needs the
``serving`` extra (starlette, uvicorn, prometheus-client); it is imported only when the command
runs. ``--token-env VAR`` reads the bearer token for feedback and management endpoints from the
environment variable ``VAR`` (never from the command line, where ``ps`` would show it).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer

from conveyor.cli.errors import fail
from conveyor.cli.render import err_console
from conveyor.cli.state import settings_from

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
) -> None:
    """Serve registered models (Open Inference Protocol /v2 and TF Serving /v1) until Ctrl-C."""
    try:
        from conveyor.serving.app import create_app
        from conveyor.serving.server import parse_size, serve
    except ImportError as exc:
        fail(f"serving needs the 'serving' extra (pip install 'conveyor-ml[serving]'): {exc}")
    try:
        budget = parse_size(memory_budget)
    except ValueError as exc:
        fail(f"--memory-budget: {exc}")
    names = [n.strip() for n in models.split(",") if n.strip()] if models is not None else None
    if names is not None and not names:
        fail("--models: give at least one model name")
    token: str | None = None
    if token_env is not None:
        token = os.environ.get(token_env, "").strip()
        if not token:
            fail(f"--token-env: the environment variable {token_env!r} is not set or empty")
    if access_log:
        _log_access()

    from conveyor.store.workspace import Workspace

    workspace = Workspace.open(settings_from(ctx))
    try:
        app = create_app(workspace, models=names, memory_budget_bytes=budget, token=token)
        err_console().print(f"serving {', '.join(app.state.serving.models.names()) or 'nothing'}")
        if token is not None:
            err_console().print(f"feedback needs a bearer token (from ${token_env})")
        err_console().print(f"listening on http://{host}:{port} (Ctrl-C to stop)")
        serve(app, host=host, port=port)
    finally:
        workspace.close()


def _log_access() -> None:
    """Send the access log (``conveyor.serving.access``, JSON lines) to stderr."""
    from conveyor.serving.metrics import ACCESS_LOGGER

    access = logging.getLogger(ACCESS_LOGGER)
    if not any(getattr(h, "_conveyor_access", False) for h in access.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._conveyor_access = True  # type: ignore[attr-defined]
        access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
