"""Running the ``conveyor`` command line in-process, the way every CLI test does.

:func:`invoke` runs a Typer app with typer's ``CliRunner`` and re-raises any exception other
than ``SystemExit``: a bug in a command then fails the test with its own traceback rather than
as a bare exit code 1. :func:`json_output` reads the ``--json`` output of a successful call;
:func:`words` flattens a message that rich wrapped in typer's error panel.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from typer.testing import CliRunner


def invoke(app: typer.Typer, *args: str) -> tuple[int, str, str]:
    """Run ``app`` with ``args``; return (exit code, stdout, stderr)."""
    result = CliRunner().invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def json_output(result: tuple[int, str, str]) -> Any:
    """The JSON that an :func:`invoke` result printed; fails the test (with stderr) on an error."""
    code, out, err = result
    assert code == 0, err
    return json.loads(out)


def words(text: str) -> str:
    """``text`` on one line, without the borders of typer's error panel."""
    return " ".join(text.replace("│", " ").split())
