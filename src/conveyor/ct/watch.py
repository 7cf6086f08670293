"""What a ``new_data`` trigger watches: a folder of spans, or a table with a span column.

A folder (or glob) is read with :func:`conveyor.data.spans.discover_spans`, so a span is what
``ingest`` reads: ``span=N/`` and ``date=YYYY-MM-DD/`` sub-folders, or one file per span with
``layout = "file"``, numbered and ordered the same way. A table is a SQLAlchemy URL, a table name
and a span column: each distinct value of the column is a span, numbered by the value (an
integer, or a date read as ``YYYYMMDD``). Looking is I/O and happens here, once per poll; the
triggers then compare numbers without touching anything.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from conveyor.ct.errors import TriggerError

__all__ = ["IDENTIFIER", "SeenSpan", "Watch", "observe_spans"]

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")
"""A table (``orders`` or ``schema.orders``) or column name that may be written into SQL as is."""


@dataclass(frozen=True)
class SeenSpan:
    """A span as a trigger sees it: enough to compare and to name it.

    Attributes:
        number: The span's number (``N`` of ``span=N``, ``YYYYMMDD`` of a date, a file's
            position, or the span column's value).
        label: The folder, file or ``column=value`` naming it.
    """

    number: int
    label: str

    def to_json(self) -> dict[str, Any]:
        """``{"number": ..., "label": ...}``."""
        return {"number": self.number, "label": self.label}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SeenSpan:
        """The inverse of :meth:`to_json`."""
        return cls(int(data["number"]), str(data["label"]))


@dataclass(frozen=True)
class Watch:
    """Where new data arrives.

    Attributes:
        location: An absolute folder or glob, or a SQLAlchemy URL.
        layout: The span layout of a folder (``auto``, ``span``, ``date`` or ``file``).
        table: For a URL: the table (``orders`` or ``schema.orders``).
        span_column: For a URL: the column whose distinct values are the spans.
    """

    location: str
    layout: str = "auto"
    table: str | None = None
    span_column: str | None = None

    @property
    def is_table(self) -> bool:
        """Whether this watches a database table rather than files."""
        return self.table is not None

    def describe(self) -> str:
        """Short text for messages: the folder, or ``table.column at URL`` (password masked)."""
        if not self.is_table:
            return self.location
        return f"{self.table}.{self.span_column} at {_mask(self.location)}"


def _mask(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)


def span_number(value: Any, column: str) -> int:
    """A span column's value as a span number: integers as is, dates as ``YYYYMMDD``."""
    if isinstance(value, bool):
        raise TriggerError(f"span column {column!r} holds booleans; use integers or dates")
    if isinstance(value, int):
        return value
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return value.year * 10000 + value.month * 100 + value.day
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        return span_number(dt.date.fromisoformat(text[:10]), column)
    except ValueError:
        raise TriggerError(
            f"span column {column!r} holds {text!r}, neither an integer nor a date"
        ) from None


def _table_spans(watch: Watch) -> tuple[SeenSpan, ...]:
    from conveyor.data.sql_source import read_sql

    if watch.table is None or watch.span_column is None:
        raise TriggerError(f"watch {watch.location!r} needs both a table and a span_column")
    column = watch.span_column
    # Both names were checked against IDENTIFIER when the policy was loaded.
    query = f"SELECT DISTINCT {column} FROM {watch.table} WHERE {column} IS NOT NULL"
    values = read_sql(watch.location, query).column(0).to_pylist()
    spans: dict[int, SeenSpan] = {}
    for value in values:
        number = span_number(value, column)
        spans.setdefault(number, SeenSpan(number, f"{column}={value}"))
    return tuple(spans[n] for n in sorted(spans))


def observe_spans(watch: Watch) -> tuple[SeenSpan, ...]:
    """The spans visible at ``watch`` now, oldest first (I/O: lists files or queries the table).

    Raises:
        DataSourceError: the folder is missing or holds no data, the database cannot be reached.
        TriggerError: a span column value is neither an integer nor a date.

    Example:
        >>> [s.label for s in observe_spans(Watch("/data/census"))]  # doctest: +SKIP
        ['span=1', 'span=2', 'span=3']
    """
    if watch.is_table:
        return _table_spans(watch)
    from conveyor.data.spans import discover_spans

    spans = discover_spans(watch.location, layout=watch.layout)  # type: ignore[arg-type]
    return tuple(SeenSpan(s.number, s.label) for s in spans)
