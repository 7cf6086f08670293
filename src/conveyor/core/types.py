"""How conveyor reads type hints: parameters versus artifacts, and names of types.

A function argument is a *parameter* when its type is plain JSON-able data (str, int,
float, bool, None, Enum, Literal, pydantic models, and lists/tuples/dicts/unions of those);
anything else is an *artifact input* loaded by a materializer. Types that are both (dict,
list, pathlib.Path) are parameters unless the pipeline wires another step's output into them.
"""

from __future__ import annotations

import enum
import importlib
import pathlib
import types
import typing
from typing import Any

from pydantic import BaseModel

__all__ = [
    "is_parameter_type",
    "qualified_name",
    "resolve_qualified_name",
    "runtime_class",
    "strip_annotated",
]

_SCALARS: tuple[type, ...] = (str, int, float, bool, type(None), pathlib.Path, pathlib.PurePath)
_CONTAINERS: tuple[Any, ...] = (list, tuple, dict, set, frozenset)


def strip_annotated(tp: Any) -> Any:
    """``Annotated[X, ...]`` -> X; ``Optional[X]`` -> X; anything else unchanged."""
    if typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return strip_annotated(args[0])
    return tp


def is_parameter_type(tp: Any) -> bool:
    """True when values of ``tp`` are plain data that belong in parameters."""
    if tp is Any:
        return True
    if typing.get_origin(tp) is typing.Annotated:
        return is_parameter_type(typing.get_args(tp)[0])
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return True
    if origin in (typing.Union, types.UnionType) or origin in _CONTAINERS:
        return all(a is Ellipsis or is_parameter_type(a) for a in typing.get_args(tp))
    if tp in _CONTAINERS:
        return True
    if isinstance(tp, type):
        if tp in _SCALARS:
            return True
        return issubclass(tp, enum.Enum | BaseModel)
    return False


def qualified_name(tp: Any) -> str:
    """A readable, importable-where-possible name: ``pandas.core.frame.DataFrame``."""
    tp_stripped = strip_annotated(tp)
    if isinstance(tp_stripped, type) and typing.get_origin(tp_stripped) is None:
        if tp_stripped.__module__ == "builtins":
            return tp_stripped.__qualname__
        return f"{tp_stripped.__module__}.{tp_stripped.__qualname__}"
    return repr(tp_stripped).replace("typing.", "")


def resolve_qualified_name(name: str) -> Any:
    """Import the object a :func:`qualified_name` names (``"builtins"`` for bare names)."""
    module_name, _, attr = name.rpartition(".")
    module = importlib.import_module(module_name or "builtins")
    return getattr(module, attr)


def runtime_class(tp: Any) -> Any:
    """The class a materializer is chosen by: ``list[int]`` -> list, ``Optional[X]`` -> X."""
    tp = strip_annotated(tp)
    return typing.get_origin(tp) or tp
