"""Fingerprints that make cache keys: code, parameters, and the key itself.

* **Code**: a component's source plus the source of the project's own functions, classes and
  modules it references (followed transitively). Library code (the standard library,
  site-packages, conveyor itself) is left out: upgrading pandas does not invalidate a cache,
  editing a helper in your project does.
* **Parameters**: canonical JSON (sorted keys, no whitespace, ``-0.0`` folded into ``0.0``,
  non-finite floats spelled out) so equal values always hash equally.
* **Cache key**: sha256 over the canonical JSON of component identity, code fingerprint,
  parameters and input fingerprints. The parts are kept too, so a miss can be explained.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import sys
import sysconfig
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "cache_key",
    "canonical_json",
    "code_fingerprint",
    "explain_difference",
    "is_project_file",
]


def _normalise(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return {"__float__": "nan"}
        if math.isinf(value):
            return {"__float__": "inf" if value > 0 else "-inf"}
        return 0.0 if value == 0 else value
    if isinstance(value, Mapping):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    raise TypeError(f"value of type {type(value).__name__} is not JSON-able: {value!r}")


def canonical_json(value: Any) -> str:
    """Serialise JSON-able ``value`` canonically: equal values give equal strings.

    Example:
        >>> canonical_json({"b": 1, "a": [1.0, -0.0]})
        '{"a":[1.0,0.0],"b":1}'
    """
    return json.dumps(_normalise(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_key(
    component: str, code: str, params: Mapping[str, Any], inputs: Mapping[str, str]
) -> tuple[str, dict[str, Any]]:
    """Return (key, parts) for a step; ``inputs`` maps input names to content fingerprints."""
    parts = {
        "component": component,
        "code": code,
        "params": _normalise(dict(params)),
        "inputs": dict(sorted(inputs.items())),
    }
    return _sha256(canonical_json(parts)), parts


# -- explaining a miss ------------------------------------------------------------------


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _diff_mapping(kind: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[str]:
    for name in sorted(set(old) | set(new)):
        if name not in old:
            yield f"{kind} {name!r} added"
        elif name not in new:
            yield f"{kind} {name!r} removed"
        elif old[name] != new[name]:
            if kind == "input":
                yield f"input {name!r} changed ({str(old[name])[:12]} -> {str(new[name])[:12]})"
            else:
                yield f"{kind} {name!r} changed ({_short(old[name])} -> {_short(new[name])})"


def explain_difference(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> str:
    """Say in words which part of a cache key changed between two executions."""
    if not old:
        return "first execution of this step"
    reasons: list[str] = []
    if old.get("component") != new.get("component"):
        reasons.append(f"component changed ({old.get('component')} -> {new.get('component')})")
    if old.get("code") != new.get("code"):
        reasons.append("code changed")
    reasons.extend(_diff_mapping("parameter", old.get("params", {}), new.get("params", {})))
    reasons.extend(_diff_mapping("input", old.get("inputs", {}), new.get("inputs", {})))
    if not reasons:
        return "same key as the previous execution, which did not succeed or whose outputs are gone"
    return "; ".join(reasons)


# -- code --------------------------------------------------------------------------------


@functools.cache
def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.add(sys.base_prefix)
    roots.add(str(Path(__file__).resolve().parents[1]))  # conveyor itself
    return tuple(str(Path(r).resolve()) for r in roots)


def is_project_file(path: str | None) -> bool:
    """True for source files of the user's project (not stdlib, site-packages or conveyor)."""
    if not path or not path.endswith(".py"):
        return False
    resolved = str(Path(path).resolve())
    return not any(resolved.startswith(root + "/") for root in _library_roots())


def _project_file_of(obj: Any) -> str | None:
    if isinstance(obj, types.ModuleType):
        file = getattr(obj, "__file__", None)
    else:
        module = sys.modules.get(getattr(obj, "__module__", "") or "")
        file = getattr(module, "__file__", None) if module else None
    return file if is_project_file(file) else None


def _referenced_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _referenced_names(const)


def _source_of(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        if code is not None:
            return repr((code.co_code, code.co_consts, code.co_names))
        return repr(obj)


def _unwrap(obj: Any) -> Any:
    # Components wrap the user's function; fingerprint the function itself.
    inner = getattr(obj, "__conveyor_fn__", None)
    return inner if inner is not None else obj


def _collect(obj: Any, seen: set[int], out: list[str]) -> None:
    obj = _unwrap(obj)
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, types.ModuleType):
        file = _project_file_of(obj)
        if file:
            out.append(f"module {obj.__name__}\n{Path(file).read_text(encoding='utf-8')}")
        return
    out.append(_source_of(obj))
    if isinstance(obj, type):
        for member in vars(obj).values():
            fn = getattr(member, "__func__", member)
            if isinstance(fn, types.FunctionType):
                _follow_references(fn, seen, out)
        return
    if isinstance(obj, types.FunctionType):
        _follow_references(obj, seen, out)


def _follow_references(fn: types.FunctionType, seen: set[int], out: list[str]) -> None:
    namespace = fn.__globals__
    closure = [c.cell_contents for c in (fn.__closure__ or ()) if _cell_filled(c)]
    candidates = [namespace[n] for n in _referenced_names(fn.__code__) if n in namespace]
    for target in [*candidates, *closure]:
        target = _unwrap(target)
        if isinstance(target, types.FunctionType | type | types.ModuleType) and _project_file_of(
            target
        ):
            _collect(target, seen, out)


def _cell_filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


def code_fingerprint(fn: Any) -> str:
    """sha256 over the source of ``fn`` and of the project's own code it references.

    Example:
        >>> def double(x: int) -> int:
        ...     return 2 * x
        >>> len(code_fingerprint(double))
        64
    """
    out: list[str] = []
    _collect(fn, set(), out)
    return _sha256("\n\x00\n".join(out))
