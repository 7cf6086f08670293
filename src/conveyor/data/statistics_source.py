"""Where statistics read their data from: a DuckDB connection over Parquet files or a table.

:func:`open_source` turns what :func:`conveyor.data.statistics.compute_statistics` accepts into
a :class:`StatsSource`: a configured DuckDB connection (thread count, memory limit, a private
spill folder), the SQL ``FROM`` clause that reads the data, its columns with DuckDB types, its
row count, and a deterministic sample of rows. The numeric and categorical passes only build
SQL on top of it, and every query goes through :meth:`StatsSource.query`, which turns DuckDB's
errors into :class:`~conveyor.data.errors.DataSourceError` naming the source.

Parquet files are scanned by DuckDB in row groups, in parallel and out of core, so memory stays
bounded by ``memory_limit`` whatever the row count. CSV and JSON-lines files are read whole
through :mod:`conveyor.data.sources` (strict parsing, errors that name line and column);
in-memory tables are scanned in place.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from conveyor.data.errors import DataError, DataSourceError
from conveyor.data.statistics_model import FeatureType

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "SOURCE_VIEW",
    "StatsSource",
    "feature_type",
    "open_source",
    "quote",
    "sample_stride",
    "source_files",
    "split_of",
]

DEFAULT_MEMORY_LIMIT = "1GB"
"""DuckDB's memory limit unless told otherwise; beyond it, DuckDB spills to a temporary folder."""
SOURCE_VIEW = "conveyor_source"
SAMPLE_VIEW = "conveyor_sample"
_SAMPLE_SEED = 20240601

_INT_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"}
_INT_TYPES |= {f"U{t}" for t in _INT_TYPES}
_FLOAT_TYPES = {"FLOAT", "DOUBLE"}
_STRING_TYPES = {"VARCHAR", "UUID"}


def quote(name: str) -> str:
    """A SQL identifier: ``a"b`` -> ``"a""b"``.

    Example:
        >>> quote('a"b')
        '"a""b"'
    """
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def feature_type(duckdb_type: str) -> FeatureType:
    """The feature type of a DuckDB column type; unknown types are analysed as strings.

    Example:
        >>> feature_type("DECIMAL(10,2)"), feature_type("TIMESTAMP WITH TIME ZONE")
        (<FeatureType.FLOAT: 'float'>, <FeatureType.DATETIME: 'datetime'>)
    """
    base = duckdb_type.split("(")[0].strip().upper()
    if base == "BOOLEAN":
        return FeatureType.BOOL
    if base in _INT_TYPES:
        return FeatureType.INT
    if base in _FLOAT_TYPES or base == "DECIMAL":
        return FeatureType.FLOAT
    if base == "DATE" or base.startswith("TIMESTAMP"):
        return FeatureType.DATETIME
    return FeatureType.STRING


@dataclass
class StatsSource:
    """An open data source: DuckDB connection, FROM clause, columns, rows, sample.

    Attributes:
        con: the DuckDB connection (configured threads, memory limit, spill folder).
        relation: SQL that reads the data, usable as ``FROM {relation}``.
        columns: (name, DuckDB type) of each column analysed, in column order.
        num_rows: rows in the source.
        description: how messages name the source (a file, a folder, "DataFrame").
        files: the Parquet files read (empty for in-memory data).
        threads: DuckDB's thread count, which the direct Parquet scans use too.
    """

    con: duckdb.DuckDBPyConnection
    relation: str
    columns: list[tuple[str, str]]
    num_rows: int
    description: str
    files: list[Path] = field(default_factory=list)
    memory_table: Any = None
    threads: int = 1

    def query(self, sql: str, params: dict[str, Any] | None = None) -> duckdb.DuckDBPyConnection:
        """Run ``sql``; DuckDB's errors become DataSourceError naming the source."""
        try:
            return self.con.execute(sql, params)
        except duckdb.OutOfMemoryException as exc:
            msg = f"out of memory computing statistics of {self.description}: {_first_line(exc)}"
            raise DataError(msg + "; raise memory_limit or lower threads") from exc
        except duckdb.Error as exc:
            raise DataSourceError(self._describe_error(exc)) from exc

    def _describe_error(self, exc: duckdb.Error) -> str:
        message = _first_line(exc)
        if self.files and not any(str(f) in message for f in self.files):
            return f"cannot read {self.description}: {message}"
        return f"cannot read Parquet: {message}" if self.files else f"{self.description}: {message}"

    def sample_sql(self, select: str, size: int) -> str:
        """SQL selecting ``select`` over about ``size`` rows picked deterministically.

        Parquet rows are picked systematically: every row whose number in its file is a
        multiple of a prime stride (so the same files give the same sample whatever the
        thread count, and periodic data is unlikely to line up with it); in-memory tables by
        a seeded draw of row positions (registered as a view).
        """
        if size >= self.num_rows:
            return f"SELECT {select} FROM {self.relation}"
        if self.memory_table is None:
            where = f"file_row_number % {sample_stride(self.num_rows, size)} = 0"
            return f"SELECT {select} FROM {self._parquet_call()} WHERE {where}"
        rng = np.random.default_rng(_SAMPLE_SEED)
        positions = np.sort(rng.choice(self.num_rows, size=size, replace=False))
        self.con.register(SAMPLE_VIEW, _take(self.memory_table, positions))
        return f"SELECT {select} FROM {SAMPLE_VIEW}"

    def file_list(self) -> str:
        """The Parquet files as a SQL list literal."""
        return "[" + ", ".join(_literal(str(f)) for f in self.files) + "]"

    def _parquet_call(self) -> str:
        return f"read_parquet({self.file_list()}, hive_partitioning = true, union_by_name = true)"


