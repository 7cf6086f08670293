"""Reading ``[[triggers]]``: one table per trigger, its keys depending on ``on``.

=========== ===============================================================================
``on``      keys (besides ``name``, ``pipeline``, ``on`` and ``params``)
=========== ===============================================================================
manual      none (one per pipeline; without one, ``conveyor trigger`` uses an implicit one)
cron        ``cron`` (five fields or ``@daily``...), ``timezone`` (IANA, default ``"UTC"``)
new_data    ``watch`` (a folder or glob relative to the policy file, or a SQLAlchemy URL),
            ``layout`` (folders: ``auto``/``span``/``date``/``file``), ``table`` and
            ``span_column`` (URLs), ``span_param`` and ``source_param`` (pipeline parameters
            that receive the new span's number and the watched location)
alert       ``alerts``: names of ``[[alerts]]``
=========== ===============================================================================
"""

from __future__ import annotations

import glob as globlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.ct.cron import parse_cron, zone
from conveyor.ct.policy_model import PipelineTarget
from conveyor.ct.policy_params import check_complete, check_params
from conveyor.ct.policy_reader import PolicyReader, Section
from conveyor.ct.triggers import (
    TRIGGER_KINDS,
    AlertTrigger,
    CronTrigger,
    ManualTrigger,
    NewDataTrigger,
    Trigger,
)
from conveyor.ct.watch import IDENTIFIER, Watch
from conveyor.exceptions import did_you_mean

__all__ = ["Known", "read_triggers"]

_COMMON = ("name", "pipeline", "on", "params")
_KIND_KEYS: dict[str, tuple[str, ...]] = {
    "manual": (),
    "cron": ("cron", "timezone"),
    "new_data": ("watch", "layout", "table", "span_column", "span_param", "source_param"),
    "alert": ("alerts",),
}
_FOLDER_LAYOUTS = ("auto", "span", "date", "file")


@dataclass(frozen=True)
class Known:
    """What the other sections declared, for references from triggers.

    Attributes:
        targets: The pipelines that loaded (parameters are checked against these).
        pipelines: Every ``[pipelines]`` key, loaded or not (so one broken pipeline does not
            also make each trigger naming it "unknown").
        alerts: Every ``[[alerts]]`` name.
        base: The policy file's folder; relative paths start there.
    """

    targets: Mapping[str, PipelineTarget]
    pipelines: Collection[str]
    alerts: Collection[str]
    base: Path


def read_triggers(reader: PolicyReader, raw: Any, known: Known) -> tuple[Trigger, ...]:
    """Check every ``[[triggers]]`` entry and build the triggers that have no problem."""
    triggers: list[Trigger] = []
    names: dict[str, int | None] = {}
    manual_for: dict[str, int | None] = {}
    for section, table in reader.entries(raw, "triggers"):
        kind = _kind(reader, table, section)
        _check_keys(reader, table, section, kind)
        name = _name(reader, table, section, names)
        pipeline = _pipeline(reader, table, section, known)
        raw_params = table.get("params", {})
        params = reader.table(raw_params, section.at("params"), section.where, "params")
        if kind == "manual" and pipeline is not None:
            if pipeline in manual_for:
                reader.problem(
                    section.at("on"),
                    section.where,
                    f"pipeline {pipeline!r} already has a manual trigger (line "
                    f"{manual_for[pipeline]}); a request must have one trigger to go to",
                )
            manual_for.setdefault(pipeline, reader.line(section.path))
        trigger = _build(reader, table, section, kind, known)
        if trigger is None or name is None or pipeline is None or params is None:
            continue
        target = known.targets.get(pipeline)
        merged = {**(target.params if target else {}), **params}
        if target is not None:
            _check_run_params(reader, target, params, merged, trigger, section)
        if reader.failed(section):
            continue
        triggers.append(trigger(name, pipeline, merged, reader.line(section.path)))
    return tuple(triggers)


