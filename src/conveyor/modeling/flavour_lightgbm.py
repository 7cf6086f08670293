"""The ``lightgbm`` flavour: boosters in LightGBM's native text format, never pickled.

A raw ``lightgbm.Booster`` or a fitted scikit-learn wrapper (``LGBMClassifier``...) is saved
as its booster (``model.txt``); LightGBM writes only the best iteration when early stopping
found one. The wrapper's class labels (``classes_``) go into the bundle's signature, which the
booster's probability columns follow. String columns reach LightGBM as categoricals over the
signature's domain, at training and at serving alike.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.modeling.bundle_errors import BundleIntegrityError, TrainingError
from conveyor.modeling.bundle_signature import plain_value
from conveyor.modeling.flavours import (
    Flavour,
    class_probabilities,
    estimator_class,
    labels_from,
    mro_names,
    require,
)

if TYPE_CHECKING:
    from conveyor.modeling.bundle_signature import Signature
    from conveyor.modeling.training import EstimatorSpec, TrainContext

__all__ = ["MODEL_FILE", "LightGBMFlavour"]

MODEL_FILE = "model.txt"


def _lgb() -> Any:
    return require("lightgbm", "lightgbm")


class LightGBMFlavour(Flavour):
    """LightGBM boosters and scikit-learn wrappers as ``model.txt``.

    Example:
        >>> get_flavour("lightgbm").save(LGBMClassifier().fit(x, y), folder)["library"]
        'lightgbm'
    """

    name = "lightgbm"

    def matches(self, model: Any) -> bool:
        return any(n.startswith("lightgbm.") for n in mro_names(model))

    def save(self, model: Any, folder: Path) -> dict[str, Any]:
        lgb = _lgb()
        booster = model.booster_ if hasattr(model, "booster_") else model
        booster.save_model(str(folder / MODEL_FILE))  # only the best iteration, if any
        return {
            "library": "lightgbm",
            "library_version": lgb.__version__,
            "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        }

    def load(self, folder: Path) -> Any:
        lgb = _lgb()
        path = folder / MODEL_FILE
        if not path.is_file():
            raise BundleIntegrityError(f"the LightGBM model file {MODEL_FILE} is missing")
        try:
            return lgb.Booster(model_file=str(path))
        except lgb.basic.LightGBMError as exc:
            raise BundleIntegrityError(f"cannot load LightGBM model {MODEL_FILE}: {exc}") from exc

    def predict(self, model: Any, features: Any, signature: Signature) -> np.ndarray:
        if signature.task == "regression":
            return np.asarray(model.predict(signature.categorize(features)), dtype=float)
        return labels_from(self.predict_proba(model, features, signature), signature)

    def predict_proba(self, model: Any, features: Any, signature: Signature) -> np.ndarray:
        raw = model.predict(signature.categorize(features))
        return class_probabilities(raw, signature, "LightGBM")

    def classes(self, model: Any) -> list[Any] | None:
        found = getattr(model, "classes_", None)
        return None if found is None else [plain_value(c) for c in found]

    def fit(self, spec: EstimatorSpec, ctx: TrainContext) -> Any:
        lgb = _lgb()
        classify = ctx.task != "regression"
        default = "lightgbm.LGBMClassifier" if classify else "lightgbm.LGBMRegressor"
        params = {"random_state": ctx.seed, "deterministic": True, "force_row_wise": True}
        params |= {"verbose": -1, **spec.params}
        try:
            model = estimator_class(spec.cls or default, "lightgbm")(**params)
        except TypeError as exc:
            raise TrainingError(f"{spec.cls or default}: bad params: {exc}") from exc
        record: dict[str, Any] = {}
        callbacks = [lgb.record_evaluation(record)]
        if spec.early_stopping_rounds:
            ctx.require_eval("early_stopping_rounds")
            callbacks.append(lgb.early_stopping(spec.early_stopping_rounds, verbose=False))
        extra = self._eval_kwargs(model, ctx)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*'eval_set' is deprecated")
            model.fit(
                ctx.signature.categorize(ctx.x_train), ctx.y_train, callbacks=callbacks, **extra
            )
        # LightGBM counts iterations from 1; conveyor's best_iteration is 0-based (as XGBoost's).
        found = int(model.best_iteration_ or 0) if spec.early_stopping_rounds else 0
        best = found - 1 if found > 0 else None
        for metric, values in next(iter(record.values()), {}).items():
            ctx.log_curve(f"eval_{metric}", [float(v) for v in values], best=best)
        if best is not None:
            ctx.log_metric("best_iteration", best)
            ctx.log_metric("n_iterations", best + 1)
        return model

    @staticmethod
    def _eval_kwargs(model: Any, ctx: TrainContext) -> dict[str, Any]:
        if ctx.x_eval is None:
            return {}
        x_eval = ctx.signature.categorize(ctx.x_eval)
        # LightGBM 4.6+ deprecates eval_set for eval_X/eval_y, but its classifier does not
        # encode eval_y's labels (string labels fail): keep eval_set while it exists.
        if "eval_set" in inspect.signature(model.fit).parameters:
            return {"eval_set": [(x_eval, ctx.y_eval)]}
        return {"eval_X": (x_eval,), "eval_y": (ctx.y_eval,)}
