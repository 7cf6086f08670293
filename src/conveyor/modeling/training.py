"""Training: from train/eval frames and a training function or estimator spec to a bundle.

Two ways to say what to train:

* a **training function** (a callable, or ``"module:function"``) that receives a
  :class:`TrainContext` and returns a fitted model of any registered flavour;
* an **estimator spec** such as ``{"flavour": "xgboost", "params": {...},
  "early_stopping_rounds": 20}``, fitted by the flavour with early stopping on the eval
  split where the library has it.

:func:`fit_model` fixes the seeds (``random``, numpy, and the library's own), infers the task
and class labels from the label column, infers the signature from the training features,
applies a fitted preprocessing transformer, runs the training and returns a
:class:`TrainResult`; ``TrainResult.save(folder)`` writes the model bundle. Anything a
training function raises becomes a :class:`TrainingError` with the original chained.
"""

from __future__ import annotations

import functools
import importlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from conveyor.exceptions import ConveyorError, did_you_mean
from conveyor.modeling.bundle import save_bundle
from conveyor.modeling.bundle_errors import SignatureError, TrainingError
from conveyor.modeling.bundle_manifest import BundleManifest
from conveyor.modeling.bundle_signature import (
    TASKS,
    Signature,
    column_type,
    infer_signature,
    plain_value,
)
from conveyor.modeling.flavours import Flavour, detect_flavour, get_flavour

__all__ = [
    "MAX_INT_CLASSES",
    "EstimatorSpec",
    "TrainContext",
    "TrainResult",
    "fit_model",
    "infer_task",
    "resolve_train_fn",
    "set_seeds",
]

MAX_INT_CLASSES = 20
"""With ``task="auto"``, an integer label with at most this many values is a class label."""

_SPEC_KEYS = ("flavour", "class", "params", "early_stopping_rounds")

TrainFn = Callable[["TrainContext"], Any]