def _kind(reader: PolicyReader, table: Mapping[str, Any], section: Section) -> str | None:
    kind = reader.string(table, "on", section, required=True)
    if kind is not None and kind not in TRIGGER_KINDS:
        reader.problem(
            section.at("on"),
            section.where,
            f"on = {kind!r} is not a trigger kind" + did_you_mean(kind, TRIGGER_KINDS),
        )
        return None
    return kind


def _check_keys(
    reader: PolicyReader, table: Mapping[str, Any], section: Section, kind: str | None
) -> None:
    if kind is None:  # unknown kind: only flag keys no kind has
        allowed = {*_COMMON, *(k for keys in _KIND_KEYS.values() for k in keys)}
        reader.known_keys(table, allowed, section)
        return
    elsewhere = {
        key: f'only for on = "{other}" triggers, not on = "{kind}"'
        for other, keys in _KIND_KEYS.items()
        if other != kind
        for key in keys
    }
    reader.known_keys(table, (*_COMMON, *_KIND_KEYS[kind]), section, elsewhere)


def _name(
    reader: PolicyReader, table: Mapping[str, Any], section: Section, names: dict[str, int | None]
) -> str | None:
    name = reader.string(table, "name", section, required=True)
    if name is None:
        return None
    if name.startswith("manual:"):
        reader.problem(
            section.at("name"),
            section.where,
            f"trigger name {name!r}: names starting with 'manual:' are kept for implicit "
            "manual triggers",
        )
    elif name in names:
        reader.problem(
            section.at("name"),
            section.where,
            f"trigger name {name!r} is already used on line {names[name]}",
        )
    names.setdefault(name, reader.line(section.at("name")))
    return name


def _pipeline(
    reader: PolicyReader, table: Mapping[str, Any], section: Section, known: Known
) -> str | None:
    pipeline = reader.string(table, "pipeline", section, required=True)
    if pipeline is not None and pipeline not in known.pipelines:
        reader.problem(
            section.at("pipeline"),
            section.where,
            f"pipeline {pipeline!r} is not declared as [pipelines.{pipeline}]"
            + did_you_mean(pipeline, known.pipelines),
        )
        return None
    return pipeline


class _Factory:
    """Builds the trigger once the common fields are known (they are checked last)."""

    def __init__(self, cls: type[Trigger], **fields: Any) -> None:
        self.cls = cls
        self.fields = fields

    def __call__(
        self, name: str, pipeline: str, params: dict[str, Any], line: int | None
    ) -> Trigger:
        return self.cls(name=name, pipeline=pipeline, params=params, line=line, **self.fields)


def _build(
    reader: PolicyReader,
    table: Mapping[str, Any],
    section: Section,
    kind: str | None,
    known: Known,
) -> _Factory | None:
    if kind == "manual":
        return _Factory(ManualTrigger)
    if kind == "cron":
        return _cron(reader, table, section)
    if kind == "new_data":
        return _new_data(reader, table, section, known.base)
    if kind == "alert":
        return _alert(reader, table, section, known.alerts)
    return None


def _cron(reader: PolicyReader, table: Mapping[str, Any], section: Section) -> _Factory | None:
    expression = reader.string(table, "cron", section, required=True)
    timezone = reader.string(table, "timezone", section) or "UTC"
    try:
        zone(timezone)
    except ValueError as exc:
        reader.problem(section.at("timezone"), section.where, str(exc))
        timezone = "UTC"
    if expression is None:
        return None
    try:
        schedule = parse_cron(expression, timezone)
    except ValueError as exc:
        reader.problem(section.at("cron"), section.where, str(exc))
        return None
    return _Factory(CronTrigger, schedule=schedule)


