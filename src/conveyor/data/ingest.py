"""Ingestion: read the selected spans of a source, split them, write Parquet deterministically.

:func:`ingest_to_folder` is the library function behind the ``ingest`` component. It reads
everything first (so bad input fails before a byte is written), splits the rows with
:mod:`conveyor.data.split`, then writes ``split=NAME/part-N.parquet`` into a staging folder that
is renamed into place: the output folder is complete or absent, never half-written.

The files are byte-identical for the same rows: rows in a fixed order (by row hash, or source
order), fixed row-group and file sizes, pinned Parquet options, and no schema metadata (pandas
and Arrow metadata would carry library versions; Parquet has no timestamps). Since the artifact
store addresses content, ingesting the same data again yields the same version and stores no
new bytes. The selected spans are held in memory as Arrow columns while they are split.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from conveyor.data.errors import DataError
from conveyor.data.sources import (
    FileFormat,
    Source,
    SqlQuery,
    add_partition_columns,
    combine_tables,
    describe_source,
    format_of,
    read_file,
    read_source,
)
from conveyor.data.spans import Span, SpanLayout, discover_spans, select_spans
from conveyor.data.split import DEFAULT_RATIOS, HASH_NAME, normalize_ratios, split_table

__all__ = ["ROWS_PER_FILE", "ROW_GROUP_SIZE", "IngestResult", "ingest_to_folder", "write_parquet"]

ROW_GROUP_SIZE = 128 * 1024
"""Rows per Parquet row group."""
ROWS_PER_FILE = 1_000_000
"""Rows per ``part-N.parquet`` file of a split."""
_WRITE_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": True,
    "version": "2.6",
    "data_page_version": "1.0",
    "store_schema": True,
}


@dataclass(frozen=True)
class IngestResult:
    """What :func:`ingest_to_folder` wrote.

    Attributes:
        folder: the output folder (``split=NAME/part-N.parquet`` inside).
        dataset: the dataset's name.
        source: a password-free description of the source.
        spans: number, label, fingerprint, files and rows of each span read, oldest first.
        rows: rows per split, in split order.
        columns: (name, Arrow type) of each column.
        split: how rows were split: key, ratios, stratify_by, hash, row_order.

    Example:
        >>> result = ingest_to_folder("landing/", "out/")  # doctest: +SKIP
        >>> result.rows
        {'train': 802, 'eval': 198}
    """

    folder: Path
    dataset: str
    source: str
    spans: list[dict[str, Any]]
    rows: dict[str, int]
    columns: list[tuple[str, str]]
    split: dict[str, Any] = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        """Rows over all splits."""
        return sum(self.rows.values())

    @property
    def properties(self) -> dict[str, Any]:
        """JSON properties for the Dataset artifact (``Dataset.from_path(folder, **props)``)."""
        return {
            "dataset": self.dataset,
            "source": self.source,
            "spans": self.spans,
            "num_rows": self.num_rows,
            "rows": self.rows,
            "splits": list(self.rows),
            "num_columns": len(self.columns),
            "columns": [{"name": n, "dtype": t} for n, t in self.columns],
            "split_by": self.split,
        }


def _default_name(source: Source) -> str:
    if isinstance(source, SqlQuery):
        return "query"
    if isinstance(source, str | os.PathLike):
        text = os.fspath(source)
        for part in reversed(Path(text).parts):
            if not any(c in part for c in "*?["):
                return Path(part).stem or "dataset"
    return "table"


def _table_span(table: pa.Table, label: str) -> dict[str, Any]:
    digest = hashlib.sha256(b"conveyor-table-v1\0" + str(table.schema).encode() + b"\0")
    for batch in table.to_batches():
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        digest.update(sink.getvalue().to_pybytes())
    return {"number": 1, "label": label, "fingerprint": digest.hexdigest(), "rows": table.num_rows}


def _read_spans(
    spans: Sequence[Span], options: Mapping[str, Any]
) -> tuple[pa.Table, list[dict[str, Any]]]:
    """Read the spans' files as one table; a column must keep its type across all files."""
    named: list[tuple[str, pa.Table]] = []
    described = []
    fmt = options.get("file_format")
    for span in spans:
        tables = [add_partition_columns(read_file(p, **options), p, span.root) for p in span.paths]
        named.extend((str(p), t) for p, t in zip(span.paths, tables, strict=True))
        described.append({**span.describe(), "rows": sum(t.num_rows for t in tables)})
    strict = all(format_of(p, fmt) == "parquet" for s in spans for p in s.paths)
    return combine_tables(named, strict=strict), described


def _plain(table: pa.Table) -> pa.Table:
    """The table without schema or field metadata, in one chunk per column."""
    schema = pa.schema([f.remove_metadata() for f in table.schema])
    return pa.Table.from_arrays(table.combine_chunks().columns, schema=schema)


