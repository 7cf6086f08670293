"""orjson when it is installed (the ``serving`` extra has it), else None: the one place that
looks for it. Callers fall back to :mod:`json`, which gives the same documents."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["orjson"]


def _optional_orjson() -> ModuleType | None:
    try:
        return importlib.import_module("orjson")
    except ImportError:  # pragma: no cover - depends on the environment
        return None


orjson = _optional_orjson()
"""The orjson module, or None."""
