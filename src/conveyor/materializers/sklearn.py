"""scikit-learn estimators as "Model" artifacts, saved with skops, never with pickle.

Loading trusts only the types skops itself trusts plus those from ``sklearn.``, ``numpy.``
and ``scipy.`` and harmless builtins; any other type in the file (a custom transformer, a
lambda) is refused with a MaterializerError that names it, since loading it could run code.

skops archives name their members after object ids and carry zip timestamps, so two saves
of an equal model are *not* byte-identical and get different fingerprints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sklearn
import skops.io

from conveyor.core.materializers import Materializer, qualified_name
from conveyor.exceptions import MaterializerError

__all__ = ["SklearnMaterializer", "trusted_types"]

MODEL_FILE = "model.skops"
_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.")
# Builtins that run code, touch files or reach into objects: never trusted from a file.
_UNSAFE_BUILTINS = frozenset(
    f"builtins.{name}"
    for name in (
        *("eval", "exec", "compile", "open", "input", "breakpoint", "__import__"),
        *("getattr", "setattr", "delattr", "globals", "locals", "vars", "help", "exit", "quit"),
    )
)
_MAX_PARAMS = 200
_MAX_REPR = 200


def trusted_types(untrusted: list[str]) -> tuple[list[str], list[str]]:
    """Split skops' untrusted type names into (ones we trust, ones we refuse)."""
    trusted, refused = [], []
    for name in untrusted:
        if name.startswith(_TRUSTED_PREFIXES) and name not in _UNSAFE_BUILTINS:
            trusted.append(name)
        else:
            refused.append(name)
    return trusted, refused


def _json_safe(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        text = repr(value)
        return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."
    return value


def _params(estimator: Any) -> dict[str, Any]:
    items = sorted(estimator.get_params(deep=True).items())
    return {key: _json_safe(value) for key, value in items[:_MAX_PARAMS]}


class SklearnMaterializer(Materializer):
    """``sklearn.base.BaseEstimator`` <-> ``model.skops``.

    Example:
        >>> SklearnMaterializer().save(LogisticRegression(C=0.5), folder)["params"]["C"]
        0.5
    """

    python_types = ("sklearn.base.BaseEstimator",)
    artifact_type = "Model"

    def save(self, obj: Any, folder: Path) -> dict[str, Any]:
        try:
            skops.io.dump(obj, folder / MODEL_FILE)
        except Exception as exc:  # skops raises its own and TypeErrors for unsupported parts
            msg = f"skops cannot save {qualified_name(type(obj))}: {exc}"
            raise MaterializerError(msg) from exc
        return {
            "flavour": "sklearn",
            "estimator": type(obj).__name__,
            "estimator_class": qualified_name(type(obj)),
            "params": _params(obj),
            "sklearn_version": sklearn.__version__,
        }

    def load(self, folder: Path, python_type: type) -> Any:
        path = Path(folder) / MODEL_FILE
        if not path.is_file():
            raise MaterializerError(
                f"no {MODEL_FILE} in {folder}: this Model was not saved from a scikit-learn "
                "estimator (load it as conveyor.Model to read its files)"
            )
        try:
            untrusted = skops.io.get_untrusted_types(file=path)
        except Exception as exc:
            raise MaterializerError(f"{path} is not a valid skops file: {exc}") from exc
        trusted, refused = trusted_types(untrusted)
        if refused:
            raise MaterializerError(
                f"refusing to load {path}: it contains untrusted types {sorted(refused)}; "
                "only sklearn, numpy, scipy and safe builtins types are loaded"
            )
        try:
            return skops.io.load(path, trusted=trusted)
        except Exception as exc:
            raise MaterializerError(f"cannot load model {path}: {exc}") from exc