def sample_stride(num_rows: int, size: int) -> int:
    """The stride of a systematic sample of about ``size`` of ``num_rows`` rows: 1 (every row)
    when there are no more rows than that, else the smallest prime >= ``num_rows // size``.

    Example:
        >>> sample_stride(10_000_000, 2**18), sample_stride(100, 2**18)
        (41, 1)
    """
    return 1 if size >= num_rows else _prime_at_least(num_rows // size)


def _prime_at_least(n: int) -> int:
    """The smallest prime >= n (n is at most a few thousand here).

    Example:
        >>> _prime_at_least(38)
        41
    """
    candidate = max(n, 2)
    while any(candidate % d == 0 for d in range(2, math.isqrt(candidate) + 1)):
        candidate += 1
    return candidate


def _take(table: Any, positions: np.ndarray) -> Any:
    if isinstance(table, pa.Table):
        return table.take(pa.array(positions))
    return table.iloc[positions]


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


_PARQUET_SUFFIXES = (".parquet", ".pq")


def _natural_key(path: Path) -> list[Any]:
    text = path.as_posix()
    return [int(t) if i % 2 else t.lower() for i, t in enumerate(re.split(r"(\d+)", text))]


def _parquet_files(path: Path) -> list[Path] | None:
    """The Parquet files of a file or folder (hidden ``.x``/``_x`` names skipped), or None
    when anything else is there; then :mod:`conveyor.data.sources` decides (it is imported
    only then: it brings pandas and pyarrow.dataset, a quarter second to import)."""
    if path.is_file():
        return [path] if path.suffix.lower() in _PARQUET_SUFFIXES else None
    if not path.is_dir():
        return None
    found = []
    for root, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith((".", "_"))]
        for name in names:
            if name.startswith((".", "_")):
                continue
            if not name.lower().endswith(_PARQUET_SUFFIXES):
                return None
            found.append(Path(root) / name)
    return sorted(found, key=_natural_key) or None


def _resolve(path: str | os.PathLike[str]) -> list[Path]:
    found = _parquet_files(Path(os.path.expanduser(os.fspath(path))))
    if found is not None:
        return found
    from conveyor.data.sources import resolve_files

    return resolve_files(path)


