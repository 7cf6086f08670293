"""Errors of continuous training: a policy that cannot be used, a trigger request refused.

They hang under :class:`conveyor.exceptions.ConveyorError` (exit code 2 in the CLI)::

    ConveyorError
    └── ConfigError
        └── PolicyError               the policy file has problems (all of them, with lines)
    └── TriggerError                  a trigger request or a trigger's input is invalid

A :class:`PolicyError` carries every :class:`PolicyProblem` found in one pass, so a user fixes
a file once instead of once per mistake; its message has one ``FILE:LINE: where: what`` line per
problem, in line order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from conveyor.exceptions import ConfigError, ConveyorError

__all__ = ["PolicyError", "PolicyProblem", "TriggerError", "display_path"]

_SHOWN = 50  # a file with more problems than this is probably not a policy file at all


@dataclass(frozen=True)
class PolicyProblem:
    """One thing wrong with a policy file.

    Attributes:
        file: The policy file (as the user named it, or relative to the current directory).
        line: The line at fault, or None when it cannot be told.
        where: The section, e.g. ``[[alerts]] #2 "age-drift"``.
        message: What is wrong and how to fix it.
    """

    file: str
    line: int | None
    where: str
    message: str

    def __str__(self) -> str:
        place = f"{self.file}:{self.line}" if self.line is not None else self.file
        where = f" {self.where}:" if self.where else ""
        return f"{place}:{where} {self.message}"


class PolicyError(ConfigError):
    """A policy file has one or more problems; the controller must not start.

    Example:
        >>> problem = PolicyProblem("conveyor.toml", 17, '[[alerts]] #2 "age-drift"',
        ...                         "metric 'acuracy' is not a metric (did you mean 'accuracy'?)")
        >>> print(PolicyError([problem]))
        conveyor.toml has 1 problem; fix it before the controller starts:
          conveyor.toml:17: [[alerts]] #2 "age-drift": metric 'acuracy' is not a metric (did you mean 'accuracy'?)
    """  # noqa: E501

    def __init__(self, problems: Sequence[PolicyProblem]) -> None:
        self.problems: tuple[PolicyProblem, ...] = tuple(
            sorted(problems, key=lambda p: (p.line is None, p.line or 0))
        )
        super().__init__(self._render())

    def _render(self) -> str:
        files = sorted({p.file for p in self.problems}) or ["the policy"]
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        pronoun = "it" if count == 1 else "them"
        where = ", ".join(files)
        lines = [f"{where} has {count} {noun}; fix {pronoun} before the controller starts:"]
        lines += [f"  {p}" for p in self.problems[:_SHOWN]]
        if count > _SHOWN:
            lines.append(f"  ... and {count - _SHOWN} more")
        return "\n".join(lines)


class TriggerError(ConveyorError):
    """A trigger request is invalid (unknown pipeline, naive clock, corrupt queue file)."""


def display_path(path: Path) -> str:
    """``path`` relative to the current directory when it is below it, else as is."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
