"""The Evaluation and Blessing results: what a model scored, where, and whether it may ship.

Plain pydantic models that serialise to strict JSON and load back unchanged. Undefined values
(a ROC AUC on a slice with one class, a ratio of two zero rates) are ``float("nan")`` in
Python and the string ``"NaN"`` in JSON (``ser_json_inf_nan="strings"``), so a dump never
contains the non-standard ``NaN`` literal and a round trip keeps the value.

Produced by :func:`conveyor.modeling.slicing.compute_sliced_metrics` (an
:class:`EvaluationResult`) and :func:`conveyor.modeling.thresholds.bless` (a
:class:`Blessing`); consumed by the ``evaluate`` component, its HTML report, the registry and
``conveyor models diff``. Field names are part of the stored format: add fields with defaults,
never rename.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Blessing",
    "CalibrationBin",
    "ConfusionMatrix",
    "Curve",
    "EvaluationResult",
    "FairnessResult",
    "GroupMetrics",
    "Reason",
    "SliceMetrics",
    "Task",
]

Task = Literal["binary", "multiclass", "regression"]


class _Model(BaseModel):
    """Common configuration: strict JSON for NaN/inf, no unknown fields."""

    model_config = ConfigDict(ser_json_inf_nan="strings", extra="forbid")


class ConfusionMatrix(_Model):
    """Counts of true label (row) by predicted label (column), in ``labels`` order.

    Labels are stored as strings so the matrix is the same JSON whatever the label type.
    """

    labels: list[str]
    matrix: list[list[int]]


class CalibrationBin(_Model):
    """One bin of a reliability diagram: scores in ``(lower, upper]`` (the first includes 0)."""

    lower: float
    upper: float
    count: int
    mean_predicted: float  # mean score of the bin
    fraction_positive: float  # observed frequency of the positive class in the bin


class Curve(_Model):
    """A curve as parallel lists: ROC (x=FPR, y=TPR) or precision-recall (x=recall, y=precision).

    ``thresholds[i]`` is the score threshold of point i (ROC's first one is ``inf``).
    Downsampled to at most 200 points, keeping the first and the last.
    """

    x: list[float]
    y: list[float]
    thresholds: list[float]

    @classmethod
    def from_points(
        cls, x: Sequence[float], y: Sequence[float], thresholds: Sequence[float], max_points: int
    ) -> Curve:
        """A curve of at most ``max_points`` points, evenly spaced by index, ends kept.

        Example:
            >>> len(Curve.from_points(range(1000), range(1000), range(1000), 200).x)
            200
        """
        keep = list(range(len(x)))
        if len(x) > max_points:
            keep = sorted({round(i * (len(x) - 1) / (max_points - 1)) for i in range(max_points)})
        return cls(
            x=[float(x[i]) for i in keep],
            y=[float(y[i]) for i in keep],
            thresholds=[float(thresholds[i]) for i in keep],
        )


class SliceMetrics(_Model):
    """Metrics of one slice (e.g. ``"sex=Female"``).

    Attributes:
        spec: the slice spec this slice comes from (``"sex"``, ``"age"``, ``"sex x race"``).
        values: the feature values that define it (``{"sex": "Female"}``).
        count: number of rows.
        metrics: metric name -> value (NaN where undefined on this slice).
        flagged: fewer rows than ``min_count``: reported, but never gated by thresholds.
    """

    spec: str
    values: dict[str, str]
    count: int
    metrics: dict[str, float]
    flagged: bool = False


class GroupMetrics(_Model):
    """Metrics of one group of a sensitive feature (selection rate, TPR, FPR, ...)."""

    count: int
    metrics: dict[str, float]


class FairnessResult(_Model):
    """Per-group metrics of one sensitive feature and its disparities (Fairlearn's definitions).

    Differences are ``max - min`` over groups; ratios are ``min / max`` (NaN when both are 0).
    Equalized odds takes the worse of the true- and false-positive-rate disparities.
    """

    feature: str
    positive_label: str
    groups: dict[str, GroupMetrics]
    overall: dict[str, float] = Field(default_factory=dict)  # the same metrics on all rows
    demographic_parity_difference: float
    demographic_parity_ratio: float
    equalized_odds_difference: float
    equalized_odds_ratio: float


class EvaluationResult(_Model):
    """Everything one evaluation measured: overall, per slice, per sensitive group, curves.

    Example:
        >>> r = EvaluationResult(task="regression", count=3, overall={"rmse": 0.5})
        >>> EvaluationResult.model_validate_json(r.model_dump_json()) == r
        True
    """

    task: Task
    count: int
    overall: dict[str, float]
    labels: list[str] = Field(default_factory=list)  # class labels; binary: [negative, positive]
    support: dict[str, int] = Field(default_factory=dict)  # rows per true class label
    slices: dict[str, SliceMetrics] = Field(default_factory=dict)
    fairness: dict[str, FairnessResult] = Field(default_factory=dict)
    min_count: int = 0
    confusion_matrix: ConfusionMatrix | None = None
    calibration: list[CalibrationBin] | None = None  # binary with scores only
    roc_curve: Curve | None = None  # binary with scores only
    pr_curve: Curve | None = None  # binary with scores only
    model_version: str | None = None  # filled by the caller, e.g. "census:3"


class Reason(_Model):
    """One threshold checked on one slice (``slice`` None: overall).

    ``passed`` is True for a check that was skipped (``skipped`` True), with the reason in
    ``message``: a slice below ``min_count``, a metric missing from the baseline, ...
    """

    metric: str
    slice: str | None
    candidate_value: float | None
    baseline_value: float | None
    threshold: str  # the rule as text, e.g. "min 0.8" or "max_drop 0.01"
    passed: bool
    skipped: bool = False
    message: str


class Blessing(_Model):
    """The gate's decision: blessed or not, with one reason per check.

    Example:
        >>> b = Blessing(blessed=True, reasons=[], baseline_version=None, note="no thresholds")
        >>> b.blessed
        True
    """

    blessed: bool
    reasons: list[Reason]
    baseline_version: str | None
    note: str = ""

    @property
    def failures(self) -> list[Reason]:
        """The checks that failed (empty when blessed)."""
        return [r for r in self.reasons if not r.passed]
