"""How predictions are grouped into windows: :class:`WindowSpec` (light, no numpy).

See :mod:`conveyor.monitoring.windows` for how a spec cuts the log.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from conveyor.monitoring.errors import MonitoringError

__all__ = ["EPOCH", "WindowSpec", "micros"]

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def micros(delta: dt.timedelta) -> int:
    """A timedelta in whole microseconds (exact, unlike ``total_seconds``)."""
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True)
class WindowSpec:
    """How predictions are grouped into windows: exactly one of ``size`` or ``duration``.

    Args:
        size: Rows (predictions) per window.
        duration: Length of a time window (at least one millisecond).

    Raises:
        MonitoringError: Neither or both are given, or one is not positive.

    Example:
        >>> WindowSpec(size=1000).kind, WindowSpec(duration=dt.timedelta(hours=1)).kind
        ('count', 'time')
    """

    size: int | None = None
    duration: dt.timedelta | None = None

    def __post_init__(self) -> None:
        if (self.size is None) == (self.duration is None):
            raise MonitoringError(
                "a window needs exactly one of size (predictions per window, e.g. "
                "WindowSpec(size=1000)) or duration (e.g. WindowSpec(duration=timedelta(hours=1)))"
            )
        if self.size is not None and (isinstance(self.size, bool) or self.size < 1):
            raise MonitoringError(f"window size must be a positive integer, got {self.size!r}")
        if self.duration is not None and self.duration < dt.timedelta(milliseconds=1):
            raise MonitoringError(f"window duration must be at least 1 ms, got {self.duration!r}")

    @property
    def kind(self) -> str:
        """``"count"`` or ``"time"``."""
        return "count" if self.size is not None else "time"

    def describe(self) -> str:
        """``"1000 predictions"`` or ``"1:00:00"``."""
        return f"{self.size} predictions" if self.size is not None else str(self.duration)

    def to_dict(self) -> dict[str, float | int | None]:
        """``{"size": N}`` or ``{"duration_s": seconds}``."""
        if self.size is not None:
            return {"size": self.size}
        assert self.duration is not None
        return {"duration_s": self.duration.total_seconds()}
