"""SQL sources: a query through a SQLAlchemy URL, read into Arrow.

The connection has a short timeout and errors name the URL with its password masked; a
missing SQLite file is refused rather than created.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from conveyor.data.errors import DataSourceError

__all__ = ["SqlQuery", "mask_url", "read_sql"]


@dataclass(frozen=True)
class SqlQuery:
    """A query to run through a SQLAlchemy URL.

    Example:
        >>> SqlQuery("sqlite:///shop.db", "SELECT * FROM orders").describe()
        'sql sqlite:///shop.db: SELECT * FROM orders'
    """

    url: str
    query: str
    timeout_s: float = 5.0

    def describe(self) -> str:
        """The masked URL and the start of the query, for messages and properties."""
        query = " ".join(self.query.split())
        return f"sql {mask_url(self.url)}: {query[:200]}"


def mask_url(url: str) -> str:
    """``url`` with its password masked, for messages.

    Example:
        >>> mask_url("postgresql://me:secret@db/prod")
        'postgresql://me:***@db/prod'
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)


def _sql_engine(url: str, timeout_s: float) -> Any:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    from sqlalchemy.pool import NullPool

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DataSourceError(f"invalid SQLAlchemy URL {mask_url(url)!r}: {exc}") from exc
    backend = parsed.get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "postgresql":
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        connect_args["connect_timeout"] = max(1, round(timeout_s))
    elif backend in ("mysql", "mariadb"):
        connect_args["connect_timeout"] = max(1, round(timeout_s))
    elif backend == "sqlite":
        database = parsed.database or ""
        file_db = database not in ("", ":memory:") and not database.startswith("file:")
        if file_db and not Path(database).is_file():
            raise DataSourceError(f"cannot connect to {mask_url(url)}: no such SQLite file")
        connect_args["timeout"] = timeout_s
    try:
        return create_engine(parsed, poolclass=NullPool, connect_args=connect_args)
    except (ArgumentError, ImportError) as exc:
        raise DataSourceError(f"cannot use {mask_url(url)}: {exc}") from exc


def read_sql(url: str, query: str, *, timeout_s: float = 5.0) -> pa.Table:
    """Run ``query`` through a SQLAlchemy URL and return the result as a table.

    Raises:
        DataSourceError: the database cannot be reached within ``timeout_s`` (the message names
            the URL with its password masked) or the query fails.

    Example:
        >>> read_sql("sqlite:///shop.db", "SELECT id, total FROM orders").num_rows  # doctest: +SKIP
        42
    """
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    engine = _sql_engine(url, timeout_s)
    try:
        try:
            conn = engine.connect()
        except SQLAlchemyError as exc:
            first = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0]
            raise DataSourceError(f"cannot connect to {mask_url(url)}: {first}") from exc
        with conn:
            try:
                result = conn.execute(text(query))
                names, rows = list(result.keys()), result.fetchall()
            except SQLAlchemyError as exc:
                first = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0]
                described = SqlQuery(url, query).describe()
                raise DataSourceError(f"query failed ({described}): {first}") from exc
    finally:
        engine.dispose()
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DataSourceError(f"query result has column {duplicated[0]!r} twice; alias it (AS)")
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    arrays = [_sql_column(n, list(v)) for n, v in zip(names, columns, strict=True)]
    return pa.Table.from_arrays(arrays, names=names)


def _sql_column(name: str, values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        kinds = [(i, type(v).__name__) for i, v in enumerate(values) if v is not None]
        first_row, first_kind = kinds[0]
        other = next(((i, k) for i, k in kinds if k != first_kind), None)
        where = f"query result column {name!r}"
        if other is None:
            msg = f"{where} holds {first_kind} values Arrow cannot store; CAST it in the query"
        else:
            msg = (
                f"{where}: row {other[0] + 1} holds a {other[1]} but row {first_row + 1} "
                f"a {first_kind}; CAST the column in the query"
            )
        raise DataSourceError(msg) from exc


# -- any source ---------------------------------------------------------------------------
