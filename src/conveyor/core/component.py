"""Components: plain typed Python functions that become pipeline steps.

The signature is the contract. Arguments are artifact inputs or parameters (see
:mod:`conveyor.core.types`); the return annotation declares the outputs: one value is the
output ``"output"``, a ``NamedTuple`` or dataclass declares one output per field.

Called inside a pipeline function, a component does not run: it records a step and returns
references to its future outputs. Called anywhere else, it is the plain function.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar, overload
from typing import ParamSpec as _ParamSpec

from pydantic import TypeAdapter, ValidationError

from conveyor.core.artifacts import Artifact
from conveyor.core.fingerprint import code_fingerprint
from conveyor.core.ir import ComponentRef, OutputSpec, StepOptions
from conveyor.core.materializers import materializer_for
from conveyor.core.types import is_parameter_type, qualified_name, runtime_class
from conveyor.exceptions import ConveyorError, ParameterError, PipelineDefinitionError

__all__ = ["Component", "ComponentSignature", "InputSpec", "ParameterSpec", "component"]

P = _ParamSpec("P")
R = TypeVar("R")

SINGLE_OUTPUT = "output"


@dataclass(frozen=True)
class ParameterSpec:
    """A parameter: plain data validated by pydantic before anything runs."""

    name: str
    annotation: Any
    default: Any = inspect.Parameter.empty

    @functools.cached_property
    def adapter(self) -> TypeAdapter[Any]:
        return TypeAdapter(self.annotation)

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    def validate(self, value: Any, owner: str) -> Any:
        """Validate ``value`` and return its JSON form; ParameterError names the owner."""
        try:
            checked = self.adapter.validate_python(value)
            return self.adapter.dump_python(checked, mode="json")
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"] if exc.errors() else str(exc)
            raise ParameterError(
                f"{owner}: parameter {self.name!r} expects {qualified_name(self.annotation)}, "
                f"got {value!r} ({problem})"
            ) from exc

    def revive(self, value: Any) -> Any:
        """Turn the stored JSON form back into the declared type."""
        return self.adapter.validate_python(value)


@dataclass(frozen=True)
class InputSpec:
    """An artifact input."""

    name: str
    annotation: Any
    default: Any = inspect.Parameter.empty

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    def accepts(self) -> list[str]:
        entry = materializer_for(runtime_class(self.annotation))
        return [entry.artifact_type, *entry.also_loads]


@dataclass(frozen=True)
class ComponentSignature:
    """What a component consumes and produces, read from its type hints."""

    params: dict[str, ParameterSpec]
    inputs: dict[str, InputSpec]
    outputs: dict[str, OutputSpec]
    output_types: dict[str, Any]
    output_container: type | None  # NamedTuple or dataclass for several outputs

    def argument(self, name: str) -> ParameterSpec | InputSpec | None:
        return self.params.get(name) or self.inputs.get(name)


def _output_fields(container: Any) -> dict[str, Any] | None:
    if (
        isinstance(container, type)
        and issubclass(container, tuple)
        and hasattr(container, "_fields")
    ):
        hints = typing.get_type_hints(container, include_extras=True)
        return {name: hints.get(name, Any) for name in container._fields}
    if (
        isinstance(container, type)
        and dataclasses.is_dataclass(container)
        and not issubclass(container, Artifact)  # a handle is one output, not a container
    ):
        hints = typing.get_type_hints(container, include_extras=True)
        return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(container)}
    return None


def _output_spec(owner: str, name: str, tp: Any) -> OutputSpec:
    try:
        entry = materializer_for(runtime_class(tp))
    except ConveyorError as exc:
        raise PipelineDefinitionError(f"component {owner!r}: output {name!r}: {exc}") from exc
    return OutputSpec(python_type=qualified_name(tp), artifact_type=entry.artifact_type)


def read_signature(fn: Callable[..., Any], owner: str) -> ComponentSignature:
    """Classify arguments and outputs of ``fn``; PipelineDefinitionError names what is wrong."""
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise PipelineDefinitionError(
            f"component {owner!r}: cannot read type hints: {exc}"
        ) from exc
    params: dict[str, ParameterSpec] = {}
    inputs: dict[str, InputSpec] = {}
    for arg in inspect.signature(fn).parameters.values():
        if arg.kind in (arg.VAR_POSITIONAL, arg.VAR_KEYWORD):
            raise PipelineDefinitionError(
                f"component {owner!r}: *{arg.name} is not supported; declare each argument"
            )
        if arg.name not in hints:
            raise PipelineDefinitionError(
                f"component {owner!r}: argument {arg.name!r} has no type hint; add one "
                f"(e.g. '{arg.name}: int' for a parameter or '{arg.name}: Dataset' for data)"
            )
        tp = hints[arg.name]
        if is_parameter_type(tp):
            params[arg.name] = ParameterSpec(arg.name, tp, arg.default)
        else:
            try:
                materializer_for(runtime_class(tp))
            except ConveyorError as exc:
                raise PipelineDefinitionError(
                    f"component {owner!r}: input {arg.name!r}: {exc}"
                ) from exc
            inputs[arg.name] = InputSpec(arg.name, tp, arg.default)
    if "return" not in hints:
        raise PipelineDefinitionError(
            f"component {owner!r} has no return annotation; add '-> None' if it returns nothing"
        )
    ret = hints["return"]
    output_types: dict[str, Any]
    container: type | None = None
    if ret is None or ret is type(None):
        output_types = {}
    elif (fields := _output_fields(ret)) is not None:
        output_types, container = fields, ret
    else:
        output_types = {SINGLE_OUTPUT: ret}
    outputs = {name: _output_spec(owner, name, tp) for name, tp in output_types.items()}
    return ComponentSignature(params, inputs, outputs, output_types, container)


class Component(Generic[P, R]):
    """A typed function that can be a pipeline step. Create with :func:`component`."""

    def __init__(self, fn: Callable[P, R], name: str, options: StepOptions) -> None:
        self.fn = fn
        self.name = name
        self.options = options
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<component {self.name} ({self.fn.__module__}.{self.fn.__qualname__})>"

    @property
    def __conveyor_fn__(self) -> Callable[P, R]:
        return self.fn

    @functools.cached_property
    def signature(self) -> ComponentSignature:
        return read_signature(self.fn, self.name)

    @functools.cached_property
    def ref(self) -> ComponentRef:
        """Where the function lives (for runners in other processes) and its code fingerprint."""
        module = inspect.getmodule(self.fn)
        loaded_from = getattr(module, "__conveyor_file__", None)
        return ComponentRef(
            name=self.name,
            module=self.fn.__module__,
            qualname=self.fn.__qualname__,
            file=loaded_from,
            code_fingerprint=code_fingerprint(self.fn),
        )

    def configure(
        self,
        *,
        name: str | None = None,
        cache: bool | None = None,
        retries: int | None = None,
        retry_backoff_s: float | None = None,
        timeout_s: float | None = None,
    ) -> Component[P, R]:
        """A copy with other options, e.g. ``train.configure(name="train_big", retries=2)``."""
        changes = {
            k: v
            for k, v in {
                "cache": cache,
                "retries": retries,
                "retry_backoff_s": retry_backoff_s,
                "timeout_s": timeout_s,
            }.items()
            if v is not None
        }
        options = replace(self.options, **changes)  # type: ignore[arg-type]
        _check_options(self.name, options)
        return Component(self.fn, name or self.name, options)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        from conveyor.core.pipeline import current_builder  # import cycle: pipeline uses us

        builder = current_builder()
        if builder is None:
            return self.fn(*args, **kwargs)
        return typing.cast(R, builder.add_step(self, args, kwargs))

    def __get__(self, obj: Any, objtype: Any = None) -> Component[P, R]:
        return self


def _check_options(name: str, options: StepOptions) -> None:
    if options.retries < 0:
        raise PipelineDefinitionError(f"component {name!r}: retries must be >= 0")
    if options.retry_backoff_s < 0:
        raise PipelineDefinitionError(f"component {name!r}: retry_backoff_s must be >= 0")
    if options.timeout_s is not None and options.timeout_s <= 0:
        raise PipelineDefinitionError(f"component {name!r}: timeout_s must be > 0")


@overload
def component(fn: Callable[P, R], /) -> Component[P, R]: ...


@overload
def component(
    *,
    name: str | None = None,
    cache: bool = True,
    retries: int = 0,
    retry_backoff_s: float = 1.0,
    timeout_s: float | None = None,
) -> Callable[[Callable[P, R]], Component[P, R]]: ...


def component(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    cache: bool = True,
    retries: int = 0,
    retry_backoff_s: float = 1.0,
    timeout_s: float | None = None,
) -> Component[P, R] | Callable[[Callable[P, R]], Component[P, R]]:
    """Turn a typed function into a component.

    Example:
        >>> from conveyor import component
        >>> @component(retries=2, timeout_s=60)
        ... def square(numbers: list[int]) -> list[int]:
        ...     return [n * n for n in numbers]
        >>> square([1, 2])  # outside a pipeline it is the plain function
        [1, 4]
    """
    options = StepOptions(
        cache=cache, retries=retries, retry_backoff_s=retry_backoff_s, timeout_s=timeout_s
    )

    def wrap(func: Callable[P, R]) -> Component[P, R]:
        if not callable(func) or not hasattr(func, "__code__"):
            raise PipelineDefinitionError(f"@component needs a function, got {func!r}")
        comp_name = name or func.__name__
        _check_options(comp_name, options)
        comp: Component[P, R] = Component(func, comp_name, options)
        comp.signature  # noqa: B018 - check the type hints now, at definition time
        return comp

    return wrap(fn) if fn is not None else wrap
