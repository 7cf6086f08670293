"""The standard ``train`` step: a split Dataset in, a verified model bundle out.

Written with the public API only (``conveyor.component``, ``Dataset``, ``Model``,
``current_step``), like any user component; the work is done by
:func:`conveyor.modeling.training.fit_model`. The step reads the ``split=train`` (and, when
there is one, ``split=eval``) sub-folders of its Dataset, trains from an estimator spec or a
training function, writes the bundle into a private temporary folder and returns it as a
:class:`~conveyor.modeling.bundle.ModelBundle` handle, which the engine copies into the
artifact store (the temporary folder is removed once the handle is gone). A training
function that raises fails the step: no bundle is stored.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from conveyor import Dataset, Model, component, current_step
from conveyor.modeling.bundle import ModelBundle
from conveyor.modeling.bundle_errors import TrainingError
from conveyor.modeling.training import TrainResult, fit_model
from conveyor.modeling.tuning import TuningResult

__all__ = ["train"]

Task = Literal["auto", "binary", "multiclass", "regression"]


def _split(data: Dataset, name: str) -> pd.DataFrame | None:
    if name not in data.splits():
        return None
    frame: pd.DataFrame = data.split(name).to_pandas()
    return frame


def _load_preprocessing(preprocessing: Model | None) -> Any | None:
    if preprocessing is None:
        return None
    # The "Model" materializer loads skops files trusting scikit-learn/numpy/scipy types only.
    return preprocessing.load("sklearn.base.BaseEstimator")


def _lineage(data: Dataset, preprocessing: Model | None, params: dict[str, Any]) -> dict[str, Any]:
    step = current_step()
    inputs = {"data": {"uri": data.uri, "sha256": data.sha256}}
    if preprocessing is not None:
        inputs["preprocessing"] = {"uri": preprocessing.uri, "sha256": preprocessing.sha256}
    return {
        "run_id": step.run_id if step else None,
        "execution_id": step.execution_id if step else None,
        "step": step.step if step else None,
        "inputs": inputs,
        "params": params,
    }


def _bundle(result: TrainResult, lineage: dict[str, Any], sizes: dict[str, int]) -> ModelBundle:
    workdir = Path(tempfile.mkdtemp(prefix="conveyor-bundle-"))
    try:
        manifest = result.save(workdir / "bundle", lineage=lineage)
        handle = ModelBundle.from_path(
            workdir / "bundle",
            flavour=manifest.flavour_name,
            task=manifest.task,
            classes=list(manifest.classes) if manifest.classes is not None else None,
            bundle_sha256=manifest.sha256,
            metrics=manifest.metrics,
            seed=manifest.seed,
            **sizes,
        )
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    # The engine copies the folder into the artifact store after the step returns; the
    # temporary copy goes when the handle does.
    weakref.finalize(handle, shutil.rmtree, workdir, ignore_errors=True)
    return handle


@component
def train(
    data: Dataset,
    label: str,
    estimator: dict[str, Any] | None = None,
    train_fn: str | None = None,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    task: Task = "auto",
    preprocessing: Model | None = None,
    tuned: TuningResult | None = None,
) -> ModelBundle:
    """Train a model on ``data``'s train split (early stopping on its eval split).

    Args:
        data: a Dataset with ``split=train`` (required) and ``split=eval`` sub-folders.
        label: the label column.
        estimator: an estimator spec, e.g. ``{"flavour": "xgboost", "params": {"max_depth": 4},
            "early_stopping_rounds": 20}`` or ``{"flavour": "sklearn", "class":
            "sklearn.ensemble.RandomForestClassifier"}``.
        train_fn: instead of ``estimator``: ``"module:function"`` taking a
            :class:`~conveyor.modeling.training.TrainContext` and returning a fitted model.
        params: hyperparameters (merged over the spec's params; ``ctx.params`` for a train_fn).
        seed: seeds Python, numpy and the library; recorded in the bundle.
        task: ``auto`` infers it from the label column.
        preprocessing: a fitted scikit-learn transformer ("Model"), shipped in the bundle.
        tuned: the output of ``tune``: its ``best_estimator`` replaces ``estimator``.

    Returns:
        The model bundle (properties: flavour, task, classes, metrics, bundle_sha256, seed).

    Example:
        >>> @pipeline
        ... def training(seed: int = 0) -> None:
        ...     train(ingest(...), label="income", seed=seed,
        ...           estimator={"flavour": "lightgbm", "early_stopping_rounds": 20})
    """
    train_frame = _split(data, "train")
    if train_frame is None:
        raise TrainingError(
            f"Dataset {data.uri or data.path} has no split=train sub-folder (it has: "
            f"{data.splits() or 'none'}); split the data before training"
        )
    eval_frame = _split(data, "eval")
    if tuned is not None:
        if train_fn is not None:
            raise TrainingError("tuned gives an estimator spec; drop train_fn")
        estimator = tuned.best_estimator
        print(
            f"tuned: trial {tuned.best_trial} of {tuned.study_name}, {tuned.metric} "
            f"{tuned.best_value:.5g}: {estimator}"
        )
    result = fit_model(
        train_frame,
        eval_frame,
        label=label,
        estimator=estimator,
        train_fn=train_fn,
        params=params,
        seed=seed,
        task=task,
        preprocessing=_load_preprocessing(preprocessing),
    )
    asked = {
        "label": label,
        "estimator": estimator,
        "train_fn": train_fn,
        "params": params or {},
        "seed": seed,
        "task": task,
    }
    sizes = {"n_train": len(train_frame), "n_eval": 0 if eval_frame is None else len(eval_frame)}
    return _bundle(result, _lineage(data, preprocessing, asked), sizes)