def write_parquet(
    table: pa.Table,
    folder: Path,
    *,
    row_group_size: int = ROW_GROUP_SIZE,
    rows_per_file: int = ROWS_PER_FILE,
) -> list[Path]:
    """Write ``table`` as ``part-0.parquet``, ``part-1.parquet``, ... with pinned options.

    An empty table still gets ``part-0.parquet`` (its schema, no rows).

    Example:
        >>> write_parquet(pa.table({"x": [1, 2]}), Path("out/split=train"))  # doctest: +SKIP
        [PosixPath('out/split=train/part-0.parquet')]
    """
    folder.mkdir(parents=True, exist_ok=True)
    table = _plain(table)
    written = []
    for index, start in enumerate(range(0, max(table.num_rows, 1), rows_per_file)):
        path = folder / f"part-{index}.parquet"
        part = table.slice(start, rows_per_file)
        pq.write_table(part, path, row_group_size=row_group_size, **_WRITE_OPTIONS)
        written.append(path)
    return written


def _write_splits(parts: Mapping[str, pa.Table], out: Path, row_group_size: int) -> None:
    """Write every split into a staging folder next to ``out``, then rename it into place."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"output folder {out} exists and is not empty")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        for name, table in parts.items():
            write_parquet(table, staging / f"split={name}", row_group_size=row_group_size)
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"cannot write the dataset to {out}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _select(
    source: str | os.PathLike[str],
    spans: int | Sequence[Span],
    layout: SpanLayout,
    fmt: FileFormat | None,
) -> list[Span]:
    if not isinstance(spans, int):
        return list(spans)
    found = discover_spans(source, layout=layout, file_format=fmt)
    return select_spans(found, spans)


def ingest_to_folder(
    source: Source,
    out_folder: str | os.PathLike[str],
    *,
    name: str = "",
    spans: int | Sequence[Span] = 1,
    span_layout: SpanLayout = "auto",
    key: str | Sequence[str] | None = None,
    split_ratios: Mapping[str, float] = DEFAULT_RATIOS,
    stratify_by: str | None = None,
    row_order: Literal["hash", "source"] = "hash",
    file_format: FileFormat | None = None,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    column_types: Mapping[str, str] | None = None,
    row_group_size: int = ROW_GROUP_SIZE,
) -> IngestResult:
    """Read a source's latest span(s), split the rows, and write them as Parquet.

    Args:
        source: a path, glob or folder (see :mod:`conveyor.data.spans`), a
            :class:`~conveyor.data.sources.SqlQuery`, or an in-memory Arrow table or pandas
            DataFrame (these two are one span).
        out_folder: where to write; must not exist or be empty.
        name: the dataset's name (default: from the source).
        spans: how many of the latest spans to read (0: all), or the spans themselves.
        span_layout: "auto", "span", "date", "file" or "single".
        key: column(s) identifying a row, hashed to pick its split; None hashes the whole row.
        split_ratios: split name -> share, summing to 1 (zero shares are left out).
        stratify_by: a label column whose classes keep their share in every split.
        row_order: "hash" (rows sorted by their hash: independent of read order) or "source".
        file_format: "csv", "parquet" or "json" (default: from the suffixes).
        encoding: text encoding of CSV and JSON files.
        delimiter: CSV delimiter (default "," and tab for ``.tsv``).
        column_types: Arrow type names for CSV/JSON columns, e.g. ``{"zip": "string"}``.
        row_group_size: rows per Parquet row group.

    Raises:
        DataSourceError: the source cannot be read (names the file, line and column).
        DataError: bad ratios, key or output folder. Nothing is written in either case.

    Example:
        >>> result = ingest_to_folder("landing/", "out/", spans=3, key="user_id",
        ...                           split_ratios={"train": 0.7, "eval": 0.2, "test": 0.1})
        >>> sorted(p.name for p in Path("out").iterdir())  # doctest: +SKIP
        ['split=eval', 'split=test', 'split=train']
    """
    ratios = normalize_ratios(split_ratios)
    if row_order not in ("hash", "source"):
        raise DataError(f"row_order must be 'hash' or 'source', not {row_order!r}")
    options: dict[str, Any] = {
        "file_format": file_format,
        "encoding": encoding,
        "delimiter": delimiter,
        "column_types": column_types,
    }
    if isinstance(source, str | os.PathLike):
        selected = _select(source, spans, span_layout, file_format)
        table, described = _read_spans(selected, options)
    else:
        table = _plain(read_source(source, **options))
        label = "sql" if isinstance(source, SqlQuery) else "table"
        described = [_table_span(table, label)]
    table = _plain(table)
    parts = split_table(table, ratios, key=key, stratify_by=stratify_by, row_order=row_order)
    out = Path(out_folder).expanduser().absolute()
    _write_splits(parts, out, row_group_size)
    return IngestResult(
        folder=out,
        dataset=name or _default_name(source),
        source=describe_source(source),
        spans=described,
        rows={n: p.num_rows for n, p in parts.items()},
        columns=[(f.name, str(f.type)) for f in table.schema],
        split={
            "key": [key] if isinstance(key, str) else (list(key) if key else None),
            "ratios": ratios,
            "stratify_by": stratify_by,
            "hash": HASH_NAME,
            "row_order": row_order,
        },
    )
