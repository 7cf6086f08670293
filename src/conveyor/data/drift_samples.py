"""One side of a drift comparison: a column's non-missing values, ready for the metrics.

Drift methods never see pandas, raw Arrow chunks or missing values: :func:`make_sample` turns
a numpy array, pandas Series or pyarrow (chunked) array into a :class:`DriftSample` of one
kind. A numeric sample holds its finite values as a float64 numpy array (missing values, NaN
and +/-inf dropped, as Evidently drops them); a categorical sample holds an Arrow array
without nulls (and without NaN). Work that several methods share (sorting, value counts,
distinct counts) is computed once per sample and cached.

:func:`aligned_counts` lines up the value counts of two samples over the union of their
values, which is what every frequency-based metric (PSI, chi-square, L-infinity, ...) needs.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conveyor.data.errors import DriftError, SchemaError

__all__ = [
    "INTEGER_CARDINALITY_LIMIT",
    "ColumnNotComparable",
    "DriftSample",
    "Kind",
    "aligned_counts",
    "infer_kind",
    "make_sample",
    "to_arrow",
]

Kind = Literal["numeric", "categorical"]
KINDS: tuple[Kind, ...] = ("numeric", "categorical")

# Evidently 0.7 (evidently/core/datasets.py, INTEGER_CARDINALITY_LIMIT): an integer column
# with at most this many distinct values is categorical.
INTEGER_CARDINALITY_LIMIT = 10


class ColumnNotComparable(DriftError):
    """A column drift cannot compare: an unsupported type, or no values on one side.

    :func:`~conveyor.data.drift.dataset_drift` skips such columns when it picked the
    columns itself, and raises when they were asked for by name.
    """


class DriftSample:
    """The non-missing values of one column on one side (reference or current).

    Build one with :func:`make_sample`. Custom drift methods receive two of these.

    Attributes:
        kind: ``"numeric"`` or ``"categorical"``.
        column: the column name (for messages; may be empty).
        n: number of non-missing values.
        missing: number of values dropped as missing (null, NaN; +/-inf for numeric).

    Example:
        >>> s = make_sample(np.array([1.0, np.nan, 3.0]), "numeric")
        >>> s.n, s.missing, s.values.tolist()
        (2, 1, [1.0, 3.0])
    """

    def __init__(
        self,
        kind: Kind,
        *,
        values: np.ndarray | None = None,
        array: pa.Array | pa.ChunkedArray | None = None,
        missing: int = 0,
        column: str = "",
    ) -> None:
        if (values is None) == (array is None):
            raise ValueError("give exactly one of values (numeric) or array (categorical)")
        self.kind: Kind = kind
        self.column = column
        self.missing = missing
        self._values = values
        self._array = array
        self._sorted: np.ndarray | None = None
        self._counts: tuple[pa.Array, np.ndarray] | None = None
        self.n = len(values) if values is not None else len(array)  # type: ignore[arg-type]

    @property
    def values(self) -> np.ndarray:
        """The finite values as float64 (numeric samples only)."""
        if self._values is None:
            raise DriftError("this method needs numeric values; the column is categorical")
        return self._values

    @property
    def array(self) -> pa.Array | pa.ChunkedArray:
        """The values as an Arrow array (numeric samples convert on demand)."""
        if self._array is None:
            self._array = pa.array(self.values)
        return self._array

    def sorted_values(self) -> np.ndarray:
        """The numeric values sorted ascending (computed once)."""
        if self._sorted is None:
            self._sorted = np.sort(self.values)
        return self._sorted

    def value_counts(self) -> tuple[pa.Array, np.ndarray]:
        """Distinct values (unordered) and how often each occurs (computed once)."""
        if self._counts is None:
            self._counts = self._sorted_counts() if self._values is not None else self._hashed()
        return self._counts

    def n_unique(self) -> int:
        """Number of distinct values."""
        return len(self.value_counts()[0])

    def n_unique_at_most(self, limit: int) -> bool:
        """Whether there are at most ``limit`` distinct values (cheap for numeric samples).

        Example:
            >>> make_sample(np.array([3.0, 1.0, 3.0]), "numeric").n_unique_at_most(1)
            False
        """
        if self._values is None or self._counts is not None:
            return self.n_unique() <= limit
        ordered = self.sorted_values()
        position = 0
        for _ in range(limit):  # jump over one run of equal values per step
            position = int(np.searchsorted(ordered, ordered[position], side="right"))
            if position >= len(ordered):
                return True
        return len(ordered) == 0

    def _sorted_counts(self) -> tuple[pa.Array, np.ndarray]:
        # Sorting (SIMD, cached for KS/Wasserstein) beats hashing floats by ~10x.
        ordered = self.sorted_values()
        if len(ordered) == 0:
            return pa.array(ordered), np.zeros(0, dtype=np.int64)
        starts = np.concatenate(([0], np.flatnonzero(ordered[1:] != ordered[:-1]) + 1))
        counts = np.diff(np.append(starts, len(ordered))).astype(np.int64)
        return pa.array(ordered[starts]), counts

    def _hashed(self) -> tuple[pa.Array, np.ndarray]:
        try:
            counted = pc.value_counts(self.array)
        except pa.ArrowNotImplementedError as exc:
            raise ColumnNotComparable(
                f"column {self.column!r}: cannot count {self.array.type} values"
            ) from exc
        keys = counted.field("values")
        return keys, counted.field("counts").to_numpy(zero_copy_only=False).astype(np.int64)


def to_arrow(data: Any, *, column: str = "", side: str = "reference") -> pa.ChunkedArray:
    """Turn one column of values into an Arrow ChunkedArray.

    Accepts numpy arrays, pandas Series, lists, pyarrow (chunked) arrays and any object with
    the Arrow stream interface (e.g. a polars Series).

    Example:
        >>> to_arrow(np.array([1, 2])).to_pylist()
        [1, 2]
    """
    if isinstance(data, pa.ChunkedArray):
        return data
    if isinstance(data, pa.Array):
        return pa.chunked_array([data])
    try:
        if isinstance(data, np.ndarray):
            if data.ndim != 1:
                raise DriftError(f"{_where(column, side)} must be one-dimensional")
            array = pa.array(data, from_pandas=data.dtype == object)
        elif hasattr(data, "dtype") and hasattr(data, "iloc"):  # a pandas Series
            array = pa.Array.from_pandas(data)
        elif hasattr(data, "__arrow_c_stream__"):  # polars and other Arrow producers
            array = pa.chunked_array(data)
        elif isinstance(data, (list, tuple)):
            array = pa.array(data, from_pandas=True)
        else:
            raise DriftError(
                f"{_where(column, side)}: cannot compare values of type {type(data).__name__} "
                "(give a numpy array, pandas Series or pyarrow array)"
            )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DriftError(f"{_where(column, side)}: values of mixed types ({exc})") from exc
    return pa.chunked_array([array]) if isinstance(array, pa.Array) else array


def infer_kind(reference: pa.ChunkedArray, current: pa.ChunkedArray, *, column: str = "") -> Kind:
    """Evidently's column type rule (0.7, ``infer_column_type``), applied to Arrow types.

    Floats are numeric; integers are numeric unless the current data has at most
    :data:`INTEGER_CARDINALITY_LIMIT` distinct values; strings, booleans and dictionaries
    are categorical. Anything else (dates, lists, ...) raises :class:`ColumnNotComparable`.

    Example:
        >>> infer_kind(to_arrow(np.array([1, 2, 1])), to_arrow(np.array([2, 2, 1])))
        'categorical'
    """
    kind_type = reference.type if pa.types.is_null(current.type) else current.type
    if pa.types.is_dictionary(kind_type):
        return "categorical"
    if pa.types.is_floating(kind_type) or pa.types.is_decimal(kind_type):
        return "numeric"
    if pa.types.is_integer(kind_type):
        distinct = pc.count_distinct(current if len(current) else reference).as_py()
        return "categorical" if distinct <= INTEGER_CARDINALITY_LIMIT else "numeric"
    if _is_text(kind_type) or pa.types.is_boolean(kind_type):
        return "categorical"
    raise ColumnNotComparable(
        f"column {column!r} has type {kind_type}; drift is computed for numbers, strings "
        "and booleans only (cast it, or leave it out with --columns)"
    )


def make_sample(data: Any, kind: Kind, *, column: str = "", side: str = "reference") -> DriftSample:
    """Drop missing values and build the sample of the given kind.

    Example:
        >>> make_sample(["a", None, "b"], "categorical").n
        2
    """
    array = to_arrow(data, column=column, side=side)
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    if kind == "numeric":
        return _numeric_sample(array, column, side)
    if kind == "categorical":
        return _categorical_sample(array, column)
    raise DriftError(f"kind must be 'numeric' or 'categorical', not {kind!r}")


def _numeric_sample(array: pa.ChunkedArray, column: str, side: str) -> DriftSample:
    kind_type = array.type
    if pa.types.is_decimal(kind_type) or pa.types.is_boolean(kind_type):
        array = array.cast(pa.float64())
    elif not (
        pa.types.is_integer(kind_type) or pa.types.is_floating(kind_type) or _is_null(kind_type)
    ):
        raise DriftError(
            f"{_where(column, side)} holds {kind_type} values; it cannot be compared as numeric"
        )
    total = len(array)
    present = pc.drop_null(array) if array.null_count else array
    chunks = present.chunks
    combined = chunks[0] if len(chunks) == 1 else pa.concat_arrays(chunks) if chunks else None
    values = (
        np.zeros(0)
        if combined is None or _is_null(kind_type)
        else combined.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    )
    if not pa.types.is_integer(kind_type):
        finite = np.isfinite(values)
        if not finite.all():
            values = values[finite]
    return DriftSample("numeric", values=values, missing=total - len(values), column=column)


def _categorical_sample(array: pa.ChunkedArray, column: str) -> DriftSample:
    total = len(array)
    present = pc.drop_null(array) if array.null_count else array
    if pa.types.is_floating(present.type):
        present = present.filter(pc.invert(pc.is_nan(present)))
    return DriftSample("categorical", array=present, missing=total - len(present), column=column)


def aligned_counts(
    reference: DriftSample, current: DriftSample
) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Counts of both samples over the union of their distinct values.

    Returns:
        ``(keys, reference_counts, current_counts)``: keys in no particular order, counts as
        int64 arrays aligned with them (0 where a value does not occur on that side).

    Example:
        >>> keys, r, c = aligned_counts(
        ...     make_sample(["a", "a", "b"], "categorical"), make_sample(["b", "c"], "categorical")
        ... )
        >>> sorted(zip(keys.to_pylist(), r.tolist(), c.tolist()))
        [('a', 2, 0), ('b', 1, 1), ('c', 0, 1)]
    """
    ref_keys, ref_counts = reference.value_counts()
    cur_keys, cur_counts = current.value_counts()
    ref_keys, cur_keys = _common_type(ref_keys, cur_keys, reference.column)
    keys = pc.unique(pa.concat_arrays([ref_keys, cur_keys]))
    return keys, _scatter(keys, ref_keys, ref_counts), _scatter(keys, cur_keys, cur_counts)


