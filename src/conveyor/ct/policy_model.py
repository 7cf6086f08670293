"""The continuous-training policy as data: what :func:`conveyor.ct.load_policy` returns.

Every part is a frozen dataclass whose values were checked when the file was loaded (types,
ranges, references between sections, pipeline files), so code that receives a :class:`Policy`
never re-validates. Alert rules are :class:`conveyor.monitoring.AlertRule` and triggers are the
:class:`conveyor.ct.triggers.Trigger` kinds, each with the line that declared it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.core.loader import load_pipeline
from conveyor.core.pipeline import Pipeline
from conveyor.ct.triggers import ManualTrigger, Trigger
from conveyor.monitoring.alert_model import AlertRule

__all__ = ["ControllerPolicy", "MonitoringPolicy", "PipelineTarget", "Policy"]


DEFAULT_LOOKBACK = dt.timedelta(days=1)
"""Beyond the label delay, how far back the controller reads the log by default."""


@dataclass(frozen=True)
class MonitoringPolicy:
    """How serving traffic is cut into windows and judged (``[monitoring]``).

    Attributes:
        window: A number of predictions (int), or a span of time (timedelta).
        label_delay: How long ground truth may take to arrive after a prediction.
        min_feedback_coverage: Share of a window's predictions that need ground truth before
            its performance metrics count.
        slices: Features whose values cut performance metrics into slices.
        lookback: How far back each poll of the controller reads the prediction log (None:
            :meth:`Policy.lookback`'s default). Older windows are settled: their alerts
            were raised when they were recent.
        line: The ``[monitoring]`` header's line, if known.
    """

    window: int | dt.timedelta = 1000
    label_delay: dt.timedelta = dt.timedelta(0)
    min_feedback_coverage: float = 0.5
    slices: tuple[str, ...] = ()
    lookback: dt.timedelta | None = None
    line: int | None = None


@dataclass(frozen=True)
class PipelineTarget:
    """A pipeline the controller may start (``[pipelines.NAME]``).

    Attributes:
        name: The key under ``[pipelines]``; triggers and ``conveyor trigger`` use it.
        file: The pipeline file (absolute; written relative to the policy file).
        function: The ``@pipeline`` in that file.
        model: The registered model the pipeline produces, if it produces one.
        params: Default parameters for every run.
        line: The table header's line, if known.
    """

    name: str
    file: Path
    function: str
    model: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    line: int | None = None

    @property
    def spec(self) -> str:
        """``FILE:FUNCTION``, as ``conveyor run`` takes it."""
        return f"{self.file}:{self.function}"

    def load(self) -> Pipeline:
        """Import the pipeline (once per process).

        Raises:
            PipelineLoadError: the file no longer imports or lost the function.
        """
        return load_pipeline(self.spec)


@dataclass(frozen=True)
class ControllerPolicy:
    """How the controller acts on triggers and rolls out models (``[controller]``).

    Attributes:
        poll: Time between two evaluations of the triggers.
        debounce: Fires of one pipeline closer together than this are merged into one run.
        min_interval: At most one run per pipeline in this interval.
        canary_percent: Share of traffic (0 < p < 100) a new model gets as canary.
        promote_after: Complete windows of canary traffic before it may be promoted.
        metric: The performance metric compared between canary and production.
        tolerance: How much worse than production the canary may be on ``metric``.
        canary_timeout: A canary still without a verdict this long after it started is
            rolled back (production keeps serving): traffic too thin to fill
            ``promote_after`` windows, or feedback that never arrives, must not hold the
            roll-out (and every later one of the model) open forever.
        line: The ``[controller]`` header's line, if known.
    """

    poll: dt.timedelta = dt.timedelta(seconds=5)
    debounce: dt.timedelta = dt.timedelta(seconds=30)
    min_interval: dt.timedelta = dt.timedelta(minutes=10)
    canary_percent: float = 10.0
    promote_after: int = 3
    metric: str = "accuracy"
    tolerance: float = 0.02
    canary_timeout: dt.timedelta = dt.timedelta(hours=24)
    line: int | None = None


@dataclass(frozen=True)
class Policy:
    """A whole, checked continuous-training policy.

    Attributes:
        source: The file it was read from (None when built in code).
        monitoring: ``[monitoring]``.
        pipelines: ``[pipelines.NAME]`` by name.
        alerts: ``[[alerts]]`` in file order.
        triggers: ``[[triggers]]`` in file order.
        controller: ``[controller]``.

    Example:
        >>> policy = load_policy("conveyor.toml")  # doctest: +SKIP
        >>> [t.name for t in policy.all_triggers()]  # doctest: +SKIP
        ['retrain-on-drift', 'nightly', 'manual:census']
    """

    source: Path | None = None
    monitoring: MonitoringPolicy = field(default_factory=MonitoringPolicy)
    pipelines: Mapping[str, PipelineTarget] = field(default_factory=dict)
    alerts: tuple[AlertRule, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    controller: ControllerPolicy = field(default_factory=ControllerPolicy)

    def needed_lookback(self) -> dt.timedelta | None:
        """The shortest lookback that still shows every alert rule its run of windows: the
        label delay plus one more window than the longest run (None with count windows,
        whose span in time depends on the traffic)."""
        window = self.monitoring.window
        if isinstance(window, int):
            return None
        longest = max((rule.windows for rule in self.alerts), default=1)
        return self.monitoring.label_delay + window * (longest + 1)

    def lookback(self) -> dt.timedelta:
        """How far back each poll reads the prediction log: ``[monitoring] lookback``, else
        the label delay plus a day (at least :meth:`needed_lookback`)."""
        if self.monitoring.lookback is not None:
            return self.monitoring.lookback
        default = self.monitoring.label_delay + DEFAULT_LOOKBACK
        needed = self.needed_lookback()
        return default if needed is None else max(default, needed)

    def alert(self, name: str) -> AlertRule | None:
        """The alert rule called ``name``, if any."""
        return next((a for a in self.alerts if a.name == name), None)

    def trigger(self, name: str) -> Trigger | None:
        """The trigger called ``name`` (implicit manual ones included), if any."""
        return next((t for t in self.all_triggers() if t.name == name), None)

    def manual_trigger(self, pipeline: str) -> ManualTrigger:
        """The manual trigger of ``pipeline``: the declared one, else an implicit one.

        Raises:
            KeyError: ``pipeline`` is not in ``[pipelines]``.
        """
        if pipeline not in self.pipelines:
            raise KeyError(pipeline)
        for trigger in self.triggers:
            if isinstance(trigger, ManualTrigger) and trigger.pipeline == pipeline:
                return trigger
        target = self.pipelines[pipeline]
        return ManualTrigger(
            name=f"manual:{pipeline}",
            pipeline=pipeline,
            params=dict(target.params),
            line=target.line,
            implicit=True,
        )

    def all_triggers(self) -> tuple[Trigger, ...]:
        """The declared triggers, then an implicit manual trigger per pipeline without one."""
        declared = {t.pipeline for t in self.triggers if isinstance(t, ManualTrigger)}
        implicit = tuple(self.manual_trigger(p) for p in self.pipelines if p not in declared)
        return self.triggers + implicit