@dataclass(frozen=True)
class EstimatorSpec:
    """What to fit, as plain data (a pipeline parameter).

    Example:
        >>> EstimatorSpec.from_dict({"flavour": "xgboost", "early_stopping_rounds": 20}).flavour
        'xgboost'
    """

    flavour: str
    cls: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    early_stopping_rounds: int | None = None

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> EstimatorSpec:
        """Read ``{"flavour", "class", "params", "early_stopping_rounds"}``; TrainingError
        names an unknown key or a bad value."""
        if not isinstance(spec, Mapping):
            raise TrainingError(f"an estimator spec is a dict, not {type(spec).__name__}")
        for key in spec:
            if key not in _SPEC_KEYS:
                raise TrainingError(
                    f"unknown estimator spec key {key!r}" + did_you_mean(str(key), _SPEC_KEYS)
                )
        flavour, params = spec.get("flavour"), spec.get("params", {})
        rounds = spec.get("early_stopping_rounds")
        if not isinstance(flavour, str):
            raise TrainingError("an estimator spec needs 'flavour' (e.g. 'sklearn', 'xgboost')")
        if not isinstance(params, Mapping):
            raise TrainingError(f"estimator spec 'params' must be a dict, not {params!r}")
        if rounds is not None and (
            isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1
        ):
            raise TrainingError(f"early_stopping_rounds must be a positive int, not {rounds!r}")
        return cls(flavour, spec.get("class"), dict(params), rounds)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``cls`` is ``"class"``)."""
        return {
            "flavour": self.flavour,
            "class": self.cls,
            "params": self.params,
            "early_stopping_rounds": self.early_stopping_rounds,
        }


@dataclass
class TrainContext:
    """What a training function receives.

    ``x_*`` are the feature columns (label dropped) after the preprocessing, ``y_*`` the
    labels, ``y_*_codes`` the labels as positions in ``classes`` (what XGBoost wants).

    Example:
        >>> def train(ctx: TrainContext):
        ...     model = GradientBoostingClassifier(random_state=ctx.seed, **ctx.params)
        ...     model.fit(ctx.x_train, ctx.y_train)
        ...     ctx.log_metric("eval_accuracy", model.score(ctx.x_eval, ctx.y_eval))
        ...     return model
    """

    train: pd.DataFrame
    eval: pd.DataFrame | None
    label: str
    params: dict[str, Any]
    seed: int
    task: str
    classes: list[Any] | None
    signature: Signature
    preprocessing: Any | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Record a metric; with ``step`` it is also a point of its per-iteration history.

        The last value of each name becomes a bundle metric (and a property of the
        ``train`` step's output); the history is saved in the bundle.
        """
        plain = value.item() if isinstance(value, np.generic) else value
        number = plain if isinstance(plain, int) and not isinstance(plain, bool) else float(plain)
        if not np.isfinite(number):
            raise TrainingError(f"metric {name!r} is {value!r}; metrics must be finite")
        if step is not None:
            self.history.append({"name": name, "step": int(step), "value": number})
        self.metrics[name] = number

    def log_curve(self, name: str, values: list[float], best: int | None = None) -> None:
        """Log a whole per-iteration curve; the metric is its value at ``best`` (else last)."""
        for step, value in enumerate(values):
            self.log_metric(name, value, step=step)
        if values and best is not None and 0 <= best < len(values):
            self.metrics[name] = float(values[best])

    def features(self, frame: pd.DataFrame) -> Any:
        """The model's input for ``frame``: label dropped, preprocessing applied."""
        raw = frame.drop(columns=[self.label])
        if self.preprocessing is None:
            return raw
        try:
            return self.preprocessing.transform(raw)
        except Exception as exc:
            raise TrainingError(f"the preprocessing failed to transform: {exc}") from exc

    def encode(self, labels: pd.Series) -> np.ndarray:
        """Labels as positions in ``classes``."""
        if self.classes is None:
            raise TrainingError("label codes exist for classification only")
        index = {label: code for code, label in enumerate(self.classes)}
        return np.asarray([index[plain_value(v)] for v in labels], dtype=np.int64)

    def require_eval(self, what: str) -> tuple[Any, pd.Series]:
        """The eval features and labels; TrainingError when there is no eval split."""
        if self.eval is None:
            raise TrainingError(f"{what} needs an eval split (split=eval); there is none")
        return self.x_eval, self.y_eval

    @functools.cached_property
    def x_train(self) -> Any:
        """Training features (preprocessed)."""
        return self.features(self.train)

    @functools.cached_property
    def y_train(self) -> pd.Series:
        """Training labels."""
        return self.train[self.label]

    @functools.cached_property
    def x_eval(self) -> Any:
        """Eval features (preprocessed), or None without an eval split."""
        return None if self.eval is None else self.features(self.eval)

    @functools.cached_property
    def y_eval(self) -> pd.Series:
        """Eval labels (empty without an eval split)."""
        return self.eval[self.label] if self.eval is not None else pd.Series([], dtype=object)

    @functools.cached_property
    def y_train_codes(self) -> np.ndarray:
        """Training labels as positions in ``classes``."""
        return self.encode(self.y_train)

    @functools.cached_property
    def y_eval_codes(self) -> np.ndarray:
        """Eval labels as positions in ``classes``."""
        return self.encode(self.y_eval)


@dataclass(frozen=True)
class TrainResult:
    """A fitted model with everything its bundle records.

    Example:
        >>> result = fit_model(train, eval, label="y", estimator={"flavour": "lightgbm"})
        >>> manifest = result.save("bundle", lineage={"run_id": 3})
    """

    model: Any
    flavour: Flavour
    signature: Signature
    preprocessing: Any | None
    metrics: dict[str, float]
    history: list[dict[str, Any]]
    params: dict[str, Any]
    seed: int

    def save(
        self, folder: str | Path, *, lineage: Mapping[str, Any] | None = None
    ) -> BundleManifest:
        """Write the model bundle into ``folder`` with :func:`save_bundle`."""
        return save_bundle(
            folder,
            self.model,
            flavour=self.flavour,
            preprocessing=self.preprocessing,
            signature=self.signature,
            task=str(self.signature.task),
            classes=self.signature.classes,
            metrics=self.metrics,
            lineage=lineage,
            seed=self.seed,
            params=self.params,
            history=self.history,
        )


