"""Pipelines: functions that wire components, traced into a checked IR.

``@pipeline`` marks a function whose arguments are the pipeline's parameters. Building it
(:meth:`Pipeline.build`) validates the parameters with pydantic, calls the function once with
them, and records every component call as a step; each call returns :class:`OutputRef`
placeholders that later calls consume. Edges are checked as they are made, so the error names
both ends of a bad edge, then the whole graph is validated (:func:`validate_ir`).
"""

from __future__ import annotations

import contextvars
import inspect
import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, overload

from conveyor.core.component import SINGLE_OUTPUT, Component, InputSpec, ParameterSpec
from conveyor.core.ir import InputRef, PipelineIR, StepIR, validate_ir
from conveyor.core.materializers import can_load, materializer_for
from conveyor.core.types import qualified_name, runtime_class, strip_annotated
from conveyor.exceptions import (
    ConveyorError,
    MissingInputError,
    ParameterError,
    PipelineDefinitionError,
    TypeMismatchError,
    UnknownOutputError,
    did_you_mean,
)

__all__ = ["OutputRef", "Pipeline", "after", "current_builder", "pipeline"]

_BUILDER: contextvars.ContextVar[_Builder | None] = contextvars.ContextVar(
    "conveyor_pipeline_builder", default=None
)


def current_builder() -> _Builder | None:
    """The pipeline being built in this context, if any."""
    return _BUILDER.get()


@dataclass(frozen=True)
class OutputRef:
    """A placeholder for a step output that exists only once the pipeline runs."""

    step: str
    output: str
    python_type: Any
    artifact_type: str
    builder_id: int

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise UnknownOutputError(
            f"step {self.step!r} has a single output {self.output!r}; "
            f"it never produces an output {name!r}"
        )

    def __bool__(self) -> bool:
        raise PipelineDefinitionError(
            f"the output of step {self.step!r} has no value while the pipeline is being built; "
            "branch on parameters, not on outputs"
        )

    def __iter__(self) -> Iterator[Any]:
        raise PipelineDefinitionError(
            f"step {self.step!r} has a single output; it cannot be unpacked"
        )


