"""The "Evaluation" and "Blessing" artifacts the ``evaluate`` step stores, and their materializers.

- :class:`EvaluationConfig` is what to measure (slices, metrics, thresholds, sensitive
  features, ``min_count``) for one task, validated by :meth:`EvaluationConfig.create` *before*
  anything is evaluated, and :meth:`EvaluationConfig.check_frame` against the data's columns.
- :class:`EvaluationReport` is one evaluation of a candidate model: its
  :class:`~conveyor.modeling.evaluation_model.EvaluationResult`, the baseline's on the same
  data with the same configuration (None when there is no baseline), their
  :class:`Comparison` and the :class:`~conveyor.modeling.evaluation_model.Blessing`.
- :class:`EvaluationMaterializer` stores a report as ``evaluation.json`` plus ``report.html``
  (rendered at save time by :mod:`conveyor.modeling.evaluation_report`, dated
  :attr:`EvaluationReport.as_of`, so identical inputs give identical bytes and the same
  fingerprint); :class:`BlessingMaterializer` stores a blessing as ``blessing.json``. Both
  put the verdict in the artifact's properties so listings show it without loading.

Field names are a stored format: add fields with defaults, never rename.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from conveyor.core.materializers import Materializer
from conveyor.modeling.evaluation_model import Blessing, EvaluationResult, Task
from conveyor.modeling.explain import Explanation
from conveyor.modeling.metrics import EvaluationError, higher_is_better, validate_metrics
from conveyor.modeling.slicing import (
    DEFAULT_MIN_COUNT,
    SliceSpec,
    check_slice_columns,
    parse_slices,
    require_column,
)
from conveyor.modeling.thresholds import required_metrics, validate_thresholds

__all__ = [
    "BLESSING_FILE",
    "EVALUATION_FILE",
    "REPORT_FILE",
    "BlessingMaterializer",
    "Comparison",
    "EvaluationConfig",
    "EvaluationMaterializer",
    "EvaluationReport",
    "MetricDelta",
    "compare",
]

EVALUATION_FILE = "evaluation.json"
REPORT_FILE = "report.html"
BLESSING_FILE = "blessing.json"


class _Model(BaseModel):
    """Strict JSON for NaN/inf (written as strings), no unknown fields."""

    model_config = ConfigDict(ser_json_inf_nan="strings", extra="forbid")


class EvaluationConfig(_Model):
    """What an evaluation measures; build it with :meth:`create`, which validates it.

    Example:
        >>> config = EvaluationConfig.create(
        ...     "binary", slices=["sex"], thresholds=[{"metric": "roc_auc", "min": 0.8}]
        ... )
        >>> config.metric_list is None  # every binary metric
        True
    """

    task: Task
    slices: list[Any] = Field(default_factory=list)  # slice specs, parsed, as plain data
    metrics: list[str] | None = None  # None: every metric of the task
    thresholds: list[dict[str, Any]] = Field(default_factory=list)  # validated, as plain data
    sensitive_features: list[str] = Field(default_factory=list)
    min_count: int = DEFAULT_MIN_COUNT

    @classmethod
    def create(
        cls,
        task: Task,
        *,
        slices: Sequence[Any] = (),
        metrics: Sequence[str] | None = None,
        thresholds: Sequence[Any] = (),
        sensitive_features: Sequence[str] = (),
        min_count: int = DEFAULT_MIN_COUNT,
    ) -> EvaluationConfig:
        """Validate a configuration for ``task``; nothing is evaluated.

        Raises:
            EvaluationError: an unknown metric (with a did-you-mean hint) or one the task
                cannot have, a bad slice spec or threshold, fairness on a non-binary task,
                a negative ``min_count``.
        """
        rules = validate_thresholds(list(thresholds), task)
        specs = parse_slices(list(slices))
        asked = None if metrics is None else list(validate_metrics(task, list(metrics)))
        if sensitive_features and task != "binary":
            raise EvaluationError(
                f"sensitive_features {list(sensitive_features)}: fairness is computed for "
                f"binary tasks only, and this model's task is {task}"
            )
        if min_count < 0:
            raise EvaluationError(f"min_count must be >= 0, got {min_count}")
        return cls(
            task=task,
            slices=[_plain(spec) for spec in specs],
            metrics=asked,
            thresholds=[r.model_dump(mode="json", exclude_defaults=True) for r in rules],
            sensitive_features=list(dict.fromkeys(sensitive_features)),
            min_count=min_count,
        )

    @property
    def metric_list(self) -> list[str] | None:
        """The metrics to compute: those asked plus those thresholds need; None for all."""
        if self.metrics is None:
            return None
        rules = validate_thresholds(self.thresholds, self.task)
        return list(dict.fromkeys([*self.metrics, *required_metrics(rules)]))

    def check_frame(self, frame: pd.DataFrame, label: str) -> None:
        """Check that the label, sliced and sensitive columns exist in ``frame``.

        Raises:
            EvaluationError: names the column and lists the frame's columns.
        """
        require_column(frame, label, "label")
        check_slice_columns(parse_slices(self.slices), frame)
        for feature in self.sensitive_features:
            require_column(frame, feature, f"sensitive feature {feature!r}")
        if len(frame) == 0:
            raise EvaluationError("the evaluation data has no rows")


def _plain(spec: SliceSpec) -> Any:
    """A parsed slice spec back as plain data: ``"sex"``, a mapping, or a pair for a cross."""
    columns = [column.to_plain() for column in spec.columns]
    return columns[0] if len(columns) == 1 else columns


class MetricDelta(_Model):
    """One metric of the candidate next to the baseline's (``delta`` = candidate - baseline).

    ``better`` says whether the candidate is better in the metric's direction; None when
    either value is missing or undefined, or both are equal.
    """

    candidate: float | None
    baseline: float | None = None
    delta: float | None = None
    better: bool | None = None


class Comparison(_Model):
    """Candidate vs baseline, overall and per slice (the candidate's metrics and slices)."""

    overall: dict[str, MetricDelta] = Field(default_factory=dict)
    slices: dict[str, dict[str, MetricDelta]] = Field(default_factory=dict)


def _delta(metric: str, candidate: float | None, baseline: float | None) -> MetricDelta:
    if candidate is None or baseline is None or math.isnan(candidate) or math.isnan(baseline):
        return MetricDelta(candidate=candidate, baseline=baseline)
    delta = candidate - baseline
    better = None if delta == 0 else (delta > 0) == higher_is_better(metric)
    return MetricDelta(candidate=candidate, baseline=baseline, delta=delta, better=better)


def compare(candidate: EvaluationResult, baseline: EvaluationResult | None) -> Comparison:
    """The candidate's metrics next to the baseline's, overall and on each candidate slice.

    Example:
        >>> a = EvaluationResult(task="regression", count=9, overall={"rmse": 1.0})
        >>> b = EvaluationResult(task="regression", count=9, overall={"rmse": 1.5})
        >>> compare(a, b).overall["rmse"].better
        True
    """
    base_overall = {} if baseline is None else baseline.overall
    overall = {m: _delta(m, v, base_overall.get(m)) for m, v in candidate.overall.items()}
    slices: dict[str, dict[str, MetricDelta]] = {}
    for name, sliced in candidate.slices.items():
        base_slice = None if baseline is None else baseline.slices.get(name)
        base = {} if base_slice is None else base_slice.metrics
        slices[name] = {m: _delta(m, v, base.get(m)) for m, v in sliced.metrics.items()}
    return Comparison(overall=overall, slices=slices)


class EvaluationReport(_Model):
    """One evaluation of a candidate model, against a baseline when there is one.

    Attributes:
        model_name: the registered model the candidate would become a version of.
        label: the label column; ``split``: the evaluated split (None: the whole dataset).
        data_uri, data_sha256: the evaluated Dataset artifact (or file) and its fingerprint.
        candidate: the candidate's evaluation (``model_version`` names it).
        baseline: the baseline's evaluation on the same data and configuration, or None.
        blessing: the verdict, with one reason per check.
        comparison: candidate vs baseline, overall and per slice.
        config: what was measured, as validated.
        as_of: ISO 8601 time the report is dated with: the candidate bundle's ``created_at``
            (a fact of the inputs, so re-rendering gives the same bytes).
        candidate_sha256, baseline_sha256: the bundles' manifest hashes.
        baseline_note: why there is no baseline (empty when there is one).
        explanation: the candidate's explanation (``explain``), drawn in the HTML report.
    """

    model_name: str
    label: str
    split: str | None = None
    data_uri: str = ""
    data_sha256: str = ""
    candidate: EvaluationResult
    baseline: EvaluationResult | None = None
    blessing: Blessing
    comparison: Comparison
    config: EvaluationConfig
    as_of: str
    candidate_sha256: str = ""
    baseline_sha256: str = ""
    baseline_note: str = ""
    explanation: Explanation | None = None

    @property
    def generated_at(self) -> datetime:
        """:attr:`as_of` as an aware datetime (UTC when it carries no zone)."""
        try:
            when = datetime.fromisoformat(self.as_of)
        except ValueError:
            return datetime(1970, 1, 1, tzinfo=UTC)
        return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _finite(values: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in values.items() if math.isfinite(v)}


class EvaluationMaterializer(Materializer):
    """:class:`EvaluationReport` <-> ``evaluation.json`` + ``report.html`` ("Evaluation").

    Example:
        >>> EvaluationMaterializer().save(report, folder)["blessed"]
        True
    """

    python_types = (EvaluationReport,)
    artifact_type = "Evaluation"

    def save(self, obj: Any, folder: Path) -> dict[str, Any]:
        from conveyor.modeling.evaluation_report import render_evaluation_html  # matplotlib

        report: EvaluationReport = obj
        (folder / EVALUATION_FILE).write_text(report.model_dump_json() + "\n", encoding="utf-8")
        (folder / REPORT_FILE).write_text(render_evaluation_html(report), encoding="utf-8")
        return {
            "model_name": report.model_name,
            "task": report.candidate.task,
            "split": report.split,
            "count": report.candidate.count,
            "blessed": report.blessing.blessed,
            "failed_checks": len(report.blessing.failures),
            "baseline_version": report.blessing.baseline_version,
            "metrics": _finite(report.candidate.overall),
        }

    def load(self, folder: Path, python_type: type) -> Any:
        text = (Path(folder) / EVALUATION_FILE).read_text(encoding="utf-8")
        return EvaluationReport.model_validate_json(text)


class BlessingMaterializer(Materializer):
    """:class:`~conveyor.modeling.evaluation_model.Blessing` <-> ``blessing.json`` ("Blessing").

    Example:
        >>> BlessingMaterializer().save(blessing, folder)["failed_checks"]
        0
    """

    python_types = (Blessing,)
    artifact_type = "Blessing"

    def save(self, obj: Any, folder: Path) -> dict[str, Any]:
        blessing: Blessing = obj
        (folder / BLESSING_FILE).write_text(blessing.model_dump_json() + "\n", encoding="utf-8")
        return {
            "blessed": blessing.blessed,
            "failed_checks": len(blessing.failures),
            "checks": len(blessing.reasons),
            "baseline_version": blessing.baseline_version,
            "note": blessing.note,
        }

    def load(self, folder: Path, python_type: type) -> Any:
        text = (Path(folder) / BLESSING_FILE).read_text(encoding="utf-8")
        return Blessing.model_validate_json(text)
