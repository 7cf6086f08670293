"""What monitoring measures: the vocabulary shared by monitors, alert rules and policies.

A policy file (``conveyor.toml``) names a metric in an alert rule; :data:`METRICS` says whether
the name exists, whether it is per feature, and which direction is bad, so a policy is checked
before anything runs (an unknown name is refused with the valid ones listed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["METRICS", "MetricInfo", "metric_info"]


@dataclass(frozen=True)
class MetricInfo:
    """What one monitored metric is.

    Attributes:
        name: The name used in policies and alerts.
        kind: ``drift`` (input or prediction drift score), ``performance`` (needs feedback),
            or ``traffic`` (counts and latency from the prediction log alone).
        per_feature: Whether a rule must (or may, with ``"*"``) name a feature.
        worse: ``"higher"`` when a larger value is worse (drift, error, latency),
            ``"lower"`` when a smaller value is worse (accuracy, AUC).
        task: The model task the metric needs (``classification``/``regression``) or None.
        description: One line for help texts and reports.
    """

    name: str
    kind: Literal["drift", "performance", "traffic"]
    per_feature: bool
    worse: Literal["higher", "lower"]
    task: Literal["classification", "regression"] | None
    description: str


METRICS: dict[str, MetricInfo] = {
    info.name: info
    for info in (
        MetricInfo(
            "drift",
            "drift",
            True,
            "higher",
            None,
            "drift score of a serving input against the training statistics of the version "
            "that served it (the feature's drift method and threshold from data validation)",
        ),
        MetricInfo(
            "prediction_drift",
            "drift",
            False,
            "higher",
            None,
            "drift score of the model's predictions against its predictions on the evaluation data",
        ),
        MetricInfo(
            "missing_rate",
            "drift",
            True,
            "higher",
            None,
            "share of null/NaN values of a serving input in the window",
        ),
        MetricInfo("accuracy", "performance", False, "lower", "classification", "online accuracy"),
        MetricInfo(
            "f1", "performance", False, "lower", "classification", "online F1 (binary) or macro F1"
        ),
        MetricInfo(
            "precision", "performance", False, "lower", "classification", "online precision"
        ),
        MetricInfo("recall", "performance", False, "lower", "classification", "online recall"),
        MetricInfo("roc_auc", "performance", False, "lower", "classification", "online ROC AUC"),
        MetricInfo("log_loss", "performance", False, "higher", "classification", "online log loss"),
        MetricInfo(
            "rmse", "performance", False, "higher", "regression", "online root mean squared error"
        ),
        MetricInfo(
            "mae", "performance", False, "higher", "regression", "online mean absolute error"
        ),
        MetricInfo("r2", "performance", False, "lower", "regression", "online R squared"),
        MetricInfo("count", "traffic", False, "lower", None, "predictions in the window"),
        MetricInfo("latency_p99", "traffic", False, "higher", None, "99th percentile latency (ms)"),
        MetricInfo(
            "feedback_coverage",
            "traffic",
            False,
            "lower",
            None,
            "share of the window's predictions that have ground truth",
        ),
    )
}
"""Every metric a policy may name, by name."""


def metric_info(name: str) -> MetricInfo:
    """The :class:`MetricInfo` of ``name``.

    Raises:
        KeyError: ``name`` is not a monitored metric (the message lists the valid names).
    """
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(
            f"unknown metric {name!r}; valid metrics: {', '.join(sorted(METRICS))}"
        ) from None
