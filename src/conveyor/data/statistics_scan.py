"""Numeric columns of Parquet files, scanned directly: pyarrow decodes, numpy sorts and counts.

The counting pass over a large dataset needs, per numeric column, exact counts ``#{x <= b}``
at a few dozen boundaries ``b`` (histogram edges, quantile estimates), the moments, and the
count, extremes, zeros and infinities. DuckDB's ``histogram(x, boundaries)`` does a branchy
binary search per value (about 10 ns a value here). numpy sorts a block of 65,536 doubles with
its vectorised quicksort in about 3 ns a value, and in a sorted block *every* count is one
binary search: the boundaries, zero, the infinities and NaN (sorted last); the extremes are
its ends. With the decoding (pyarrow, about 2.5 ns a value), that is a third of DuckDB's cost.

:func:`parquet_scan` picks the columns that can be read so: plain integer and float columns
(not decimals, datetimes, nested or hive partition columns, nor names that some file spells
differently); the others, and in-memory tables, stay with DuckDB. :class:`ParquetScan` then
reads row groups with pyarrow, ``threads`` tasks at a time (a task is one column of a large row
group, or several columns of a small one: ``TASK_VALUES``), each in ``BATCH_ROWS``-row batches:
memory stays bounded whatever the files, at about ``threads x TASK_VALUES x 8`` bytes of
values plus the compressed pages being read. Its two passes are those of the estimated-quantile
plan of :mod:`~conveyor.data.statistics_numeric`:

- :meth:`ParquetScan.sample`: every row whose number in its file is a multiple of a stride
  (the rows DuckDB's ``file_row_number % stride = 0`` picks), and the exact range of the
  columns whose footers lack one;
- :meth:`ParquetScan.count`: exact counts, extremes and moments (Chan, Golub and LeVeque's
  pairwise combination of per-block means and squared deviations: no cancellation, no shift
  needed); and for integer columns of small range, how often each value occurs (a
  ``bincount`` per block), from which everything about them follows exactly.

Results are combined in file, row-group and column order, never in completion order, so they
do not depend on the thread count.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from conveyor.data.errors import DataSourceError

__all__ = [
    "BATCH_ROWS",
    "MIN_GROUP_ROWS",
    "SORT_ROWS",
    "ColumnCounts",
    "ParquetScan",
    "parquet_scan",
]

BATCH_ROWS = 1 << 17
"""Rows decoded at a time per column."""
SORT_ROWS = 1 << 16
"""Values sorted at a time: 512 KiB of doubles, which stay in a core's L2 cache."""
MIN_GROUP_ROWS = 8192
"""Below this many rows per row group on average, the cost of a task (opening the file,
setting up a reader, numpy calls per block) outweighs the gain: DuckDB reads such data."""
READ_BUFFER = 1 << 20
"""Bytes of a column chunk read at a time (pyarrow reads a whole column chunk otherwise)."""
TASK_VALUES = 1 << 20
"""Values a task reads at most, about: a row group's columns are split into tasks of
``TASK_VALUES // rows`` columns, at least one (so large row groups are read one column per
task: in parallel even for a single row group, and in bounded memory; small ones several
columns per task, to spread the cost of a task)."""

_T = TypeVar("_T")


@dataclass(frozen=True)
class _Task:
    """Some columns of one row group of one file: the unit of work of a pass."""

    path: Path
    metadata: Any  # pq.FileMetaData, parsed once per file
    row_group: int
    first_row: int  # number in its file of the row group's first row
    columns: tuple[tuple[int, str], ...]  # (index among the numeric columns, name)


@dataclass
class ColumnCounts:
    """What a pass found in one column: over its finite values, except ``infinite``.
    ``at_most[k]`` is ``#{x <= boundaries[k]}``."""

    boundaries: np.ndarray
    finite: int = 0
    infinite: int = 0
    min: float = math.inf
    max: float = -math.inf
    zeros: int = 0
    mean: float = 0.0
    m2: float = 0.0  # sum of squared deviations from the mean
    at_most: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.at_most = np.zeros(len(self.boundaries), dtype=np.int64)

    def add_sorted(self, block: np.ndarray, scratch: np.ndarray) -> None:
        """Count one sorted block (NaN last, as numpy sorts); ``scratch`` is as long."""
        low = int(np.searchsorted(block, -math.inf, "right"))
        high = int(np.searchsorted(block, math.inf, "left"))
        self.infinite += low + int(np.searchsorted(block, math.inf, "right")) - high
        if high <= low:
            return
        finite = block[low:high]
        n = high - low
        self.min = min(self.min, float(finite[0]))
        self.max = max(self.max, float(finite[-1]))
        self.zeros += int(np.searchsorted(finite, 0.0, "right") - np.searchsorted(finite, 0.0))
        if len(self.boundaries):
            self.at_most += np.searchsorted(finite, self.boundaries, "right")
        mean = float(finite.sum()) / n
        deviations = np.subtract(finite, mean, out=scratch[:n])
        np.multiply(deviations, deviations, out=deviations)
        self.combine(n, mean, float(deviations.sum()))

    def combine(self, n: int, mean: float, m2: float) -> None:
        """Chan, Golub and LeVeque: the moments of the union with a disjoint part."""
        if not n:
            return
        total = self.finite + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.finite * n / total
        self.finite = total

    def merge(self, other: ColumnCounts) -> None:
        """Add the counts of the next part (merging in a fixed order keeps sums reproducible)."""
        self.infinite += other.infinite
        self.zeros += other.zeros
        self.at_most += other.at_most
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)
        self.combine(other.finite, other.mean, other.m2)


