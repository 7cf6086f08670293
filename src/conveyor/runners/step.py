"""Execute one step in the current process: the unit of work every runner ships.

A :class:`StepTask` is plain data (component location, parameters as JSON, input artifacts by
URI), so it can cross a process or machine boundary; :func:`execute_step` imports the
component, loads inputs through materializers, calls the function with stdout/stderr captured
into the step's log file, stores the outputs and returns a :class:`StepOutcome`. It never
raises for a failure of the user's code: the outcome carries the error and traceback.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import time
import traceback
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.core.component import SINGLE_OUTPUT, Component, ComponentSignature
from conveyor.core.context import StepContext, reset_step_context, use_step_context
from conveyor.core.ir import ComponentRef
from conveyor.core.loader import import_file
from conveyor.core.materializers import load_artifact, save_artifact
from conveyor.core.types import qualified_name
from conveyor.exceptions import ConveyorError, MaterializerError, PipelineLoadError
from conveyor.store.artifact_store import ArtifactStore

__all__ = ["InputArtifact", "ProducedArtifact", "StepOutcome", "StepTask", "execute_step"]


@dataclass(frozen=True)
class InputArtifact:
    uri: str
    type_name: str
    sha256: str
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepTask:
    run_id: int
    execution_id: int
    step: str
    attempt: int
    component: ComponentRef
    params: dict[str, Any]
    inputs: dict[str, InputArtifact]
    artifact_url: str
    log_path: str
    metadata_url: str | None = None


@dataclass(frozen=True)
class ProducedArtifact:
    uri: str
    sha256: str
    size: int
    type_name: str
    properties: dict[str, Any]


@dataclass(frozen=True)
class StepOutcome:
    ok: bool
    duration_s: float
    outputs: dict[str, ProducedArtifact] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None


class StepOutputError(ConveyorError):
    """A step returned something that does not match its declared outputs."""


_STORES: dict[str, ArtifactStore] = {}


def _artifact_store(url: str) -> ArtifactStore:
    if url not in _STORES:
        _STORES[url] = ArtifactStore.open(url)
    return _STORES[url]


def resolve_component(ref: ComponentRef) -> Component[Any, Any]:
    """Import the component a ref points at (by file for pipeline files)."""
    if ref.file:
        module = import_file(Path(ref.file))
    else:
        try:
            module = importlib.import_module(ref.module)
        except ImportError as exc:
            raise PipelineLoadError(f"cannot import module {ref.module!r}: {exc}") from exc
    target: Any = module
    for part in ref.qualname.split("."):
        target = getattr(target, part, None)
    comp = target
    if not isinstance(comp, Component):
        found = next(
            (
                v
                for v in vars(module).values()
                if isinstance(v, Component) and v.fn.__qualname__ == ref.qualname
            ),
            None,
        )
        if found is None:
            raise PipelineLoadError(f"{ref.module}.{ref.qualname} is not a component any more")
        comp = found
    return comp


@contextmanager
def capture_output(path: Path, header: str) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, header.encode())
    saved = os.dup(1), os.dup(2)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for handle in (*saved, fd):
            os.close(handle)


def _split_outputs(sig: ComponentSignature, step: str, result: Any) -> dict[str, Any]:
    if not sig.outputs:
        return {}
    if sig.output_container is None:
        values = {SINGLE_OUTPUT: result}
    elif isinstance(result, sig.output_container):
        if dataclasses.is_dataclass(result):
            values = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
        else:
            values = dict(zip(sig.outputs, typing.cast(tuple[Any, ...], result), strict=True))
    else:
        raise StepOutputError(
            f"step {step!r} returned {type(result).__name__}, declared "
            f"{qualified_name(sig.output_container)}"
        )
    return values


def _run(task: StepTask, ctx: StepContext) -> dict[str, ProducedArtifact]:
    comp = resolve_component(task.component)
    sig = comp.signature
    store = _artifact_store(task.artifact_url)
    kwargs: dict[str, Any] = {}
    for name, value in task.params.items():
        kwargs[name] = sig.params[name].revive(value)
    for name, art in task.inputs.items():
        spec = sig.argument(name)
        annotation = spec.annotation if spec is not None else Any
        kwargs[name] = load_artifact(
            store, art.uri, art.type_name, art.sha256, art.properties, annotation
        )
    token = use_step_context(ctx)
    try:
        result = comp.fn(**kwargs)
    finally:
        reset_step_context(token)
    produced: dict[str, ProducedArtifact] = {}
    for name, value in _split_outputs(sig, task.step, result).items():
        try:
            stored, type_name, props = save_artifact(store, value, sig.output_types[name])
        except MaterializerError as exc:
            raise StepOutputError(f"step {task.step!r}: output {name!r}: {exc}") from exc
        props = {**props, **ctx.output_properties.get(name, {})}
        produced[name] = ProducedArtifact(stored.uri, stored.sha256, stored.size, type_name, props)
    return produced


def execute_step(task: StepTask) -> StepOutcome:
    """Run one step; failures of user code come back in the outcome, never as exceptions."""
    started = time.perf_counter()
    log_path = Path(task.log_path)
    ctx = StepContext(
        task.run_id,
        task.execution_id,
        task.step,
        task.attempt,
        log_path,
        metadata_url=task.metadata_url,
        artifact_url=task.artifact_url,
    )
    header = f"--- step {task.step} attempt {task.attempt} (pid {os.getpid()}) ---\n"
    with capture_output(log_path, header):
        try:
            outputs = _run(task, ctx)
        except BaseException as exc:
            tb = traceback.format_exc()
            sys.stderr.write(tb)
            return StepOutcome(
                ok=False,
                duration_s=time.perf_counter() - started,
                error=f"{type(exc).__name__}: {exc}",
                traceback=tb,
            )
    return StepOutcome(ok=True, duration_s=time.perf_counter() - started, outputs=outputs)
