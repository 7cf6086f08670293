"""Categorical statistics and the label distribution: one exact value count per column.

Every categorical column (and the label) is counted in one query: a ``GROUP BY`` per column,
joined with ``UNION ALL`` (DuckDB reads each column once, in parallel, spilling to disk when
the groups outgrow the memory limit), then ranked by count (ties by value) so that only the
top ``k`` values of each column come back. Distinct counts, top-k counts and average lengths
are exact.

Values are compared as text: booleans are ``"true"``/``"false"``, numbers their shortest
round-trip form (``"1"``, ``"2.5"``), datetimes ISO-like (``"2024-01-31 12:00:00"``).
NULL, and NaN in floats, are missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from conveyor.data.statistics_model import (
    FeatureType,
    LabelStatistics,
    StringStatistics,
    ValueCount,
)
from conveyor.data.statistics_source import StatsSource, quote

__all__ = [
    "MAX_LABEL_CLASSES",
    "CategoricalColumn",
    "ValueCounts",
    "categorical_column",
    "label_statistics",
    "string_statistics",
    "value_counts",
]

MAX_LABEL_CLASSES = 1000
"""A label with more distinct values is a regression target: no class distribution."""


@dataclass(frozen=True)
class CategoricalColumn:
    """A column counted as categories; ``text`` is SQL giving each value as text, or NULL.

    ``k`` is how many of the most frequent values to keep.
    """

    key: str
    text: str
    k: int


def category_text(name: str, duckdb_type: str, ftype: FeatureType) -> str:
    """SQL for the text form of column ``name``: NaN is missing, like NULL.

    Example:
        >>> category_text("n", "DOUBLE", FeatureType.FLOAT)
        'CAST((CASE WHEN isnan("n"::DOUBLE) THEN NULL ELSE "n" END) AS VARCHAR)'
    """
    col = quote(name)
    if ftype == FeatureType.FLOAT and not duckdb_type.upper().startswith("DECIMAL"):
        return f"CAST((CASE WHEN isnan({col}::DOUBLE) THEN NULL ELSE {col} END) AS VARCHAR)"
    if duckdb_type.upper() == "VARCHAR":
        return col
    return f"CAST({col} AS VARCHAR)"


def categorical_column(
    key: str, name: str, duckdb_type: str, ftype: FeatureType, k: int
) -> CategoricalColumn:
    """A column ``name`` counted under ``key``, keeping its ``k`` most frequent values."""
    return CategoricalColumn(key, category_text(name, duckdb_type, ftype), k)


@dataclass
class ValueCounts:
    """Exact value counts of one column (missing values left out)."""

    present: int = 0
    distinct: int = 0
    total_length: int = 0
    top: list[ValueCount] = field(default_factory=list)  # most frequent first, ties by value

    @property
    def avg_length(self) -> float | None:
        return self.total_length / self.present if self.present else None


def _counts_sql(src: StatsSource, columns: Sequence[CategoricalColumn]) -> str:
    groups = " UNION ALL ".join(
        f"SELECT {i} AS col, v, count(*) AS n FROM (SELECT {c.text} AS v FROM {src.relation}) "
        "GROUP BY v"
        for i, c in enumerate(columns)
    )
    keep = ", ".join(f"({i}, {c.k})" for i, c in enumerate(columns))
    return f"""
        WITH counts AS ({groups}),
        ranked AS (
            SELECT col, v, n, row_number() OVER (PARTITION BY col ORDER BY n DESC, v) AS r
            FROM counts WHERE v IS NOT NULL
        )
        SELECT col, count(*), sum(n), sum(length(v) * n),
               list(v ORDER BY r) FILTER (WHERE r <= k), list(n ORDER BY r) FILTER (WHERE r <= k)
        FROM ranked JOIN (VALUES {keep}) AS keep(col, k) USING (col)
        GROUP BY col
    """


def value_counts(src: StatsSource, columns: Sequence[CategoricalColumn]) -> dict[str, ValueCounts]:
    """Exact value counts of each column, by key, in one query.

    Example:
        >>> value_counts(src, [categorical_column("c", "c", "VARCHAR", FeatureType.STRING, 3)])
        ... # doctest: +SKIP
        {'c': ValueCounts(present=4, distinct=2, total_length=4, top=[...])}
    """
    out = {c.key: ValueCounts() for c in columns}
    if not columns:
        return out
    for col, distinct, present, length, values, counts in src.query(
        _counts_sql(src, columns)
    ).fetchall():
        top = [
            ValueCount(value=v, count=int(n))
            for v, n in zip(values or [], counts or [], strict=True)
        ]
        out[columns[col].key] = ValueCounts(int(present), int(distinct), int(length), top)
    return out


def string_statistics(counts: ValueCounts, top_k: int) -> StringStatistics:
    """The StringStatistics of a column (exact distinct count, top ``top_k`` values)."""
    return StringStatistics(
        distinct=counts.distinct,
        distinct_is_exact=True,
        top=counts.top[:top_k],
        avg_length=counts.avg_length,
    )


def label_statistics(column: str, counts: ValueCounts) -> LabelStatistics | None:
    """Class distribution and imbalance (most / least frequent class), or None for a label
    with more than MAX_LABEL_CLASSES values (a regression target).

    Example:
        >>> top = [ValueCount(value="a", count=2), ValueCount(value="b", count=1)]
        >>> vc = ValueCounts(present=3, distinct=2, total_length=3, top=top)
        >>> label_statistics("y", vc).imbalance_ratio
        2.0
    """
    if counts.distinct > MAX_LABEL_CLASSES:
        return None
    distribution = {vc.value: vc.count for vc in counts.top}
    ratio = max(distribution.values()) / min(distribution.values()) if distribution else 1.0
    return LabelStatistics(column=column, distribution=distribution, imbalance_ratio=ratio)
