"""``conveyor serve``: serve every model that has an alias over TF Serving REST and V2.

Mount in the root app with ``app.command("serve")(serve.serve_command)``. The server needs the
``serving`` extra (starlette, uvicorn); it is imported only when the command runs.
"""

from __future__ import annotations

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

    from conveyor.store.workspace import Workspace

    workspace = Workspace.open(settings_from(ctx))
    try:
        app = create_app(workspace, models=names, memory_budget_bytes=budget)
        err_console().print(f"serving {', '.join(app.state.serving.models.names()) or 'nothing'}")
        err_console().print(f"listening on http://{host}:{port} (Ctrl-C to stop)")
        serve(app, host=host, port=port)
    finally:
        workspace.close()