class _Builder:
    """Collects steps while a pipeline function runs."""

    def __init__(self, pipeline_name: str) -> None:
        self.pipeline_name = pipeline_name
        self.steps: list[StepIR] = []
        self.names: set[str] = set()
        self.after: list[str] = []  # control dependencies of the ``after(...)`` blocks open

    def _step_name(self, base: str) -> str:
        name, n = base, 2
        while name in self.names:
            name, n = f"{base}_{n}", n + 1
        self.names.add(name)
        return name

    def add_step(
        self, comp: Component[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        step_name = self._step_name(comp.name)
        bound = self._bind(comp, step_name, args, kwargs)
        sig = comp.signature
        params: dict[str, Any] = {}
        inputs: dict[str, InputRef] = {}
        for arg_name, value in bound.items():
            if isinstance(value, OutputRef):
                inputs[arg_name] = self._edge(step_name, comp, arg_name, value)
            elif isinstance(value, Component):
                raise PipelineDefinitionError(
                    f"step {step_name!r}: argument {arg_name!r} got the component "
                    f"{value.name!r} itself; call it and pass its output"
                )
            elif arg_name in sig.params:
                params[arg_name] = sig.params[arg_name].validate(value, f"step {step_name!r}")
            elif value is None and not sig.inputs[arg_name].required:
                continue  # an optional input explicitly left unconnected
            else:
                raise PipelineDefinitionError(
                    f"step {step_name!r}: input {arg_name!r} must be the output of another "
                    f"step, got a {type(value).__name__}; wrap constant data in a component"
                )
        for arg_name, spec in sig.params.items():
            if arg_name not in bound and arg_name not in inputs:
                if spec.required:
                    raise _missing_argument(step_name, comp.name, arg_name, spec)
                params[arg_name] = spec.validate(spec.default, f"step {step_name!r}")
        for arg_name, ispec in sig.inputs.items():
            if arg_name not in inputs and ispec.required:
                raise MissingInputError(
                    f"step {step_name!r} (component {comp.name!r}): input {arg_name!r} is not "
                    f"connected; pass the output of a step producing "
                    f"{qualified_name(ispec.annotation)}"
                )
        after = [name for name in dict.fromkeys(self.after) if name != step_name]
        step = StepIR(step_name, comp.ref, params, inputs, dict(sig.outputs), comp.options, after)
        self.steps.append(step)
        return self._output_refs(step_name, comp)

    def _bind(
        self,
        comp: Component[Any, Any],
        step_name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> dict[str, Any]:
        try:
            bound = inspect.signature(comp.fn).bind_partial(*args, **kwargs)
        except TypeError as exc:
            names = [*comp.signature.params, *comp.signature.inputs]
            unknown = next((k for k in kwargs if k not in names), None)
            hint = did_you_mean(unknown, names) if unknown else ""
            raise ParameterError(f"step {step_name!r}: {exc}{hint}") from exc
        return dict(bound.arguments)

    def _edge(
        self, step_name: str, comp: Component[Any, Any], arg: str, ref: OutputRef
    ) -> InputRef:
        consumer = f"{step_name}.{arg}"
        if ref.builder_id != id(self):
            raise UnknownOutputError(
                f"{consumer} reads {ref.step}.{ref.output}, which belongs to another pipeline"
            )
        spec = comp.signature.argument(arg)
        if isinstance(spec, ParameterSpec):
            if strip_annotated(spec.annotation) is Any:
                raise TypeMismatchError(
                    f"{consumer} is annotated Any; annotate the type it reads from "
                    f"{ref.step}.{ref.output} ({qualified_name(ref.python_type)})"
                )
            annotation = spec.annotation
        else:
            annotation = typing.cast(InputSpec, spec).annotation
        target = runtime_class(annotation)
        try:
            ok = can_load(target, ref.artifact_type)
        except Exception:
            ok = False
        if not ok:
            raise TypeMismatchError(
                f"{ref.step}.{ref.output} produces {qualified_name(ref.python_type)} "
                f"(artifact type {ref.artifact_type}) but {consumer} expects "
                f"{qualified_name(annotation)}"
            )
        if isinstance(spec, ParameterSpec):
            accepts = InputSpec(arg, annotation).accepts()
        else:
            accepts = typing.cast(InputSpec, spec).accepts()
        return InputRef(ref.step, ref.output, qualified_name(annotation), accepts)

    def _output_refs(self, step_name: str, comp: Component[Any, Any]) -> Any:
        sig = comp.signature
        refs = {
            name: OutputRef(step_name, name, sig.output_types[name], spec.artifact_type, id(self))
            for name, spec in sig.outputs.items()
        }
        if not refs:
            return None
        if sig.output_container is None:
            return refs[SINGLE_OUTPUT]
        container: Any = sig.output_container
        return container(**refs)


def _missing_argument(
    step: str, comp: str, arg: str, spec: ParameterSpec
) -> ParameterError | MissingInputError:
    try:
        materializer_for(runtime_class(spec.annotation))
    except ConveyorError:
        return ParameterError(f"step {step!r}: parameter {arg!r} is required")
    return MissingInputError(
        f"step {step!r} (component {comp!r}): input {arg!r} is not connected; pass the output "
        f"of a step producing {qualified_name(spec.annotation)}, or a value"
    )


class Pipeline:
    """A pipeline function; build it into IR with :meth:`build`. Create with :func:`pipeline`."""

    def __init__(self, fn: Callable[..., Any], name: str) -> None:
        self.fn = fn
        self.name = name
        self.__doc__ = fn.__doc__
        hints = typing.get_type_hints(fn, include_extras=True)
        self.specs: dict[str, ParameterSpec] = {}
        for arg in inspect.signature(fn).parameters.values():
            if arg.name not in hints:
                raise PipelineDefinitionError(
                    f"pipeline {name!r}: parameter {arg.name!r} has no type hint"
                )
            self.specs[arg.name] = ParameterSpec(arg.name, hints[arg.name], arg.default)

    def __repr__(self) -> str:
        return f"<pipeline {self.name}>"

    @property
    def parameters(self) -> dict[str, tuple[str, Any]]:
        """name -> (type name, default or None)."""
        return {
            n: (qualified_name(s.annotation), None if s.required else s.default)
            for n, s in self.specs.items()
        }

    def resolve_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and complete parameters; strings from a command line are coerced."""
        for key in params:
            if key not in self.specs:
                raise ParameterError(
                    f"pipeline {self.name!r} has no parameter {key!r}"
                    + did_you_mean(key, self.specs)
                )
        resolved: dict[str, Any] = {}
        for name, spec in self.specs.items():
            if name in params:
                resolved[name] = _coerce(spec, params[name], self.name)
            elif spec.required:
                raise ParameterError(
                    f"pipeline {self.name!r}: parameter {name!r} is required (pass -p {name}=...)"
                )
            else:
                resolved[name] = spec.revive(spec.validate(spec.default, f"pipeline {self.name!r}"))
        return resolved

    def build(
        self, params: Mapping[str, Any] | None = None, source: str | None = None
    ) -> PipelineIR:
        """Validate ``params``, trace the function and return the checked IR."""
        values = self.resolve_params(params or {})
        with _building(self.name) as builder:
            self.fn(**values)
        json_params = {
            n: self.specs[n].validate(v, f"pipeline {self.name!r}") for n, v in values.items()
        }
        ir = PipelineIR(self.name, json_params, builder.steps, source=source)
        validate_ir(ir)
        return ir

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        builder = current_builder()
        if builder is None:
            raise PipelineDefinitionError(
                f"pipeline {self.name!r} is not called directly; use "
                f"conveyor.run({self.name}, ...) or `conveyor run FILE:{self.name}`"
            )
        return self.fn(*args, **kwargs)  # a sub-pipeline inlines its steps


def _coerce(spec: ParameterSpec, raw: Any, pipeline_name: str) -> Any:
    owner = f"pipeline {pipeline_name!r}"
    if isinstance(raw, str) and strip_annotated(spec.annotation) is not str:
        # From the command line every value is text: try JSON (lists, dicts), then lax parsing.
        import json

        try:
            return spec.revive(spec.validate(json.loads(raw), owner))
        except (ValueError, ParameterError):
            pass
    return spec.revive(spec.validate(raw, owner))


@contextmanager
def after(*outputs: Any) -> Iterator[None]:
    """Steps created inside the block start only after the steps behind ``outputs`` succeeded.

    For an order that no data expresses: training must wait for validation to pass even
    though it does not read the validation report. If a step it waits for fails, the steps
    in the block are skipped.

    Example:
        >>> with conveyor.after(report):  # doctest: +SKIP
        ...     model = train(data, label="income")
    """
    builder = current_builder()
    if builder is None:
        raise PipelineDefinitionError("conveyor.after(...) is used inside a @pipeline function")
    steps: list[str] = []
    for output in outputs:
        if isinstance(output, OutputRef):
            refs = [output]
        else:  # a NamedTuple or dataclass of outputs: every one of them
            fields = getattr(output, "__dict__", None) or getattr(output, "_asdict", dict)()
            refs = list(output) if isinstance(output, tuple) else list(fields.values())
        if not refs or not all(isinstance(r, OutputRef) for r in refs):
            raise PipelineDefinitionError(
                f"conveyor.after(...) takes outputs of steps, got {type(output).__name__}"
            )
        steps.extend(r.step for r in refs)
    depth = len(builder.after)
    builder.after.extend(steps)
    try:
        yield
    finally:
        del builder.after[depth:]


@contextmanager
def _building(name: str) -> Iterator[_Builder]:
    if current_builder() is not None:
        raise PipelineDefinitionError(f"pipeline {name!r} is already being built")
    builder = _Builder(name)
    token = _BUILDER.set(builder)
    try:
        yield builder
    finally:
        _BUILDER.reset(token)


@overload
def pipeline(fn: Callable[..., Any], /) -> Pipeline: ...


@overload
def pipeline(*, name: str | None = None) -> Callable[[Callable[..., Any]], Pipeline]: ...


def pipeline(
    fn: Callable[..., Any] | None = None, /, *, name: str | None = None
) -> Pipeline | Callable[[Callable[..., Any]], Pipeline]:
    """Mark a function that wires components as a pipeline.

    Example:
        >>> from conveyor import component, pipeline
        >>> @component
        ... def numbers(n: int) -> list[int]:
        ...     return list(range(n))
        >>> @component
        ... def total(values: list[int]) -> int:
        ...     return sum(values)
        >>> @pipeline
        ... def sums(n: int = 10) -> None:
        ...     total(numbers(n))
        >>> [s.name for s in sums.build({"n": 3}).steps]
        ['numbers', 'total']
    """

    def wrap(func: Callable[..., Any]) -> Pipeline:
        return Pipeline(func, name or func.__name__)

    return wrap(fn) if fn is not None else wrap
