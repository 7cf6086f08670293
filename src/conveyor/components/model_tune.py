"""The standard ``tune`` step: a split Dataset and a search space in, a TuningResult out.

Written with the public API only (``conveyor.component``, ``Dataset``, ``Model``,
``current_step``), like any user component; the work is done by
:func:`conveyor.modeling.tuning.tune_model`. The space is checked before the data is read
and before any trial, so a bad space fails the step at once with the path at fault.

The Optuna study lives in the run's metadata database, named after the pipeline, the step
and the step's cache key less the budget (:func:`study_name`): a run that dies half way
through tuning leaves its finished trials there, and the re-run (same code, space and data)
resumes the study instead of starting again; raising ``n_trials`` extends it. With an
in-memory metadata database, or outside a pipeline, the study is kept in memory only.

Wire the result into ``train(tuned=...)``: it trains ``best_estimator``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import pandas as pd

from conveyor import Dataset, Model, component, current_step
from conveyor.data.schema import Schema
from conveyor.modeling.tuning import TuningError, TuningResult, tune_model
from conveyor.modeling.tuning_space import parse_space

__all__ = ["study_name", "tune"]

Task = Literal["auto", "binary", "multiclass", "regression"]
_BUDGET = ("n_trials", "timeout_s", "n_jobs")


def study_name() -> tuple[str, str | None]:
    """The study's name and storage URL for the running step (a fallback name outside one).

    The name is ``conveyor/<pipeline>/<step>/<key>``, where ``key`` hashes the step's cache
    key parts (component, code, parameters, input fingerprints) less the budget parameters
    (``n_trials``, ``timeout_s``, ``n_jobs``): a re-run after a crash, or with a larger
    ``n_trials``, continues the same study.

    Example:
        >>> study_name()  # inside step "tune" of pipeline "census"
        ('conveyor/census/tune/3f9a0c1e2d4b5a69', 'sqlite:////home/me/.conveyor/metadata.db')
    """
    step = current_step()
    if step is None or not step.metadata_url:
        return "conveyor/tune", None
    from conveyor.store.metadata.store import MetadataStore

    with MetadataStore.open(step.metadata_url) as store:
        pipeline = store.get_run(step.run_id).pipeline_name
        parts = store.get_execution(step.execution_id).cache_key_parts
    if parts is None:  # no cache key recorded: a study of this execution only
        return f"conveyor/{pipeline}/{step.step}/execution-{step.execution_id}", step.metadata_url
    params = {k: v for k, v in parts.get("params", {}).items() if k not in _BUDGET}
    text = json.dumps({**parts, "params": params}, sort_keys=True, default=str)
    key = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return f"conveyor/{pipeline}/{step.step}/{key}", step.metadata_url


def _frames(data: Dataset) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    splits = data.splits()
    if "train" not in splits:
        raise TuningError(
            f"Dataset {data.uri or data.path} has no split=train sub-folder (it has: "
            f"{splits or 'none'}); split the data before tuning"
        )
    eval_frame = data.split("eval").to_pandas() if "eval" in splits else None
    return data.split("train").to_pandas(), eval_frame


def _load_preprocessing(preprocessing: Model | None) -> Any | None:
    # The "Model" materializer loads skops files trusting scikit-learn/numpy/scipy types only.
    return None if preprocessing is None else preprocessing.load("sklearn.base.BaseEstimator")


@component
def tune(
    data: Dataset,
    label: str,
    space: dict[str, Any],
    metric: str = "auto",
    n_trials: int = 20,
    timeout_s: float | None = None,
    seed: int = 0,
    n_jobs: int = 1,
    preprocessing: Model | None = None,
    schema: Schema | None = None,
    task: Task = "auto",
) -> TuningResult:
    """Search ``space`` for the best model on ``data``'s eval split.

    Args:
        data: a Dataset with ``split=train`` and ``split=eval`` sub-folders.
        label: the label column.
        space: the search space: model families with their parameters' distributions and,
            optionally, preprocessing options (see ``docs/tuning.md``).
        metric: the objective (a metric of ``conveyor.modeling.metrics``); ``auto``:
            roc_auc, log_loss or rmse by task.
        n_trials: finished trials the study holds in the end (a resumed study runs the rest).
        timeout_s: stop starting trials after this many seconds.
        seed: the sampler's seed and the models' seed (train with the same one).
        n_jobs: trials at once (threads); -1: one per core.
        preprocessing: a fitted transformer ("Model") applied in every trial.
        schema: the data schema; needed when the space searches preprocessing.
        task: ``auto`` infers it from the label column.

    Returns:
        The TuningResult: best value, parameters, ``best_estimator`` for ``train``, trials.

    Example:
        >>> @pipeline
        ... def training() -> None:
        ...     data = ingest(...)
        ...     tuned = tune(data, label="income", n_trials=30, space={"model": {
        ...         "flavour": "xgboost", "early_stopping_rounds": 20,
        ...         "params": {"max_depth": {"int": [2, 8]}}}})
        ...     train(data, label="income", tuned=tuned)
    """
    parsed = parse_space(space)  # before reading any data
    train_frame, eval_frame = _frames(data)
    name, url = study_name()
    print(f"study {name}: {n_trials} trials, {parsed.dimensions} dimensions", flush=True)
    return tune_model(
        train_frame,
        eval_frame,
        label=label,
        space=parsed,
        metric=metric,
        n_trials=n_trials,
        timeout_s=timeout_s,
        seed=seed,
        n_jobs=n_jobs,
        task=task,
        preprocessing=_load_preprocessing(preprocessing),
        schema=schema,
        storage_url=url,
        study_name=name,
    )