def source_files(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The data files of a file, folder (recursive) or list of them, in natural order.

    Raises:
        DataSourceError: a path does not exist, or a folder holds no data files.
    """
    if isinstance(source, str | os.PathLike):
        return _resolve(source)
    files = [f for item in source for f in _resolve(item)]
    if not files:
        raise DataSourceError("no data files given")
    return files


def _check_parquet_files(files: Sequence[Path]) -> None:
    """Name an empty file before DuckDB reports it as "too small to be a Parquet file"."""
    for path in files:
        if path.stat().st_size == 0:
            raise DataSourceError(f"{path} is empty (0 bytes), not a Parquet file")


def _connect(threads: int | None, memory_limit: str | None, spill: str) -> Any:
    config: dict[str, Any] = {
        "memory_limit": memory_limit or DEFAULT_MEMORY_LIMIT,
        "temp_directory": spill,
        "preserve_insertion_order": False,
    }
    if threads is not None:
        if threads < 1:
            raise DataError(f"threads must be at least 1, got {threads}")
        config["threads"] = threads
    try:
        con = duckdb.connect(config=config)
        con.execute("SET enable_progress_bar = false")  # the CLI draws its own
        return con
    except duckdb.Error as exc:
        raise DataError(f"cannot configure DuckDB ({config}): {_first_line(exc)}") from exc


def _describe(source: Any, files: Sequence[Path]) -> str:
    if isinstance(source, str | os.PathLike):
        return str(source)
    if len(files) == 1:
        return str(files[0])
    if files:
        return f"{len(files)} files ({files[0]}, ...)"
    return type(source).__name__


def _columns(con: Any, relation: str, exclude: Sequence[str]) -> list[tuple[str, str]]:
    rows = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    return [(str(name), str(kind)) for name, kind, *_ in rows if name not in exclude]


def _register_memory(con: Any, source: Any) -> tuple[str, Any]:
    if isinstance(source, pa.RecordBatch):
        source = pa.Table.from_batches([source])
    is_pandas = type(source).__module__.split(".")[0] == "pandas" and hasattr(source, "iloc")
    if not (isinstance(source, pa.Table) or is_pandas):
        raise DataSourceError(
            f"unsupported data source {type(source).__name__}: give a Parquet file, a folder, "
            "a list of files, a pyarrow Table or a pandas DataFrame"
        )
    con.register(SOURCE_VIEW, source)
    return SOURCE_VIEW, source


@contextmanager
def open_source(
    source: Any,
    *,
    threads: int | None = None,
    memory_limit: str | None = None,
    exclude: Sequence[str] = (),
) -> Iterator[StatsSource]:
    """Open ``source`` for statistics; the connection and its spill folder close on exit.

    ``source`` is a Parquet, CSV or JSON-lines file, a folder of them (recursive, hive
    partitions become columns), a list of files, a pyarrow Table or a pandas DataFrame.
    Columns named in ``exclude`` are left out (a ``split`` partition column, say).

    Example:
        >>> with open_source("data/", threads=2) as src:  # doctest: +SKIP
        ...     src.num_rows
        1000
    """
    with tempfile.TemporaryDirectory(prefix="conveyor-stats-") as spill:
        con = _connect(threads, memory_limit, spill)
        try:
            yield _open(con, source, exclude)
        finally:
            con.close()


def _open(con: Any, source: Any, exclude: Sequence[str]) -> StatsSource:
    is_path = isinstance(source, str | os.PathLike)
    if is_path or isinstance(source, list | tuple):
        files = source_files(source)
        if any(f.suffix.lower() not in _PARQUET_SUFFIXES for f in files):
            from conveyor.data.sources import read_files

            root = Path(source) if is_path and Path(source).is_dir() else None
            source = read_files(files, root=root)  # CSV / JSON: strict reader, read whole
            files = []
        _check_parquet_files(files)
    else:
        files = []
    stats = StatsSource(con, "", [], 0, _describe(source, files), files)
    if files:
        stats.relation = stats._parquet_call()
    else:
        stats.relation, stats.memory_table = _register_memory(con, source)
    stats.columns = _columns_checked(stats, exclude)
    ((threads,),) = stats.query("SELECT current_setting('threads')").fetchall()
    stats.threads = int(threads)
    ((rows,),) = stats.query(f"SELECT count(*) FROM {stats.relation}").fetchall()
    stats.num_rows = int(rows)
    return stats


def _columns_checked(stats: StatsSource, exclude: Sequence[str]) -> list[tuple[str, str]]:
    try:
        return _columns(stats.con, stats.relation, exclude)
    except duckdb.Error as exc:
        raise DataSourceError(stats._describe_error(exc)) from exc


_SPLIT_DIR = re.compile(r"^split=(?P<name>.+)$")


def split_of(path: Path, root: Path) -> str | None:
    """The NAME of the ``split=NAME`` folder ``path`` lies in under ``root``, if any.

    Example:
        >>> split_of(Path("d/split=train/part-0.parquet"), Path("d"))
        'train'
    """
    try:
        parts = path.relative_to(root).parts[:-1]
    except ValueError:
        parts = path.parts[:-1]
    names = [m.group("name") for m in map(_SPLIT_DIR.match, parts) if m]
    return names[-1] if names else None
