"""Load a continuous-training policy and refuse it whole when anything is wrong.

A policy lives in ``conveyor.toml`` or in its own file (same schema, ``--policy FILE``)::

    [monitoring]      how serving traffic is cut into windows
    [pipelines.NAME]  the pipelines the controller may start
    [[alerts]]        alert rules over monitored metrics
    [[triggers]]      when to start a pipeline: manual, cron, new_data, alert
    [controller]      polling, debounce, rate limit, canary roll-out

:func:`load_policy` checks everything before returning: types, ranges, durations, cron
expressions, metric names, references between sections, and that each pipeline file imports and
defines its ``@pipeline`` with parameters that fit. It reports **all** problems in one
:class:`~conveyor.ct.errors.PolicyError`, one ``FILE:LINE: section: problem`` line each, so the
controller never starts half-configured. In ``conveyor.toml`` other top-level tables belong to
other parts of conveyor and are left alone, unless their name is a near miss of a policy section
(``[[trigers]]``); a separate policy file may hold only policy sections (and ``[conveyor]``).
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from conveyor.config import CONFIG_FILE, Settings
from conveyor.core.loader import load_pipeline
from conveyor.core.pipeline import Pipeline
from conveyor.ct.durations import format_duration
from conveyor.ct.errors import PolicyError, PolicyProblem, display_path
from conveyor.ct.policy_model import ControllerPolicy, MonitoringPolicy, PipelineTarget, Policy
from conveyor.ct.policy_params import check_params
from conveyor.ct.policy_reader import PolicyReader, Section, toml_type
from conveyor.ct.policy_triggers import Known, read_triggers
from conveyor.exceptions import ConveyorError, did_you_mean
from conveyor.monitoring.alert_model import AlertRule
from conveyor.monitoring.metric_names import METRICS

__all__ = ["POLICY_SECTIONS", "load_policy"]

POLICY_SECTIONS: tuple[str, ...] = ("monitoring", "pipelines", "alerts", "triggers", "controller")
_ALWAYS_ALLOWED = ("conveyor",)
_UNIT_METRICS = frozenset(
    {"accuracy", "f1", "precision", "recall", "roc_auc", "missing_rate", "feedback_coverage"}
)
_TOML_ERROR = re.compile(r"\s*\(at line (\d+), column (\d+)\)")
# Metrics whose windows carry a threshold of their own (data validation's drift threshold, the
# schema's max_missing_fraction), so a rule may leave it out.
_OWN_THRESHOLD = frozenset({"drift", "prediction_drift", "missing_rate"})


def load_policy(source: str | os.PathLike[str] | Settings) -> Policy:
    """Read and check a policy file; every problem is reported at once.

    Args:
        source: A policy file (``conveyor.toml`` or a separate one), or the
            :class:`~conveyor.config.Settings` whose ``conveyor.toml`` holds the policy.

    Raises:
        PolicyError: the file is missing, not TOML, or has any problem (each with its line).

    Example:
        >>> policy = load_policy("conveyor.toml")  # doctest: +SKIP
        >>> policy.controller.canary_percent  # doctest: +SKIP
        10.0
    """
    path = _policy_path(source)
    shown = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        problem = PolicyProblem(shown, None, "", f"cannot read the policy: {reason}")
        raise PolicyError([problem]) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_ERROR.search(str(exc))
        line = int(found[1]) if found else None
        message = _TOML_ERROR.sub("", str(exc))
        raise PolicyError([PolicyProblem(shown, line, "", f"invalid TOML: {message}")]) from exc
    reader = PolicyReader(shown, text)
    policy = _read_policy(reader, data, path, separate=path.name != CONFIG_FILE)
    reader.raise_if_any()
    return policy


def _policy_path(source: str | os.PathLike[str] | Settings) -> Path:
    if not isinstance(source, Settings):
        return Path(source).expanduser().resolve()
    if source.config_file is None:
        raise PolicyError(
            [
                PolicyProblem(
                    CONFIG_FILE,
                    None,
                    "",
                    f"no {CONFIG_FILE} in the current folder or its parents; write the policy "
                    "there or pass --policy FILE",
                )
            ]
        )
    return source.config_file


def _read_policy(reader: PolicyReader, data: dict[str, Any], path: Path, separate: bool) -> Policy:
    _check_sections(reader, data, separate)
    monitoring = _monitoring(reader, data.get("monitoring", {}))
    pipelines = _pipelines(reader, data.get("pipelines", {}), path.parent)
    alerts = _alerts(reader, data.get("alerts", []), monitoring.slices)
    known = Known(
        targets=pipelines,
        pipelines=set(data["pipelines"]) if isinstance(data.get("pipelines"), dict) else set(),
        alerts=_declared_alerts(data.get("alerts")),
        base=path.parent,
    )
    triggers = read_triggers(reader, data.get("triggers", []), known)
    controller = _controller(reader, data.get("controller", {}))
    policy = Policy(path, monitoring, pipelines, alerts, triggers, controller)
    _check_lookback(reader, policy)
    return policy


def _check_lookback(reader: PolicyReader, policy: Policy) -> None:
    """An explicit lookback must show the longest alert run, labels included."""
    lookback, needed = policy.monitoring.lookback, policy.needed_lookback()
    window = policy.monitoring.window
    if lookback is None or needed is None or isinstance(window, int) or lookback >= needed:
        return
    longest = max((rule.windows for rule in policy.alerts), default=1)
    reader.problem(
        ("monitoring", "lookback"),
        "[monitoring]",
        f"lookback {format_duration(lookback)} is shorter than the label delay "
        f"({format_duration(policy.monitoring.label_delay)}) plus {longest + 1} windows of "
        f"{format_duration(window)} ({format_duration(needed)}): the "
        "longest alert run would never be seen whole",
    )


def _declared_alerts(raw: Any) -> set[str]:
    """Alert names declared, even by entries with problems (so there are no knock-on errors)."""
    entries = raw if isinstance(raw, list) else []
    return {e["name"] for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)}


def _check_sections(reader: PolicyReader, data: dict[str, Any], separate: bool) -> None:
    for key in data:
        if key in POLICY_SECTIONS or key in _ALWAYS_ALLOWED:
            continue
        close = difflib.get_close_matches(key, POLICY_SECTIONS, n=1, cutoff=0.75)
        if not close and not separate:
            continue  # another part of conveyor reads it from conveyor.toml
        sections = ", ".join(f"[{s}]" for s in POLICY_SECTIONS)
        hint = f"did you mean [{close[0]}]?" if close else f"a policy file holds {sections}"
        reader.problem((key,), f"[{key}]", f"unknown section ({hint})")


# -- [monitoring] --------------------------------------------------------------------------
def _monitoring(reader: PolicyReader, raw: Any) -> MonitoringPolicy:
    section = Section(("monitoring",), "[monitoring]")
    table = reader.table(raw, section.path, section.where, "[monitoring]")
    if table is None:
        return MonitoringPolicy()
    keys = ("window", "label_delay", "min_feedback_coverage", "slices", "lookback")
    reader.known_keys(table, keys, section)
    default = MonitoringPolicy()
    window: int | dt.timedelta = default.window
    if isinstance(table.get("window"), str):
        window = reader.duration(table, "window", section, positive=True) or default.window
    elif "window" in table:
        value = table["window"]
        if isinstance(value, bool) or not isinstance(value, int):
            reader.problem(
                section.at("window"),
                section.where,
                f'window must be a number of predictions (500) or a duration ("10m"), '
                f"not {toml_type(value)} ({value!r})",
            )
        else:
            window = reader.integer(table, "window", section, minimum=1) or default.window
    label_delay = reader.duration(table, "label_delay", section)
    coverage = reader.number(table, "min_feedback_coverage", section, low=0, high=1)
    slices = reader.strings(table, "slices", section)
    lookback = reader.duration(table, "lookback", section, positive=True)
    return MonitoringPolicy(
        window=window,
        label_delay=default.label_delay if label_delay is None else label_delay,
        min_feedback_coverage=default.min_feedback_coverage if coverage is None else coverage,
        slices=slices or (),
        lookback=lookback,
        line=reader.line(section.path),
    )


# -- [pipelines.NAME] ----------------------------------------------------------------------
def _pipelines(reader: PolicyReader, raw: Any, base: Path) -> dict[str, PipelineTarget]:
    tables = reader.table(raw, ("pipelines",), "[pipelines]", "[pipelines]")
    targets: dict[str, PipelineTarget] = {}
    for name, value in (tables or {}).items():
        section = Section(("pipelines", name), f"[pipelines.{name}]")
        table = reader.table(value, section.path, section.where, f"[pipelines.{name}]")
        if table is None:
            continue
        target = _pipeline(reader, name, table, section, base)
        if target is not None:
            targets[name] = target
    return targets


def _pipeline(
    reader: PolicyReader, name: str, table: dict[str, Any], section: Section, base: Path
) -> PipelineTarget | None:
    reader.known_keys(table, ("file", "function", "model", "params"), section)
    file = reader.string(table, "file", section, required=True)
    function = reader.string(table, "function", section)
    model = reader.string(table, "model", section)
    params = reader.table(table.get("params", {}), section.at("params"), section.where, "params")
    if file is None:
        return None
    path = (base / file).resolve()
    if not path.is_file():
        reader.problem(
            section.at("file"),
            section.where,
            f"pipeline file {file!r} does not exist ({path}; relative paths start at the "
            "policy file's folder)",
        )
        return None
    pipeline = _load(reader, path, function, section)
    if pipeline is None:
        return None
    if params is not None:
        check_params(reader, pipeline, params, section.at("params"), section.where)
    return PipelineTarget(
        name=name,
        file=path,
        function=pipeline.name,
        model=model,
        params=dict(params or {}),
        line=reader.line(section.path),
    )


def _load(
    reader: PolicyReader, path: Path, function: str | None, section: Section
) -> Pipeline | None:
    try:
        # Import afresh: a policy is loaded to start (or restart) the controller, and must see
        # the pipeline file as it is now, not as this process first imported it.
        return load_pipeline(f"{path}:{function}" if function else str(path), reload=True)
    except ConveyorError as exc:
        # A missing name is the function's fault; anything else (syntax, import) the file's.
        key = "function" if function and f"no pipeline {function!r}" in str(exc) else "file"
        message = str(exc)
        if "defines several pipelines" in message:
            message = message.split("; name one")[0] + '; set function = "NAME"'
        reader.problem(section.at(key), section.where, message)
        return None


# -- [[alerts]] ----------------------------------------------------------------------------
def _alerts(reader: PolicyReader, raw: Any, slices: tuple[str, ...]) -> tuple[AlertRule, ...]:
    rules: list[AlertRule] = []
    names: dict[str, int | None] = {}
    keys = ("name", "model", "metric", "feature", "threshold", "windows", "cooldown")
    for section, table in reader.entries(raw, "alerts"):
        reader.known_keys(table, keys, section)
        name = reader.string(table, "name", section, required=True)
        model = reader.string(table, "model", section, required=True)
        metric = _alert_metric(reader, table, section)
        feature = _alert_feature(reader, table, section, metric, slices)
        threshold = _alert_threshold(reader, table, section, metric)
        windows = reader.integer(table, "windows", section, minimum=1)
        cooldown = reader.duration(table, "cooldown", section)
        if name is not None:
            if name in names:
                reader.problem(
                    section.at("name"),
                    section.where,
                    f"alert name {name!r} is already used on line {names[name]}",
                )
            names.setdefault(name, reader.line(section.at("name")))
        if name is None or model is None or metric is None or reader.failed(section):
            continue
        rules.append(
            AlertRule(
                name=name,
                model=model,
                metric=metric,
                feature=feature,
                threshold=threshold,
                windows=windows or 1,
                cooldown=dt.timedelta(0) if cooldown is None else cooldown,
                line=reader.line(section.path),
            )
        )
    return tuple(rules)


def _alert_metric(reader: PolicyReader, table: dict[str, Any], section: Section) -> str | None:
    metric = reader.string(table, "metric", section, required=True)
    if metric is not None and metric not in METRICS:
        reader.problem(
            section.at("metric"),
            section.where,
            f"metric {metric!r} is not a metric{_metric_hint(metric)}",
        )
        return None
    return metric


def _metric_hint(name: str) -> str:
    return did_you_mean(name, METRICS)


def _alert_feature(
    reader: PolicyReader,
    table: dict[str, Any],
    section: Section,
    metric: str | None,
    slices: tuple[str, ...],
) -> str | None:
    feature = reader.string(table, "feature", section)
    if metric is None:
        return feature
    info = METRICS[metric]
    if info.per_feature and "feature" not in table:
        reader.problem(
            section.path,
            section.where,
            f'metric {metric!r} is per feature: set feature = "NAME", or "*" for any feature',
        )
    elif not info.per_feature and "feature" in table:
        if info.kind == "performance" and feature is not None and _is_slice(feature, slices):
            return feature  # a slice of [monitoring] slices, or "*" for any slice
        slice_hint = (
            f', name a slice of [monitoring] slices ({_slice_example(slices)}) or "*" for the '
            "whole window and any slice"
            if info.kind == "performance"
            else ""
        )
        reader.problem(
            section.at("feature"),
            section.where,
            f"metric {metric!r} is not per feature; remove feature = {table['feature']!r}"
            + slice_hint,
        )
        return None
    return feature


def _is_slice(feature: str, slices: tuple[str, ...]) -> bool:
    """Whether ``feature`` names a slice (``sex=Female``, ``sex=Female & city=Nice``) or ``*``."""
    if feature == "*":
        return True
    parts = [part.partition("=") for part in feature.split(" & ")]
    return all(sep and name.strip() in slices and value for name, sep, value in parts)


def _slice_example(slices: tuple[str, ...]) -> str:
    if not slices:
        return 'none declared; add e.g. slices = ["sex"] and write "sex=Female"'
    return f"e.g. '{slices[0]}=VALUE'"


def _alert_threshold(
    reader: PolicyReader, table: dict[str, Any], section: Section, metric: str | None
) -> float | None:
    if metric in _UNIT_METRICS:
        threshold = reader.number(table, "threshold", section, low=0, high=1)
    elif metric in ("r2", None):
        threshold = reader.number(table, "threshold", section)
    else:
        threshold = reader.number(table, "threshold", section, low=0)
    if metric is not None and metric not in _OWN_THRESHOLD and "threshold" not in table:
        own = ", ".join(sorted(_OWN_THRESHOLD))
        reader.problem(
            section.path,
            section.where,
            f"threshold is required for metric {metric!r} (only {own} may use data validation's)",
        )
    return threshold


# -- [controller] --------------------------------------------------------------------------
def _controller(reader: PolicyReader, raw: Any) -> ControllerPolicy:
    section = Section(("controller",), "[controller]")
    table = reader.table(raw, section.path, section.where, "[controller]")
    default = ControllerPolicy()
    if table is None:
        return default
    keys = ("poll", "debounce", "min_interval", "canary_percent", "promote_after", "metric")
    reader.known_keys(table, (*keys, "tolerance", "canary_timeout"), section)
    poll = reader.duration(table, "poll", section, positive=True)
    debounce = reader.duration(table, "debounce", section)
    min_interval = reader.duration(table, "min_interval", section)
    canary = reader.number(table, "canary_percent", section, low=0, high=100, open_interval=True)
    promote_after = reader.integer(table, "promote_after", section, minimum=1)
    metric = reader.string(table, "metric", section)
    if metric is not None and (metric not in METRICS or METRICS[metric].kind != "performance"):
        performance = [m.name for m in METRICS.values() if m.kind == "performance"]
        hint = (
            _metric_hint(metric)
            if metric not in METRICS
            else (f" (it is a {METRICS[metric].kind} metric; valid: {', '.join(performance)})")
        )
        reader.problem(
            section.at("metric"),
            section.where,
            f"metric {metric!r} cannot compare canary and production{hint}",
        )
        metric = None
    tolerance = reader.number(table, "tolerance", section, low=0)
    timeout = reader.duration(table, "canary_timeout", section, positive=True)
    return ControllerPolicy(
        poll=default.poll if poll is None else poll,
        debounce=default.debounce if debounce is None else debounce,
        min_interval=default.min_interval if min_interval is None else min_interval,
        canary_percent=default.canary_percent if canary is None else canary,
        promote_after=promote_after or default.promote_after,
        metric=metric or default.metric,
        tolerance=default.tolerance if tolerance is None else tolerance,
        canary_timeout=default.canary_timeout if timeout is None else timeout,
        line=reader.line(section.path),
    )
