"""Reading values out of a parsed policy while collecting every problem with its line.

:class:`PolicyReader` wraps the ``tomllib`` data of one file and its :class:`TomlLines`. Each
typed getter (``string``, ``integer``, ``number``, ``duration``, ...) returns the value, or None
after recording a :class:`~conveyor.ct.errors.PolicyProblem` naming the line, the section and
the fix; the policy builder carries on, so one load reports all problems at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.ct.durations import parse_duration
from conveyor.ct.errors import PolicyError, PolicyProblem
from conveyor.ct.toml_lines import KeyPath, TomlLines
from conveyor.exceptions import did_you_mean

__all__ = ["PolicyReader", "Section", "toml_type"]


def toml_type(value: Any) -> str:
    """The TOML name of a parsed value's type, for messages (``a string``, ``an integer``)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time"


@dataclass(frozen=True)
class Section:
    """A table of the policy: its key path and how messages name it (``[controller]``)."""

    path: KeyPath
    where: str

    def at(self, *keys: str | int) -> KeyPath:
        """The key path of ``keys`` inside this section."""
        return self.path + keys


class PolicyReader:
    """Typed access to one policy file's values, collecting problems with line numbers.

    Example:
        >>> reader = PolicyReader("p.toml", "[controller]\\npoll = 5\\n")
        >>> reader.duration({"poll": 5}, "poll", Section(("controller",), "[controller]"))
        >>> print(reader.problems[0])
        p.toml:2: [controller]: poll must be a duration string such as "30s", "10m", "2h" or "1d", not an integer (5)
    """  # noqa: E501

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.lines = TomlLines(text)
        self.problems: list[PolicyProblem] = []

    def problem(self, path: KeyPath, where: str, message: str) -> None:
        """Record a problem at the line of ``path`` (or of its nearest defined parent)."""
        self.problems.append(PolicyProblem(self.file, self.lines.line_of(*path), where, message))

    def raise_if_any(self) -> None:
        """Raise :class:`PolicyError` with every recorded problem, if there is one."""
        if self.problems:
            raise PolicyError(self.problems)

    def failed(self, section: Section) -> bool:
        """Whether a problem was recorded in ``section`` (its object is then not built)."""
        return any(p.where == section.where for p in self.problems)

    def line(self, path: KeyPath) -> int | None:
        """The line of ``path``, if known."""
        return self.lines.line_of(*path)

    # -- structure -------------------------------------------------------------------------
    def table(self, value: Any, path: KeyPath, where: str, what: str) -> dict[str, Any] | None:
        """``value`` when it is a table, else record ``what must be a table``."""
        if isinstance(value, dict):
            return value
        self.problem(path, where, f"{what} must be a table, not {toml_type(value)}")
        return None

    def entries(self, raw: Any, name: str) -> list[tuple[Section, dict[str, Any]]]:
        """The tables of ``[[name]]``, each with its section (``[[alerts]] #2 "age-drift"``)."""
        if not isinstance(raw, list):
            self.problem(
                (name,),
                f"[[{name}]]",
                f"{name} must be an array of tables ([[{name}]]), not {toml_type(raw)}",
            )
            return []
        found: list[tuple[Section, dict[str, Any]]] = []
        for index, value in enumerate(raw):
            label = value.get("name") if isinstance(value, dict) else None
            shown = f' "{label}"' if isinstance(label, str) else ""
            section = Section((name, index), f"[[{name}]] #{index + 1}{shown}")
            table = self.table(value, section.path, section.where, f"[[{name}]] entry")
            if table is not None:
                found.append((section, table))
        return found

    def known_keys(
        self,
        table: Mapping[str, Any],
        allowed: Iterable[str],
        section: Section,
        elsewhere: Mapping[str, str] | None = None,
    ) -> None:
        """Record each key of ``table`` not in ``allowed``, with a hint.

        ``elsewhere`` maps keys that are valid in other variants of the section to a note
        saying where they belong (``"only for on = \\"cron\\" triggers"``).
        """
        valid = set(allowed)
        for key in table:
            if key in valid:
                continue
            if elsewhere and key in elsewhere:
                self.problem(section.at(key), section.where, f"key {key!r} is {elsewhere[key]}")
                continue
            hint = did_you_mean(key, valid)
            self.problem(section.at(key), section.where, f"unknown key {key!r}{hint}")

    def require(self, table: Mapping[str, Any], keys: Iterable[str], section: Section) -> bool:
        """Record each missing key; True when all are present."""
        missing = [k for k in keys if k not in table]
        for key in missing:
            self.problem(section.path, section.where, f"{key} is required")
        return not missing

    # -- values ----------------------------------------------------------------------------
    def _wrong(self, section: Section, key: str, expected: str, value: Any) -> None:
        shown = repr(value) if not isinstance(value, dict | list) else toml_type(value)[2:]
        self.problem(
            section.at(key),
            section.where,
            f"{key} must be {expected}, not {toml_type(value)} ({shown})",
        )

    def string(
        self, table: Mapping[str, Any], key: str, section: Section, *, required: bool = False
    ) -> str | None:
        """A non-empty string, or None (missing, or a problem recorded)."""
        if key not in table:
            if required:
                self.problem(section.path, section.where, f"{key} is required")
            return None
        value = table[key]
        if not isinstance(value, str):
            self._wrong(section, key, "a string", value)
            return None
        if not value.strip():
            self.problem(section.at(key), section.where, f"{key} must not be empty")
            return None
        return value

    def integer(
        self, table: Mapping[str, Any], key: str, section: Section, *, minimum: int | None = None
    ) -> int | None:
        """An integer (booleans refused) at least ``minimum``, or None."""
        if key not in table:
            return None
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int):
            self._wrong(section, key, "an integer", value)
            return None
        if minimum is not None and value < minimum:
            self.problem(section.at(key), section.where, f"{key} must be >= {minimum}, not {value}")
            return None
        return value

    def number(
        self,
        table: Mapping[str, Any],
        key: str,
        section: Section,
        *,
        low: float | None = None,
        high: float | None = None,
        open_interval: bool = False,
    ) -> float | None:
        """An integer or float within [low, high] (or (low, high)), or None."""
        if key not in table:
            return None
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._wrong(section, key, "a number", value)
            return None
        too_low = low is not None and (value <= low if open_interval else value < low)
        too_high = high is not None and (value >= high if open_interval else value > high)
        if too_low or too_high or value != value:  # NaN compares unequal to itself
            self.problem(
                section.at(key),
                section.where,
                f"{key} must be {_interval(low, high, open_interval)}, not {value}",
            )
            return None
        return float(value)

    def duration(
        self,
        table: Mapping[str, Any],
        key: str,
        section: Section,
        *,
        positive: bool = False,
    ) -> dt.timedelta | None:
        """A duration string (``"30s"``), greater than zero when ``positive``, or None."""
        if key not in table:
            return None
        value = table[key]
        if not isinstance(value, str):
            self._wrong(section, key, 'a duration string such as "30s", "10m", "2h" or "1d"', value)
            return None
        try:
            parsed = parse_duration(value)
        except ValueError as exc:
            self.problem(section.at(key), section.where, f"{key}: {exc}")
            return None
        if positive and not parsed:
            self.problem(section.at(key), section.where, f"{key} must be longer than 0s")
            return None
        return parsed

    def strings(
        self, table: Mapping[str, Any], key: str, section: Section
    ) -> tuple[str, ...] | None:
        """An array of non-empty strings, or None."""
        if key not in table:
            return None
        value = table[key]
        if not isinstance(value, list):
            self._wrong(section, key, "an array of strings", value)
            return None
        good = True
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                what = "an empty string" if isinstance(item, str) else toml_type(item)
                self.problem(
                    section.at(key, index),
                    section.where,
                    f"{key}[{index}] must be a non-empty string, not {what}",
                )
                good = False
        return tuple(value) if good else None


def _interval(low: float | None, high: float | None, open_interval: bool) -> str:
    if low is not None and high is not None:
        left, right = ("(", ")") if open_interval else ("[", "]")
        return f"a number in {left}{low:g}, {high:g}{right}"
    if low is not None:
        return f"a number {'>' if open_interval else '>='} {low:g}"
    if high is not None:
        return f"a number {'<' if open_interval else '<='} {high:g}"
    return "a number"
