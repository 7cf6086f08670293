"""Model flavours: how one kind of model is saved, loaded and asked for predictions.

A :class:`Flavour` is the narrow interface between a model bundle and a modelling library.
Saving writes the library's own safe format into a folder; loading never unpickles. The
built-in flavours (``sklearn``, ``xgboost``, ``lightgbm``) are registered by name and imported
on first use, so ``import conveyor.modeling`` needs none of those libraries; a library that is
missing is reported with the extra that installs it. Third-party flavours register with
:func:`register_flavour` or through the ``conveyor.flavours`` entry point group.

Predictions follow one contract across flavours: ``predict`` returns class labels (in the
signature's label type) for classification and values for regression; ``predict_proba``
returns an ``(n, len(classes))`` array whose columns follow ``signature.classes``.
"""

from __future__ import annotations

import importlib
import threading
from abc import ABC, abstractmethod
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from conveyor.exceptions import did_you_mean
from conveyor.modeling.bundle_errors import FlavourError, TrainingError

if TYPE_CHECKING:
    from conveyor.modeling.bundle_signature import Signature
    from conveyor.modeling.training import EstimatorSpec, TrainContext

__all__ = [
    "ENTRY_POINT_GROUP",
    "Flavour",
    "available_flavours",
    "class_probabilities",
    "detect_flavour",
    "estimator_class",
    "get_flavour",
    "labels_from",
    "mro_names",
    "register_flavour",
    "require",
]

ENTRY_POINT_GROUP = "conveyor.flavours"


def require(module: str, extra: str) -> ModuleType:
    """Import an optional library, or raise FlavourError with the pip extra to install.

    Example:
        >>> xgb = require("xgboost", "xgboost")
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise FlavourError(
            f"{module} is not installed: pip install 'conveyor-ml[{extra}]'"
        ) from exc


def mro_names(model: Any) -> list[str]:
    """Qualified names of the model's classes, so flavours match without importing libraries."""
    return [f"{c.__module__}.{c.__qualname__}" for c in type(model).__mro__]


class Flavour(ABC):
    """Save, load and predict with one kind of model.

    Example:
        >>> class OnnxFlavour(Flavour):
        ...     name = "onnx"
        ...     def matches(self, model): return type(model).__name__ == "ModelProto"
        ...     def save(self, model, folder): ...  # write folder / "model.onnx"
        ...     def load(self, folder): ...
        ...     def predict(self, model, features, signature): ...
        ...     def predict_proba(self, model, features, signature): ...
        >>> register_flavour(OnnxFlavour)
    """

    name: ClassVar[str]
    """The name recorded in ``bundle.json`` and used in estimator specs."""

    @abstractmethod
    def matches(self, model: Any) -> bool:
        """True when this flavour can save ``model`` (must not import the library)."""

    @abstractmethod
    def save(self, model: Any, folder: Path) -> dict[str, Any]:
        """Write ``model`` into the empty ``folder``; return JSON details for the manifest
        (library version, model class...)."""

    @abstractmethod
    def load(self, folder: Path) -> Any:
        """Read the model back from ``folder`` without running code the files bring."""

    @abstractmethod
    def predict(self, model: Any, features: Any, signature: Signature) -> np.ndarray:
        """Labels (classification) or values (regression) for the preprocessed features."""

    @abstractmethod
    def predict_proba(self, model: Any, features: Any, signature: Signature) -> np.ndarray:
        """Class probabilities, one column per ``signature.classes`` entry, in that order."""

    def classes(self, model: Any) -> list[Any] | None:
        """The class labels the fitted model's probability columns follow, if it knows them."""
        return None

    def fit(self, spec: EstimatorSpec, ctx: TrainContext) -> Any:
        """Fit a model from an estimator spec (with early stopping where the library has it)."""
        raise TrainingError(
            f"flavour {self.name!r} cannot train from an estimator spec; give a train_fn"
        )


_BUILTIN: dict[str, str] = {
    "sklearn": "conveyor.modeling.flavour_sklearn:SklearnFlavour",
    "xgboost": "conveyor.modeling.flavour_xgboost:XGBoostFlavour",
    "lightgbm": "conveyor.modeling.flavour_lightgbm:LightGBMFlavour",
}
# Detection order: the boosters' scikit-learn wrappers are scikit-learn estimators too, so
# they are asked first; flavours registered later are asked before all built-ins.
_DETECT_ORDER = ("lightgbm", "xgboost", "sklearn")

_lock = threading.Lock()
_targets: dict[str, Flavour | type[Flavour] | str] = dict(_BUILTIN)
_instances: dict[str, Flavour] = {}
_user_order: list[str] = []
_entry_points_loaded = False


