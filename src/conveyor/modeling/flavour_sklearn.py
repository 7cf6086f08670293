"""The ``sklearn`` flavour: scikit-learn estimators and pipelines, saved with skops.

Loading trusts only scikit-learn, numpy and scipy types (the same rule, and the same code,
as the "Model" materializer in :mod:`conveyor.materializers.sklearn`); any other type in the
file is refused *before* anything is constructed, with its name in the error. Saving checks
the same rule at once, so a model that could not be loaded safely is refused when it is
saved, not months later when it is served. :func:`save_skops` and :func:`load_skops` are
also how a bundle stores its preprocessing.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sklearn
import skops
import skops.io

from conveyor.materializers.sklearn import trusted_types
from conveyor.modeling.bundle_errors import (
    BundleIntegrityError,
    FlavourError,
    TrainingError,
    UnsafeBundleError,
)
from conveyor.modeling.bundle_signature import plain_value
from conveyor.modeling.flavours import Flavour, estimator_class, mro_names

if TYPE_CHECKING:
    from conveyor.modeling.bundle_signature import Signature
    from conveyor.modeling.training import EstimatorSpec, TrainContext

__all__ = ["MODEL_FILE", "SklearnFlavour", "load_skops", "save_skops"]

MODEL_FILE = "model.skops"


def save_skops(obj: Any, path: Path, what: str) -> None:
    """Save ``obj`` with skops; FlavourError when it fails or holds types that would be
    refused when loading.

    Example:
        >>> save_skops(StandardScaler().fit(x), folder / "preprocessing.skops", "preprocessing")
    """
    kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
    try:
        skops.io.dump(obj, path)
        untrusted = skops.io.get_untrusted_types(file=path)
    except Exception as exc:  # skops raises TypeErrors and its own errors for unsupported parts
        raise FlavourError(f"skops cannot save the {what} ({kind}): {exc}") from exc
    _, refused = trusted_types(untrusted)
    if refused:
        path.unlink()
        raise FlavourError(
            f"the {what} ({kind}) contains types {sorted(refused)} that a bundle will not "
            "load (only scikit-learn, numpy and scipy types are trusted)"
        )


def load_skops(path: Path, what: str) -> Any:
    """Load a skops file trusting only scikit-learn, numpy and scipy types.

    Raises UnsafeBundleError naming any other type, before constructing anything.

    Example:
        >>> load_skops(folder / "model.skops", "model")
    """
    if not path.is_file():
        raise BundleIntegrityError(f"the {what} file {path.name} is missing from {path.parent}")
    try:
        untrusted = skops.io.get_untrusted_types(file=path)
    except Exception as exc:
        raise UnsafeBundleError(
            f"the {what} file {path.name} is not a skops file (only skops files are loaded, "
            f"never pickles): {exc}"
        ) from exc
    trusted, refused = trusted_types(untrusted)
    if refused:
        raise UnsafeBundleError(
            f"refusing to load the {what} file {path.name}: it contains untrusted types "
            f"{sorted(refused)}; only scikit-learn, numpy and scipy types are loaded"
        )
    try:
        return skops.io.load(path, trusted=trusted)
    except Exception as exc:
        raise BundleIntegrityError(f"cannot load the {what} file {path.name}: {exc}") from exc


class SklearnFlavour(Flavour):
    """scikit-learn estimators (and pipelines of them) as ``model.skops``.

    Example:
        >>> get_flavour("sklearn").save(LogisticRegression().fit(x, y), folder)["model_class"]
        'sklearn.linear_model._logistic.LogisticRegression'
    """

    name = "sklearn"

    def matches(self, model: Any) -> bool:
        return "sklearn.base.BaseEstimator" in mro_names(model)

    def save(self, model: Any, folder: Path) -> dict[str, Any]:
        save_skops(model, folder / MODEL_FILE, "model")
        return {
            "library": "scikit-learn",
            "library_version": sklearn.__version__,
            "skops_version": skops.__version__,
            "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        }

    def load(self, folder: Path) -> Any:
        return load_skops(folder / MODEL_FILE, "model")

    def predict(self, model: Any, features: Any, signature: Signature) -> np.ndarray:
        return np.asarray(model.predict(features))

    def predict_proba(self, model: Any, features: Any, signature: Signature) -> np.ndarray:
        if not hasattr(model, "predict_proba"):
            raise FlavourError(f"{type(model).__name__} has no predict_proba")
        return np.asarray(model.predict_proba(features), dtype=float)

    def classes(self, model: Any) -> list[Any] | None:
        found = getattr(model, "classes_", None)
        return None if found is None else [plain_value(c) for c in found]

    def fit(self, spec: EstimatorSpec, ctx: TrainContext) -> Any:
        if spec.cls is None:
            raise TrainingError(
                "an sklearn estimator spec needs 'class', e.g. "
                "'sklearn.ensemble.RandomForestClassifier'"
            )
        try:
            estimator = estimator_class(spec.cls, "sklearn")(**spec.params)
        except TypeError as exc:
            raise TrainingError(f"{spec.cls}: bad params {sorted(spec.params)}: {exc}") from exc
        names = estimator.get_params()
        if "random_state" in names and "random_state" not in spec.params:
            estimator.set_params(random_state=ctx.seed)
        extra: dict[str, Any] = {}
        if spec.early_stopping_rounds:
            extra = _early_stopping(estimator, spec, ctx)
        estimator.fit(ctx.x_train, ctx.y_train, **extra)
        if extra:
            _log_validation(estimator, ctx)
        return estimator


def _early_stopping(estimator: Any, spec: EstimatorSpec, ctx: TrainContext) -> dict[str, Any]:
    accepts_eval = "X_val" in inspect.signature(estimator.fit).parameters
    if not accepts_eval or "n_iter_no_change" not in estimator.get_params():
        raise TrainingError(
            f"{spec.cls} has no early stopping on an eval set (HistGradientBoosting* has); "
            "remove early_stopping_rounds"
        )
    x_eval, y_eval = ctx.require_eval("early_stopping_rounds")
    estimator.set_params(early_stopping=True, n_iter_no_change=spec.early_stopping_rounds)
    return {"X_val": x_eval, "y_val": y_eval}


def _log_validation(estimator: Any, ctx: TrainContext) -> None:
    # validation_score_[0] is the score before the first iteration; higher is better.
    scores = [float(s) for s in getattr(estimator, "validation_score_", [])[1:]]
    if scores:
        best = int(np.argmax(scores))
        ctx.log_curve("eval_score", scores, best=best)
        ctx.log_metric("best_iteration", best)
        ctx.log_metric("n_iterations", int(estimator.n_iter_))
