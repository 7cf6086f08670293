"""The local runner: a pipeline's steps as processes on this machine.

The main process schedules; steps run in a pool of spawned worker processes and exchange data
only through the artifact store (by URI), exactly as they would on a cluster. Steps start as
soon as their producers are done, up to ``max_workers`` at once. A failing step is retried
with exponential backoff, then marks its dependents skipped while independent branches go on;
a step over its timeout has its worker killed. Only this process writes to the metadata store.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any

from pebble import ProcessExpired

from conveyor.core.fingerprint import cache_key, explain_difference
from conveyor.core.ir import PipelineIR, StepIR, topological_order, validate_ir
from conveyor.runners.heartbeat import Heartbeat
from conveyor.runners.runner import Runner, RunObserver, RunResult, StepUpdate
from conveyor.runners.step import InputArtifact, StepOutcome, StepTask, execute_step
from conveyor.runners.worker_pool import WorkerPool
from conveyor.store.metadata.activity_records import check_run_labels
from conveyor.store.metadata.records import (
    ArtifactRecord,
    ExecutionStatus,
    NewArtifact,
    RunStatus,
)
from conveyor.store.workspace import HEARTBEAT_INTERVAL_S, Workspace

__all__ = ["LocalRunner"]

_DONE = (ExecutionStatus.SUCCEEDED, ExecutionStatus.CACHED)


class LocalRunner(Runner):
    """Run pipelines on this machine.

    Example:
        >>> from conveyor.config import load_settings
        >>> runner = LocalRunner(Workspace.open(load_settings()), max_workers=2)
        >>> result = runner.run(my_pipeline.build({"n": 3}))  # doctest: +SKIP
        >>> result.status
        <RunStatus.SUCCEEDED: 'succeeded'>
    """

    def __init__(
        self, workspace: Workspace, max_workers: int | None = None, pool: WorkerPool | None = None
    ) -> None:
        """``pool``: a warm worker pool to reuse across runs (the caller closes it); by default
        each run starts its own workers, so edited pipeline files are always re-imported."""
        self.workspace = workspace
        self.max_workers = max_workers or workspace.settings.max_workers
        self.pool = pool

    def run(
        self,
        ir: PipelineIR,
        *,
        no_cache: bool = False,
        observer: RunObserver | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> RunResult:
        """Run ``ir``; ``labels`` are stored with the run (``options["labels"]``).

        Raises:
            ParameterError: a label name or value is invalid (nothing was recorded).
        """
        checked = check_run_labels(labels)
        validate_ir(ir)
        pool = self.pool or WorkerPool(max(1, min(self.max_workers, len(ir.steps))))
        session = _RunSession(self.workspace, ir, no_cache, observer, pool, checked)
        try:
            return session.execute()
        finally:
            if self.pool is None:
                pool.close(cancel=True)


@dataclass
class _Flight:
    step: StepIR
    attempt: int
    started: float


class _RunSession:
    """State of one run while it executes."""

    def __init__(
        self,
        workspace: Workspace,
        ir: PipelineIR,
        no_cache: bool,
        observer: RunObserver | None,
        pool: WorkerPool,
        labels: dict[str, str],
    ) -> None:
        self.ws = workspace
        self.meta = workspace.metadata
        self.ir = ir
        self.no_cache = no_cache
        self.observer = observer
        self.order = [ir.step(name) for name in topological_order(ir)]
        self.pool = pool
        self.labels = labels
        self.state: dict[str, ExecutionStatus] = {s.name: ExecutionStatus.PENDING for s in ir.steps}
        self.outputs: dict[str, dict[str, ArtifactRecord]] = {}
        self.keys: dict[str, tuple[str, dict[str, Any], str]] = {}
        self.flights: dict[Future[StepOutcome], _Flight] = {}
        self.retry_at: dict[str, tuple[float, int]] = {}
        self.errors: dict[str, str] = {}
        self.run_id = 0
        self.exec_ids: dict[str, int] = {}

    # -- life cycle ---------------------------------------------------------------------
    def execute(self) -> RunResult:
        pipeline_id = self.meta.register_pipeline(
            self.ir.name, self.ir.to_dict(), self.ir.fingerprint()
        )
        options: dict[str, Any] = {
            "no_cache": self.no_cache,
            "max_workers": self.pool.max_workers,
            "runner": "local",
        }
        if self.labels:
            options["labels"] = self.labels
        run = self.meta.create_run(
            pipeline_id, self.ir.parameters, options, socket.gethostname(), os.getpid()
        )
        self.run_id = run.id
        self.exec_ids = self.meta.create_executions(
            run.id, [(s.name, s.component.name, s.params) for s in self.ir.steps]
        )
        if self.observer:
            self.observer.on_run_start(
                run_id=run.id, pipeline=self.ir.name, steps=[s.name for s in self.order]
            )
        try:
            with Heartbeat(self.meta, run.id, HEARTBEAT_INTERVAL_S):
                self._loop()
        except BaseException:
            for future in self.flights:
                future.cancel()
            self.meta.interrupt_run(run.id, "interrupted: the runner was stopped")
            raise
        return self._finish()

    def _finish(self) -> RunResult:
        ok = all(s in _DONE for s in self.state.values())
        status = RunStatus.SUCCEEDED if ok else RunStatus.FAILED
        error = None if ok else "; ".join(f"step {n!r} failed: {e}" for n, e in self.errors.items())
        self.meta.finish_run(self.run_id, status, error)
        if self.observer:
            self.observer.on_run_end(run_id=self.run_id, status=status, error=error)
        return RunResult(self.run_id, status, error, dict(self.state))

    def _notify(self, step: StepIR, **fields: Any) -> None:
        if self.observer:
            update = StepUpdate(
                run_id=self.run_id,
                step=step.name,
                execution_id=self.exec_ids[step.name],
                status=self.state[step.name],
                **fields,
            )
            self.observer.on_step_update(update=update)

    # -- scheduling ---------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            self._launch_ready()
            if not self.flights and not self.retry_at:
                return
            timeout = None
            if self.retry_at:
                timeout = max(0.0, min(t for t, _ in self.retry_at.values()) - time.monotonic())
            if not self.flights:
                time.sleep(timeout or 0.0)
                continue
            done, _ = wait(list(self.flights), timeout=timeout, return_when=FIRST_COMPLETED)
            for future in done:
                self._land(future, self.flights.pop(future))

    def _ready(self, step: StepIR) -> bool:
        return self.state[step.name] == ExecutionStatus.PENDING and all(
            self.state[up] in _DONE for up in step.upstream
        )

    def _launch_ready(self) -> None:
        progress = True
        while progress:
            progress = False
            now = time.monotonic()
            for step in self.order:
                if step.name in self.retry_at:
                    due, attempt = self.retry_at[step.name]
                    if due <= now:
                        del self.retry_at[step.name]
                        self._submit(step, attempt)
                elif self._ready(step):
                    self._start(step)
                    progress = True

    def _start(self, step: StepIR) -> None:
        inputs = {n: self.outputs[ref.step][ref.output] for n, ref in step.inputs.items()}
        identity = f"{step.component.name}:{step.component.qualname}"
        key, parts = cache_key(
            identity,
            step.component.code_fingerprint,
            step.params,
            {n: a.sha256 for n, a in inputs.items()},
        )
        reason = None
        if self.no_cache:
            reason = "cache disabled for this run (--no-cache)"
        elif not step.options.cache:
            reason = "cache disabled for this component (cache=False)"
        else:
            hit = self.meta.find_cached(key)
            if hit is not None:
                origin, arts = hit
                if set(step.outputs) <= set(arts) and all(
                    self.ws.artifacts.exists(arts[n].uri) for n in step.outputs
                ):
                    self._reuse(step, key, parts, inputs, origin.id, origin.run_id, arts)
                    return
                reason = f"miss: outputs of execution {origin.id} are gone from the artifact store"
        if reason is None:
            previous = self.meta.previous_execution(self.ir.name, step.name, self.run_id)
            reason = "miss: " + explain_difference(
                previous.cache_key_parts if previous else None, parts
            )
        self.keys[step.name] = (key, parts, reason)
        self._submit(step, 1)

    def _reuse(
        self,
        step: StepIR,
        key: str,
        parts: dict[str, Any],
        inputs: dict[str, ArtifactRecord],
        origin_id: int,
        origin_run: int,
        arts: dict[str, ArtifactRecord],
    ) -> None:
        explanation = (
            f"hit: same code, parameters and inputs as execution {origin_id} (run {origin_run})"
        )
        self.meta.cache_execution(
            self.exec_ids[step.name],
            key,
            parts,
            explanation,
            origin_id,
            {n: a.id for n, a in inputs.items()},
            {n: arts[n].id for n in step.outputs},
        )
        self.outputs[step.name] = {n: arts[n] for n in step.outputs}
        self.state[step.name] = ExecutionStatus.CACHED
        self._notify(step, cached=True, duration_s=0.0)

    def _submit(self, step: StepIR, attempt: int) -> None:
        key, parts, reason = self.keys[step.name]
        execution_id = self.exec_ids[step.name]
        log_path = self.ws.settings.logs_dir / f"run-{self.run_id}" / f"{step.name}.log"
        self.meta.start_execution(execution_id, key, parts, reason, attempt, str(log_path))
        inputs = {
            n: InputArtifact(a.uri, a.type_name, a.sha256, a.properties)
            for n, a in ((n, self.outputs[r.step][r.output]) for n, r in step.inputs.items())
        }
        task = StepTask(
            self.run_id,
            execution_id,
            step.name,
            attempt,
            step.component,
            step.params,
            inputs,
            self.ws.artifacts.url,
            str(log_path),
            metadata_url=self.ws.settings.metadata_url,
        )
        future = self.pool.submit(execute_step, task, step.options.timeout_s)
        self.flights[future] = _Flight(step, attempt, time.monotonic())
        self.state[step.name] = ExecutionStatus.RUNNING
        self._notify(step, attempt=attempt)

    # -- results ------------------------------------------------------------------------
    def _outcome(self, future: Future[StepOutcome], flight: _Flight) -> StepOutcome:
        elapsed = time.monotonic() - flight.started
        try:
            return future.result()
        except TimeoutError:
            error = f"TimeoutError: step exceeded its timeout of {flight.step.options.timeout_s} s"
        except ProcessExpired as exc:
            error = f"WorkerDied: the worker process died (exit code {exc.exitcode})"
        except Exception as exc:  # e.g. the task could not be sent to the worker
            error = f"{type(exc).__name__}: {exc}"
        return StepOutcome(ok=False, duration_s=elapsed, error=error, traceback=None)

    def _land(self, future: Future[StepOutcome], flight: _Flight) -> None:
        step = flight.step
        outcome = self._outcome(future, flight)
        execution_id = self.exec_ids[step.name]
        if outcome.ok:
            inputs = {n: self.outputs[r.step][r.output].id for n, r in step.inputs.items()}
            new = {
                n: NewArtifact(o.type_name, o.uri, o.sha256, o.size, o.properties)
                for n, o in outcome.outputs.items()
            }
            self.outputs[step.name] = self.meta.succeed_execution(execution_id, inputs, new)
            self.state[step.name] = ExecutionStatus.SUCCEEDED
            self._notify(step, attempt=flight.attempt, duration_s=outcome.duration_s)
            return
        error = outcome.error or "unknown error"
        if flight.attempt <= step.options.retries:
            delay = step.options.retry_backoff_s * 2 ** (flight.attempt - 1)
            self.retry_at[step.name] = (time.monotonic() + delay, flight.attempt + 1)
            self._notify(step, attempt=flight.attempt, error=f"{error} (retrying in {delay:g} s)")
            return
        self.meta.fail_execution(execution_id, error, outcome.traceback, flight.attempt)
        self.state[step.name] = ExecutionStatus.FAILED
        self.errors[step.name] = error
        self._notify(step, attempt=flight.attempt, duration_s=outcome.duration_s, error=error)
        self._skip_dependents(step.name)

    def _skip_dependents(self, failed: str) -> None:
        blocked = {failed}
        for step in self.order:
            if self.state[step.name] == ExecutionStatus.PENDING and blocked & set(step.upstream):
                blocked.add(step.name)
                self.meta.skip_execution(
                    self.exec_ids[step.name], f"upstream step {failed!r} failed"
                )
                self.state[step.name] = ExecutionStatus.SKIPPED
                self._notify(step, error=f"skipped: upstream step {failed!r} failed")
