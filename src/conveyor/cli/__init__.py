"""The ``conveyor`` command-line interface (typer + rich).

Each command is a thin layer over library calls: it resolves settings, calls the engine or
the stores, and renders the result as rich tables and trees, or as JSON with ``--json``.
Exit codes: 0 success, 1 the pipeline failed, 2 bad usage or bad input.
"""

from __future__ import annotations

from conveyor.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``conveyor`` console script."""
    app(prog_name="conveyor")
