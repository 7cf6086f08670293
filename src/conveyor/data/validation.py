"""Validation: compare statistics (and data) with a schema; add drift and skew.

Three layers, each usable alone:

1. :func:`check_statistics` is pure: a split's statistics + a schema -> anomalies (missing,
   unexpected or retyped columns, missing fraction, empty split, missing label, and
   out-of-range / unseen-category shares *estimated* from histograms and top-k).
2. :func:`count_violations` streams the data once (Arrow batches, bounded memory) and counts
   out-of-range values and values outside each domain exactly; given to
   :func:`check_statistics`, these counts replace the estimates.
3. :func:`compare_distributions` runs :func:`conveyor.data.drift.dataset_drift` with the
   schema's per-feature comparators; :func:`drift_anomalies` turns drifted columns into
   anomalies.

:func:`validate_split` (one file, the CLI) and :func:`validate_dataset` (a folder with
``split=NAME/`` sub-folders, the ``validate`` component) put them together.

Severities: a missing required column, a type change, an empty split, a missing label and
any share over its schema limit (missing, out of range, unseen) are errors; an unexpected
column is a warning (an error when the schema says ``allow_new_columns: false``); drift or
skew over a threshold written in the schema is an error, over a method's default threshold
a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from conveyor.data.errors import DataSourceError, DriftError
from conveyor.data.schema import FeatureSchema, Schema
from conveyor.data.statistics_model import (
    DatasetStatistics,
    FeatureStatistics,
    FeatureType,
    SplitStatistics,
)
from conveyor.data.validation_model import Anomaly, AnomalyKind, Severity, ValidationReport

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as pads

    from conveyor.data.drift import DriftReport

__all__ = [
    "Violations",
    "check_statistics",
    "compare_distributions",
    "count_violations",
    "drift_anomalies",
    "load_source",
    "schema_statistics",
    "split_files",
    "validate_dataset",
    "validate_split",
]

_EXAMPLES = 5
ERROR, INFO = Severity.ERROR, Severity.INFO


@dataclass
class Violations:
    """Exact counts for one feature, from the data itself."""

    checked: int = 0  # non-missing values looked at
    out_of_range: int = 0
    unseen: int = 0
    unseen_examples: list[str] = field(default_factory=list)


def _make(
    kind: AnomalyKind,
    feature: str | None,
    severity: Severity,
    message: str,
    observed: Any = None,
    expected: Any = None,
) -> Anomaly:
    return Anomaly(
        kind=kind,
        feature=feature,
        severity=severity,
        message=message,
        observed=observed,
        expected=expected,
    )


def _pct(fraction: float) -> str:
    return f"{fraction:.1%}" if fraction >= 0.001 or fraction == 0 else f"{fraction:.2e}"


# -- 1. statistics against the schema -----------------------------------------------------


def _columns(stats: SplitStatistics, schema: Schema, expect_label: bool) -> list[Anomaly]:
    found = []
    for name, feature in schema.features.items():
        if name in stats.features or (name == schema.label and not expect_label):
            continue
        if name == schema.label:
            found.append(_make(AnomalyKind.LABEL_MISSING, name, ERROR, "label column is missing"))
        elif feature.required:
            msg = "required column is missing"
            found.append(_make(AnomalyKind.MISSING_COLUMN, name, ERROR, msg, None, feature.type))
        else:
            msg = "optional column is absent"
            found.append(_make(AnomalyKind.MISSING_COLUMN, name, INFO, msg, None, feature.type))
    severity = Severity.WARNING if schema.allow_new_columns else ERROR
    for name, seen in stats.features.items():
        if name not in schema.features:
            msg = f"column not in the schema ({seen.type.value})"
            found.append(_make(AnomalyKind.UNEXPECTED_COLUMN, name, severity, msg, seen.type))
    return found


def _estimate_outside(stats: FeatureStatistics, low: float | None, high: float | None) -> float:
    """Share of values outside [low, high] from the histogram (uniform within a bin)."""
    numeric = stats.numeric
    if numeric is None or numeric.min is None or numeric.max is None or not stats.count:
        return 0.0
    if (low is None or numeric.min >= low) and (high is None or numeric.max <= high):
        return 0.0
    hist = numeric.histogram
    if hist is None or not hist.counts:
        return 1.0 / stats.count  # at least the extreme value is outside
    outside = 0.0
    for left, right, count in zip(hist.edges, hist.edges[1:], hist.counts, strict=False):
        width = right - left
        below = 0.0 if low is None else min(max(low - left, 0.0), width)
        above = 0.0 if high is None else min(max(right - high, 0.0), width)
        share = (below + above) / width if width > 0 else float(below + above > 0)
        outside += count * min(share, 1.0)
    return max(outside, 1.0) / stats.count


def _estimate(stats: FeatureStatistics, feature: FeatureSchema) -> Violations:
    """Violations estimated from statistics alone (used when the data is not given)."""
    out_of_range = round(_estimate_outside(stats, feature.min, feature.max) * stats.count)
    unseen = 0
    examples: list[str] = []
    if feature.domain is not None and stats.categorical is not None:
        domain = set(feature.domain)
        outside = [v for v in stats.categorical.top if v.value not in domain]
        unseen = sum(v.count for v in outside)
        examples = [v.value for v in outside[:_EXAMPLES]]
    return Violations(stats.count, out_of_range, unseen, examples)


def _share_anomalies(name: str, feature: FeatureSchema, found: Violations) -> list[Anomaly]:
    anomalies = []
    checked = max(found.checked, 1)
    share, limit = found.out_of_range / checked, feature.max_out_of_range_fraction
    if found.out_of_range and share > limit:
        low = "-inf" if feature.min is None else f"{feature.min:g}"
        high = "inf" if feature.max is None else f"{feature.max:g}"
        msg = (
            f"{found.out_of_range} values ({_pct(share)}) outside [{low}, {high}], "
            f"at most {_pct(limit)} allowed"
        )
        anomalies.append(_make(AnomalyKind.OUT_OF_RANGE, name, ERROR, msg, share, limit))
    share, limit = found.unseen / checked, feature.max_unseen_fraction
    if found.unseen and share > limit:
        shown = ", ".join(repr(v) for v in found.unseen_examples)
        msg = (
            f"{found.unseen} values ({_pct(share)}) outside the domain, "
            f"at most {_pct(limit)} allowed; e.g. {shown}"
        )
        anomalies.append(_make(AnomalyKind.UNSEEN_CATEGORIES, name, ERROR, msg, share, limit))
    return anomalies


def _feature_anomalies(
    name: str, feature: FeatureSchema, stats: FeatureStatistics, found: Violations | None
) -> list[Anomaly]:
    if stats.type is not feature.type:
        msg = f"type is {stats.type.value}, the schema says {feature.type.value}"
        return [_make(AnomalyKind.TYPE_CHANGE, name, ERROR, msg, stats.type, feature.type)]
    anomalies = []
    missing, limit = stats.missing_fraction, feature.max_missing_fraction
    if missing > limit:
        msg = f"{stats.missing} values missing ({_pct(missing)}), at most {_pct(limit)} allowed"
        anomalies.append(_make(AnomalyKind.MISSING_FRACTION, name, ERROR, msg, missing, limit))
    found = found if found is not None else _estimate(stats, feature)
    return anomalies + _share_anomalies(name, feature, found)


def check_statistics(
    stats: SplitStatistics,
    schema: Schema,
    violations: Mapping[str, Violations] | None = None,
    *,
    expect_label: bool = True,
    split: str | None = None,
) -> list[Anomaly]:
    """Anomalies of one split against ``schema``.

    ``violations`` (from :func:`count_violations`) give exact out-of-range and unseen counts;
    without them the shares are estimated from histograms and top-k values. ``expect_label``
    False accepts data without the label column (serving data). ``split`` is recorded on
    each anomaly.

    Example:
        >>> [a.line() for a in check_statistics(stats.split("eval"), schema)]
        ['error    missing_column     age: required column is missing']
    """
    if stats.num_rows == 0:
        anomalies = [_make(AnomalyKind.EMPTY_DATASET, None, ERROR, "the split has no rows", 0)]
    else:
        anomalies = _columns(stats, schema, expect_label)
        for name, feature in schema.features.items():
            if name in stats.features:
                found = violations.get(name) if violations is not None else None
                anomalies += _feature_anomalies(name, feature, stats.features[name], found)
    for anomaly in anomalies:
        anomaly.split = split
    return anomalies


# -- 2. exact counts from the data --------------------------------------------------------


def _open(source: Any) -> pads.Dataset:
    """An Arrow dataset over Parquet files (streamed), or over any other source read whole
    by :func:`conveyor.data.sources.read_source` (CSV/JSON files, tables, DataFrames)."""
    import pyarrow as pa
    import pyarrow.dataset as pads

    from conveyor.data.sources import read_files, read_source

    if isinstance(source, list | tuple):
        paths = [Path(p) for p in source]
    elif isinstance(source, str | Path):
        path = Path(source)
        paths = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    else:
        return pads.dataset(read_source(source))
    if not paths or not all(p.suffix == ".parquet" and p.is_file() for p in paths):
        return pads.dataset(read_files(paths) if len(paths) > 1 else read_source(source))
    try:
        return pads.dataset([str(p) for p in paths], format="parquet")
    except (pa.ArrowException, OSError) as exc:
        raise DataSourceError(f"{paths[0]}: cannot read as Parquet: {exc}") from exc


def _count_batch(batch: pa.RecordBatch, schema: Schema, counts: dict[str, Violations]) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    for name, found in counts.items():
        feature = schema.features[name]
        values = batch.column(name)
        found.checked += len(values) - values.null_count
        numeric = pa.types.is_integer(values.type) or pa.types.is_floating(values.type)
        if numeric and (feature.min is not None or feature.max is not None):
            low = pc.less(values, feature.min) if feature.min is not None else None
            high = pc.greater(values, feature.max) if feature.max is not None else None
            mask = low if high is None else high if low is None else pc.or_(low, high)
            found.out_of_range += pc.sum(mask).as_py() or 0
        if feature.domain is not None:
            try:
                text = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
            except pa.ArrowNotImplementedError:  # a nested type: reported as a type change
                continue
            inside = pc.is_in(text, value_set=pa.array(feature.domain, pa.string()))
            outside = pc.and_(pc.invert(inside), pc.is_valid(text))
            found.unseen += pc.sum(outside).as_py() or 0
            if len(found.unseen_examples) < _EXAMPLES and found.unseen:
                seen = pc.unique(pc.filter(text, outside)).to_pylist()
                extra = [v for v in seen if v not in found.unseen_examples]
                found.unseen_examples += extra[: _EXAMPLES - len(found.unseen_examples)]


def count_violations(source: Any, schema: Schema) -> dict[str, Violations]:
    """Count values outside each feature's range and domain, streaming the data once.

    ``source``: a Parquet or CSV file, a folder of Parquet files, a list of files, an Arrow
    table or a pandas DataFrame. Only features with a range or a domain are read.

    Example:
        >>> count_violations("eval.parquet", schema)["age"].out_of_range
        3
    """
    import pyarrow as pa

    dataset = _open(source)
    present = set(dataset.schema.names)
    wanted = [
        name
        for name, feature in schema.features.items()
        if name in present
        and (feature.domain is not None or feature.min is not None or feature.max is not None)
    ]
    counts = {name: Violations() for name in wanted}
    if not wanted:
        return counts
    try:
        for batch in dataset.to_batches(columns=wanted):
            _count_batch(batch, schema, counts)
    except (pa.ArrowException, OSError) as exc:
        raise DataSourceError(f"{source}: cannot read: {exc}") from exc
    return counts


def split_files(folder: str | Path, split: str) -> list[Path]:
    """The Parquet files of one split of a Dataset folder (``split=NAME/`` sub-folders).

    A folder without split sub-folders is one split: every name gives all its files.

    Example:
        >>> split_files(dataset.path, "train")
        [PosixPath('.../split=train/part-0.parquet')]
    """
    root = Path(folder)
    splits = sorted(p.name.removeprefix("split=") for p in root.glob("split=*") if p.is_dir())
    if not splits:
        files = sorted(root.rglob("*.parquet"))
    elif split in splits:
        files = sorted((root / f"split={split}").rglob("*.parquet"))
    else:
        raise DataSourceError(f"{root} has no split {split!r} (splits: {', '.join(splits)})")
    if not files:
        raise DataSourceError(f"{root}: no .parquet files for split {split!r}")
    return files


# -- 3. drift and skew --------------------------------------------------------------------

Comparison = Literal["drift", "skew"]


def _comparable(schema: Schema, available: set[str], kind: Comparison) -> list[str]:
    """Features worth comparing: numbers, booleans, categories with a domain, or any feature
    with a comparator in the schema; never identifiers or high-cardinality text."""
    columns = []
    for name, feature in schema.features.items():
        skipped = feature.identifier or (kind == "skew" and name == schema.label)
        if name not in available or skipped:
            continue
        comparator = feature.drift if kind == "drift" else feature.skew
        plain = feature.type in (FeatureType.INT, FeatureType.FLOAT, FeatureType.BOOL)
        if comparator is not None or plain or feature.domain is not None:
            columns.append(name)
    return columns


def compare_distributions(
    reference: Any, current: Any, schema: Schema, *, kind: Comparison = "drift"
) -> DriftReport:
    """Drift (``current`` vs the previous span ``reference``) or skew (serving ``current``
    vs training ``reference``) per feature, with the schema's methods and thresholds.

    Example:
        >>> report = compare_distributions("span1.parquet", "span2.parquet", schema)
        >>> report.drifted_columns
        ['age']
    """
    from conveyor.data.drift import dataset_drift

    ref, cur = _open(reference), _open(current)
    available = set(ref.schema.names) & set(cur.schema.names)
    columns = _comparable(schema, available, kind)
    methods: dict[str, str] = {}
    thresholds: dict[str, float] = {}
    for name in columns:
        comparator = getattr(schema.features[name], kind)
        methods[name] = comparator.method if comparator is not None else "auto"
        if comparator is not None and comparator.threshold is not None:
            thresholds[name] = comparator.threshold
    categorical = [
        n
        for n in columns
        if schema.features[n].domain is not None
        or schema.features[n].type in (FeatureType.STRING, FeatureType.BOOL)
    ]
    return dataset_drift(
        ref.to_table(columns=columns),
        cur.to_table(columns=columns),
        columns=columns,
        method=methods,
        thresholds=thresholds or None,
        categorical=categorical,
    )


def drift_anomalies(report: DriftReport, schema: Schema, kind: Comparison) -> list[Anomaly]:
    """One anomaly per drifted column: an error when the schema sets its threshold."""
    against = "the previous span" if kind == "drift" else "serving data"
    anomaly_kind = AnomalyKind.DRIFT if kind == "drift" else AnomalyKind.SKEW
    columns = report.columns.values() if isinstance(report.columns, Mapping) else report.columns
    anomalies = []
    for col in columns:
        if not col.drifted:
            continue
        feature = schema.features.get(col.column)
        comparator = getattr(feature, kind) if feature is not None else None
        strict = comparator is not None and comparator.threshold is not None
        side = ">" if col.higher_is_drift else "<"
        msg = f"{col.method} {col.score:.4g} {side} threshold {col.threshold:.4g} vs {against}"
        if not strict:
            msg += " (default threshold: set one in the schema to make this an error)"
        anomalies.append(
            _make(
                anomaly_kind,
                col.column,
                Severity.ERROR if strict else Severity.WARNING,
                msg,
                observed=col.score,
                expected=col.threshold,
            )
        )
    return anomalies


def _compare(
    reference: Any, current: Any, schema: Schema, kind: Comparison
) -> tuple[dict[str, Any] | None, list[Anomaly]]:
    try:
        report = compare_distributions(reference, current, schema, kind=kind)
    except DriftError as exc:
        anomaly_kind = AnomalyKind.DRIFT if kind == "drift" else AnomalyKind.SKEW
        msg = f"{kind} not computed: {exc}"
        return None, [_make(anomaly_kind, None, Severity.WARNING, msg)]
    return report.to_dict(), drift_anomalies(report, schema, kind)


# -- putting it together ------------------------------------------------------------------


def _source_label(schema: Schema) -> str:
    return schema.source + (f" ({schema.dataset})" if schema.dataset else "")


def load_source(source: Any) -> Any:
    """Parquet files and folders as they are (streamed later); anything else read once into
    an Arrow table by :func:`conveyor.data.sources.read_source` (strict CSV/JSON parsing)."""
    if isinstance(source, str | Path):
        path = Path(source)
        if path.is_dir() or path.suffix == ".parquet":
            return path
        from conveyor.data.sources import read_source

        return read_source(path)
    return source


def schema_statistics(source: Any, schema: Schema) -> SplitStatistics:
    """Statistics of ``source`` as the schema needs them: features with a domain (integer
    codes too) analysed as categories, every value of a domain-sized feature kept.

    Example:
        >>> schema_statistics("span3.parquet", schema).num_rows
        32561
    """
    from conveyor.data.schema import DEFAULT_DOMAIN_CAP
    from conveyor.data.statistics import compute_statistics

    columns = set(_open(source).schema.names)
    categorical = [n for n, f in schema.features.items() if f.domain is not None and n in columns]
    return compute_statistics(source, categorical=categorical, top_k=DEFAULT_DOMAIN_CAP)


def validate_split(
    source: Any,
    schema: Schema,
    *,
    statistics: SplitStatistics | None = None,
    previous: Any = None,
    serving: Any = None,
    dataset: str | None = None,
    expect_label: bool = True,
) -> ValidationReport:
    """Validate one file (or table) against ``schema``; drift vs ``previous``, skew vs
    ``serving`` (each any source :func:`count_violations` reads).

    Statistics are computed when not given (:func:`schema_statistics`).

    Example:
        >>> report = validate_split("span3.csv", load_schema("schema.yaml"), previous="span2.csv")
        >>> report.ok
        False
    """
    source = load_source(source)
    statistics = statistics or schema_statistics(source, schema)
    anomalies = check_statistics(
        statistics, schema, count_violations(source, schema), expect_label=expect_label
    )
    drift = skew = None
    if previous is not None:
        drift, found = _compare(previous, source, schema, "drift")
        anomalies += found
    if serving is not None:
        skew, found = _compare(source, serving, schema, "skew")
        anomalies += found
    return ValidationReport(
        dataset=dataset or schema.dataset,
        split=statistics.split,
        anomalies=anomalies,
        drift=drift,
        skew=skew,
        schema_source=_source_label(schema),
    )


def validate_dataset(
    statistics: DatasetStatistics,
    schema: Schema,
    *,
    data: str | Path | None = None,
    previous: str | Path | None = None,
    serving: str | Path | None = None,
    drift_split: str = "train",
    skew_split: str = "train",
) -> ValidationReport:
    """Validate every split of a Dataset folder (``split=NAME/`` sub-folders).

    With ``data``, out-of-range and unseen counts are exact; drift compares ``drift_split``
    of ``data`` with the same split of ``previous``; skew compares ``skew_split`` of ``data``
    with all of ``serving``.

    Example:
        >>> report = validate_dataset(stats, schema, data=dataset.path, previous=old.path)
        >>> print(report.summary())
    """
    anomalies: list[Anomaly] = []
    for name, split_stats in statistics.splits.items():
        counts = count_violations(split_files(data, name), schema) if data is not None else None
        anomalies += check_statistics(split_stats, schema, counts, split=name)
    drift = skew = None
    if previous is not None and data is not None:
        reference = split_files(previous, drift_split)
        drift, found = _compare(reference, split_files(data, drift_split), schema, "drift")
        anomalies += found
    if serving is not None and data is not None:
        skew, found = _compare(split_files(data, skew_split), serving, schema, "skew")
        anomalies += found
    return ValidationReport(
        dataset=statistics.dataset or schema.dataset,
        split=",".join(statistics.splits),
        anomalies=anomalies,
        drift=drift,
        skew=skew,
        schema_source=_source_label(schema),
    )
