"""The Statistics artifact: what we know about each feature of each split of a dataset.

Plain pydantic models, serialised as JSON (artifact type ``"Statistics"``). Produced by
:func:`conveyor.data.statistics.compute_statistics`, consumed by schema inference,
validation, drift and the HTML reports.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

__all__ = [
    "DatasetStatistics",
    "FeatureKind",
    "FeatureStatistics",
    "FeatureType",
    "Histogram",
    "LabelStatistics",
    "NumericStatistics",
    "SplitStatistics",
    "StringStatistics",
    "ValueCount",
]


class FeatureType(StrEnum):
    """Physical type of a column, inferred from its Arrow type."""

    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    STRING = "string"
    DATETIME = "datetime"


class FeatureKind(StrEnum):
    """How a feature is analysed: numbers get moments and histograms, categories get counts."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"


class Histogram(BaseModel):
    """Bins ``[edges[i], edges[i+1])`` (the last one closed) and their counts."""

    edges: list[float]
    counts: list[int]
    exact: bool = True  # False when the counts were estimated (merge_statistics)


class NumericStatistics(BaseModel):
    mean: float | None
    std: float | None  # sample standard deviation (ddof=1), as pandas
    min: float | None
    max: float | None
    zeros: int
    infinite: int = 0  # +-inf values (floats): in FeatureStatistics.count, not in the numbers here
    quantiles: dict[str, float] = Field(default_factory=dict)  # "0.25" -> value
    quantile_rank_error: float = 0.0  # bound on |rank(q_est)/n - q|; 0.0 when exact
    histogram: Histogram | None = None  # equal width between min and max
    quantile_histogram: Histogram | None = None  # equal mass (edges at quantiles)


class ValueCount(BaseModel):
    value: str
    count: int


class StringStatistics(BaseModel):
    distinct: int
    distinct_is_exact: bool = True
    top: list[ValueCount] = Field(default_factory=list)  # most frequent first
    avg_length: float | None = None  # of the string form, over non-missing values


class FeatureStatistics(BaseModel):
    name: str
    type: FeatureType
    kind: FeatureKind
    count: int  # non-missing values
    missing: int
    numeric: NumericStatistics | None = None
    categorical: StringStatistics | None = None

    @property
    def missing_fraction(self) -> float:
        total = self.count + self.missing
        return self.missing / total if total else 0.0


class LabelStatistics(BaseModel):
    column: str
    distribution: dict[str, int]  # label value (as text) -> rows
    imbalance_ratio: float  # rows of the most frequent class / rows of the least frequent


class SplitStatistics(BaseModel):
    split: str
    num_rows: int
    features: dict[str, FeatureStatistics]  # in column order
    label: LabelStatistics | None = None


class DatasetStatistics(BaseModel):
    """Statistics of every split of one Dataset version."""

    format_version: int = 1
    dataset: str | None = None  # dataset name, when known
    span: int | None = None  # latest span included, when known
    label: str | None = None
    splits: dict[str, SplitStatistics]

    def split(self, name: str) -> SplitStatistics:
        try:
            return self.splits[name]
        except KeyError:
            raise KeyError(f"no split {name!r}; splits: {', '.join(self.splits)}") from None
