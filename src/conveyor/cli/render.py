"""Shared presentation: colours, durations, sizes, timestamps, JSON output and HTML pages.

Human output goes through rich consoles created per call (so test runners that swap
``sys.stdout`` see it); machine output is plain JSON on stdout with stable keys and
ISO-8601 timestamps, printed without any markup or wrapping.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

from conveyor.exceptions import ConveyorError
from conveyor.store.metadata.records import (
    ArtifactRecord,
    ExecutionRecord,
    ExecutionStatus,
    RunRecord,
)

__all__ = [
    "artifact_dict",
    "duration",
    "err_console",
    "execution_dict",
    "human_size",
    "iso",
    "out_console",
    "print_json",
    "run_dict",
    "status_text",
    "steps_summary",
    "timestamp",
    "write_page",
]

STATUS_STYLES: dict[str, str] = {
    "pending": "dim",
    "running": "bold cyan",
    "succeeded": "green",
    "cached": "blue",
    "failed": "bold red",
    "skipped": "yellow",
    "interrupted": "magenta",
}
# Words used in step summaries ("3 ok, 2 cached, 1 failed").
SUMMARY_WORDS: dict[str, str] = {"succeeded": "ok"}
SUMMARY_ORDER = ["succeeded", "cached", "failed", "skipped", "interrupted", "running", "pending"]


# Width for output that is not a terminal (logs, pipes): wide enough that tables of ids,
# timestamps and summaries do not wrap, which keeps them greppable.
PIPE_WIDTH = 160


def out_console() -> Console:
    """A console on stdout (colours only when it is a terminal)."""
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


def err_console() -> Console:
    """A console on stderr, for errors and hints."""
    return Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout, with no markup."""
    typer.echo(json.dumps(data, indent=2, sort_keys=False, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def status_text(status: str) -> Text:
    """The status word in its colour."""
    value = str(status)
    return Text(value, style=STATUS_STYLES.get(value, ""))


def iso(value: datetime | None) -> str | None:
    """ISO-8601 text of a timestamp, None stays None."""
    return value.isoformat() if value is not None else None


def timestamp(value: datetime | None) -> str:
    """A timestamp in local time for people, ``-`` when missing."""
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from ``start`` to ``end`` (None when either is missing)."""
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def duration(seconds: float | None) -> str:
    """``0.42s``, ``12.3s``, ``4m 05s``, ``2h 03m``; ``-`` when unknown.

    Example:
        >>> duration(245)
        '4m 05s'
    """
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def human_size(size: int) -> str:
    """Bytes for people: ``512 B``, ``1.5 KiB``, ``3.2 MiB``.

    Example:
        >>> human_size(1536)
        '1.5 KiB'
    """
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def steps_summary(statuses: Iterable[ExecutionStatus | str]) -> str:
    """``"3 ok, 2 cached, 1 failed"`` from step statuses; ``"no steps"`` when empty."""
    counts = Counter(str(s) for s in statuses)
    parts = [
        f"{counts[name]} {SUMMARY_WORDS.get(name, name)}" for name in SUMMARY_ORDER if counts[name]
    ]
    parts += [f"{n} {name}" for name, n in counts.items() if name not in SUMMARY_ORDER]
    return ", ".join(parts) or "no steps"


def run_dict(run: RunRecord, executions: list[ExecutionRecord] | None = None) -> dict[str, Any]:
    """A run for ``--json`` output."""
    data: dict[str, Any] = {
        "id": run.id,
        "pipeline": run.pipeline_name,
        "pipeline_id": run.pipeline_id,
        "status": str(run.status),
        "params": run.params,
        "options": run.options,
        "created_at": iso(run.created_at),
        "ended_at": iso(run.ended_at),
        "duration_s": seconds_between(run.created_at, run.ended_at),
        "host": run.host,
        "pid": run.pid,
        "error": run.error,
    }
    if executions is not None:
        data["steps_summary"] = steps_summary(e.status for e in executions)
    return data


def execution_dict(execution: ExecutionRecord) -> dict[str, Any]:
    """An execution (one step of a run) for ``--json`` output."""
    return {
        "id": execution.id,
        "run_id": execution.run_id,
        "step": execution.step_name,
        "component": execution.component_name,
        "status": str(execution.status),
        "params": execution.params,
        "attempts": execution.attempts,
        "started_at": iso(execution.started_at),
        "ended_at": iso(execution.ended_at),
        "duration_s": seconds_between(execution.started_at, execution.ended_at),
        "cache_key": execution.cache_key,
        "cache_explanation": execution.cache_explanation,
        "cached_from": execution.cached_from,
        "log_uri": execution.log_uri,
        "error": execution.error,
        "traceback": execution.traceback,
    }


def artifact_dict(artifact: ArtifactRecord) -> dict[str, Any]:
    """An artifact for ``--json`` output."""
    return {
        "id": artifact.id,
        "type": artifact.type_name,
        "uri": artifact.uri,
        "sha256": artifact.sha256,
        "size": artifact.size,
        "properties": artifact.properties,
        "created_at": iso(artifact.created_at),
    }


def write_page(path: Path, text: str, *, fix: str) -> Path:
    """Write an HTML page (or any text) to ``path`` whole: readers see the old file or the new.

    Args:
        path: Where the page goes; its folder is created. ``~`` is expanded.
        text: The page.
        fix: What the user can do when the page cannot be written (ends the error message).

    Returns:
        The absolute path written.

    Raises:
        ConveyorError: The folder or the file cannot be written.
    """
    target = path.expanduser().resolve()
    temporary = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, target)
    except OSError as exc:
        with contextlib.suppress(OSError):  # its folder may be what could not be made
            temporary.unlink(missing_ok=True)
        raise ConveyorError(f"cannot write the report {target}: {exc}; {fix}") from exc
    return target
