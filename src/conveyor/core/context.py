"""What a running step can learn about itself: ``conveyor.current_step()``."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["StepContext", "current_step", "use_step_context"]


@dataclass
class StepContext:
    """Identity of the running step and a place to attach output properties.

    Example:
        >>> from conveyor import component, current_step
        >>> @component
        ... def count(values: list[int]) -> int:
        ...     ctx = current_step()
        ...     if ctx:
        ...         ctx.set_output_properties(note="counted")
        ...     return len(values)
    """

    run_id: int
    execution_id: int
    step: str
    attempt: int
    log_path: Path
    output_properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    metadata_url: str | None = field(default=None, repr=False)
    """URL of the run's metadata database (may hold a password), for steps that record
    into it themselves, such as ``register``; None when the runner does not share it."""
    artifact_url: str | None = None
    """URL of the run's artifact store."""

    def set_output_properties(self, output: str = "output", **properties: Any) -> None:
        """Attach JSON-able properties to an output artifact of this step."""
        self.output_properties.setdefault(output, {}).update(properties)


_CURRENT: contextvars.ContextVar[StepContext | None] = contextvars.ContextVar(
    "conveyor_step", default=None
)


def current_step() -> StepContext | None:
    """The step being executed in this process, or None outside a run."""
    return _CURRENT.get()


def use_step_context(ctx: StepContext | None) -> contextvars.Token[StepContext | None]:
    """Set the current step (runners only); returns a token for ``_CURRENT.reset``."""
    return _CURRENT.set(ctx)


def reset_step_context(token: contextvars.Token[StepContext | None]) -> None:
    _CURRENT.reset(token)
