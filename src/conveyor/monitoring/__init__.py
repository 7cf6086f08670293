"""Monitoring over the prediction log: windows, drift, online performance and alerts.

::

    from conveyor.monitoring import AlertRule, Monitor, WindowSpec

    monitor = Monitor(workspace, window=WindowSpec(size=1000), label_delay=timedelta(days=1),
                      slices=["sex"])
    results, alerts = monitor.check("census", rules, last_fired={}, now=now)

The metric vocabulary (:data:`METRICS`) and the rule/alert records are light; everything that
reads data (pandas, DuckDB, scikit-learn) is imported on first use, so a policy parser can
import this package cheaply.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from conveyor.monitoring.alert_model import Alert, AlertRule
from conveyor.monitoring.errors import MonitoringError
from conveyor.monitoring.metric_names import METRICS, MetricInfo, metric_info
from conveyor.monitoring.results import DriftVerdict, WindowResult, metric_key, split_metric_key
from conveyor.monitoring.rules import check_rule, evaluate_rules
from conveyor.monitoring.window_spec import WindowSpec

if TYPE_CHECKING:
    from conveyor.monitoring.monitor import Monitor
    from conveyor.monitoring.reference import VersionReference

__all__ = [
    "METRICS",
    "Alert",
    "AlertRule",
    "DriftVerdict",
    "MetricInfo",
    "Monitor",
    "MonitoringError",
    "VersionReference",
    "WindowResult",
    "WindowSpec",
    "check_rule",
    "evaluate_rules",
    "metric_info",
    "metric_key",
    "split_metric_key",
]

_LAZY = {"Monitor": "monitor", "VersionReference": "reference"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'conveyor.monitoring' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