def _alert(
    reader: PolicyReader, table: Mapping[str, Any], section: Section, declared: Collection[str]
) -> _Factory | None:
    if not reader.require(table, ["alerts"], section):
        return None
    alerts = reader.strings(table, "alerts", section)
    if alerts is None:
        return None
    if not alerts:
        reader.problem(section.at("alerts"), section.where, "alerts must name at least one alert")
        return None
    for index, name in enumerate(alerts):
        if name not in declared:
            reader.problem(
                section.at("alerts", index),
                section.where,
                f"alert {name!r} is not declared in [[alerts]]" + did_you_mean(name, declared),
            )
    return _Factory(AlertTrigger, alerts=alerts)


def _new_data(
    reader: PolicyReader, table: Mapping[str, Any], section: Section, base: Path
) -> _Factory | None:
    location = reader.string(table, "watch", section, required=True)
    span_param = reader.string(table, "span_param", section)
    source_param = reader.string(table, "source_param", section)
    if location is None:
        return None
    if "://" in location:
        watch = _table_watch(reader, table, section, location)
    else:
        watch = _folder_watch(reader, table, section, base, location)
    if watch is None:
        return None
    return _Factory(NewDataTrigger, watch=watch, span_param=span_param, source_param=source_param)


def _table_watch(
    reader: PolicyReader, table: Mapping[str, Any], section: Section, url: str
) -> Watch | None:
    if "layout" in table:
        reader.problem(
            section.at("layout"),
            section.where,
            "layout is for folders; a table's spans are the values of its span_column",
        )
    names: dict[str, str] = {}
    for key in ("table", "span_column"):
        value = reader.string(table, key, section)
        if key not in table:
            reader.problem(section.path, section.where, f'watching a database needs {key} = "..."')
        elif value is not None and not IDENTIFIER.fullmatch(value):
            reader.problem(
                section.at(key),
                section.where,
                f"{key} {value!r} must be a plain SQL name (letters, digits, _; a table may "
                "be schema.table)",
            )
        elif value is not None:
            names[key] = value
    if len(names) < 2:
        return None
    return Watch(url, table=names["table"], span_column=names["span_column"])


def _folder_watch(
    reader: PolicyReader, table: Mapping[str, Any], section: Section, base: Path, location: str
) -> Watch | None:
    for key in ("table", "span_column"):
        if key in table:
            reader.problem(
                section.at(key), section.where, f"{key} is for database watches (watch = URL)"
            )
    layout = reader.string(table, "layout", section) or "auto"
    if layout not in _FOLDER_LAYOUTS:
        reader.problem(
            section.at("layout"),
            section.where,
            f"layout {layout!r} cannot show new spans" + did_you_mean(layout, _FOLDER_LAYOUTS),
        )
        return None
    path = base / Path(location).expanduser()
    if not globlib.has_magic(location):
        path = path.resolve()
    fixed = _fixed_part(path)
    if not fixed.exists():
        reader.problem(
            section.at("watch"),
            section.where,
            f"watched folder {location!r} does not exist ({fixed}; relative paths start at "
            "the policy file's folder); create it before starting the controller",
        )
        return None
    return Watch(str(path), layout=layout)


def _fixed_part(path: Path) -> Path:
    """The part of a path before its first glob pattern."""
    parts: list[str] = []
    for part in path.parts:
        if globlib.has_magic(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _check_run_params(
    reader: PolicyReader,
    target: PipelineTarget,
    params: Mapping[str, Any],
    merged: Mapping[str, Any],
    factory: _Factory,
    section: Section,
) -> None:
    pipeline = target.load()
    check_params(reader, pipeline, params, section.at("params"), section.where)
    given = set(merged)
    extra = {
        "span_param": (factory.fields.get("span_param"), 1),
        "source_param": (factory.fields.get("source_param"), "/data"),
    }
    for key, (param, example) in extra.items():
        if param is None:
            continue
        if param in params:
            reader.problem(
                section.at(key), section.where, f"{param!r} is set by {key}; remove it from params"
            )
        given.add(param)
        check_params(reader, pipeline, {param: example}, section.at(key), section.where)
    if factory.cls is not ManualTrigger:
        check_complete(reader, pipeline, given, section.path, section.where)
