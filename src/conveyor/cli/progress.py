"""Live progress of a run: a :class:`~conveyor.runners.runner.RunObserver` for the terminal.

On a terminal the steps are a rich table redrawn in place (``rich.live.Live``); anywhere
else (CI logs, pipes) every state change is one plain line, so logs stay readable. Hooks
may be called from runner threads, so the shared state is guarded by a lock.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table

from conveyor.cli.render import duration, status_text
from conveyor.runners.runner import StepUpdate
from conveyor.store.metadata.records import ExecutionStatus, RunStatus

__all__ = ["QuietObserver", "StepProgress", "StepRow"]

_DONE = {
    ExecutionStatus.SUCCEEDED,
    ExecutionStatus.CACHED,
    ExecutionStatus.FAILED,
    ExecutionStatus.SKIPPED,
    ExecutionStatus.INTERRUPTED,
}


@dataclass
class StepRow:
    """What the table shows for one step."""

    name: str
    status: ExecutionStatus = ExecutionStatus.PENDING
    attempt: int = 0
    duration_s: float | None = None
    cached: bool = False
    started_monotonic: float | None = None
    error: str | None = None

    def elapsed(self) -> float | None:
        """The final duration, or the time spent so far while running."""
        if self.duration_s is not None or self.status in _DONE:
            return self.duration_s
        if self.started_monotonic is not None:
            return time.monotonic() - self.started_monotonic
        return None


class QuietObserver:
    """Records step states without printing (for ``--json``)."""

    def __init__(self) -> None:
        self.rows: dict[str, StepRow] = {}
        self.pipeline = ""
        self._lock = threading.Lock()

    def on_run_start(self, *, run_id: int, pipeline: str, steps: list[str]) -> None:
        with self._lock:
            self.pipeline = pipeline
            self.rows = {name: StepRow(name) for name in steps}

    def on_step_update(self, *, update: StepUpdate) -> None:
        with self._lock:
            row = self.rows.setdefault(update.step, StepRow(update.step))
            if update.status == ExecutionStatus.RUNNING and row.started_monotonic is None:
                row.started_monotonic = time.monotonic()
            row.status = update.status
            row.attempt = max(row.attempt, update.attempt)
            row.duration_s = update.duration_s
            row.cached = update.cached or update.status == ExecutionStatus.CACHED
            row.error = update.error
        self._changed(row)

    def on_run_end(self, *, run_id: int, status: RunStatus, error: str | None) -> None:
        return None

    def _changed(self, row: StepRow) -> None:
        return None


class StepProgress(QuietObserver):
    """Shows step states live (terminal) or line by line (anything else).

    Use as a context manager around ``runner.run(..., observer=progress)``.

    Example:
        >>> with StepProgress(Console()) as progress:  # doctest: +SKIP
        ...     result = runner.run(ir, observer=progress)
    """

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console
        self.live: Live | None = None

    def __enter__(self) -> StepProgress:
        if self.console.is_terminal:
            self.live = Live(self, console=self.console, refresh_per_second=8, transient=False)
            self.live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def on_run_start(self, *, run_id: int, pipeline: str, steps: list[str]) -> None:
        super().on_run_start(run_id=run_id, pipeline=pipeline, steps=steps)
        if self.live is None:
            self.console.print(f"run {run_id} of pipeline {pipeline}: {len(steps)} steps")

    def _changed(self, row: StepRow) -> None:
        if self.live is not None:
            self.live.refresh()
            return
        parts = [f"  {row.name}", str(row.status)]
        if row.attempt > 1:
            parts.append(f"attempt {row.attempt}")
        if row.status in _DONE and row.duration_s is not None:
            parts.append(duration(row.duration_s))
        if row.cached:
            parts.append("(cached)")
        self.console.print(" ".join(parts), markup=False, highlight=False)

    def __rich__(self) -> Table:
        table = Table(title=self.pipeline or None, title_justify="left")
        for column in ("step", "state", "attempt", "duration", "cached"):
            table.add_column(column, no_wrap=column != "step")
        with self._lock:
            rows = list(self.rows.values())
        for row in rows:
            table.add_row(
                row.name,
                status_text(row.status),
                str(row.attempt) if row.attempt else "-",
                duration(row.elapsed()),
                "yes" if row.cached else "no",
            )
        return table