def register_flavour(flavour: Flavour | type[Flavour] | str, *, name: str | None = None) -> None:
    """Register a flavour (an instance, a class or a lazy ``"module:Class"`` string).

    A later registration of the same name replaces the earlier one.

    Example:
        >>> register_flavour("my_pkg.flavours:OnnxFlavour", name="onnx")
    """
    key: str
    if isinstance(flavour, str):
        if name is None or flavour.count(":") != 1:
            raise FlavourError(f"lazy flavour {flavour!r} needs 'module:Class' and name=")
        key = name
    elif isinstance(flavour, Flavour) or (
        isinstance(flavour, type) and issubclass(flavour, Flavour)
    ):
        key = name or str(getattr(flavour, "name", ""))
    else:
        raise FlavourError(f"{flavour!r} is not a Flavour subclass, instance or 'module:Class'")
    if not key:
        raise FlavourError(f"flavour {flavour!r} has no name")
    with _lock:
        _targets[key] = flavour
        _instances.pop(key, None)
        if key in _user_order:
            _user_order.remove(key)
        _user_order.append(key)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name not in _targets:
            register_flavour(point.value, name=point.name)


def available_flavours() -> list[str]:
    """Names of every registered flavour (built-in, registered, entry points).

    Example:
        >>> available_flavours()
        ['lightgbm', 'sklearn', 'xgboost']
    """
    _load_entry_points()
    return sorted(_targets)


def _instantiate(key: str, target: Flavour | type[Flavour] | str) -> Flavour:
    if isinstance(target, Flavour):
        return target
    if isinstance(target, str):
        module_name, _, class_name = target.partition(":")
        try:
            target = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise FlavourError(f"cannot import flavour {key!r} from {target!r}: {exc}") from exc
    if not (isinstance(target, type) and issubclass(target, Flavour)):
        raise FlavourError(f"flavour {key!r} is {target!r}, not a Flavour subclass")
    return target()


def get_flavour(name: str) -> Flavour:
    """The flavour registered as ``name``; FlavourError lists the valid names.

    Example:
        >>> get_flavour("sklearn").name
        'sklearn'
    """
    if name not in _targets:
        _load_entry_points()
    target = _targets.get(name)
    if target is None:
        raise FlavourError(f"unknown flavour {name!r}" + did_you_mean(name, _targets))
    with _lock:
        if name not in _instances:
            _instances[name] = _instantiate(name, target)
        return _instances[name]


def detect_flavour(model: Any) -> Flavour:
    """The flavour that saves ``model``: registered ones first, then LightGBM, XGBoost,
    scikit-learn.

    Example:
        >>> detect_flavour(LogisticRegression()).name
        'sklearn'
    """
    _load_entry_points()
    order = [*reversed(_user_order), *(n for n in _DETECT_ORDER if n not in _user_order)]
    for name in order:
        flavour = get_flavour(name)
        if flavour.matches(model):
            return flavour
    raise FlavourError(
        f"no flavour saves a {type(model).__module__}.{type(model).__qualname__}; pass "
        f"flavour= (one of {available_flavours()}) or register one with register_flavour"
    )


def estimator_class(path: str, package: str) -> type:
    """Import an estimator class named ``"package.module.Class"`` from ``package`` only.

    Example:
        >>> estimator_class("sklearn.ensemble.RandomForestClassifier", "sklearn")
        <class 'sklearn.ensemble._forest.RandomForestClassifier'>
    """
    if not isinstance(path, str) or not path.startswith(f"{package}."):
        raise TrainingError(
            f"estimator class {path!r} must be a '{package}.' class such as "
            f"'{package}.ensemble.RandomForestClassifier'; use a train_fn for other libraries"
        )
    module_name, _, class_name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name, None)
    except ImportError as exc:
        raise TrainingError(f"cannot import estimator class {path!r}: {exc}") from exc
    if not isinstance(cls, type):
        raise TrainingError(f"{path!r} is not a class in {module_name}")
    return cls


def class_probabilities(raw: np.ndarray, signature: Signature, library: str) -> np.ndarray:
    """A booster's raw output as an ``(n, len(classes))`` probability array."""
    classes = signature.classes
    if classes is None:
        raise FlavourError("predict_proba is for classification; this bundle is a regression")
    raw = np.asarray(raw, dtype=float)
    if raw.ndim == 1 and len(classes) == 2:
        return np.column_stack([1.0 - raw, raw])
    if raw.ndim == 2 and raw.shape[1] == len(classes):
        return raw
    raise FlavourError(
        f"the {library} model gives outputs of shape {raw.shape}, not probabilities for "
        f"{len(classes)} classes (train it with a probability objective)"
    )


def labels_from(probabilities: np.ndarray, signature: Signature) -> np.ndarray:
    """The class label of the highest probability per row."""
    return np.asarray(list(signature.classes or ()))[np.argmax(probabilities, axis=1)]
