"""One tuning trial: draw a candidate, fit it with pruning, score it on the eval split.

:class:`Objective` is what :func:`conveyor.modeling.tuning.tune_model` hands to Optuna. A
trial trains through :func:`~conveyor.modeling.training.fit_model` with a training function
that fits the estimator spec by its flavour and scores the model on the eval split with the
objective metric (:func:`~conveyor.modeling.metrics.compute_metrics`); the trial's metrics are
that and whatever training logged (``eval_logloss`` at the best round, ``best_iteration``).

Pruning: XGBoost (a ``TrainingCallback``) and LightGBM (a callback; the flavour's fit takes
none, so its few lines are repeated here) report their eval loss to the trial at the
checkpoints of :meth:`_Reporter.checkpoint`; when the pruner says so, :class:`_Pruned` (a
ConveyorError, which ``fit_model`` lets through unwrapped) stops the fit and the trial ends
``PRUNED``. Other flavours train to the end. Errors are recorded on the trial (user attribute
``error``) and end it ``FAIL``; the study goes on.
"""

from __future__ import annotations

import functools
import json
import math
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from conveyor.exceptions import ConveyorError
from conveyor.modeling.bundle_errors import TrainingError
from conveyor.modeling.bundle_signature import plain_value
from conveyor.modeling.flavours import estimator_class, get_flavour, require
from conveyor.modeling.training import EstimatorSpec, TrainContext, fit_model
from conveyor.modeling.tuning_space import Candidate, SearchSpace, TuningError

__all__ = ["PREPROCESSING_OPTIONS", "WARMUP_ROUND", "Objective", "TrialSetup"]

WARMUP_ROUND = 8
"""The first boosting round reported to the pruner."""
PREPROCESSING_OPTIONS = ("numeric", "categorical", "impute", "transformer")
"""What a space's ``preprocessing`` may set: options of ``transform.fit_preprocessor``."""

_BOOSTERS = ("xgboost", "lightgbm")
_HIGHER_IS_BETTER_LOSSES = ("auc", "aucpr", "map", "ndcg", "average_precision")


@dataclass
class TrialSetup:
    """Everything a trial needs, fixed for the whole study."""

    train: pd.DataFrame
    eval: pd.DataFrame
    label: str
    task: str
    metric: str
    maximize: bool
    seed: int
    space: SearchSpace
    threads: int | None = None  # OpenMP threads per trial; None: the library's default
    schema: Any = None
    preprocessing: Any = None  # a fitted transformer used when the space searches none
    fitted: dict[str, Any] = field(default_factory=dict)  # preprocessing options -> fitted
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Pruned(ConveyorError):
    """Raised inside a fit to stop a trial (a ConveyorError, so fit_model lets it through)."""


class _Reporter:
    """Reports a booster's eval loss at fixed checkpoints and stops the trial when told."""

    def __init__(self, trial: Any, maximize: bool) -> None:
        self.trial, self.maximize = trial, maximize

    @staticmethod
    def checkpoint(step: int) -> bool:
        """Rounds 8, 16, 32, 64, 100, 128, 200, 256, 300, ...: the same for every trial."""
        rounds = step + 1
        return rounds >= WARMUP_ROUND and (rounds & (rounds - 1) == 0 or rounds % 100 == 0)

    def report(self, step: int, value: float, higher_better: bool) -> None:
        if not self.checkpoint(step) or not math.isfinite(value):
            return
        self.trial.report(value if higher_better == self.maximize else -value, step)
        if self.trial.should_prune():
            raise _Pruned(f"pruned at round {step + 1}")


def _higher_is_better_loss(name: str) -> bool:
    return name.lower().startswith(_HIGHER_IS_BETTER_LOSSES)


def _fit_xgboost(spec: EstimatorSpec, ctx: TrainContext, reporter: _Reporter) -> Any:
    xgb = require("xgboost", "xgboost")
    if "RF" in (spec.cls or "").rpartition(".")[2]:  # random forests take no callbacks
        return get_flavour("xgboost").fit(spec, ctx)

    class _Pruning(xgb.callback.TrainingCallback):  # type: ignore[name-defined]
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            curves = evals_log.get("validation_0") or {}
            if curves:  # the last metric is the one early stopping watches
                name, values = list(curves.items())[-1]
                reporter.report(epoch, float(values[-1]), _higher_is_better_loss(name))
            return False

    callbacks = [_Pruning(), *spec.params.get("callbacks", [])]
    params = {**spec.params, "callbacks": callbacks}
    return get_flavour("xgboost").fit(
        EstimatorSpec(spec.flavour, spec.cls, params, spec.early_stopping_rounds), ctx
    )


def _fit_lightgbm(spec: EstimatorSpec, ctx: TrainContext, reporter: _Reporter) -> Any:
    # The lightgbm flavour's fit plus one callback (its fit takes no extra callbacks).
    lgb = require("lightgbm", "lightgbm")
    default = "lightgbm.LGBMRegressor" if ctx.task == "regression" else "lightgbm.LGBMClassifier"
    params = {"random_state": ctx.seed, "deterministic": True, "force_row_wise": True}
    try:
        model = estimator_class(spec.cls or default, "lightgbm")(
            **{**params, "verbose": -1, **spec.params}
        )
    except TypeError as exc:
        raise TrainingError(f"{spec.cls or default}: bad params: {exc}") from exc

    def prune(env: Any) -> None:
        if env.evaluation_result_list:
            _, _, value, higher_better = env.evaluation_result_list[0][:4]
            reporter.report(env.iteration - env.begin_iteration, float(value), bool(higher_better))

    callbacks: list[Any] = [prune]
    if spec.early_stopping_rounds:
        callbacks.append(lgb.early_stopping(spec.early_stopping_rounds, verbose=False))
    flavour = get_flavour("lightgbm")
    extra = flavour._eval_kwargs(model, ctx)  # type: ignore[attr-defined]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*'eval_set' is deprecated")
        model.fit(ctx.signature.categorize(ctx.x_train), ctx.y_train, callbacks=callbacks, **extra)
    return model


