"""The ``xgboost`` flavour: boosters in XGBoost's native UBJSON format, never pickled.

Both a raw ``xgboost.Booster`` and the scikit-learn wrappers (``XGBClassifier``...) are saved
as their booster (``model.ubj``); a model trained with early stopping is cut to its best
iteration first, so the file holds exactly the trees that predict. The wrapper's class labels
are not in the file: the bundle's signature keeps them, and classification models are
trained on the label *codes* (positions in ``signature.classes``). String columns are given
to XGBoost as categoricals over the signature's domain, at training and at serving alike.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.modeling.bundle_errors import BundleIntegrityError, TrainingError
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

__all__ = ["MODEL_FILE", "XGBoostFlavour"]

MODEL_FILE = "model.ubj"


def _xgb() -> Any:
    return require("xgboost", "xgboost")


class XGBoostFlavour(Flavour):
    """XGBoost boosters and scikit-learn wrappers as ``model.ubj``.

    Example:
        >>> get_flavour("xgboost").save(XGBClassifier().fit(x, codes), folder)["n_iterations"]
        100
    """

    name = "xgboost"

    def matches(self, model: Any) -> bool:
        return any(n.startswith("xgboost.") for n in mro_names(model))

    def save(self, model: Any, folder: Path) -> dict[str, Any]:
        xgb = _xgb()
        booster = model.get_booster() if hasattr(model, "get_booster") else model
        best = getattr(model, "best_iteration", None)
        if best is not None:
            # Linear boosters cannot be sliced: they keep every round.
            with contextlib.suppress(ValueError, TypeError, xgb.core.XGBoostError):
                booster = booster[: int(best) + 1]
        booster.save_model(str(folder / MODEL_FILE))
        return {
            "library": "xgboost",
            "library_version": xgb.__version__,
            "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
            "n_iterations": int(booster.num_boosted_rounds()),
        }

    def load(self, folder: Path) -> Any:
        xgb = _xgb()
        booster = xgb.Booster()
        try:
            booster.load_model(str(folder / MODEL_FILE))
        except xgb.core.XGBoostError as exc:
            raise BundleIntegrityError(f"cannot load XGBoost model {MODEL_FILE}: {exc}") from exc
        return booster

    def _raw(self, model: Any, features: Any, signature: Signature) -> np.ndarray:
        xgb = _xgb()
        matrix = xgb.DMatrix(signature.categorize(features), enable_categorical=True)
        return np.asarray(model.predict(matrix))

    def predict(self, model: Any, features: Any, signature: Signature) -> np.ndarray:
        if signature.task == "regression":
            return self._raw(model, features, signature).astype(float)
        return labels_from(self.predict_proba(model, features, signature), signature)

    def predict_proba(self, model: Any, features: Any, signature: Signature) -> np.ndarray:
        return class_probabilities(self._raw(model, features, signature), signature, "XGBoost")

    def fit(self, spec: EstimatorSpec, ctx: TrainContext) -> Any:
        _xgb()
        classify = ctx.task != "regression"
        default = "xgboost.XGBClassifier" if classify else "xgboost.XGBRegressor"
        params = {"random_state": ctx.seed, "enable_categorical": True, **spec.params}
        if spec.early_stopping_rounds:
            ctx.require_eval("early_stopping_rounds")
            params["early_stopping_rounds"] = spec.early_stopping_rounds
        try:
            model = estimator_class(spec.cls or default, "xgboost")(**params)
        except TypeError as exc:
            raise TrainingError(f"{spec.cls or default}: bad params: {exc}") from exc
        extra: dict[str, Any] = {"verbose": False}
        if ctx.x_eval is not None:
            y_eval = ctx.y_eval_codes if classify else ctx.y_eval
            extra["eval_set"] = [(ctx.signature.categorize(ctx.x_eval), y_eval)]
        y_train = ctx.y_train_codes if classify else ctx.y_train
        model.fit(ctx.signature.categorize(ctx.x_train), y_train, **extra)
        best = getattr(model, "best_iteration", None) if spec.early_stopping_rounds else None
        for metric, values in model.evals_result().get("validation_0", {}).items():
            ctx.log_curve(f"eval_{metric}", [float(v) for v in values], best=best)
        if best is not None:
            ctx.log_metric("best_iteration", int(best))
            ctx.log_metric("n_iterations", int(best) + 1)
        return model
