"""Reading data sources into Arrow: files, globs, partition folders, SQL, in-memory tables.

A *source* is one of:

- a path to a CSV, Parquet or JSON-lines file, a glob (``data/*.csv``, ``logs/**/*.jsonl``) or a
  folder, read recursively (``key=value/`` folder names become string columns, hive style;
  names starting with ``.`` or ``_`` such as ``_SUCCESS`` are skipped);
- a :class:`SqlQuery`: a query run through a SQLAlchemy URL;
- an in-memory ``pyarrow.Table``, ``RecordBatch``, ``RecordBatchReader`` or ``pandas.DataFrame``.

Parsing is strict: a malformed CSV row, bytes that are not valid in the declared encoding, an empty
file, a column whose type differs between the files of one source, or an unreachable database
raise :class:`~conveyor.data.errors.DataSourceError` naming the file, the line and the column.
Diagnosis runs only when Arrow's fast reader has failed, so good files pay nothing for it.

Parquet types are declared, so they must agree across files (an all-null column aside); CSV and
JSON types are inferred per file, so they may widen (int64 in one file, double in another gives
double), and ``column_types`` fixes them when inference cannot agree.
"""

from __future__ import annotations

import codecs
import csv
import glob as globlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeAlias
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.json as pajson
import pyarrow.parquet as pq

from conveyor.data.errors import DataSourceError
from conveyor.data.sql_source import SqlQuery, mask_url, read_sql

__all__ = [
    "FORMAT_SUFFIXES",
    "FileFormat",
    "Source",
    "SqlQuery",
    "add_partition_columns",
    "combine_tables",
    "describe_source",
    "format_of",
    "from_memory",
    "mask_url",
    "natural_key",
    "open_source",
    "read_file",
    "read_files",
    "read_source",
    "read_sql",
    "resolve_files",
]

FileFormat: TypeAlias = Literal["csv", "parquet", "json"]
FORMAT_SUFFIXES: dict[str, FileFormat] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
}
_CHUNK = 1 << 22


Source: TypeAlias = "str | os.PathLike[str] | SqlQuery | pa.Table | pa.RecordBatchReader | Any"


# -- finding files ------------------------------------------------------------------------


def natural_key(text: str) -> list[Any]:
    """Sort key that orders embedded numbers by value: ``part-2`` before ``part-10``.

    Example:
        >>> sorted(["f10.csv", "f2.csv"], key=natural_key)
        ['f2.csv', 'f10.csv']
    """
    return [int(t) if i % 2 else t.lower() for i, t in enumerate(re.split(r"(\d+)", text))]


def _hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def format_of(path: Path, file_format: FileFormat | None = None) -> FileFormat:
    """The format of ``path``: ``file_format`` when given, else from the suffix.

    Example:
        >>> format_of(Path("a/b.jsonl"))
        'json'
    """
    if file_format is not None:
        if file_format not in ("csv", "parquet", "json"):
            raise DataSourceError(f"unknown file_format {file_format!r} (use csv, parquet, json)")
        return file_format
    found = FORMAT_SUFFIXES.get(path.suffix.lower())
    if found is None:
        known = ", ".join(sorted(FORMAT_SUFFIXES))
        msg = f"cannot tell the format of {path} from its suffix (known: {known}); "
        raise DataSourceError(msg + "pass file_format='csv', 'parquet' or 'json'")
    return found


def _files_under(folder: Path, file_format: FileFormat | None) -> list[Path]:
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not _hidden(d)]
        for name in names:
            if _hidden(name):
                continue
            if file_format is not None or Path(name).suffix.lower() in FORMAT_SUFFIXES:
                found.append(Path(root) / name)
    return found


