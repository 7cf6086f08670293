"""Thresholds and blessing: may this candidate model replace the baseline?

A threshold is plain data, as in ``conveyor.toml`` or a pipeline parameter::

    {"metric": "roc_auc", "min": 0.80}                    absolute, overall only
    {"metric": "log_loss", "max": 0.35}                   absolute, for lower-is-better metrics
    {"metric": "accuracy", "max_drop": 0.01, "slices": true}
        relative to the baseline, overall and on every slice (higher-is-better metrics)
    {"metric": "rmse", "max_increase": 0.5, "slices": ["sex=Female"]}
        relative, lower-is-better metrics, overall and on the listed slices

Which kind fits which metric comes from the direction table,
:data:`conveyor.modeling.metrics.METRICS`. :func:`validate_thresholds` checks specs against
the task *before* anything is evaluated; :func:`bless` applies them to an
:class:`EvaluationResult` and, when there is one, the baseline's (evaluated on the same data,
ideally). Every check becomes a :class:`Reason`; the candidate is blessed when none failed.

Checks are skipped (recorded as passed, ``skipped=True``, with why) -- never silently -- when
a slice has fewer rows than ``min_count``, a metric is undefined on a slice (NaN), the
baseline lacks the slice or metric, or there is no baseline at all (relative checks only).
An undefined metric *overall* fails. Relative checks allow ``1e-9`` of floating-point slack.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from conveyor.exceptions import did_you_mean
from conveyor.modeling.evaluation_model import (
    Blessing,
    EvaluationResult,
    Reason,
    SliceMetrics,
    Task,
)
from conveyor.modeling.metrics import METRICS, EvaluationError, higher_is_better, metric_names

__all__ = ["TOLERANCE", "Threshold", "bless", "required_metrics", "validate_thresholds"]

#: Slack for relative checks, so 0.85 -> 0.84 is a drop of 0.01 and not 0.010000000000000009.
TOLERANCE = 1e-9
_BOUNDS = ("min", "max", "max_drop", "max_increase")


class Threshold(BaseModel):
    """One threshold on one metric; see the module docstring for the forms.

    Example:
        >>> Threshold(metric="accuracy", max_drop=0.01, slices=True).describe()
        ['max_drop 0.01']
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: str
    min: float | None = None
    max: float | None = None
    max_drop: float | None = None
    max_increase: float | None = None
    slices: bool | tuple[str, ...] = False

    @property
    def relative(self) -> float | None:
        """The allowed worsening against the baseline, if this threshold has one."""
        return self.max_drop if self.max_drop is not None else self.max_increase

    def describe(self) -> list[str]:
        """Each bound as text, e.g. ``["min 0.8", "max_drop 0.01"]``."""
        return [
            f"{key} {getattr(self, key):g}" for key in _BOUNDS if getattr(self, key) is not None
        ]


def validate_thresholds(thresholds: Sequence[Any], task: Task) -> list[Threshold]:
    """Parse threshold specs and check them against a task, before any evaluation.

    Raises:
        EvaluationError: an unknown key or metric (with a did-you-mean hint), a metric the
            task cannot have, no bound, ``max_drop`` on a lower-is-better metric (or
            ``max_increase`` on a higher-is-better one), a negative or non-finite bound.

    Example:
        >>> validate_thresholds([{"metric": "roc_auc", "min": 0.8}], "binary")[0].min
        0.8
        >>> validate_thresholds([{"metric": "rmse", "max": 3}], "binary")
        Traceback (most recent call last):
        ...
        conveyor.modeling.metrics.EvaluationError: threshold #1 on 'rmse': ...
    """
    if isinstance(thresholds, Mapping | Threshold):
        thresholds = [thresholds]
    return [_check(_parse(spec, i), i, task) for i, spec in enumerate(thresholds, start=1)]


def required_metrics(thresholds: Sequence[Threshold]) -> list[str]:
    """The metrics an evaluation must compute for these thresholds, in first-use order.

    Example:
        >>> required_metrics([Threshold(metric="f1", min=0.5), Threshold(metric="f1", max=1)])
        ['f1']
    """
    return list(dict.fromkeys(t.metric for t in thresholds))


