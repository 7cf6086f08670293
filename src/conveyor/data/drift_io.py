"""Reading the tables drift compares: CSV and Parquet files, pandas DataFrames, Arrow tables.

:func:`read_table` reads a CSV or Parquet file (or a folder of Parquet partitions) with
pyarrow, only the columns asked for, and turns every pyarrow error into a
:class:`~conveyor.data.errors.DataSourceError` that names the file (and the column, when
pyarrow says which). :class:`TableSource` gives the drift code one view of the three kinds of
input: the column names first (a file's schema, without reading the data), then the columns.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from conveyor.data.errors import DataSourceError

__all__ = ["TableSource", "read_columns", "read_table"]

PARQUET_SUFFIXES = {".parquet", ".pq", ".parq"}
CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
_MAX_DETAIL = 300


def read_table(path: str | os.PathLike[str], *, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a CSV or Parquet file (or a folder of Parquet files) into an Arrow table.

    The format comes from the suffix (``.csv``, ``.tsv``, ``.csv.gz``, ``.parquet``, ...);
    other names are sniffed (Parquet files start with ``PAR1``).

    Args:
        path: the file or folder.
        columns: read only these columns (all when None).

    Raises:
        DataSourceError: the file is missing, empty or unreadable; the message names it.

    Example:
        >>> table = read_table("reference.parquet", columns=["age"])  # doctest: +SKIP
    """
    file = Path(path)
    fmt = _format_of(file)
    try:
        if fmt == "parquet":
            return pq.read_table(file, columns=list(columns) if columns is not None else None)
        return _read_csv(file, columns)
    except (pa.ArrowException, OSError, KeyError) as exc:
        raise _source_error(file, fmt, exc) from exc


def read_columns(path: str | os.PathLike[str]) -> list[str]:
    """The column names of a CSV or Parquet file, without reading its data.

    Example:
        >>> read_columns("reference.csv")  # doctest: +SKIP
        ['age', 'city']
    """
    file = Path(path)
    fmt = _format_of(file)
    try:
        if fmt == "parquet":
            schema = pq.read_schema(file) if file.is_file() else pq.ParquetDataset(file).schema
            return list(schema.names)
        with pa_csv.open_csv(file, **_csv_options(file, None)) as reader:
            return list(reader.schema.names)
    except (pa.ArrowException, OSError, KeyError) as exc:
        raise _source_error(file, fmt, exc) from exc


def _format_of(file: Path) -> str:
    if not file.exists():
        raise DataSourceError(f"{file}: no such file or folder")
    if file.is_dir():
        return "parquet"
    if file.stat().st_size == 0:
        raise DataSourceError(f"{file}: the file is empty")
    suffixes = [s.lower() for s in file.suffixes]
    if suffixes and suffixes[-1] in PARQUET_SUFFIXES:
        return "parquet"
    if any(s in CSV_SUFFIXES for s in suffixes):
        return "csv"
    with file.open("rb") as handle:
        return "parquet" if handle.read(4) == b"PAR1" else "csv"


def _csv_options(file: Path, columns: Sequence[str] | None) -> dict[str, Any]:
    tab = any(s.lower() == ".tsv" for s in file.suffixes)
    convert = pa_csv.ConvertOptions(include_columns=list(columns) if columns is not None else None)
    return {
        "parse_options": pa_csv.ParseOptions(delimiter="\t" if tab else ","),
        "convert_options": convert,
    }


def _read_csv(file: Path, columns: Sequence[str] | None) -> pa.Table:
    table = pa_csv.read_csv(file, **_csv_options(file, columns))
    for name, kind_type in zip(table.column_names, table.schema.types, strict=True):
        # pyarrow reads text that is not valid UTF-8 as binary instead of failing.
        if pa.types.is_binary(kind_type) or pa.types.is_large_binary(kind_type):
            raise DataSourceError(
                f"{file}: column {name!r} is not valid UTF-8 text (is the file UTF-8? "
                "convert it, e.g. with iconv -f latin1 -t utf-8)"
            )
    return table


def _source_error(file: Path, fmt: str, exc: BaseException) -> DataSourceError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if len(detail) > _MAX_DETAIL:
        detail = detail[:_MAX_DETAIL] + "..."
    line = _ragged_line(file) if fmt == "csv" and "Expected" in detail else None
    where = f", line {line}" if line else ""
    return DataSourceError(f"{file}: cannot read as {fmt.upper()}{where}: {detail}")


def _ragged_line(file: Path) -> int | None:
    """The first line whose field count differs from the header's (pyarrow does not say)."""
    delimiter = "\t" if any(s.lower() == ".tsv" for s in file.suffixes) else ","
    try:
        with file.open(newline="", encoding="utf-8", errors="replace") as handle:
            rows = csv.reader(handle, delimiter=delimiter)
            width = len(next(rows, []))
            for row in rows:
                if row and len(row) != width:
                    return rows.line_num
    except (OSError, csv.Error):
        return None
    return None


class TableSource:
    """One input of a drift comparison: a DataFrame, an Arrow table or a file path.

    Example:
        >>> source = TableSource(pa.table({"a": [1, 2]}), "reference")
        >>> source.column_names
        ['a']
    """

    def __init__(self, data: Any, side: str) -> None:
        self.side = side
        self._data = data
        if isinstance(data, (str, os.PathLike)):
            self.column_names = read_columns(data)
        elif isinstance(data, pa.Table):
            self.column_names = list(data.column_names)
        elif hasattr(data, "columns") and hasattr(data, "iloc"):  # a pandas DataFrame
            self.column_names = [str(c) for c in data.columns]
        else:
            raise DataSourceError(
                f"{side}: cannot read {type(data).__name__} (give a pandas DataFrame, "
                "a pyarrow Table or the path of a CSV/Parquet file)"
            )

    @property
    def label(self) -> str:
        """How messages name this input: the file path, or 'reference'/'current'."""
        data = self._data
        return os.fspath(data) if isinstance(data, (str, os.PathLike)) else self.side

    def load(self, names: Sequence[str]) -> dict[str, Any]:
        """The named columns (Arrow chunked arrays, or pandas Series for a DataFrame)."""
        data = self._data
        if isinstance(data, (str, os.PathLike)):
            table = read_table(data, columns=names)
            return {name: table.column(name) for name in names}
        if isinstance(data, pa.Table):
            return {name: data.column(name) for name in names}
        by_name = {str(c): c for c in data.columns}
        return {name: data[by_name[name]] for name in names}
