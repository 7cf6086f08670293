"""Find pipelines in files: ``conveyor run FILE[:PIPELINE]``.

A pipeline file is imported like a script (its folder goes first on ``sys.path`` so its own
helper modules import), under a module name derived from its path. The module is marked with
``__conveyor_file__`` so a runner in another process can import the same file again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from conveyor.core.pipeline import Pipeline
from conveyor.exceptions import ParameterError, PipelineLoadError, did_you_mean

__all__ = ["DEFAULT_FILE", "import_file", "load_pipeline", "parse_assignments", "split_spec"]

DEFAULT_FILE = "pipeline.py"


def split_spec(spec: str | None) -> tuple[Path, str | None]:
    """``"dir/p.py:train"`` -> (Path("dir/p.py"), "train"); ``None`` -> (pipeline.py, None)."""
    if not spec:
        return Path(DEFAULT_FILE), None
    file_part, sep, name = spec.rpartition(":")
    if sep and file_part and not name.startswith(("/", "\\")):
        return Path(file_part), name or None
    return Path(spec), None


def module_name_for(path: Path) -> str:
    """A stable module name for a file, unique per absolute path."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    return f"conveyor_user_{stem}_{digest}"


def import_file(path: Path, reload: bool = False) -> ModuleType:
    """Import ``path`` as a module (once per process unless ``reload``).

    Raises PipelineLoadError naming the file (and line) on any failure.
    """
    path = path.resolve()
    if not path.is_file():
        raise PipelineLoadError(f"pipeline file {path} does not exist")
    name = module_name_for(path)
    if name in sys.modules and not reload:
        return sys.modules[name]
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PipelineLoadError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    module.__conveyor_file__ = str(path)  # type: ignore[attr-defined]
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[name]
        raise PipelineLoadError(
            f"{exc.filename or path}:{exc.lineno}: syntax error: {exc.msg}"
        ) from exc
    except Exception as exc:
        del sys.modules[name]
        frame = _user_frame(exc, path)
        raise PipelineLoadError(f"{frame}: importing the pipeline file failed: {exc!r}") from exc
    return module


def _user_frame(exc: BaseException, path: Path) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
    return f"{path}:{frames[-1].lineno}" if frames else str(path)


def _pipelines_in(module: ModuleType) -> dict[str, Pipeline]:
    found: dict[str, Pipeline] = {}
    for attr, value in vars(module).items():
        if isinstance(value, Pipeline):
            found.setdefault(value.name, value)
            found.setdefault(attr, value)
    return found


def load_pipeline(spec: str | None, reload: bool = False) -> Pipeline:
    """Load the pipeline named by ``"FILE[:PIPELINE]"``.

    Without a name the file must define exactly one pipeline. ``reload`` imports the file
    again even if this process imported it before (for notebooks and tests).

    Example:
        >>> load_pipeline("examples/demo/pipeline.py:demo")  # doctest: +SKIP
        <pipeline demo>
    """
    path, name = split_spec(spec)
    module = import_file(path, reload=reload)
    pipelines = _pipelines_in(module)
    unique = list(dict.fromkeys(pipelines.values()))
    if name is None:
        if len(unique) == 1:
            return unique[0]
        if not unique:
            raise PipelineLoadError(f"{path} defines no @pipeline function")
        names = ", ".join(sorted(p.name for p in unique))
        raise PipelineLoadError(
            f"{path} defines several pipelines ({names}); name one: {path}:NAME"
        )
    if name not in pipelines:
        raise PipelineLoadError(
            f"{path} has no pipeline {name!r}" + did_you_mean(name, (p.name for p in unique))
        )
    return pipelines[name]


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """``["epochs=3", "name=a=b"]`` -> ``{"epochs": "3", "name": "a=b"}``."""
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParameterError(f"parameter {item!r} is not of the form key=value")
        if key in result:
            raise ParameterError(f"parameter {key!r} is given twice")
        result[key] = value
    return result
