"""Exit codes and the one way commands report an error to people.

Exit codes: 0 success, 1 the pipeline failed (:class:`~conveyor.exceptions.RunError`),
2 bad usage or bad input (any other :class:`~conveyor.exceptions.ConveyorError`).
"""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.markup import escape

from conveyor.cli.render import err_console
from conveyor.exceptions import ConveyorError, RunError

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERRUPTED", "exit_code_for", "fail"]

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def exit_code_for(error: ConveyorError) -> int:
    """1 for a failed run, 2 for everything else conveyor rejects."""
    return EXIT_FAILED if isinstance(error, RunError) else EXIT_BAD_INPUT


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``message`` (plain text, not markup) in red on stderr and exit with ``code``."""
    err_console().print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)
