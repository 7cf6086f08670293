"""The pipeline IR: a plain, JSON-serialisable DAG that any runner executes.

Building a pipeline (see :mod:`conveyor.core.pipeline`) produces a :class:`PipelineIR`;
``to_json``/``from_json`` round-trip it, and :func:`validate_ir` checks a hand-written or
edited IR the same way the builder checks a traced one: every input points at an existing
step output, types fit, and there is no cycle.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from conveyor.exceptions import (
    CycleError,
    PipelineDefinitionError,
    TypeMismatchError,
    UnknownOutputError,
    did_you_mean,
)

__all__ = [
    "IR_VERSION",
    "ComponentRef",
    "InputRef",
    "OutputSpec",
    "PipelineIR",
    "StepIR",
    "StepOptions",
    "topological_order",
    "validate_ir",
]

IR_VERSION = 1


@dataclass(frozen=True)
class ComponentRef:
    """Where a component's function lives and what its code looks like."""

    name: str
    module: str
    qualname: str
    file: str | None
    code_fingerprint: str


@dataclass(frozen=True)
class InputRef:
    """An input wired to another step's output."""

    step: str
    output: str
    python_type: str  # qualified name of the consumer's annotation
    accepts: list[str]  # artifact types the consumer can load ("*" = any)


@dataclass(frozen=True)
class OutputSpec:
    python_type: str
    artifact_type: str


@dataclass(frozen=True)
class StepOptions:
    cache: bool = True
    retries: int = 0
    retry_backoff_s: float = 1.0
    timeout_s: float | None = None


@dataclass(frozen=True)
class StepIR:
    """One call of a component inside a pipeline."""

    name: str
    component: ComponentRef
    params: dict[str, Any]
    inputs: dict[str, InputRef]
    outputs: dict[str, OutputSpec]
    options: StepOptions = field(default_factory=StepOptions)
    after: list[str] = field(default_factory=list)  # steps that must succeed first (no data)

    @property
    def upstream(self) -> list[str]:
        """Steps this one waits for: producers of its inputs, then ``after``; no repeats."""
        return list(dict.fromkeys([*(ref.step for ref in self.inputs.values()), *self.after]))


@dataclass(frozen=True)
class PipelineIR:
    """A whole pipeline: its name, resolved parameters and steps in definition order."""

    name: str
    parameters: dict[str, Any]
    steps: list[StepIR]
    source: str | None = None  # "file.py:pipeline" it was built from, for people
    ir_version: int = IR_VERSION

    def step(self, name: str) -> StepIR:
        for step in self.steps:
            if step.name == name:
                return step
        raise PipelineDefinitionError(
            f"pipeline {self.name!r} has no step {name!r}"
            + did_you_mean(name, (s.name for s in self.steps))
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True, default=str)

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON: equal pipelines (code included) share it."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineIR:
        try:
            version = int(data.get("ir_version", IR_VERSION))
            if version > IR_VERSION:
                raise PipelineDefinitionError(
                    f"IR version {version} is newer than this conveyor understands ({IR_VERSION})"
                )
            steps = [_step_from_dict(s) for s in data["steps"]]
            ir = cls(
                name=str(data["name"]),
                parameters=dict(data.get("parameters", {})),
                steps=steps,
                source=data.get("source"),
                ir_version=version,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PipelineDefinitionError(f"malformed pipeline IR: {exc!r}") from exc
        validate_ir(ir)
        return ir

    @classmethod
    def from_json(cls, text: str) -> PipelineIR:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PipelineDefinitionError(f"pipeline IR is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise PipelineDefinitionError("pipeline IR must be a JSON object")
        return cls.from_dict(data)


def _step_from_dict(raw: dict[str, Any]) -> StepIR:
    return StepIR(
        name=raw["name"],
        component=ComponentRef(**raw["component"]),
        params=dict(raw.get("params", {})),
        inputs={k: InputRef(**v) for k, v in raw.get("inputs", {}).items()},
        outputs={k: OutputSpec(**v) for k, v in raw.get("outputs", {}).items()},
        options=StepOptions(**raw.get("options", {})),
        after=list(raw.get("after", [])),
    )


def _accepts(ref: InputRef, artifact_type: str) -> bool:
    return "*" in ref.accepts or artifact_type in ref.accepts


def validate_ir(ir: PipelineIR) -> None:
    """Check names, edges, types and acyclicity; raise a PipelineDefinitionError naming both
    ends of the first bad edge."""
    by_name: dict[str, StepIR] = {}
    for step in ir.steps:
        if step.name in by_name:
            raise PipelineDefinitionError(
                f"pipeline {ir.name!r}: two steps are named {step.name!r}"
            )
        by_name[step.name] = step
    for step in ir.steps:
        for name in step.after:
            if name not in by_name:
                raise UnknownOutputError(
                    f"step {step.name!r} runs after step {name!r}, which is not in pipeline "
                    f"{ir.name!r}" + did_you_mean(name, by_name)
                )
        for input_name, ref in step.inputs.items():
            consumer = f"{step.name}.{input_name}"
            producer = by_name.get(ref.step)
            if producer is None:
                raise UnknownOutputError(
                    f"input {consumer!r} reads from step {ref.step!r}, which is not in pipeline "
                    f"{ir.name!r}" + did_you_mean(ref.step, by_name)
                )
            spec = producer.outputs.get(ref.output)
            if spec is None:
                raise UnknownOutputError(
                    f"input {consumer!r} reads output {ref.step}.{ref.output}, which step "
                    f"{ref.step!r} never produces" + did_you_mean(ref.output, producer.outputs)
                )
            if not _accepts(ref, spec.artifact_type):
                raise TypeMismatchError(
                    f"{ref.step}.{ref.output} produces {spec.python_type} (artifact type "
                    f"{spec.artifact_type}) but {consumer} expects {ref.python_type} "
                    f"(which reads {', '.join(ref.accepts)})"
                )
    topological_order(ir)


def topological_order(ir: PipelineIR) -> list[str]:
    """Step names so that every step comes after its producers; CycleError otherwise."""
    steps = {s.name: s for s in ir.steps}
    state: dict[str, int] = {}  # 1 = visiting, 2 = done
    order: list[str] = []

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*path[path.index(name) :], name][::-1]  # in the direction data flows
            raise CycleError(f"pipeline {ir.name!r} has a cycle: {' -> '.join(cycle)}")
        state[name] = 1
        for upstream in steps[name].upstream:
            if upstream in steps:
                visit(upstream, [*path, name])
        state[name] = 2
        order.append(name)

    for step in ir.steps:
        visit(step.name, [])
    return order