def _buffers(array: pa.Array) -> tuple[np.ndarray, Any, int]:
    """The values of a fixed-width numeric Arrow array as a numpy view of its buffer (what
    lies under a null is arbitrary), its validity bitmap (None when nothing is null) and the
    bit offset of the first value in that bitmap."""
    if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)):
        array = array.cast(pa.float64())  # a dictionary-encoded column, say
    if not len(array):
        return np.empty(0), None, 0
    validity, data = array.buffers()
    dtype = np.dtype(array.type.to_pandas_dtype())
    raw = np.frombuffer(data, dtype=dtype, count=array.offset + len(array))[array.offset :]
    return raw, validity if array.null_count else None, array.offset


def _raw(array: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """The values as :func:`_buffers` gives them, and which are valid (None: all are)."""
    raw, validity, offset = _buffers(array)
    if validity is None:
        return raw, None
    bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
    return raw, bits[offset : offset + len(raw)].view(np.bool_)


def _picked(array: pa.Array, positions: np.ndarray) -> np.ndarray:
    """The values at ``positions`` as float64, nulls as NaN (the others are not converted)."""
    raw, validity, offset = _buffers(array)
    values = raw[positions].astype(np.float64)
    if validity is not None:
        at = positions + offset
        bits = np.frombuffer(validity, dtype=np.uint8)
        values[(bits[at >> 3] >> (at & 7)) & 1 == 0] = math.nan
    return values


def _finite_range(array: pa.Array) -> tuple[float, float] | None:
    raw, valid = _raw(array)
    values = raw.astype(np.float64)
    keep = np.isfinite(values) if valid is None else np.isfinite(values) & valid
    return (float(values[keep].min()), float(values[keep].max())) if keep.any() else None


def _ascending(values: np.ndarray) -> bool:
    """Whether ``values`` are sorted already (ids, timestamps): checked in full only when
    their first 16 are, so that it costs next to nothing on data in no particular order."""
    head = values[:16]
    return bool((head[1:] >= head[:-1]).all() and (values[1:] >= values[:-1]).all())


class ParquetScan:
    """The plain numeric columns of a list of Parquet files, read by :class:`_Task`."""

    def __init__(self, tasks: list[_Task], threads: int, integers: set[int] | None = None) -> None:
        self.tasks = tasks
        self.threads = max(1, threads)
        self.integers = integers or set()  # columns that every file stores as integers
        self._open = threading.local()  # each thread's last opened file (tasks go by file)

    def only(self, columns: set[int]) -> ParquetScan:
        """The same scan, restricted to ``columns``."""
        tasks = []
        for task in self.tasks:
            wanted = tuple((i, name) for i, name in task.columns if i in columns)
            if wanted:
                tasks.append(replace(task, columns=wanted))
        return ParquetScan(tasks, self.threads, self.integers & columns)

    def _run(self, work: Callable[[_Task], _T]) -> list[_T]:
        """``work`` on every task, ``threads`` at a time; the results in task order."""

        def guarded(task: _Task) -> _T:
            try:
                return work(task)
            except (pa.ArrowException, OSError) as exc:
                raise DataSourceError(f"cannot read {task.path}: {exc}") from exc

        if self.threads == 1 or len(self.tasks) <= 1:
            return [guarded(task) for task in self.tasks]
        with ThreadPoolExecutor(self.threads, thread_name_prefix="conveyor-stats") as pool:
            return list(pool.map(guarded, self.tasks))

    def _batches(self, task: _Task) -> Iterator[pa.RecordBatch]:
        if getattr(self._open, "path", None) != task.path:
            self._open.path = task.path
            self._open.reader = pq.ParquetFile(
                task.path, metadata=task.metadata, buffer_size=READ_BUFFER, pre_buffer=False
            )
        reader: pq.ParquetFile = self._open.reader
        yield from reader.iter_batches(
            batch_size=BATCH_ROWS,
            row_groups=[task.row_group],
            columns=[name for _, name in task.columns],
            use_threads=False,
        )

    def sample(
        self, stride: int, ranges: set[int]
    ) -> tuple[dict[int, np.ndarray], dict[int, tuple[float, float]]]:
        """Sorted finite values of the rows whose number in their file is a multiple of
        ``stride``, by column index; and the exact (min, max) of the finite values of the
        columns in ``ranges`` that have any."""

        def work(task: _Task) -> dict[int, tuple[list[np.ndarray], list[float]]]:
            found: dict[int, tuple[list[np.ndarray], list[float]]] = {
                i: ([], []) for i, _ in task.columns
            }
            row = task.first_row
            for batch in self._batches(task):
                positions = np.arange(-row % stride, batch.num_rows, stride)
                for i, name in task.columns:
                    picked, extremes = found[i]
                    array = batch.column(name)
                    picked.append(_picked(array, positions))
                    if i in ranges and (span := _finite_range(array)) is not None:
                        extremes.extend(span)
                row += batch.num_rows
            return found

        picked: dict[int, list[np.ndarray]] = {}
        extremes: dict[int, list[float]] = {}
        for found in self._run(work):
            for i, (arrays, span) in found.items():
                picked.setdefault(i, []).extend(arrays)
                extremes.setdefault(i, []).extend(span)
        samples = {}
        for i, arrays in picked.items():
            values = np.concatenate(arrays) if arrays else np.empty(0)
            samples[i] = np.sort(values[np.isfinite(values)])
        return samples, {i: (min(v), max(v)) for i, v in extremes.items() if v}

    def count(
        self,
        boundaries: dict[int, np.ndarray],
        tallies: dict[int, tuple[int, int]] | None = None,
    ) -> tuple[dict[int, ColumnCounts], dict[int, np.ndarray | None]]:
        """One pass over all rows: exact counts of each column in ``boundaries`` (by column
        index); and for each integer column in ``tallies``, given as (low, high), how many
        times each value occurs (``[k]``: value ``low + k``), or None when some value lies
        outside that range (the footers that gave it were wrong)."""
        tallies = tallies or {}

        def work(task: _Task) -> tuple[dict[int, ColumnCounts], dict[int, np.ndarray | None]]:
            counted = {i: ColumnCounts(boundaries[i]) for i, _ in task.columns if i in boundaries}
            tallied: dict[int, np.ndarray | None] = {
                i: np.zeros(tallies[i][1] - tallies[i][0] + 1, dtype=np.int64)
                for i, _ in task.columns
                if i in tallies
            }
            scratch = _Scratch()
            for batch in self._batches(task):
                for i, name in task.columns:
                    for part, valid in _blocks(batch.column(name)):
                        if i in tallied:
                            tallied[i] = scratch.tally(part, valid, tallies[i], tallied[i])
                        else:
                            counted[i].add_sorted(scratch.sorted(part, valid), scratch.deviations)
            return counted, tallied

        wanted = self.only(set(boundaries) | set(tallies))
        counts = {i: ColumnCounts(b) for i, b in boundaries.items()}
        values: dict[int, np.ndarray | None] = {
            i: np.zeros(high - low + 1, dtype=np.int64) for i, (low, high) in tallies.items()
        }
        for counted, tallied in wanted._run(work):
            for i, found in counted.items():
                counts[i].merge(found)
            for i, part in tallied.items():
                total = values[i]
                values[i] = None if total is None or part is None else total + part
        return counts, values


def _blocks(array: pa.Array) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """The values of a numeric Arrow array (a view of its buffer) in blocks of ``SORT_ROWS``,
    each with which of its values are valid (None: all are)."""
    raw, validity, offset = _buffers(array)
    bits = None if validity is None else np.frombuffer(validity, dtype=np.uint8)
    for start in range(0, len(raw), SORT_ROWS):
        part = raw[start : start + SORT_ROWS]
        if bits is None:
            yield part, None
            continue
        first, n = offset + start, len(part)
        unpacked = np.unpackbits(bits[first >> 3 : (first + n + 7) >> 3], bitorder="little")
        yield part, unpacked[first & 7 : (first & 7) + n].view(np.bool_)


class _Scratch:
    """The buffers one task reuses for every block. Allocating them per block would cost
    more than the work: freed large blocks go back to the system, and touching fresh memory
    again page-faults (dearly, in a virtual machine)."""

    def __init__(self) -> None:
        self.values = np.empty(SORT_ROWS)
        self.deviations = np.empty(SORT_ROWS)
        self.integers = np.empty(SORT_ROWS, dtype=np.int64)
        self.invalid = np.empty(SORT_ROWS, dtype=np.bool_)

    def sorted(self, part: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
        """The block as float64 (as DuckDB casts to DOUBLE), nulls as NaN, sorted."""
        values = self.values[: len(part)]
        np.copyto(values, part, casting="unsafe")
        if valid is not None:
            np.copyto(values, math.nan, where=np.logical_not(valid, out=self.invalid[: len(part)]))
        if not _ascending(values):
            values.sort()
        return values

    def tally(
        self,
        part: np.ndarray,
        valid: np.ndarray | None,
        span: tuple[int, int],
        counts: np.ndarray | None,
    ) -> np.ndarray | None:
        """``counts`` plus the occurrences of each value of the block (integers) in ``span``
        (``counts[k]``: value ``low + k``); None once a value lies outside it."""
        low, high = span
        if counts is None or not len(part):
            return counts
        if part.dtype == np.uint64 and int(part.max()) > high:
            return None  # would wrap around in int64
        values = self.integers[: len(part)]
        np.copyto(values, part, casting="unsafe")
        if valid is not None:  # nulls count as `low` for a moment
            np.copyto(values, low, where=np.logical_not(valid, out=self.invalid[: len(part)]))
        if int(values.min()) < low or int(values.max()) > high:
            return None
        if low:
            np.subtract(values, low, out=values)
        counts += np.bincount(values, minlength=len(counts))
        if valid is not None:
            counts[0] -= len(part) - int(np.count_nonzero(valid))
        return counts


def _hive_keys(paths: Sequence[Path]) -> set[str]:
    return {part.split("=", 1)[0].lower() for p in paths for part in p.parts[:-1] if "=" in part}


def _plain(schema: pa.Schema, name: str) -> str | None:
    """How ``schema`` stores column ``name``: ``"int"`` or ``"float"`` (a plain top-level
    column), ``"other"``, or None (no such column, in any letter case)."""
    same = [n for n in schema.names if n.lower() == name.lower()]
    if not same:
        return None
    arrow_type = schema.field(name).type if same == [name] else pa.null()
    if pa.types.is_integer(arrow_type):
        return "int"
    return "float" if pa.types.is_floating(arrow_type) else "other"


def parquet_scan(
    files: Sequence[Path], columns: Sequence[tuple[int, str]], threads: int, num_rows: int
) -> tuple[ParquetScan | None, list[int]]:
    """A scan of those of ``columns`` (index, name) that every file stores as a plain
    top-level integer or float column (or not at all), and their indices.

    Columns that are hive partition keys, have a dot in their name (pyarrow would read it as a
    nested path), or that a file stores otherwise (a decimal, a nested or a differently-cased
    field) are left to DuckDB, as are files that pyarrow cannot open and data in row groups
    of fewer than ``MIN_GROUP_ROWS`` rows on average (many small files, say).
    """
    if not files or num_rows < MIN_GROUP_ROWS * len(files):
        return None, []
    hive = _hive_keys(files)
    ok = {i: name for i, name in columns if "." not in name and name.lower() not in hive}
    found: list[tuple[Path, Any, set[str]]] = []
    floats: set[int] = set()
    try:
        for path in files if ok else []:
            metadata = pq.read_metadata(path)
            schema = metadata.schema.to_arrow_schema()
            for i, name in list(ok.items()):
                stored = _plain(schema, name)
                if stored == "other":
                    del ok[i]
                elif stored == "float":
                    floats.add(i)
            found.append((path, metadata, set(schema.names)))
    except (pa.ArrowException, OSError):
        return None, []  # DuckDB reads it, or names the file in its error
    groups = sum(metadata.num_row_groups for _, metadata, _ in found)
    if not ok or num_rows < MIN_GROUP_ROWS * groups:
        return None, []
    tasks = []
    for path, metadata, names in found:
        present = tuple((i, ok[i]) for i in sorted(ok) if ok[i] in names)
        first = 0
        for group in range(metadata.num_row_groups):
            rows = metadata.row_group(group).num_rows
            width = max(1, TASK_VALUES // max(rows, 1))
            for start in range(0, len(present) if rows else 0, width):
                tasks.append(_Task(path, metadata, group, first, present[start : start + width]))
            first += rows
    return ParquetScan(tasks, threads, set(ok) - floats), sorted(ok)
