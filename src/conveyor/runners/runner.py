"""The runner interface: what every runner (local, Ray, Kubeflow) offers.

A runner executes a built pipeline (its IR) step by step. Steps receive their inputs by
artifact URI only (never by shared memory), so the same IR runs on one machine or many.
Progress is reported to an optional observer through keyword-only hooks, so new hook
arguments never break existing observers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Protocol

from conveyor.core.ir import PipelineIR
from conveyor.store.metadata.records import ExecutionStatus, RunStatus

__all__ = ["RunObserver", "RunResult", "Runner", "StepUpdate"]


@dataclass(frozen=True)
class StepUpdate:
    """A step changed state."""

    run_id: int
    step: str
    execution_id: int
    status: ExecutionStatus
    attempt: int = 0
    duration_s: float | None = None
    cached: bool = False
    error: str | None = None


class RunObserver(Protocol):
    """Receives progress; every hook takes keyword arguments only."""

    def on_run_start(self, *, run_id: int, pipeline: str, steps: list[str]) -> None: ...

    def on_step_update(self, *, update: StepUpdate) -> None: ...

    def on_run_end(self, *, run_id: int, status: RunStatus, error: str | None) -> None: ...


@dataclass(frozen=True)
class RunResult:
    """How a run ended."""

    run_id: int
    status: RunStatus
    error: str | None = None
    step_status: dict[str, ExecutionStatus] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == RunStatus.SUCCEEDED


class Runner(ABC):
    """Executes pipeline IR and records everything in the metadata store."""

    @abstractmethod
    def run(
        self,
        ir: PipelineIR,
        *,
        no_cache: bool = False,
        observer: RunObserver | None = None,
    ) -> RunResult:
        """Run every step of ``ir``; never raises for a failing step (see RunResult)."""
