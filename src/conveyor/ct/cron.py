"""Cron schedules for triggers: five-field expressions evaluated in a time zone.

Parsing and iteration are done by `cronsim <https://pypi.org/project/cronsim/>`_ (imported on
first use; ``pip install 'conveyor-ml[ct]'``): it has no dependencies, is strict (``61 * * * *``
and ``0 0 30 2 *`` are refused), follows Debian cron's rules for day-of-month/day-of-week and for
daylight-saving jumps, and is maintained. Only the standard five fields are accepted (cronsim's
optional seconds field is refused: a retraining schedule finer than a minute is a mistake), plus
the nicknames ``@hourly``, ``@daily``/``@midnight``, ``@weekly``, ``@monthly``,
``@yearly``/``@annually``.

Times going in must be timezone-aware; times coming out are in UTC.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["CronSchedule", "parse_cron", "zone"]

_NICKNAMES: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_FIELDS = "minute hour day-of-month month day-of-week"


def _cronsim() -> Any:
    try:
        import cronsim
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        raise ValueError(
            "cron triggers need the cronsim package: pip install 'conveyor-ml[ct]'"
        ) from exc
    return cronsim


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``"UTC"``, ``"Europe/Berlin"``).

    Raises:
        ValueError: no such time zone.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f'time zone {name!r} is unknown; use an IANA name such as "UTC" or "Europe/Berlin"'
        ) from exc


def _aware(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} has no time zone; pass an aware datetime")
    return moment


@dataclass(frozen=True)
class CronSchedule:
    """A parsed cron expression in a time zone.

    Attributes:
        expression: The expression as written (a nickname stays a nickname).
        timezone: The IANA zone the fields are read in.

    Example:
        >>> s = parse_cron("*/15 * * * *")
        >>> s.next_after(dt.datetime(2024, 1, 1, 10, 7, tzinfo=dt.timezone.utc)).isoformat()
        '2024-01-01T10:15:00+00:00'
    """

    expression: str
    timezone: str = "UTC"

    @property
    def fields(self) -> str:
        """The five-field form of :attr:`expression`."""
        return _NICKNAMES.get(self.expression.strip().lower(), self.expression.strip())

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The first scheduled time strictly after ``moment``, in UTC."""
        local = _aware(moment).astimezone(zone(self.timezone))
        found = next(_cronsim().CronSim(self.fields, local))
        return found.astimezone(dt.UTC)

    def due_between(
        self, after: dt.datetime, until: dt.datetime, limit: int = 10_000
    ) -> list[dt.datetime]:
        """Scheduled times in ``(after, until]``, oldest first, at most ``limit`` of them."""
        local = _aware(after).astimezone(zone(self.timezone))
        found: list[dt.datetime] = []
        for moment in _cronsim().CronSim(self.fields, local):
            if moment > _aware(until) or len(found) >= limit:
                break
            found.append(moment.astimezone(dt.UTC))
        return found

    def explain(self) -> str:
        """The schedule in words, e.g. ``"Every 15th minute"`` (cronsim's wording), and zone."""
        start = dt.datetime(2000, 1, 1, tzinfo=zone(self.timezone))
        text = str(_cronsim().CronSim(self.fields, start).explain())
        return text if self.timezone == "UTC" else f"{text}, {self.timezone} time"

    def local(self, moment: dt.datetime) -> str:
        """``moment`` as UTC text, with the schedule's local time when that is not UTC."""
        text = f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"
        if self.timezone == "UTC":
            return text
        return f"{text} ({moment.astimezone(zone(self.timezone)):%H:%M} {self.timezone})"


def parse_cron(expression: str, timezone: str = "UTC") -> CronSchedule:
    """Check ``expression`` and ``timezone`` and return the schedule.

    Raises:
        ValueError: the expression does not parse (the message names the bad field) or the
            time zone is unknown.

    Example:
        >>> parse_cron("0 3 * * MON", "Europe/Berlin").explain()
        'At 03:00 on Monday, Europe/Berlin time'
    """
    zone(timezone)
    schedule = CronSchedule(expression, timezone)
    fields = schedule.fields.split()
    if len(fields) != 5:
        raise ValueError(
            f"cron {expression!r} has {len(fields)} field{'s' if len(fields) != 1 else ''}; "
            f"write 5 ({_FIELDS}) or a nickname ({', '.join(sorted(_NICKNAMES))})"
        )
    cronsim = _cronsim()
    try:
        cronsim.CronSim(schedule.fields, dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    except cronsim.CronSimError as exc:
        detail = str(exc).lower() or "invalid"
        raise ValueError(f"cron {expression!r} does not parse: {detail} ({_FIELDS})") from exc
    return schedule