def resolve_files(
    source: str | os.PathLike[str], *, file_format: FileFormat | None = None
) -> list[Path]:
    """The data files of a file, glob or folder, in natural order of their paths.

    Raises:
        DataSourceError: nothing exists there, or no data file was found.

    Example:
        >>> resolve_files("data/*.csv")  # doctest: +SKIP
        [PosixPath('data/day-2.csv'), PosixPath('data/day-10.csv')]
    """
    text = os.path.expanduser(os.fspath(source))
    if globlib.has_magic(text):
        matches = [Path(p) for p in globlib.glob(text, recursive=True)]
        files = [f for m in matches for f in ([m] if m.is_file() else _files_under(m, file_format))]
        if not files:
            raise DataSourceError(f"no data files match {text!r}")
    elif Path(text).is_file():
        files = [Path(text)]
    elif Path(text).is_dir():
        files = _files_under(Path(text), file_format)
        if not files:
            known = ", ".join(sorted(FORMAT_SUFFIXES))
            raise DataSourceError(f"folder {text} holds no data files ({known})")
    else:
        raise DataSourceError(f"data source {text} does not exist")
    return sorted(set(files), key=lambda p: natural_key(p.as_posix()))


# -- reading files ------------------------------------------------------------------------


def _check_not_empty(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataSourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if size == 0:
        raise DataSourceError(f"{path} is empty (0 bytes): no header, no rows")


def _is_utf8(encoding: str) -> bool:
    try:
        return codecs.lookup(encoding).name == "utf-8"
    except LookupError as exc:
        raise DataSourceError(f"unknown encoding {encoding!r}") from exc


def _line_at(path: Path, offset: int) -> tuple[int, bytes, bytes]:
    """(1-based line number, the line's bytes before ``offset``, the first line) of a file."""
    line, tail = 1, b""
    with open(path, "rb") as handle:
        first = handle.readline().rstrip(b"\r\n")
        handle.seek(0)
        remaining = offset
        while remaining > 0 and (chunk := handle.read(min(_CHUNK, remaining))):
            remaining -= len(chunk)
            line += chunk.count(b"\n")
            cut = chunk.rfind(b"\n")
            tail = chunk[cut + 1 :] if cut >= 0 else tail + chunk
    return line, tail, first


def _check_utf8(path: Path, column_at: Any) -> None:
    """Raise naming line, column and byte offset of the first byte that is not UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(_CHUNK)
            pending = len(decoder.getstate()[0])  # bytes of a character cut by the last chunk
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                _raise_encoding(path, offset - pending + exc.start, column_at)
            if not chunk:
                return
            offset += len(chunk)


def _raise_encoding(path: Path, offset: int, column_at: Any) -> NoReturn:
    line, before, first = _line_at(path, offset)
    with open(path, "rb") as handle:
        handle.seek(offset)
        byte = handle.read(1)[0]
    column = column_at(before.decode("utf-8", "replace"), first.decode("utf-8", "replace"))
    where = f"line {line}" + (f", column {column!r}" if column else "")
    raise DataSourceError(
        f"{path}: {where}: byte 0x{byte:02x} at offset {offset} is not valid UTF-8; "
        "the file is in another encoding: pass encoding='latin-1' (or 'cp1252')"
    )


def _csv_column_at(delimiter: str) -> Any:
    def column_at(before: str, header: str) -> str | None:
        names = next(csv.reader([header], delimiter=delimiter), [])
        index = len(next(csv.reader([before], delimiter=delimiter), [""])) - 1
        return names[index] if 0 <= index < len(names) else None

    return column_at


def _json_column_at(before: str, header: str) -> str | None:
    keys = re.findall(r'"((?:[^"\\]|\\.)*)"\s*:', before)
    return keys[-1] if keys else None


def _arrow_types(path: Path, column_types: Mapping[str, str] | None) -> dict[str, pa.DataType]:
    types = {}
    for name, alias in (column_types or {}).items():
        try:
            types[name] = pa.type_for_alias(alias)
        except ValueError as exc:
            msg = f"column_types[{name!r}] = {alias!r} is not an Arrow type (int64, string, ...)"
            raise DataSourceError(f"{path}: {msg}") from exc
    return types


def _read_csv(
    path: Path, encoding: str, delimiter: str | None, column_types: Mapping[str, str] | None
) -> pa.Table:
    delim = delimiter or ("\t" if path.suffix.lower() == ".tsv" else ",")
    if _is_utf8(encoding):
        _check_utf8(path, _csv_column_at(delim))
    types = _arrow_types(path, column_types)
    try:
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(encoding=encoding),
            parse_options=pacsv.ParseOptions(delimiter=delim),
            convert_options=pacsv.ConvertOptions(column_types=types),
        )
    except pa.ArrowInvalid as exc:
        raise _diagnose_csv(path, encoding, delim, str(exc)) from exc


def _diagnose_csv(path: Path, encoding: str, delim: str, message: str) -> DataSourceError:
    """Find the row and column behind Arrow's CSV error, reading the file with ``csv``."""
    if "Empty CSV file" in message:
        return DataSourceError(f"{path} holds no header and no rows (only blank lines)")
    bad = re.search(r"column #(\d+): .*?invalid value '(.*)'", message)
    text_encoding = "utf-8-sig" if _is_utf8(encoding) else encoding
    with open(path, newline="", encoding=text_encoding) as handle:
        reader = csv.reader(handle, delimiter=delim)
        try:
            header = next(reader, [])
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    return _field_count_error(path, reader.line_num, header, row)
                if bad and row[int(bad[1])] == bad[2]:
                    name = header[int(bad[1])]
                    why = message.split(": ", 1)[-1]
                    line = reader.line_num
                    return DataSourceError(f"{path}: line {line}, column {name!r}: {why}")
        except csv.Error as exc:
            return DataSourceError(f"{path}: line {reader.line_num}: malformed CSV: {exc}")
    return DataSourceError(f"{path}: cannot parse CSV: {message.splitlines()[0]}")


def _field_count_error(path: Path, line: int, header: list[str], row: list[str]) -> DataSourceError:
    shown = ", ".join(repr(h) for h in header[:8]) + (", ..." if len(header) > 8 else "")
    head = f"{path}: line {line}: malformed row: {len(row)} fields, the header has {len(header)}"
    if len(row) > len(header):
        extra = row[len(header)]
        detail = f"value {extra[:40]!r} comes after the last column {header[-1]!r}"
    else:
        detail = f"column {header[len(row)]!r} and those after it are missing"
    return DataSourceError(f"{head} ({shown}); {detail}; check the delimiter and quoting")


def _read_json(path: Path, encoding: str, column_types: Mapping[str, str] | None) -> pa.Table:
    if _is_utf8(encoding):
        _check_utf8(path, _json_column_at)
        source: Any = path
    else:  # Arrow reads JSON as UTF-8 only
        source = pa.BufferReader(path.read_bytes().decode(encoding).encode("utf-8"))
    with open(path, "rb") as handle:
        if handle.read(4096).lstrip().startswith(b"["):
            msg = "is a JSON array; conveyor reads JSON lines (one object per line)"
            raise DataSourceError(f"{path} {msg}")
    types = _arrow_types(path, column_types)
    options = pajson.ParseOptions(
        explicit_schema=pa.schema(types) if types else None, unexpected_field_behavior="infer"
    )
    try:
        return pajson.read_json(source, parse_options=options)
    except pa.ArrowInvalid as exc:
        raise _diagnose_json(path, encoding, str(exc)) from exc


def _json_kind(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object" if isinstance(value, dict) else "array"


def _diagnose_json(path: Path, encoding: str, message: str) -> DataSourceError:
    """Find the line and column behind Arrow's JSON error, reading the file with ``json``."""
    seen: dict[str, tuple[str, int]] = {}
    with open(path, encoding=encoding) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                return DataSourceError(f"{path}: line {number}: invalid JSON: {exc}")
            if not isinstance(record, dict):
                kind = _json_kind(record) or "null"
                return DataSourceError(f"{path}: line {number}: a JSON {kind}, not an object")
            for key, value in record.items():
                found = _json_kind(value)
                if found is None:
                    continue
                first, first_line = seen.setdefault(key, (found, number))
                if first != found:
                    return DataSourceError(
                        f"{path}: line {number}, column {key!r}: a {found} here but a {first} "
                        f"on line {first_line}; fix the data or pass column_types={{{key!r}: ...}}"
                    )
    return DataSourceError(f"{path}: cannot parse JSON lines: {message.splitlines()[0]}")


def _read_parquet(path: Path) -> pa.Table:
    try:
        return pq.ParquetFile(path).read()
    except (pa.ArrowException, OSError) as exc:
        raise DataSourceError(f"{path} is not a readable Parquet file: {exc}") from exc


def read_file(
    path: str | os.PathLike[str],
    *,
    file_format: FileFormat | None = None,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    column_types: Mapping[str, str] | None = None,
) -> pa.Table:
    """Read one CSV, Parquet or JSON-lines file strictly.

    Args:
        path: the file.
        file_format: "csv", "parquet" or "json"; by default from the suffix.
        encoding: text encoding of CSV and JSON files.
        delimiter: CSV delimiter (default "," and tab for ``.tsv``).
        column_types: Arrow type names for CSV/JSON columns whose inferred type is wrong,
            e.g. ``{"zip": "string"}``.

    Raises:
        DataSourceError: naming the file, line and column at fault.

    Example:
        >>> read_file("data/day-1.csv", column_types={"zip": "string"}).num_rows  # doctest: +SKIP
        1200
    """
    path = Path(path)
    fmt = format_of(path, file_format)
    _check_not_empty(path)
    if fmt == "csv":
        table = _read_csv(path, encoding, delimiter, column_types)
    elif fmt == "json":
        table = _read_json(path, encoding, column_types)
    else:
        table = _read_parquet(path)
    if table.num_columns == 0:
        raise DataSourceError(f"{path} holds no data (no columns)")
    duplicated = sorted({n for n in table.column_names if table.column_names.count(n) > 1})
    if duplicated:
        raise DataSourceError(f"{path}: column {duplicated[0]!r} appears more than once")
    return table


def add_partition_columns(table: pa.Table, path: Path, root: Path | None) -> pa.Table:
    """Add the ``key=value`` folder names between ``root`` and ``path`` as string columns.

    Example:
        >>> t = add_partition_columns(pa.table({"x": [1]}), Path("s/country=FR/a.csv"), Path("s"))
        >>> t.column_names
        ['x', 'country']
    """
    if root is None:
        return table
    for part in path.parent.relative_to(root).parts:
        key, sep, value = part.partition("=")
        if sep and key and key not in table.column_names:
            column = pa.repeat(pa.scalar(unquote(value), pa.string()), table.num_rows)
            table = table.append_column(key, column)
    return table


def combine_tables(named: Sequence[tuple[str, pa.Table]], *, strict: bool) -> pa.Table:
    """Concatenate tables (named by file) into one; columns missing in some read as null.

    ``strict`` (Parquet) requires each column to keep its type; otherwise (CSV, JSON) types
    may widen as Arrow's permissive promotion allows (int64 + double -> double).

    Raises:
        DataSourceError: a column changed type, naming both files, the column and both types.

    Example:
        >>> combine_tables([("a", pa.table({"x": [1]})), ("b", pa.table({"x": [2]}))],
        ...                strict=True).num_rows
        2
    """
    first: dict[str, tuple[str, pa.DataType]] = {}
    for label, table in named:
        for field in table.schema:
            if pa.types.is_null(field.type):
                continue
            seen_in, seen_type = first.setdefault(field.name, (label, field.type))
            if seen_type != field.type and (strict or not _promotable(seen_type, field.type)):
                raise DataSourceError(
                    f"column {field.name!r} changed type: {seen_type} in {seen_in} but "
                    f"{field.type} in {label}; make the files agree"
                    + ("" if strict else f" or pass column_types={{{field.name!r}: 'string'}}")
                )
    tables = [t for _, t in named]
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="default" if strict else "permissive")


def _promotable(left: pa.DataType, right: pa.DataType) -> bool:
    try:
        pa.unify_schemas(
            [pa.schema([("c", left)]), pa.schema([("c", right)])], promote_options="permissive"
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return False
    return True


def read_files(
    files: Sequence[Path],
    *,
    root: Path | None = None,
    file_format: FileFormat | None = None,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    column_types: Mapping[str, str] | None = None,
) -> pa.Table:
    """Read files of one format into one table; ``root``'s ``key=value/`` folders add columns.

    Example:
        >>> read_files(resolve_files("sales/"), root=Path("sales")).column_names  # doctest: +SKIP
        ['amount', 'country']
    """
    if not files:
        raise DataSourceError("no files to read")
    formats = {format_of(Path(f), file_format) for f in files}
    if len(formats) > 1:
        raise DataSourceError(f"the files mix formats ({', '.join(sorted(formats))}): {files[0]}")
    named = []
    for path in files:
        table = read_file(
            path,
            file_format=file_format,
            encoding=encoding,
            delimiter=delimiter,
            column_types=column_types,
        )
        named.append((str(path), add_partition_columns(table, Path(path), root)))
    return combine_tables(named, strict=formats == {"parquet"})


# -- SQL ----------------------------------------------------------------------------------


def from_memory(obj: Any) -> pa.Table:
    """An Arrow table from a ``pa.Table``, ``RecordBatch``, ``RecordBatchReader`` or DataFrame.

    Example:
        >>> from_memory(pd.DataFrame({"x": [1, 2]})).num_rows  # doctest: +SKIP
        2
    """
    if isinstance(obj, pa.Table):
        return obj
    if isinstance(obj, pa.RecordBatch):
        return pa.Table.from_batches([obj])
    if isinstance(obj, pa.RecordBatchReader):
        return obj.read_all()
    if type(obj).__module__.split(".")[0] == "pandas" and hasattr(obj, "columns"):
        try:
            return pa.Table.from_pandas(obj, preserve_index=None)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise DataSourceError(f"cannot convert the DataFrame to Arrow: {exc}") from exc
    raise DataSourceError(
        f"unsupported data source {type(obj).__name__}: give a path, glob, folder, SqlQuery, "
        "pyarrow Table or pandas DataFrame"
    )


def read_source(
    source: Source,
    *,
    file_format: FileFormat | None = None,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    column_types: Mapping[str, str] | None = None,
) -> pa.Table:
    """Read any source (path, glob, folder, :class:`SqlQuery`, in-memory table) into a table.

    Example:
        >>> read_source("data/*.csv", encoding="latin-1").num_rows  # doctest: +SKIP
        5000
        >>> read_source(SqlQuery("sqlite:///shop.db", "SELECT * FROM orders"))  # doctest: +SKIP
    """
    if isinstance(source, SqlQuery):
        return read_sql(source.url, source.query, timeout_s=source.timeout_s)
    if isinstance(source, str | os.PathLike):
        files = resolve_files(source, file_format=file_format)
        root = Path(source).expanduser() if Path(source).expanduser().is_dir() else None
        return read_files(
            files,
            root=root,
            file_format=file_format,
            encoding=encoding,
            delimiter=delimiter,
            column_types=column_types,
        )
    return from_memory(source)


def open_source(source: Source, **options: Any) -> pa.RecordBatchReader:
    """Stream a source as record batches; Parquet files are read batch by batch.

    Parquet schemas are checked and unified from the file footers before any data is read.
    Other sources are read whole first (CSV and JSON types are known only after the last file).

    Example:
        >>> for batch in open_source("events/"):  # doctest: +SKIP
        ...     handle(batch)
    """
    fmt = options.get("file_format")
    if isinstance(source, str | os.PathLike):
        files = resolve_files(source, file_format=fmt)
        if all(format_of(f, fmt) == "parquet" for f in files):
            root = Path(source).expanduser() if Path(source).expanduser().is_dir() else None
            named = [(str(f), add_partition_columns(_empty(f), f, root)) for f in files]
            dataset = ds.dataset(
                [str(f) for f in files],
                schema=combine_tables(named, strict=True).schema,
                format="parquet",
                partitioning="hive" if root else None,
                partition_base_dir=str(root) if root else None,
            )
            return dataset.scanner().to_reader()
    return read_source(source, **options).to_reader()


def _empty(path: Path) -> pa.Table:
    _check_not_empty(path)
    try:
        return pq.read_schema(path).empty_table()
    except (pa.ArrowException, OSError) as exc:
        raise DataSourceError(f"{path} is not a readable Parquet file: {exc}") from exc


def describe_source(source: Source) -> str:
    """A short, password-free description of a source for messages and properties.

    Example:
        >>> describe_source("data/*.csv")
        'files data/*.csv'
    """
    if isinstance(source, SqlQuery):
        return source.describe()
    if isinstance(source, str | os.PathLike):
        return f"files {os.fspath(source)}"
    return f"in-memory {type(source).__module__.split('.')[0]} {type(source).__name__}"
