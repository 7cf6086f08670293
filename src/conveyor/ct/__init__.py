"""Continuous training: the policy file, triggers, and manual run requests.

A policy (``[monitoring]``, ``[pipelines.NAME]``, ``[[alerts]]``, ``[[triggers]]``,
``[controller]`` in ``conveyor.toml`` or a file of its own) is loaded and checked whole by
:func:`load_policy`; triggers decide, poll by poll, whether a pipeline should run and say why
(:func:`explain_all`); ``conveyor trigger PIPELINE`` queues a :class:`ManualRequest`. The
controller that acts on decisions builds on this API. See ``docs/continuous-training.md``.

Example:
    >>> import datetime as dt
    >>> from conveyor.ct import TriggerState, build_context, explain_all, load_policy
    >>> policy = load_policy("conveyor.toml")  # doctest: +SKIP
    >>> now = dt.datetime.now(dt.timezone.utc)
    >>> for d in explain_all(policy, TriggerState(), now, build_context(policy.all_triggers())):  # doctest: +SKIP
    ...     print(d.trigger, d.fire, d.reason)
"""  # noqa: E501

from conveyor.ct.cron import CronSchedule, parse_cron
from conveyor.ct.durations import format_duration, parse_duration
from conveyor.ct.errors import PolicyError, PolicyProblem, TriggerError
from conveyor.ct.manual import read_requests, remove_request, request_manual_run, requests_dir
from conveyor.ct.policy import load_policy
from conveyor.ct.policy_model import ControllerPolicy, MonitoringPolicy, PipelineTarget, Policy
from conveyor.ct.state import ManualRequest, TriggerState, load_state, save_state
from conveyor.ct.triggers import (
    AlertTrigger,
    CronTrigger,
    ManualTrigger,
    NewDataTrigger,
    Trigger,
    TriggerContext,
    TriggerDecision,
    advance_state,
    build_context,
    explain_all,
)
from conveyor.ct.watch import SeenSpan, Watch, observe_spans

__all__ = [
    "AlertTrigger",
    "ControllerPolicy",
    "CronSchedule",
    "CronTrigger",
    "ManualRequest",
    "ManualTrigger",
    "MonitoringPolicy",
    "NewDataTrigger",
    "PipelineTarget",
    "Policy",
    "PolicyError",
    "PolicyProblem",
    "SeenSpan",
    "Trigger",
    "TriggerContext",
    "TriggerDecision",
    "TriggerError",
    "TriggerState",
    "Watch",
    "advance_state",
    "build_context",
    "explain_all",
    "format_duration",
    "load_policy",
    "load_state",
    "observe_spans",
    "parse_cron",
    "parse_duration",
    "read_requests",
    "remove_request",
    "request_manual_run",
    "requests_dir",
    "save_state",
]