def _fit_plain(spec: EstimatorSpec, ctx: TrainContext, reporter: _Reporter) -> Any:
    return get_flavour(spec.flavour).fit(spec, ctx)


_FITTERS = {"xgboost": _fit_xgboost, "lightgbm": _fit_lightgbm}


def _score(model: Any, flavour: str, ctx: TrainContext, metric: str) -> dict[str, float]:
    """The objective metric on the eval split (left out when undefined there).

    One metric only: every scikit-learn metric call validates its input anew, which costs a
    few milliseconds a trial each, and a trial is meant to cost its fit.
    """
    from conveyor.modeling.metrics import compute_metrics

    x_eval, y_eval = ctx.require_eval("tuning")
    features = ctx.signature.categorize(x_eval) if flavour in _BOOSTERS else x_eval
    task: Any = ctx.task
    if task == "regression":
        values = compute_metrics(task, y_eval, y_pred=model.predict(features), metrics=[metric])
    else:
        found = getattr(model, "classes_", None)
        if flavour == "xgboost" or found is None:  # XGBoost learns label codes
            found = ctx.classes or []
        classes = [plain_value(c) for c in found]
        proba = pred = None
        if hasattr(model, "predict_proba"):
            proba = np.asarray(model.predict_proba(features), dtype=float)
            pred = np.asarray(classes)[proba.argmax(axis=1)]
        else:
            pred = model.predict(features)
        values = compute_metrics(
            task, y_eval, y_pred=pred, y_score=proba, metrics=[metric], labels=classes
        )
    return {name: value for name, value in values.items() if math.isfinite(value)}


def _train_and_score(
    spec: EstimatorSpec,
    reporter: _Reporter,
    setup: TrialSetup,
    scores: dict[str, float],
    ctx: TrainContext,
) -> Any:
    """Fit (with pruning), then record the objective and what training logged
    (``eval_<metric>`` at the best round, ``best_iteration``, ...)."""
    threads = setup.threads
    fit_spec = spec
    if threads is not None and spec.flavour in _BOOSTERS and "n_jobs" not in spec.params:
        fit_spec = EstimatorSpec(
            spec.flavour, spec.cls, {**spec.params, "n_jobs": threads}, spec.early_stopping_rounds
        )
    model = _FITTERS.get(spec.flavour, _fit_plain)(fit_spec, ctx, reporter)
    scores.update({k: float(v) for k, v in ctx.metrics.items()})
    scores.update(_score(model, spec.flavour, ctx, setup.metric))
    return model


class Objective:
    """The function Optuna calls: draw, fit, score; errors recorded on the trial."""

    def __init__(self, setup: TrialSetup) -> None:
        self.setup = setup

    def __call__(self, trial: Any) -> float:
        optuna = require("optuna", "tune")
        setup = self.setup
        candidate = setup.space.sample(trial)
        trial.set_user_attr(
            "conveyor",
            {
                "family": candidate.family,
                "estimator": candidate.estimator,
                "preprocessing": candidate.preprocessing,
            },
        )
        reporter = _Reporter(trial, setup.maximize)
        try:
            with _thread_limit(setup.threads):
                scores = self._fit(candidate, reporter)
            if setup.metric not in scores:
                raise TuningError(f"{setup.metric} is undefined on the eval split for this model")
        except _Pruned as exc:
            raise optuna.TrialPruned(str(exc)) from None
        except ConveyorError as exc:
            trial.set_user_attr("error", str(exc)[:1000])
            raise
        trial.set_user_attr("metrics", scores)
        return scores[setup.metric]

    def _fit(self, candidate: Candidate, reporter: _Reporter) -> dict[str, float]:
        setup = self.setup
        spec = EstimatorSpec.from_dict(candidate.estimator)
        scores: dict[str, float] = {}
        fit_model(
            setup.train,
            setup.eval,
            label=setup.label,
            train_fn=functools.partial(_train_and_score, spec, reporter, setup, scores),
            seed=setup.seed,
            task=setup.task,
            preprocessing=self._preprocessing(candidate.preprocessing),
            flavour=spec.flavour,
        )
        return scores

    def _preprocessing(self, options: dict[str, Any] | None) -> Any:
        setup = self.setup
        if options is None:
            return setup.preprocessing
        key = json.dumps(options, sort_keys=True, default=str)
        with setup.lock:  # fitted once per distinct set of options, shared by trials
            if key not in setup.fitted:
                setup.fitted[key] = _fit_preprocessing(setup, options)
            return setup.fitted[key]


def _fit_preprocessing(setup: TrialSetup, options: dict[str, Any]) -> Any:
    from conveyor.modeling.transform import fit_preprocessor

    try:
        return fit_preprocessor(setup.train, setup.schema, label=setup.label, **options)
    except ConveyorError:
        raise
    except Exception as exc:
        raise TuningError(f"preprocessing {options}: {type(exc).__name__}: {exc}") from exc


@contextmanager
def _thread_limit(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    # omp_set_num_threads is per calling thread: each trial's thread gets its own budget.
    with threadpool_limits(limits=threads, user_api="openmp"):
        yield