def bless(
    candidate: EvaluationResult,
    thresholds: Sequence[Any],
    baseline: EvaluationResult | None = None,
) -> Blessing:
    """Check a candidate's evaluation against thresholds and, if given, a baseline's.

    Args:
        candidate: the candidate model's evaluation.
        thresholds: threshold specs (plain data or :class:`Threshold`).
        baseline: the baseline model's evaluation (usually the ``production`` alias),
            ideally on the same data; None: absolute thresholds alone decide.

    Returns:
        The :class:`Blessing`: blessed when no check failed, one reason per check.

    Raises:
        EvaluationError: invalid thresholds, a threshold on a metric the candidate's
            evaluation did not compute, a baseline of another task.

    Example:
        >>> candidate = EvaluationResult(task="binary", count=100, overall={"roc_auc": 0.82})
        >>> baseline = EvaluationResult(task="binary", count=100, overall={"roc_auc": 0.85})
        >>> rules = [{"metric": "roc_auc", "min": 0.8, "max_drop": 0.01}]
        >>> bless(candidate, rules, baseline).blessed
        False
        >>> bless(candidate, rules).note
        'no baseline: judged on absolute thresholds alone (1 relative check not run)'
    """
    rules = validate_thresholds(thresholds, candidate.task)
    if baseline is not None and baseline.task != candidate.task:
        raise EvaluationError(
            f"the baseline is a {baseline.task} evaluation, the candidate a {candidate.task} one"
        )
    for rule in rules:
        if rule.metric not in candidate.overall:
            raise EvaluationError(
                f"threshold on {rule.metric!r}, but the candidate's evaluation has no "
                f"{rule.metric!r} (it has: {', '.join(candidate.overall) or 'nothing'}); "
                "evaluate with the metrics required_metrics() lists"
            )
    reasons = [reason for rule in rules for reason in _check_rule(rule, candidate, baseline)]
    return Blessing(
        blessed=all(r.passed for r in reasons),
        reasons=reasons,
        baseline_version=None if baseline is None else baseline.model_version,
        note=_note(rules, reasons, baseline),
    )


# -- validation ----------------------------------------------------------------------------


def _parse(spec: Any, index: int) -> Threshold:
    if isinstance(spec, Threshold):
        return spec
    if not isinstance(spec, Mapping):
        raise EvaluationError(
            f"threshold #{index} must be a mapping like "
            f"{{'metric': 'roc_auc', 'min': 0.8}}, got {spec!r}"
        )
    keys = ("metric", *_BOUNDS, "slices")
    for key in spec:
        if key not in keys:
            raise EvaluationError(
                f"threshold #{index}: unknown key {key!r}{did_you_mean(str(key), keys)}"
            )
    try:
        return Threshold.model_validate(dict(spec))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise EvaluationError(f"threshold #{index}: {where}: {first['msg']}") from exc


def _check(rule: Threshold, index: int, task: Task) -> Threshold:
    where = f"threshold #{index} on {rule.metric!r}"
    if rule.metric not in METRICS:
        raise EvaluationError(f"{where}: unknown metric{did_you_mean(rule.metric, METRICS)}")
    if rule.metric not in metric_names(task):
        raise EvaluationError(
            f"{where}: a {task} task has no {rule.metric!r}; "
            f"{task} metrics: {', '.join(metric_names(task))}"
        )
    bounds = {key: getattr(rule, key) for key in _BOUNDS if getattr(rule, key) is not None}
    if not bounds:
        raise EvaluationError(f"{where}: give at least one of {', '.join(_BOUNDS)}")
    if any(not math.isfinite(value) for value in bounds.values()):
        raise EvaluationError(f"{where}: bounds must be finite numbers, got {bounds}")
    _check_direction(rule, where)
    if rule.min is not None and rule.max is not None and rule.min > rule.max:
        raise EvaluationError(f"{where}: min {rule.min:g} is above max {rule.max:g}")
    if isinstance(rule.slices, tuple) and not all(rule.slices):
        raise EvaluationError(f"{where}: slice names must be non-empty, like 'sex=Female'")
    return rule


def _check_direction(rule: Threshold, where: str) -> None:
    higher = higher_is_better(rule.metric)
    if rule.max_drop is not None and rule.max_increase is not None:
        raise EvaluationError(f"{where}: give max_drop or max_increase, not both")
    if rule.max_drop is not None and not higher:
        raise EvaluationError(
            f"{where}: {rule.metric!r} is lower-is-better; use max_increase, not max_drop"
        )
    if rule.max_increase is not None and higher:
        raise EvaluationError(
            f"{where}: {rule.metric!r} is higher-is-better; use max_drop, not max_increase"
        )
    if (rule.relative or 0.0) < 0.0:
        raise EvaluationError(f"{where}: max_drop / max_increase must be >= 0")


# -- checking ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """One threshold on one place (overall or a slice), with the candidate's value there."""

    rule: Threshold
    slice: str | None
    value: float | None

    def reason(
        self, threshold: str, passed: bool, message: str, base: float | None = None
    ) -> Reason:
        where = "overall" if self.slice is None else f"on slice {self.slice!r}"
        return Reason(
            metric=self.rule.metric,
            slice=self.slice,
            candidate_value=self.value,
            baseline_value=base,
            threshold=threshold,
            passed=passed,
            message=f"{self.rule.metric} {where}: {message}",
        )

    def skip(self, threshold: str, message: str, base: float | None = None) -> Reason:
        reason = self.reason(threshold, True, f"{message}; not checked", base)
        return reason.model_copy(update={"skipped": True})


