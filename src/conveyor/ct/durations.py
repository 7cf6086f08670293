"""Durations in policies: ``"30s"``, ``"10m"``, ``"2h"``, ``"1d"``, ``"1w"`` and sums ``"1h30m"``.

A duration is always a string with units: a bare TOML number is refused, because ``cooldown =
30`` reads as seconds to one person and minutes to another. :func:`format_duration` writes it
back with the largest units first; ``parse_duration(format_duration(d)) == d`` for every
whole-second ``d``.
"""

from __future__ import annotations

import datetime as dt
import re

__all__ = ["MAX_DURATION", "format_duration", "parse_duration"]

_UNITS: dict[str, int] = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_TERM = re.compile(r"(\d+)([wdhms])")
MAX_DURATION = dt.timedelta(days=36500)
"""The longest duration accepted (100 years): longer ones are typos, and overflow datetimes."""


def parse_duration(text: str) -> dt.timedelta:
    """Parse ``"30s"``, ``"10m"``, ``"2h"``, ``"1d"``, ``"1w"`` or a sum such as ``"1h30m"``.

    Raises:
        ValueError: ``text`` is not a duration (the message shows valid examples).

    Example:
        >>> parse_duration("1h30m")
        datetime.timedelta(seconds=5400)
    """
    stripped = text.strip()
    terms = _TERM.findall(stripped)
    if not stripped or "".join(n + u for n, u in terms) != stripped:
        raise ValueError(
            f'{text!r} is not a duration; write a number and a unit: "30s", "10m", "2h", '
            '"1d", "1w", or a sum like "1h30m"'
        )
    seconds = sum(int(number) * _UNITS[unit] for number, unit in terms)
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"duration {text!r} is longer than {MAX_DURATION.days} days")
    return dt.timedelta(seconds=seconds)


def format_duration(value: dt.timedelta) -> str:
    """The text of a duration of whole seconds, largest units first.

    Example:
        >>> format_duration(dt.timedelta(minutes=90))
        '1h30m'
    """
    seconds = int(value.total_seconds())
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {value}")
    if seconds == 0:
        return "0s"
    parts: list[str] = []
    for unit, size in _UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
