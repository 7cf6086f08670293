"""Dataset statistics: what each feature of each split looks like, computed out of core.

:func:`compute_statistics` describes one table (Parquet files, a folder of them, an in-memory
table); :func:`compute_dataset_statistics` describes every ``split=NAME/`` of a Dataset;
:func:`merge_statistics` combines two disjoint parts without the data. The work is done by
DuckDB in a few aggregate queries over all columns at once, multi-threaded and within a memory
limit (``1GB`` unless told otherwise), whatever the number of rows:

- :mod:`~conveyor.data.statistics_source` opens the data and samples rows deterministically,
- :mod:`~conveyor.data.statistics_numeric` computes moments, quantiles and histograms,
- :mod:`~conveyor.data.statistics_categorical` counts values (distinct, top-k, labels),
- :mod:`~conveyor.data.statistics_merge` merges two results.

The result is the ``Statistics`` artifact of :mod:`conveyor.data.statistics_model`, stored by
:class:`StatisticsMaterializer` as ``statistics.json``. Every statistic is defined exactly in
``docs/statistics.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor import Materializer
from conveyor.data.errors import DataError, DataSourceError, SchemaError
from conveyor.data.statistics_categorical import (
    MAX_LABEL_CLASSES,
    CategoricalColumn,
    categorical_column,
    label_statistics,
    string_statistics,
    value_counts,
)
from conveyor.data.statistics_merge import merge_statistics
from conveyor.data.statistics_model import (
    DatasetStatistics,
    FeatureKind,
    FeatureStatistics,
    FeatureType,
    SplitStatistics,
)
from conveyor.data.statistics_numeric import (
    EXACT_QUANTILE_ROWS,
    NumericColumn,
    numeric_column,
    numeric_statistics,
)
from conveyor.data.statistics_source import (
    DEFAULT_MEMORY_LIMIT,
    StatsSource,
    feature_type,
    open_source,
    source_files,
    split_of,
)
from conveyor.exceptions import did_you_mean

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "DEFAULT_QUANTILES",
    "EXACT_QUANTILE_ROWS",
    "MAX_LABEL_CLASSES",
    "StatisticsMaterializer",
    "compute_dataset_statistics",
    "compute_statistics",
    "dataset_splits",
    "merge_statistics",
]

DEFAULT_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
SPLIT_ORDER = ("train", "eval", "test")
_LABEL_KEY = "\0label"


@dataclass(frozen=True)
class _Options:
    label: str | None
    categorical: tuple[str, ...]
    top_k: int
    bins: int
    quantiles: tuple[float, ...]
    exact: bool | None

    def check(self) -> None:
        if self.top_k < 0:
            raise DataError(f"top_k must be 0 or more, got {self.top_k}")
        if self.bins < 1:
            raise DataError(f"bins must be at least 1, got {self.bins}")
        wrong = [q for q in self.quantiles if not 0.0 <= q <= 1.0]
        if wrong:
            raise DataError(f"quantiles must lie in [0, 1], got {wrong[0]!r}")


def compute_statistics(
    source: Any,
    *,
    split: str = "all",
    label: str | None = None,
    categorical: Sequence[str] = (),
    top_k: int = 20,
    bins: int = 10,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    threads: int | None = None,
    memory_limit: str | None = None,
    exact_quantiles: bool | None = None,
) -> SplitStatistics:
    """Statistics of every column of ``source``, in a few parallel, memory-bounded passes.

    Args:
        source: a Parquet file, a folder of Parquet files (recursive; ``key=value/`` folders
            become columns), a list of files, a ``pyarrow.Table`` or a ``pandas.DataFrame``.
            CSV and JSON-lines files are accepted too, but are read whole.
        split: the name recorded in the result.
        label: the label column: its class distribution and imbalance ratio are added.
        categorical: numeric columns to analyse as categories (integer codes, say); booleans
            and strings always are.
        top_k: most frequent values kept per categorical feature.
        bins: bins of the equal-width and of the quantile (equal-mass) histograms.
        quantiles: the quantiles reported for numeric features.
        threads: DuckDB threads (default: one per core).
        memory_limit: DuckDB memory limit such as ``"512MB"`` (default ``"1GB"``); beyond it,
            DuckDB spills to a temporary folder.
        exact_quantiles: exact (``quantile_cont``) or estimated quantiles; None: exact below
            ``EXACT_QUANTILE_ROWS`` (1,000,000) rows.

    Raises:
        DataSourceError: the source cannot be read (the message names the file).
        SchemaError: ``label`` or a ``categorical`` column does not exist.
        DataError: an option is out of range.

    Example:
        >>> import pandas as pd
        >>> stats = compute_statistics(pd.DataFrame({"age": [30, 40, 50], "y": ["a", "b", "a"]}),
        ...                            label="y")
        >>> stats.features["age"].numeric.quantiles["0.5"], stats.label.imbalance_ratio
        (40.0, 2.0)
    """
    options = _Options(label, tuple(categorical), top_k, bins, tuple(quantiles), exact_quantiles)
    options.check()
    with open_source(source, threads=threads, memory_limit=memory_limit) as src:
        return _split_statistics(src, split, options)


def _check_columns(src: StatsSource, options: _Options) -> None:
    names = [name for name, _ in src.columns]
    wanted = [("label", options.label)] if options.label else []
    wanted += [("categorical", name) for name in options.categorical]
    for role, name in wanted:
        if name not in names:
            hint = did_you_mean(name, names)
            raise SchemaError(f"{role} column {name!r} is not in {src.description}{hint}")


def _plan_columns(
    src: StatsSource, options: _Options
) -> tuple[
    dict[str, tuple[FeatureType, FeatureKind]], list[NumericColumn], list[CategoricalColumn]
]:
    kinds: dict[str, tuple[FeatureType, FeatureKind]] = {}
    numeric: list[NumericColumn] = []
    categories: list[CategoricalColumn] = []
    for name, dtype in src.columns:
        ftype = feature_type(dtype)
        is_category = ftype in (FeatureType.BOOL, FeatureType.STRING) or name in options.categorical
        kinds[name] = (ftype, FeatureKind.CATEGORICAL if is_category else FeatureKind.NUMERIC)
        if is_category:
            k = (
                max(options.top_k, MAX_LABEL_CLASSES + 1)
                if name == options.label
                else options.top_k
            )
            categories.append(categorical_column(name, name, dtype, ftype, k))
        else:
            numeric.append(numeric_column(name, dtype, ftype))
    if options.label and kinds[options.label][1] == FeatureKind.NUMERIC:
        dtype = dict(src.columns)[options.label]
        ftype = kinds[options.label][0]
        categories.append(
            categorical_column(_LABEL_KEY, options.label, dtype, ftype, MAX_LABEL_CLASSES + 1)
        )
    return kinds, numeric, categories


def _split_statistics(src: StatsSource, split: str, options: _Options) -> SplitStatistics:
    _check_columns(src, options)
    kinds, numeric, categories = _plan_columns(src, options)
    counts = value_counts(src, categories)
    numbers = numeric_statistics(
        src, numeric, quantiles=options.quantiles, bins=options.bins, exact=options.exact
    )
    features: dict[str, FeatureStatistics] = {}
    for name, (ftype, kind) in kinds.items():
        feature = FeatureStatistics(name=name, type=ftype, kind=kind, count=0, missing=0)
        if kind == FeatureKind.NUMERIC:
            feature.count, feature.numeric = numbers[name]
        else:
            feature.count = counts[name].present
            feature.categorical = string_statistics(counts[name], options.top_k)
        feature.missing = src.num_rows - feature.count
        features[name] = feature
    label = None
    if options.label:
        key = options.label if options.label in counts else _LABEL_KEY
        label = label_statistics(options.label, counts[key])
    return SplitStatistics(split=split, num_rows=src.num_rows, features=features, label=label)


def _split_order(name: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(name), "") if name in SPLIT_ORDER else (len(SPLIT_ORDER), name)


def dataset_splits(folder: Path) -> dict[str, list[Path]]:
    """The files of each ``split=NAME/`` of ``folder``; ``{"all": files}`` without splits.

    Raises:
        DataSourceError: some files lie in a split folder and others do not.

    Example:
        >>> list(dataset_splits(Path("out/")))  # doctest: +SKIP
        ['train', 'eval', 'test']
    """
    files = source_files(folder)
    groups: dict[str, list[Path]] = {}
    for path in files:
        groups.setdefault(split_of(path, folder) or "", []).append(path)
    if "" not in groups:
        return {name: groups[name] for name in sorted(groups, key=_split_order)}
    if len(groups) > 1:
        raise DataSourceError(
            f"{folder} mixes split=NAME/ folders with files outside them ({groups[''][0]}); "
            "keep every data file inside a split folder, or none"
        )
    return {"all": files}


def _dataset_facts(data: Any) -> tuple[Path, str | None, int | None]:
    """The folder of a Dataset handle or path, and the dataset name and latest span it knows."""
    path = getattr(data, "path", data)
    properties = getattr(data, "properties", {}) or {}
    name = properties.get("dataset")
    spans = [s.get("number") for s in properties.get("spans", []) if isinstance(s, dict)]
    numbers = [n for n in spans if isinstance(n, int)]
    return Path(path), name if isinstance(name, str) else None, max(numbers, default=None)


def compute_dataset_statistics(
    data: Any,
    *,
    label: str | None = None,
    categorical: Sequence[str] = (),
    top_k: int = 20,
    bins: int = 10,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    threads: int | None = None,
    memory_limit: str | None = None,
    exact_quantiles: bool | None = None,
) -> DatasetStatistics:
    """Statistics of each split of a Dataset (a handle or its folder).

    A folder with ``split=NAME/`` sub-folders (as ``ingest`` writes them) gets one
    SplitStatistics per split, in the order train, eval, test, then by name; the ``split``
    partition column itself is left out. Any other folder is one split, ``"all"``. The other
    arguments are those of :func:`compute_statistics`.

    Example:
        >>> stats = compute_dataset_statistics("out/", label="income")  # doctest: +SKIP
        >>> list(stats.splits), stats.split("train").label.imbalance_ratio  # doctest: +SKIP
        (['train', 'eval'], 3.1)
    """
    options = _Options(label, tuple(categorical), top_k, bins, tuple(quantiles), exact_quantiles)
    options.check()
    folder, name, span = _dataset_facts(data)
    splits: dict[str, SplitStatistics] = {}
    for split, files in dataset_splits(folder).items():
        source = files if split != "all" else folder
        exclude = ("split",) if split != "all" else ()
        with open_source(
            source, threads=threads, memory_limit=memory_limit, exclude=exclude
        ) as src:
            splits[split] = _split_statistics(src, split, options)
    return DatasetStatistics(dataset=name, span=span, label=label, splits=splits)


class StatisticsMaterializer(Materializer):
    """``DatasetStatistics`` <-> ``statistics.json`` (artifact type ``"Statistics"``).

    Properties: rows per split, number of features and the label column.

    Example:
        >>> StatisticsMaterializer().save(stats, folder)  # doctest: +SKIP
        {'splits': {'train': 800, 'eval': 200}, 'num_features': 12, 'label': 'income'}
    """

    python_types = (DatasetStatistics,)
    artifact_type = "Statistics"
    file_name = "statistics.json"

    def save(self, obj: Any, folder: Path) -> dict[str, Any]:
        stats: DatasetStatistics = obj
        (folder / self.file_name).write_text(stats.model_dump_json(indent=1), encoding="utf-8")
        features = {name for split in stats.splits.values() for name in split.features}
        return {
            "splits": {name: split.num_rows for name, split in stats.splits.items()},
            "num_features": len(features),
            "label": stats.label,
        }

    def load(self, folder: Path, python_type: type) -> Any:
        text = (folder / self.file_name).read_text(encoding="utf-8")
        return DatasetStatistics.model_validate_json(text)