def _check_rule(
    rule: Threshold, candidate: EvaluationResult, baseline: EvaluationResult | None
) -> list[Reason]:
    reasons: list[Reason] = []
    targets: list[str | None] = [None]
    if rule.slices is True:
        targets += list(candidate.slices)
    elif isinstance(rule.slices, tuple):
        targets += list(rule.slices)
    for name in targets:
        if name is not None and name not in candidate.slices:
            hint = did_you_mean(name, candidate.slices)
            message = f"the candidate's evaluation has no such slice{hint}"
            reasons.append(_Target(rule, name, None).reason(_text(rule), False, message))
            continue
        reasons += _check_target(rule, name, candidate, baseline)
    if rule.relative is not None and baseline is None:
        reasons.append(_Target(rule, None, None).skip(_relative_text(rule), "no baseline"))
    return reasons


def _check_target(
    rule: Threshold,
    name: str | None,
    candidate: EvaluationResult,
    baseline: EvaluationResult | None,
) -> list[Reason]:
    sliced = None if name is None else candidate.slices[name]
    value = candidate.overall[rule.metric] if sliced is None else sliced.metrics[rule.metric]
    target = _Target(rule, name, value)
    if sliced is not None and sliced.flagged:
        return [target.skip(_text(rule), f"{sliced.count} rows < min_count {candidate.min_count}")]
    if math.isnan(value):  # undefined: fails overall, skipped on a slice (e.g. one class)
        if sliced is None:
            return [target.reason(_text(rule), False, "undefined on the evaluation data")]
        return [target.skip(_text(rule), "undefined on this slice")]
    reasons = _absolute(target, value)
    if rule.relative is not None and baseline is not None:
        reasons.append(_relative(target, value, baseline))
    return reasons


def _absolute(target: _Target, value: float) -> list[Reason]:
    rule, reasons = target.rule, []
    if rule.min is not None:
        ok = value >= rule.min
        relation = "at least" if ok else "below"
        message = f"{value:.4g} is {relation} min {rule.min:g}"
        reasons.append(target.reason(f"min {rule.min:g}", ok, message))
    if rule.max is not None:
        ok = value <= rule.max
        relation = "at most" if ok else "above"
        message = f"{value:.4g} is {relation} max {rule.max:g}"
        reasons.append(target.reason(f"max {rule.max:g}", ok, message))
    return reasons


def _relative(target: _Target, value: float, baseline: EvaluationResult) -> Reason:
    rule, text = target.rule, _relative_text(target.rule)
    base_slice: SliceMetrics | None = None
    if target.slice is not None:
        base_slice = baseline.slices.get(target.slice)
        if base_slice is None:
            return target.skip(text, "the baseline has no such slice")
    base = (baseline.overall if base_slice is None else base_slice.metrics).get(rule.metric)
    why = _no_comparison(rule.metric, base, base_slice)
    if why or base is None:
        return target.skip(text, f"the baseline {why}", base)
    worse = base - value if higher_is_better(rule.metric) else value - base
    ok = worse <= (rule.relative or 0.0) + TOLERANCE
    change = f"worse by {worse:.4g}" if worse > 0 else f"better by {-worse:.4g}"
    verdict = "within" if ok else "more than"
    message = f"{change} than the baseline ({base:.4g} -> {value:.4g}), {verdict} {text}"
    return target.reason(text, ok, message, base)


def _no_comparison(metric: str, base: float | None, base_slice: SliceMetrics | None) -> str:
    """Why the baseline's value cannot be compared with, or "" when it can."""
    if base is None:
        return f"has no {metric!r} (evaluated before it was configured?)"
    if math.isnan(base):
        return f"has {metric} undefined"
    if base_slice is not None and base_slice.flagged:
        return f"has only {base_slice.count} rows there (below its min_count)"
    return ""


def _text(rule: Threshold) -> str:
    return " and ".join(rule.describe())


def _relative_text(rule: Threshold) -> str:
    if rule.max_drop is not None:
        return f"max_drop {rule.max_drop:g}"
    return f"max_increase {rule.max_increase:g}"


def _note(rules: list[Threshold], reasons: list[Reason], baseline: EvaluationResult | None) -> str:
    if not rules:
        return "no thresholds: blessed without checks"
    failed = sum(not r.passed for r in reasons)
    summary = f"{failed} of {len(reasons)} checks failed" if failed else ""
    if baseline is None:
        relative = sum(r.relative is not None for r in rules)
        plural = "check" if relative == 1 else "checks"
        note = "no baseline: judged on absolute thresholds alone"
        note += f" ({relative} relative {plural} not run)" if relative else ""
    else:
        note = f"compared with baseline {baseline.model_version or '(unversioned)'}"
    return f"{note}; {summary}" if summary else note
