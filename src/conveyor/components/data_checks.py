"""Standard components that describe and check data: ``statistics``, ``infer_schema``, ``validate``.

Written with the public API only, like any user component::

    @pipeline
    def census(span: int = 3) -> None:
        data = ingest(source="data/", span=span)
        stats = statistics(data, label="income")
        schema = infer_schema(stats, curated="schema.yaml")
        report = validate(stats, schema, data, previous=ingest_previous(...))
        train(data, report)  # never runs when validate finds an error

``validate`` raises :class:`conveyor.data.errors.ValidationFailed` when any anomaly is an
error: the step fails, dependent steps are skipped, and nothing downstream (transform, train,
registry) sees the bad data.
"""

from __future__ import annotations

from pathlib import Path

from conveyor import Dataset, component, current_step
from conveyor.data.errors import SchemaError, ValidationFailed
from conveyor.data.schema import DEFAULT_DOMAIN_CAP, Comparator, Schema, load_schema
from conveyor.data.schema import infer_schema as infer_from_statistics
from conveyor.data.statistics_model import DatasetStatistics
from conveyor.data.validation_model import ValidationReport

__all__ = ["infer_schema", "statistics", "validate"]


@component
def statistics(
    data: Dataset,
    label: str | None = None,
    categorical: list[str] | None = None,
    top_k: int = DEFAULT_DOMAIN_CAP,
    bins: int = 10,
) -> DatasetStatistics:
    """Statistics of every split of ``data`` (one per ``split=NAME/`` sub-folder).

    ``top_k`` defaults to the schema's domain cap, so that ``infer_schema`` sees every value
    of a categorical feature with up to 100 values. ``categorical`` forces columns (integer
    codes, say) to be analysed as categories.

    Example:
        >>> stats = statistics(data, label="income")  # inside a @pipeline
    """
    from conveyor.data.statistics import compute_dataset_statistics

    return compute_dataset_statistics(
        data, label=label, categorical=tuple(categorical or ()), top_k=top_k, bins=bins
    )


def _curated(path: str) -> Schema:
    file = Path(path).expanduser()
    if not file.is_file():
        raise SchemaError(f"curated schema {file.absolute()} does not exist")
    schema = load_schema(file)
    return schema.model_copy(update={"source": f"curated: {path}"})


# cache=False: a curated file can change under the same path, and the cache key sees only the
# path. Re-running is cheap (it reads statistics), and an unchanged schema is the same
# artifact by content, so the steps after it still hit the cache.
@component(cache=False)
def infer_schema(
    statistics: DatasetStatistics,
    curated: str | None = None,
    label: str | None = None,
    identifiers: list[str] | None = None,
    domain_cap: int = DEFAULT_DOMAIN_CAP,
    range_slack: float = 0.1,
    missing_slack: float = 0.05,
    max_out_of_range_fraction: float = 0.001,
    max_unseen_fraction: float = 0.0,
    drift_threshold: float | None = None,
    skew_threshold: float | None = None,
    method: str = "auto",
) -> Schema:
    """Infer a schema from ``statistics``, or load the ``curated`` YAML file instead.

    A curated schema (path relative to the directory the pipeline runs in) overrides the
    inferred one and is stored as the step's Schema artifact, so it is versioned like any
    other. ``identifiers`` (keys, ids) get only type and presence checks: no range, domain
    or drift. ``drift_threshold``/``skew_threshold`` give every feature a comparator with
    ``method`` (drift over it is an error); without them drift over the method's default
    threshold is only a warning.

    Example:
        >>> schema = infer_schema(stats, curated="schema.yaml")  # inside a @pipeline
    """
    if curated:
        return _curated(curated)
    drift = skew = None
    if drift_threshold is not None or method != "auto":
        drift = Comparator(method=method, threshold=drift_threshold)
    if skew_threshold is not None or method != "auto":
        skew = Comparator(method=method, threshold=skew_threshold)
    return infer_from_statistics(
        statistics,
        label=label,
        identifiers=identifiers or (),
        domain_cap=domain_cap,
        range_slack=range_slack,
        missing_slack=missing_slack,
        max_out_of_range_fraction=max_out_of_range_fraction,
        max_unseen_fraction=max_unseen_fraction,
        drift=drift,
        skew=skew,
    )


def _write_html(report: ValidationReport, stats: DatasetStatistics) -> Path | None:
    """Write the HTML report next to the step log (None outside a run, or when it fails)."""
    step = current_step()
    if step is None:
        return None
    path = step.log_path.parent / f"{step.step}-validation.html"
    try:
        return report.write_html(path, statistics=stats)
    except Exception as exc:  # the report is a view: never let it hide the verdict
        print(f"warning: could not write the HTML report {path}: {type(exc).__name__}: {exc}")
        return None


@component
def validate(
    statistics: DatasetStatistics,
    schema: Schema,
    data: Dataset,
    previous: Dataset | None = None,
    serving: Dataset | None = None,
    drift_split: str = "train",
    skew_split: str = "train",
) -> ValidationReport:
    """Check every split of ``data`` against ``schema``; drift vs ``previous``, skew vs
    ``serving``. Raises ValidationFailed (after writing the HTML report) on any error.

    Example:
        >>> report = validate(stats, schema, data, previous=last_span)  # inside a @pipeline
    """
    from conveyor.data.validation import validate_dataset

    report = validate_dataset(
        statistics,
        schema,
        data=data.path,
        previous=previous.path if previous is not None else None,
        serving=serving.path if serving is not None else None,
        drift_split=drift_split,
        skew_split=skew_split,
    )
    html = _write_html(report, statistics)
    print(report.summary())
    if html is not None:
        print(f"report: {html}")
    if not report.ok:
        where = f"\nreport: {html}" if html is not None else ""
        raise ValidationFailed(f"{report.summary()}{where}", report=report)
    return report
