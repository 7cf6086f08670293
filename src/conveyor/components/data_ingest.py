"""The standard ``ingest`` components: a source's latest spans -> a split, versioned Dataset.

Written with the public API only. The Dataset folder holds ``split=NAME/part-N.parquet``
(see :func:`conveyor.data.ingest.ingest_to_folder`); its properties name the dataset, the spans
read with their fingerprints, the rows per split, the columns and the source::

    from conveyor import pipeline
    from conveyor.components import ingest, statistics

    @pipeline
    def census(window: int = 1) -> None:
        data = ingest(source="landing/", name="census", span_window=window, key="id")
        statistics(data, label="income")

``ingest`` always runs (``cache=False``): its parameters name a folder whose content changes
when a span arrives, so a cache keyed on them would serve stale data. Re-ingesting unchanged
data writes byte-identical files, so it is the same artifact version (same sha256), stored
once, and every step after it is served from the cache.

A pipeline passes a file, folder, glob or SQL source as parameters (they are JSON); a table
built in memory by an earlier step goes through ``ingest_table``.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import pandas as pd

from conveyor import Dataset, component
from conveyor.data.errors import DataSourceError
from conveyor.data.ingest import ingest_to_folder
from conveyor.data.sources import FileFormat, Source, SqlQuery
from conveyor.data.spans import Span, SpanLayout, discover_spans, select_spans

__all__ = ["ingest", "ingest_table"]


def choose_spans(
    source: str,
    layout: SpanLayout,
    file_format: FileFormat | None,
    window: int,
    offset: int,
    until: int | None,
) -> list[Span]:
    """The spans to read: numbered <= ``until``, minus the newest ``offset``, last ``window``."""
    if offset < 0:
        raise DataSourceError(f"span_offset must be >= 0, not {offset}")
    spans = discover_spans(source, layout=layout, file_format=file_format)
    if until is not None:
        spans = [s for s in spans if s.number <= until]
    spans = sorted(spans, key=lambda s: s.number)
    if offset:
        spans = spans[:-offset]
    if not spans:
        raise DataSourceError(
            f"{source}: no span left to read (until_span={until}, span_offset={offset})"
        )
    return select_spans(spans, window)


def _ratios(train: float, eval: float, test: float) -> dict[str, float]:
    return {"train": train, "eval": eval, "test": test}


def _to_dataset(source: Source, **options: Any) -> Dataset:
    """Ingest into a temporary folder that lives as long as the returned handle."""
    scratch = Path(tempfile.mkdtemp(prefix="conveyor-ingest-"))
    try:
        result = ingest_to_folder(source, scratch / "dataset", **options)
        dataset = Dataset.from_path(result.folder, **result.properties)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    # The runner copies the folder into the store after the step returns, then drops the
    # handle: remove the scratch folder then (or when the process exits).
    weakref.finalize(dataset, shutil.rmtree, scratch, True)
    return dataset


@component(cache=False)
def ingest(
    source: str,
    name: str = "",
    span_window: int = 1,
    span_layout: SpanLayout = "auto",
    key: str | None = None,
    train: float = 0.8,
    eval: float = 0.2,
    test: float = 0.0,
    stratify_by: str | None = None,
    sql: str | None = None,
    span_offset: int = 0,
    until_span: int | None = None,
    file_format: FileFormat | None = None,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    column_types: dict[str, str] | None = None,
) -> Dataset:
    """Read the latest span(s) of a source and store them as a split, versioned Dataset.

    Args:
        source: a file, glob or folder (``span=N/``, ``date=YYYY-MM-DD/`` sub-folders are
            spans); with ``sql``, a SQLAlchemy URL.
        name: the dataset's name (default: the folder or file name).
        span_window: how many of the latest spans to read; 0 reads them all.
        span_offset: skip this many of the newest spans first (1: the span before the
            latest, e.g. the reference for drift).
        until_span: ignore spans numbered above this (replays the data as it was then).
        span_layout: "auto", "span", "date", "file" (each file a span) or "single".
        key: the column identifying a row (its hash picks the split); default: the whole row.
        train: share of rows for the train split.
        eval: share for the eval split.
        test: share for an optional test split (0: none). The shares must sum to 1.
        stratify_by: a label column whose classes keep their share in every split.
        sql: a query to run on the ``source`` URL.
        file_format: "csv", "parquet" or "json" when the suffixes do not tell.
        encoding: text encoding of CSV and JSON files.
        delimiter: CSV delimiter (default "," and tab for ``.tsv``).
        column_types: Arrow types for CSV/JSON columns, e.g. ``{"zip": "string"}``.

    Example:
        >>> @pipeline
        ... def daily() -> None:
        ...     data = ingest(source="landing/", span_window=7, key="order_id", test=0.1,
        ...                   train=0.7)
    """
    spans: int | list[Span] = span_window
    if not sql and (span_offset or until_span is not None):
        spans = choose_spans(source, span_layout, file_format, span_window, span_offset, until_span)
    return _to_dataset(
        SqlQuery(source, sql) if sql else source,
        name=name,
        spans=spans,
        span_layout=span_layout,
        key=key,
        split_ratios=_ratios(train, eval, test),
        stratify_by=stratify_by,
        file_format=file_format,
        encoding=encoding,
        delimiter=delimiter,
        column_types=column_types,
    )


@component
def ingest_table(
    table: pd.DataFrame,
    name: str = "table",
    key: str | None = None,
    train: float = 0.8,
    eval: float = 0.2,
    test: float = 0.0,
    stratify_by: str | None = None,
) -> Dataset:
    """Store a DataFrame made by an earlier step as a split, versioned Dataset.

    Example:
        >>> @pipeline
        ... def scraped() -> None:
        ...     ingest_table(scrape_prices(), name="prices", key="sku")
    """
    return _to_dataset(
        table,
        name=name,
        key=key,
        split_ratios=_ratios(train, eval, test),
        stratify_by=stratify_by,
    )