def set_seeds(seed: int) -> None:
    """Seed Python's ``random`` and numpy's global generator (libraries get ``seed`` too)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)


def resolve_train_fn(train_fn: str | TrainFn) -> TrainFn:
    """A training function from a callable or a ``"module:function"`` import path.

    Example:
        >>> resolve_train_fn("my_project.training:fit_gbm")
        <function fit_gbm at ...>
    """
    if callable(train_fn):
        return train_fn
    if not isinstance(train_fn, str) or train_fn.count(":") != 1 or not all(train_fn.split(":")):
        raise TrainingError(f"train_fn {train_fn!r} must be 'module:function' or a callable")
    module_name, _, attr = train_fn.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TrainingError(f"cannot import train_fn module {module_name!r}: {exc}") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        names = [n for n in vars(module) if not n.startswith("_")]
        raise TrainingError(f"{module_name} has no function {attr!r}" + did_you_mean(attr, names))
    return fn


def infer_task(labels: pd.Series) -> str:
    """``binary``, ``multiclass`` or ``regression`` from the label values.

    Floats are regression; bools and strings are classes; integers are classes when there
    are at most :data:`MAX_INT_CLASSES` distinct values. Pass ``task=`` to decide yourself.

    Example:
        >>> infer_task(pd.Series(["cat", "dog", "cat"]))
        'binary'
    """
    kind = column_type(labels)
    distinct = labels.nunique(dropna=True)
    if kind == "float" or (kind == "int" and distinct > MAX_INT_CLASSES):
        return "regression"
    if kind in ("bool", "string", "int"):
        return "binary" if distinct <= 2 else "multiclass"
    raise TrainingError(f"cannot tell the task from a {kind} label column; pass task=")


def _check_label(frame: pd.DataFrame, label: str, split: str) -> None:
    if label not in frame.columns:
        hint = did_you_mean(label, [str(c) for c in frame.columns])
        raise TrainingError(f"label column {label!r} is not in the {split} split{hint}")
    missing = int(frame[label].isna().sum())
    if missing:
        raise TrainingError(f"label column {label!r} has {missing} missing value(s) in {split}")


def _classes(train: pd.DataFrame, eval_: pd.DataFrame | None, label: str, task: str) -> list[Any]:
    try:
        labels = sorted({plain_value(v) for v in train[label].unique()})
    except (SignatureError, TypeError) as exc:
        raise TrainingError(f"label column {label!r}: unusable class labels: {exc}") from exc
    if len(labels) < 2:
        raise TrainingError(f"label column {label!r} has one class only ({labels!r}) in train")
    if task == "binary" and len(labels) != 2:
        raise TrainingError(f"task 'binary' but label {label!r} has {len(labels)} classes")
    if eval_ is not None:
        unseen = sorted(
            {str(plain_value(v)) for v in eval_[label].unique()} - {str(v) for v in labels}
        )
        if unseen:
            raise TrainingError(f"the eval split has labels not in train: {unseen[:10]}")
    return labels


def _context(
    train: pd.DataFrame,
    eval_: pd.DataFrame | None,
    label: str,
    params: Mapping[str, Any],
    seed: int,
    task: str,
    preprocessing: Any | None,
) -> TrainContext:
    _check_label(train, label, "train")
    if eval_ is not None:
        _check_label(eval_, label, "eval")
    if task == "auto":
        task = infer_task(train[label])
    if task not in TASKS:
        raise TrainingError(f"task {task!r} is not one of {['auto', *TASKS]}")
    classes = None if task == "regression" else _classes(train, eval_, label, task)
    try:
        inputs = infer_signature(train.drop(columns=[label]))
        if eval_ is not None:
            inputs.check_input(eval_.drop(columns=[label]))
    except SignatureError as exc:
        raise TrainingError(f"training data: {exc}") from exc
    signature = inputs.for_task(task, classes)
    return TrainContext(
        train, eval_, label, dict(params), seed, task, classes, signature, preprocessing
    )


def _run(fn: TrainFn, ctx: TrainContext, who: str) -> Any:
    try:
        model = fn(ctx)
    except ConveyorError:
        raise
    except Exception as exc:
        raise TrainingError(f"{who} raised {type(exc).__name__}: {exc}") from exc
    if model is None:
        raise TrainingError(f"{who} returned None; return the fitted model")
    return model


def _merged_spec(
    estimator: EstimatorSpec | Mapping[str, Any], params: Mapping[str, Any] | None
) -> EstimatorSpec:
    spec = estimator if isinstance(estimator, EstimatorSpec) else EstimatorSpec.from_dict(estimator)
    merged = {**spec.params, **(params or {})}
    return EstimatorSpec(spec.flavour, spec.cls, merged, spec.early_stopping_rounds)


def fit_model(
    train: pd.DataFrame,
    eval: pd.DataFrame | None = None,
    *,
    label: str,
    estimator: EstimatorSpec | Mapping[str, Any] | None = None,
    train_fn: str | TrainFn | None = None,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    task: str = "auto",
    preprocessing: Any | None = None,
    flavour: str | None = None,
) -> TrainResult:
    """Train a model from a training function or an estimator spec (exactly one of them).

    Args:
        train, eval: the splits (with the label column); ``eval`` drives early stopping.
        label: the label column.
        estimator: e.g. ``{"flavour": "sklearn", "class": "sklearn.ensemble.RandomForestClassifier",
            "params": {...}}`` or ``{"flavour": "xgboost", "early_stopping_rounds": 20}``.
        train_fn: a callable or ``"module:function"`` taking a :class:`TrainContext`.
        params: hyperparameters: ``ctx.params`` for a train_fn, merged over the spec's params.
        seed: seeds ``random``, numpy and the library (``random_state``).
        task: ``"auto"``, ``"binary"``, ``"multiclass"`` or ``"regression"``.
        preprocessing: a *fitted* transformer applied to the features (and saved in the bundle).
        flavour: the flavour of a train_fn's model, when detection is not enough.

    Example:
        >>> result = fit_model(train, eval, label="income", seed=7,
        ...                    estimator={"flavour": "lightgbm", "early_stopping_rounds": 20})
        >>> result.metrics["best_iteration"]
        41
    """
    if (estimator is None) == (train_fn is None):
        raise TrainingError("give exactly one of estimator (a spec) and train_fn")
    set_seeds(seed)
    spec = _merged_spec(estimator, params) if estimator is not None else None
    hyper = spec.params if spec is not None else dict(params or {})
    ctx = _context(train, eval, label, hyper, seed, task, preprocessing)
    if spec is not None:
        chosen = get_flavour(spec.flavour)
        model = _run(functools.partial(chosen.fit, spec), ctx, f"training the {spec.flavour} spec")
    else:
        assert train_fn is not None  # one of the two is given (checked above)
        fn = resolve_train_fn(train_fn)
        model = _run(fn, ctx, f"training function {getattr(fn, '__qualname__', fn)!r}")
        chosen = get_flavour(flavour) if flavour else detect_flavour(model)
    known = chosen.classes(model) if ctx.task != "regression" else None
    signature = ctx.signature.for_task(ctx.task, known) if known is not None else ctx.signature
    return TrainResult(
        model,
        chosen,
        signature,
        preprocessing,
        dict(ctx.metrics),
        list(ctx.history),
        dict(ctx.params),
        seed,
    )
