"""Per-feature drift between a reference and a current dataset: TFDV's and Evidently's metrics.

:func:`column_drift` compares one column, :func:`dataset_drift` every column of two tables
(pandas, Arrow or CSV/Parquet files) and says whether the dataset drifted (Evidently's rule:
the share of drifted columns is at least ``drift_share``). Results are plain frozen
dataclasses that serialise to JSON (:meth:`DriftReport.to_dict`).

The metrics live in :mod:`conveyor.data.drift_methods` (registry: :data:`METHODS`,
:func:`register_drift_method`); input handling in :mod:`conveyor.data.drift_samples` and
:mod:`conveyor.data.drift_io`. ``method="auto"`` is Evidently's default choice per column;
``method="tfdv"`` is TFDV's (L-infinity for categories, JS divergence for numbers). The
definitions, and where they were checked, are in ``docs/drift.md``.

Columns are compared in a thread pool: the heavy parts (sorting, histograms, Arrow hashing)
release the GIL.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from conveyor.data.drift_io import TableSource, read_table
from conveyor.data.drift_methods import (
    METHODS,
    SELECTORS,
    DriftMethod,
    get_method,
    register_drift_method,
)
from conveyor.data.drift_samples import (
    ColumnNotComparable,
    DriftSample,
    Kind,
    infer_kind,
    make_sample,
    to_arrow,
)
from conveyor.data.errors import DriftError, SchemaError
from conveyor.exceptions import did_you_mean

__all__ = [
    "DEFAULT_METHOD_KEY",
    "METHODS",
    "ColumnDrift",
    "DriftMethod",
    "DriftReport",
    "DriftSample",
    "column_drift",
    "dataset_drift",
    "read_table",
    "register_drift_method",
]

# In ``method=`` / ``thresholds=`` mappings, this key applies to every column not named.
DEFAULT_METHOD_KEY = "*"


@dataclass(frozen=True)
class ColumnDrift:
    """The drift verdict for one column.

    Attributes:
        column: the column name.
        kind: ``"numeric"`` or ``"categorical"``.
        method: the method that produced the score (resolved when ``auto`` was asked).
        score: the distance or p-value.
        threshold: the threshold the score was compared with.
        drifted: whether the score crosses the threshold.
        higher_is_drift: True for distances, False for p-values.
        reference_count: non-missing values in the reference data.
        current_count: non-missing values in the current data.
        details: method-specific extras (statistic, bins, epsilon, missing counts, ...).

    Example:
        >>> d = ColumnDrift("age", "numeric", "ks", 0.01, 0.05, True, False, 900, 800, {})
        >>> d.to_dict()["drifted"]
        True
    """

    column: str
    kind: Literal["numeric", "categorical"]
    method: str
    score: float
    threshold: float
    drifted: bool
    higher_is_drift: bool
    reference_count: int
    current_count: int
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite floats become the strings "inf", "nan")."""
        return {
            "column": self.column,
            "kind": self.kind,
            "method": self.method,
            "score": _json_value(self.score),
            "threshold": _json_value(self.threshold),
            "drifted": self.drifted,
            "higher_is_drift": self.higher_is_drift,
            "reference_count": self.reference_count,
            "current_count": self.current_count,
            "details": _json_value(self.details),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnDrift:
        """The inverse of :meth:`to_dict`."""
        return cls(
            column=str(data["column"]),
            kind=data["kind"],
            method=str(data["method"]),
            score=float(data["score"]),
            threshold=float(data["threshold"]),
            drifted=bool(data["drifted"]),
            higher_is_drift=bool(data["higher_is_drift"]),
            reference_count=int(data["reference_count"]),
            current_count=int(data["current_count"]),
            details=dict(data.get("details") or {}),
        )


@dataclass(frozen=True)
class DriftReport:
    """Drift of every compared column, and the dataset-level verdict.

    Attributes:
        columns: verdict per column, in table order.
        drift_share_threshold: the dataset drifted when at least this share of columns did.
        skipped: columns that were not compared, with the reason (e.g. a date column).

    Example:
        >>> col = ColumnDrift("age", "numeric", "ks", 0.01, 0.05, True, False, 900, 800, {})
        >>> report = DriftReport({"age": col})
        >>> report.drifted_columns, report.share_drifted, report.dataset_drifted
        (['age'], 1.0, True)
    """

    columns: dict[str, ColumnDrift]
    drift_share_threshold: float = 0.5
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def drifted_columns(self) -> list[str]:
        """Names of the columns whose drift crossed their threshold."""
        return [name for name, col in self.columns.items() if col.drifted]

    @property
    def share_drifted(self) -> float:
        """Drifted columns / compared columns (0.0 when none were compared)."""
        return len(self.drifted_columns) / len(self.columns) if self.columns else 0.0

    @property
    def dataset_drifted(self) -> bool:
        """Evidently's rule: ``share_drifted >= drift_share_threshold``."""
        return bool(self.columns) and self.share_drifted >= self.drift_share_threshold

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, with the derived verdicts included."""
        return {
            "dataset_drifted": self.dataset_drifted,
            "share_drifted": self.share_drifted,
            "drift_share_threshold": self.drift_share_threshold,
            "drifted_columns": self.drifted_columns,
            "columns": {name: col.to_dict() for name, col in self.columns.items()},
            "skipped": dict(self.skipped),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReport:
        """The inverse of :meth:`to_dict` (derived fields are recomputed, not read)."""
        return cls(
            columns={n: ColumnDrift.from_dict(c) for n, c in data["columns"].items()},
            drift_share_threshold=float(data.get("drift_share_threshold", 0.5)),
            skipped=dict(data.get("skipped") or {}),
        )


def column_drift(
    reference: Any,
    current: Any,
    *,
    column: str = "",
    kind: Literal["numeric", "categorical"] | None = None,
    method: str = "auto",
    threshold: float | None = None,
) -> ColumnDrift:
    """Compare one column of reference data with the same column of current data.

    Args:
        reference: numpy array, pandas Series, list, or pyarrow (chunked) array.
        current: the same, for the data to check.
        column: name used in the result and in error messages.
        kind: ``"numeric"`` or ``"categorical"``; inferred from the type when None
            (Evidently's rule: integers with <= 10 distinct current values are categorical).
        method: a name in :data:`METHODS`, or ``"auto"`` (Evidently's default choice) or
            ``"tfdv"`` (L-infinity for categories, JS divergence for numbers).
        threshold: overrides the method's default threshold.

    Raises:
        DriftError: unknown method, a method that does not fit the kind, no values left.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> d = column_drift(rng.normal(size=500), rng.normal(1, size=500), column="x")
        >>> d.method, d.drifted
        ('ks', True)
    """
    ref_array = to_arrow(reference, column=column, side="reference")
    cur_array = to_arrow(current, column=column, side="current")
    resolved: Kind = kind or infer_kind(ref_array, cur_array, column=column)
    ref = make_sample(ref_array, resolved, column=column, side="reference")
    cur = make_sample(cur_array, resolved, column=column, side="current")
    return compare_samples(ref, cur, column=column, method=method, threshold=threshold)


def compare_samples(
    reference: DriftSample,
    current: DriftSample,
    *,
    column: str = "",
    method: str = "auto",
    threshold: float | None = None,
) -> ColumnDrift:
    """Score two prepared samples of one kind (the part of :func:`column_drift` after input).

    Example:
        >>> ref = make_sample(["a", "b", "b"], "categorical")
        >>> compare_samples(ref, make_sample(["a", "a", "b"], "categorical"), method="linf").score
        0.3333333333333333
    """
    for side, sample in (("reference", reference), ("current", current)):
        if sample.n == 0:
            raise ColumnNotComparable(
                f"column {column!r} has no non-missing values in the {side} data"
            )
    chosen, reason = _choose_method(method, reference.kind, reference, current, column)
    limit = chosen.default_threshold if threshold is None else float(threshold)
    score, details = chosen.run(reference, current)
    details |= {"missing_reference": reference.missing, "missing_current": current.missing}
    if reason:
        details["selected_by"] = reason
    return ColumnDrift(
        column=column,
        kind=reference.kind,
        method=chosen.name,
        score=score,
        threshold=limit,
        drifted=chosen.is_drift(score, limit),
        higher_is_drift=chosen.higher_is_drift,
        reference_count=reference.n,
        current_count=current.n,
        details=details,
    )


def _choose_method(
    name: str, kind: Kind, reference: DriftSample, current: DriftSample, column: str
) -> tuple[DriftMethod, str]:
    if name in SELECTORS:
        picked, reason = SELECTORS[name](kind, reference, current)
        return get_method(picked), f"{name}: {reason}"
    chosen = get_method(name)
    if kind not in chosen.kinds:
        fitting = sorted(m.name for m in METHODS.values() if kind in m.kinds)
        raise DriftError(
            f"drift method {name!r} works on {' and '.join(sorted(chosen.kinds))} columns; "
            f"column {column!r} is {kind} (methods for {kind} columns: {', '.join(fitting)}, "
            "or auto)"
        )
    return chosen, ""


def dataset_drift(
    reference: Any,
    current: Any,
    *,
    columns: Sequence[str] | None = None,
    method: str | Mapping[str, str] = "auto",
    thresholds: Mapping[str, float] | None = None,
    categorical: Sequence[str] = (),
    drift_share: float = 0.5,
) -> DriftReport:
    """Compare every column (or the given ones) of two tables.

    Args:
        reference: pandas DataFrame, pyarrow Table, or path of a CSV/Parquet file.
        current: the same, for the data to check. Every compared column must be in it.
        columns: the columns to compare (default: all columns of ``reference``; columns
            whose type drift cannot compare, such as dates, are then skipped).
        method: one method for all columns, or a mapping column -> method; the key ``"*"``
            sets the method of columns not named (otherwise ``"auto"``).
        thresholds: threshold per column; the key ``"*"`` applies to columns not named.
        categorical: columns to treat as categorical whatever their type.
        drift_share: the dataset drifted when at least this share of columns did.

    Raises:
        SchemaError: a column is missing from either table.
        DriftError: an unknown method, or one that does not fit a column's kind.
        DataSourceError: a file cannot be read.

    Example:
        >>> report = dataset_drift("reference.parquet", "current.parquet")  # doctest: +SKIP
        >>> report.drifted_columns  # doctest: +SKIP
        ['age', 'hours_per_week']
    """
    ref_source = TableSource(reference, "reference")
    cur_source = TableSource(current, "current")
    names = _resolve_columns(ref_source, cur_source, columns)
    methods = _per_column(method, names, "method", "auto")
    limits = _per_column(thresholds or {}, names, "threshold", None)
    for name in {*methods.values()} - {*SELECTORS}:
        get_method(name)  # fail on a bad name before reading any data
    forced = _check_names(categorical, names, "categorical")
    ref_data, cur_data = ref_source.load(names), cur_source.load(names)

    def compare(name: str) -> ColumnDrift | str:
        kind: Kind | None = "categorical" if name in forced else None
        return _compare_column(
            name, ref_data[name], cur_data[name], kind, methods[name], limits[name], columns
        )

    workers = max(1, min(len(names), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = dict(zip(names, pool.map(compare, names), strict=True))
    return DriftReport(
        columns={n: r for n, r in outcomes.items() if isinstance(r, ColumnDrift)},
        drift_share_threshold=drift_share,
        skipped={n: r for n, r in outcomes.items() if isinstance(r, str)},
    )


def _compare_column(
    name: str,
    reference: Any,
    current: Any,
    kind: Kind | None,
    method: str,
    threshold: float | None,
    explicit: Sequence[str] | None,
) -> ColumnDrift | str:
    """The verdict for one column, or (when columns were not named) why it was skipped."""
    try:
        return column_drift(
            reference, current, column=name, kind=kind, method=method, threshold=threshold
        )
    except ColumnNotComparable as exc:
        if explicit is None:
            return str(exc)
        raise


def _resolve_columns(
    reference: TableSource, current: TableSource, columns: Sequence[str] | None
) -> list[str]:
    if isinstance(columns, str):
        raise DriftError("columns must be a list of names, not one string")
    names = list(reference.column_names if columns is None else columns)
    for name in names:
        for source in (reference, current):
            if name not in source.column_names:
                hint = did_you_mean(name, source.column_names)
                raise SchemaError(f"column {name!r} is not in {source.label}{hint}")
    if not names:
        raise DriftError(f"{reference.label} has no columns to compare")
    return names


def _per_column(
    given: str | Mapping[str, Any], names: Sequence[str], what: str, fallback: Any
) -> dict[str, Any]:
    if isinstance(given, str):
        return dict.fromkeys(names, given)
    default = given.get(DEFAULT_METHOD_KEY, fallback)
    _check_names([k for k in given if k != DEFAULT_METHOD_KEY], names, what)
    return {name: given.get(name, default) for name in names}


def _check_names(given: Sequence[str], names: Sequence[str], what: str) -> set[str]:
    for name in given:
        if name not in names:
            hint = did_you_mean(name, names)
            raise SchemaError(f"{what} given for column {name!r}, which is not compared{hint}")
    return set(given)


def _json_value(value: Any) -> Any:
    """Plain Python values for JSON: numpy scalars unwrapped, non-finite floats as text."""
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
