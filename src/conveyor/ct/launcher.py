"""Starting pipeline runs for the controller: one thread per run, in the controller's process.

A run executes in a daemon thread through the local runner on the controller's workspace, so
its steps are worker processes of the controller: a ``kill -9`` of the controller kills them
too (they die with their parent, ``PR_SET_PDEATHSIG``) and the run is found ``running`` with a
dead runner pid at the next start. The run carries the labels ``trigger`` and
``trigger_event``; as soon as the runner has created the run record, ``on_started`` is called
(from the run's thread) with the run id, which is how the controller records ``run_started``
and links the trigger event to its run. The poll loop collects finished runs with
:meth:`RunLauncher.reap`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.ct.policy_model import PipelineTarget
from conveyor.runners.local import LocalRunner
from conveyor.runners.runner import RunResult, StepUpdate
from conveyor.store.metadata.records import RunStatus
from conveyor.store.workspace import Workspace

__all__ = ["LaunchedRun", "RunLauncher"]

logger = logging.getLogger(__name__)


@dataclass
class LaunchedRun:
    """A run the controller started.

    Attributes:
        pipeline: The ``[pipelines]`` key.
        trigger_event: The id of the ``trigger`` event that asked for it.
        labels: The run's labels.
        params: The parameters it was built with.
        run_id: The run's id once the runner created it.
        result: How it ended, once it did.
        error: Why it could not run at all (the pipeline did not build, the file broke).
    """

    pipeline: str
    trigger_event: int
    labels: dict[str, str]
    params: dict[str, Any]
    run_id: int | None = None
    result: RunResult | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def status(self) -> RunStatus | None:
        """The run's final status, None while it runs or when it never started."""
        return self.result.status if self.result is not None else None


class _Observer:
    """Forwards the run's creation to the launcher's callback; ignores the rest."""

    def __init__(self, run: LaunchedRun, on_started: Callable[[LaunchedRun], None]) -> None:
        self.run = run
        self.on_started = on_started

    def on_run_start(self, *, run_id: int, pipeline: str, steps: list[str]) -> None:
        self.run.run_id = run_id
        try:
            self.on_started(self.run)
        except Exception:  # the run goes on; the controller notices at the end of it
            logger.exception("recording the start of run %s failed", run_id)

    def on_step_update(self, *, update: StepUpdate) -> None:
        return None

    def on_run_end(self, *, run_id: int, status: RunStatus, error: str | None) -> None:
        return None


class RunLauncher:
    """Run pipelines in threads and hand back the finished ones.

    Args:
        workspace: Where runs are recorded (the controller's workspace).
        on_started: Called from the run's thread once the run record exists.
        max_workers: Worker processes per run (default: the workspace settings').

    Example:
        >>> launcher = RunLauncher(workspace, on_started=print)  # doctest: +SKIP
        >>> launcher.launch(target, {"seed": 1}, {"trigger": "nightly"}, trigger_event=7)
        >>> finished = launcher.reap()
    """

    def __init__(
        self,
        workspace: Workspace,
        on_started: Callable[[LaunchedRun], None],
        *,
        max_workers: int | None = None,
    ) -> None:
        self.workspace = workspace
        self.on_started = on_started
        self.max_workers = max_workers
        self._runs: dict[str, LaunchedRun] = {}
        self._lock = threading.Lock()

    def launch(
        self,
        target: PipelineTarget,
        params: Mapping[str, Any],
        labels: Mapping[str, str],
        *,
        trigger_event: int,
    ) -> LaunchedRun:
        """Start a run of ``target`` in a new thread and return at once."""
        run = LaunchedRun(target.name, trigger_event, dict(labels), dict(params))
        with self._lock:
            self._runs[target.name] = run
        thread = threading.Thread(
            target=self._execute,
            args=(target, run),
            name=f"conveyor-run-{target.name}",
            daemon=True,  # a stopping controller does not wait for it (see Controller.stop)
        )
        thread.start()
        return run

    def _execute(self, target: PipelineTarget, run: LaunchedRun) -> None:
        try:
            ir = target.load().build(run.params)
            runner = LocalRunner(self.workspace, self.max_workers)
            observer = _Observer(run, self.on_started)
            run.result = runner.run(ir, observer=observer, labels=run.labels)
        except Exception as exc:  # any failure is the run's outcome, never the controller's
            run.error = f"{type(exc).__name__}: {exc}"
            logger.debug("run of %s failed to execute", target.name, exc_info=True)
        finally:
            run.done.set()

    def running(self) -> dict[str, LaunchedRun]:
        """The runs not reaped yet, by pipeline (finished ones included until reaped)."""
        with self._lock:
            return dict(self._runs)

    def reap(self) -> list[LaunchedRun]:
        """The runs that finished since the last call, removed from :meth:`running`."""
        with self._lock:
            done = [r for r in self._runs.values() if r.done.is_set()]
            for run in done:
                del self._runs[run.pipeline]
        return done

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every run ended (at most ``timeout`` s each); True when none still runs."""
        return all(run.done.wait(timeout) for run in self.running().values())