def _scatter(keys: pa.Array, part: pa.Array, counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(keys), dtype=np.int64)
    if len(part):
        positions = pc.index_in(part, value_set=keys).to_numpy(zero_copy_only=False)
        out[positions] = counts
    return out


def _common_type(left: pa.Array, right: pa.Array, column: str) -> tuple[pa.Array, pa.Array]:
    if left.type == right.type:
        return left, right
    if _is_null(left.type):
        return left.cast(right.type), right
    if _is_null(right.type):
        return left, right.cast(left.type)
    if _is_number(left.type) and _is_number(right.type):
        return left.cast(pa.float64()), right.cast(pa.float64())
    if _is_text(left.type) and _is_text(right.type):
        return left.cast(pa.large_string()), right.cast(pa.large_string())
    raise SchemaError(
        f"column {column!r} holds {left.type} values in the reference data but "
        f"{right.type} values in the current data"
    )


def _is_text(kind_type: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind_type) or pa.types.is_large_string(kind_type))


def _is_number(kind_type: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind_type) or pa.types.is_floating(kind_type))


def _is_null(kind_type: pa.DataType) -> bool:
    return bool(pa.types.is_null(kind_type))


def _where(column: str, side: str) -> str:
    return f"column {column!r} ({side})" if column else f"the {side} values"
