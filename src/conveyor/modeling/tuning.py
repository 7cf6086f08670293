"""Model and hyperparameter search with Optuna, the study kept in the metadata database.

:func:`tune_model` runs a study over a :mod:`~conveyor.modeling.tuning_space` space. Each
trial draws a candidate (model family, its parameters, preprocessing options), trains it with
:func:`~conveyor.modeling.training.fit_model` (early stopping on the eval split, as ``train``
does) and scores it on the eval split with :mod:`~conveyor.modeling.metrics`; the objective's
direction comes from ``higher_is_better``.

- **Pruning** (``MedianPruner``): XGBoost and LightGBM report their eval loss at rounds 8, 16,
  32, 64, 100, 128, 200, 256, 300, ... (doubling, and every 100th), the same steps for every
  trial, so trials compare; a trial worse than the median at a checkpoint stops there. The
  loss is negated for a maximised metric, so "better" agrees with the study's direction.
- **Storage**: the study is kept in Optuna's ``RDBStorage`` on the metadata database (SQLite
  transactions take the write lock at ``BEGIN IMMEDIATE``, like the metadata store's writes).
  Trials run against an in-memory copy of it (the sampler and pruner read the trials many
  times per trial, which against SQLite cost more than a small model's fit), and each
  finished trial (parameters, value, intermediate values, metrics, state, times) is written
  to the database in one transaction. A study interrupted half way resumes from the trials it
  kept: finished ones (complete or pruned) count towards ``n_trials``; the one running when
  the process died is lost and run again.
- **Parallel trials**: ``n_jobs`` threads (the libraries release the GIL while fitting); each
  trial then gets ``cores // n_jobs`` OpenMP threads so trials do not oversubscribe the cores.

The summary is a :class:`TuningResult`, stored as a "TuningResult" artifact
(:class:`TuningResultMaterializer`): best value and parameters, ``best_estimator`` (a spec
``train`` accepts), ``best_preprocessing`` and one row per trial. Optuna is imported on
first use (``pip install 'conveyor-ml[tune]'``).
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from conveyor.core.materializers import Materializer
from conveyor.exceptions import ConveyorError, did_you_mean
from conveyor.modeling.flavours import available_flavours, estimator_class, require
from conveyor.modeling.training import infer_task
from conveyor.modeling.tuning_space import SearchSpace, TuningError, parse_space
from conveyor.modeling.tuning_trial import (
    PREPROCESSING_OPTIONS,
    WARMUP_ROUND,
    Objective,
    TrialSetup,
)

__all__ = [
    "AUTO_METRICS",
    "TrialSummary",
    "TuningError",
    "TuningResult",
    "TuningResultMaterializer",
    "check_estimators",
    "tune_model",
]

AUTO_METRICS = {"binary": "roc_auc", "multiclass": "log_loss", "regression": "rmse"}
"""The objective ``metric="auto"`` picks for each task."""

RESULT_FILE = "tuning.json"
_LIBRARIES = ("sklearn", "xgboost", "lightgbm")  # built-in flavours: package = flavour name


class TrialSummary(BaseModel):
    """One trial: what it tried, how it ended, what it scored."""

    model_config = ConfigDict(ser_json_inf_nan="strings")

    number: int
    state: str  # complete, pruned, fail, running, waiting
    value: float | None = None
    family: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)  # Optuna's flat, dotted names
    metrics: dict[str, float] = Field(default_factory=dict)
    duration_s: float | None = None
    started_at: datetime | None = None
    last_step: int | None = None  # the last boosting round reported (where a pruned one stopped)
    error: str | None = None


class TuningResult(BaseModel):
    """What a study found, and every trial it ran.

    Example:
        >>> result = tune_model(train, eval, label="y", space=space, n_trials=10)
        >>> result.best_estimator
        {'flavour': 'xgboost', 'params': {'max_depth': 4, 'learning_rate': 0.08}}
    """

    model_config = ConfigDict(ser_json_inf_nan="strings")

    study_name: str
    storage: str | None  # the database URL (password masked); None: in memory, not kept
    metric: str
    direction: Literal["maximize", "minimize"]
    task: str
    seed: int
    best_trial: int
    best_value: float
    best_family: str
    best_params: dict[str, Any]
    best_estimator: dict[str, Any]  # an estimator spec ``train`` accepts
    best_preprocessing: dict[str, Any] | None  # fit_preprocessor options; None: not searched
    best_metrics: dict[str, float] = Field(default_factory=dict)
    n_trials: int  # finished trials (complete + pruned), what ``n_trials`` counts
    n_complete: int
    n_pruned: int
    n_failed: int
    trials: list[TrialSummary] = Field(default_factory=list)
    space: dict[str, Any] = Field(default_factory=dict)


class TuningResultMaterializer(Materializer):
    """:class:`TuningResult` <-> ``tuning.json`` (artifact type ``"TuningResult"``).

    The properties hold the headline (metric, best value, family and params, trial counts),
    so listings and ``conveyor runs compare`` need not load the file.
    """

    python_types: ClassVar[tuple[type | str, ...]] = (TuningResult,)
    artifact_type = "TuningResult"

    def save(self, obj: Any, folder: Path) -> dict[str, Any]:
        result: TuningResult = obj
        (folder / RESULT_FILE).write_text(result.model_dump_json(indent=2), encoding="utf-8")
        headline = ("metric", "direction", "best_value", "best_trial", "best_family")
        counts = ("n_trials", "n_complete", "n_pruned", "n_failed")
        props = {name: getattr(result, name) for name in (*headline, *counts)}
        return {**props, "best_params": result.best_params, "study_name": result.study_name}

    def load(self, folder: Path, python_type: type) -> Any:
        return TuningResult.model_validate_json((folder / RESULT_FILE).read_text(encoding="utf-8"))


# -- setup -----------------------------------------------------------------------------------


def _check_inputs(
    train: pd.DataFrame, eval_: pd.DataFrame | None, label: str, task: str, metric: str
) -> tuple[str, str]:
    """Task and metric, checked; TuningError before any trial."""
    if eval_ is None or len(eval_) == 0:
        raise TuningError("tune scores every trial on the eval split; the data has no split=eval")
    for name, frame in (("train", train), ("eval", eval_)):
        if label not in frame.columns:
            hint = did_you_mean(label, [str(c) for c in frame.columns])
            raise TuningError(f"label column {label!r} is not in the {name} split{hint}")
    from conveyor.modeling.metrics import validate_metrics

    task = infer_task(train[label]) if task == "auto" else task
    metric = AUTO_METRICS.get(task, metric) if metric == "auto" else metric
    try:
        validate_metrics(task, [metric])  # type: ignore[arg-type]
    except ConveyorError as exc:
        raise TuningError(f"metric: {exc}") from exc
    return task, metric


def check_estimators(space: SearchSpace) -> None:
    """Check the space's flavours, estimator classes (imported) and, for classes without
    ``**kwargs``, their parameter names; TuningError names the path.

    Example:
        >>> check_estimators(parse_space({"model": {"flavour": "sklearn", "class": RF,
        ...                                         "params": {"n_estimator": {"int": [5, 9]}}}}))
        Traceback (most recent call last):
        TuningError: space.model.params.n_estimator: RandomForestClassifier has no parameter ...
    """
    known = available_flavours()
    for template in space.models.values():
        if template.flavour not in known:
            hint = did_you_mean(template.flavour, known)
            raise TuningError(
                f"{template.path}.flavour: unknown flavour {template.flavour!r}{hint}"
            )
        if template.cls is None or template.flavour not in _LIBRARIES:
            continue
        try:
            cls = estimator_class(template.cls, template.flavour)
        except ConveyorError as exc:
            raise TuningError(f"{template.path}.class: {exc}") from exc
        accepted = inspect.signature(cls).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
            continue
        for key in sorted(template.params.keys()):
            if key not in accepted:
                raise TuningError(
                    f"{template.path}.params.{key}: {cls.__name__} has no parameter {key!r}"
                    + did_you_mean(key, accepted)
                )


def _check_preprocessing(space: SearchSpace, schema: Any, fixed: Any) -> None:
    if space.preprocessing is None:
        return
    if fixed is not None:
        raise TuningError(
            "space.preprocessing: the space searches preprocessing, so do not also pass a "
            "fitted preprocessing; drop one of them"
        )
    if schema is None:
        raise TuningError("space.preprocessing: building preprocessing needs the data's schema")
    from conveyor.modeling.transform import CategoricalEncoding, NumericScaling

    valid = {"numeric": get_args(NumericScaling), "categorical": get_args(CategoricalEncoding)}
    for path, option, values in space.preprocessing_options():
        if option not in PREPROCESSING_OPTIONS:
            hint = did_you_mean(option, PREPROCESSING_OPTIONS)
            raise TuningError(f"{path}: unknown preprocessing option {option!r}{hint}")
        bad = [v for v in values or () if option in valid and v not in valid[option]]
        if bad or (option in valid and values is None):
            shown = repr(bad[0]) if bad else "a range"
            raise TuningError(f"{path}: {option} is one of {list(valid[option])}, not {shown}")


# -- the study -------------------------------------------------------------------------------


def _optuna() -> Any:
    return require("optuna", "tune")


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna's INFO lines off (the step log gets one line per trial from :func:`_progress`)."""
    optuna = _optuna()
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def _storage(url: str | None) -> tuple[Any, str | None]:
    """An RDBStorage on ``url`` and the URL masked; (None, None) without a URL or for an
    in-memory database: the study is then not kept."""
    from conveyor.store.metadata.engine import is_memory_sqlite, masked_url, normalize_url

    parsed = normalize_url(url) if url else None
    if parsed is None or is_memory_sqlite(parsed):
        return None, None
    sqlite = parsed.get_backend_name() == "sqlite"
    kwargs = {"connect_args": {"timeout": 30}} if sqlite else {"pool_pre_ping": True}
    storage = _optuna().storages.RDBStorage(
        parsed.render_as_string(hide_password=False), engine_kwargs=kwargs
    )
    if sqlite:
        _immediate_writes(storage.engine)
    return storage, masked_url(parsed)


def _immediate_writes(engine: Any) -> None:
    """Every SQLite transaction takes the write lock up front, as the metadata store's writes
    do: a deferred transaction that upgrades its lock while another process writes fails at
    once with "database is locked" instead of waiting on the busy timeout."""
    from sqlalchemy import event

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA busy_timeout=30000").fetchall()

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    engine.dispose()  # connections made before the hooks are dropped


def _open_study(name: str, storage: Any, setup: TrialSetup) -> tuple[Any | None, Any]:
    """The durable study (in ``storage``) and the working one trials run in (in memory).

    Trials run against an in-memory copy, which the sampler and the pruner read many times
    per trial; each finished trial is then written to the durable study in one transaction
    (:func:`_keep`). A resumed study starts from the durable study's finished trials.
    """
    optuna = _optuna()
    direction = "maximize" if setup.maximize else "minimize"
    durable, finished = None, []
    if storage is not None:
        durable = optuna.create_study(
            study_name=name, storage=storage, direction=direction, load_if_exists=True
        )
        if durable.direction.name.lower() != direction:
            kept = durable.direction.name.lower()
            raise TuningError(f"study {name!r} exists and {kept}s; this one {direction}s")
        finished = _trials(durable, "COMPLETE", "PRUNED", "FAIL")
    working = optuna.create_study(
        study_name=name,
        direction=direction,
        # Offset the seed by the trials already there, so a resumed study draws new points.
        sampler=optuna.samplers.TPESampler(seed=setup.seed + len(finished)),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=WARMUP_ROUND - 1),
    )
    working.add_trials(finished)
    return durable, working


def _keep(durable: Any | None) -> list[Callable[[Any, Any], None]]:
    """A callback writing each finished trial to the durable study (none without one)."""
    if durable is None:
        return []
    lock = threading.Lock()

    def keep(study: Any, trial: Any) -> None:
        with lock:  # trials in threads: numbers in the same order as in the working study
            durable.add_trial(trial)

    return [keep]


def _trials(study: Any, *states: str) -> list[Any]:
    wanted = tuple(getattr(_optuna().trial.TrialState, s) for s in states) or None
    return list(study.get_trials(deepcopy=False, states=wanted))


def _progress(study: Any, maximize: bool) -> Callable[[Any, Any], None]:
    """A callback printing a line per finished trial (into the step's log)."""
    values = [t.value for t in _trials(study, "COMPLETE")]
    best: list[float] = [(max if maximize else min)(values)] if values else []

    def show(study: Any, trial: Any) -> None:
        done = trial.state.name == "COMPLETE"
        if done and (not best or (trial.value > best[0]) == maximize):
            best[:] = [trial.value]
        value = f"{trial.value:.5g}" if done else "-"
        took = trial.duration.total_seconds() if trial.duration else 0.0
        family = trial.user_attrs.get("conveyor", {}).get("family", "?")
        print(
            f"trial {trial.number} {trial.state.name.lower()}: {value} (best "
            f"{f'{best[0]:.5g}' if best else '-'}) {family} {trial.params} {took:.2f}s",
            flush=True,
        )

    return show


def tune_model(
    train: pd.DataFrame,
    eval: pd.DataFrame | None,
    *,
    label: str,
    space: Mapping[str, Any] | SearchSpace,
    metric: str = "auto",
    n_trials: int = 20,
    timeout_s: float | None = None,
    seed: int = 0,
    n_jobs: int = 1,
    task: str = "auto",
    preprocessing: Any | None = None,
    schema: Any | None = None,
    storage_url: str | None = None,
    study_name: str = "conveyor-tune",
) -> TuningResult:
    """Search ``space`` with an Optuna study; everything is checked before the first trial.

    Args:
        train, eval: the splits, with the label column; trials are scored on ``eval``.
        label: the label column.
        space: a search space (see :mod:`conveyor.modeling.tuning_space`).
        metric: the objective, a metric of :mod:`conveyor.modeling.metrics`; ``"auto"``:
            roc_auc (binary), log_loss (multiclass), rmse (regression).
        n_trials: finished trials (complete or pruned) the study holds in the end.
        timeout_s: stop starting trials after this many seconds.
        seed: the sampler's seed and every trial's model seed.
        n_jobs: trials at once (threads); -1: one per core.
        task: ``"auto"`` infers it from the label column.
        preprocessing: a fitted transformer for every trial (when the space searches none).
        schema: the data schema, needed when the space searches preprocessing.
        storage_url: a SQLAlchemy URL to keep the study in (None: in memory).
        study_name: an existing study of this name is resumed.

    Example:
        >>> result = tune_model(train, eval, label="income", n_trials=30, space={
        ...     "model": {"flavour": "lightgbm", "early_stopping_rounds": 20,
        ...               "params": {"num_leaves": {"int": [8, 128], "log": True}}}})
        >>> result.best_estimator["params"]
        {'num_leaves': 23}
    """
    from conveyor.modeling.metrics import higher_is_better

    parsed = space if isinstance(space, SearchSpace) else parse_space(space)
    check_estimators(parsed)
    _check_settings(n_trials, timeout_s, n_jobs)
    task, metric = _check_inputs(train, eval, label, task, metric)
    _check_preprocessing(parsed, schema, preprocessing)
    assert eval is not None  # checked above
    cores = os.cpu_count() or 1
    jobs = cores if n_jobs == -1 else n_jobs
    setup = TrialSetup(train, eval, label, task, metric, higher_is_better(metric), seed, parsed)
    setup.threads = max(1, cores // jobs) if jobs > 1 else None
    setup.schema, setup.preprocessing = schema, preprocessing
    with _quiet_optuna():
        storage, shown = _storage(storage_url)
        durable, study = _open_study(study_name, storage, setup)
        remaining = n_trials - len(_trials(study, "COMPLETE", "PRUNED"))
        if remaining > 0:
            study.optimize(
                Objective(setup),
                n_trials=remaining,
                timeout=timeout_s,
                n_jobs=jobs,
                catch=(ConveyorError,),
                callbacks=[*_keep(durable), _progress(study, setup.maximize)],
            )
        return _summarize(study, setup, shown)


def _check_settings(n_trials: int, timeout_s: float | None, n_jobs: int) -> None:
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise TuningError(f"n_trials must be a positive int, not {n_trials!r}")
    if timeout_s is not None and not timeout_s > 0:
        raise TuningError(f"timeout_s must be positive (or None), not {timeout_s!r}")
    if n_jobs == 0 or n_jobs < -1:
        raise TuningError(f"n_jobs must be a positive int or -1 (one per core), not {n_jobs!r}")


def _summary(trial: Any) -> TrialSummary:
    attrs, steps = trial.user_attrs, trial.intermediate_values
    return TrialSummary(
        number=trial.number,
        state=trial.state.name.lower(),
        value=trial.value if trial.state.name == "COMPLETE" else None,
        family=attrs.get("conveyor", {}).get("family"),
        params=dict(trial.params),
        metrics=attrs.get("metrics", {}),
        duration_s=trial.duration.total_seconds() if trial.duration else None,
        started_at=trial.datetime_start,
        last_step=max(steps) if steps else None,
        error=attrs.get("error"),
    )


def _summarize(study: Any, setup: TrialSetup, storage: str | None) -> TuningResult:
    rows = [_summary(t) for t in _trials(study)]
    count = {s: sum(r.state == s for r in rows) for s in ("complete", "pruned", "fail")}
    if not count["complete"]:
        errors = sorted({r.error for r in rows if r.error})[:3]
        raise TuningError(
            f"no trial of study {study.study_name!r} completed ({count['pruned']} pruned, "
            f"{count['fail']} failed)" + (f"; errors: {'; '.join(errors)}" if errors else "")
        )
    best = study.best_trial
    attrs = best.user_attrs.get("conveyor", {})
    return TuningResult(
        study_name=study.study_name,
        storage=storage,
        metric=setup.metric,
        direction="maximize" if setup.maximize else "minimize",
        task=setup.task,
        seed=setup.seed,
        best_trial=best.number,
        best_value=best.value,
        best_family=attrs.get("family", ""),
        best_params=dict(best.params),
        best_estimator=attrs.get("estimator", {}),
        best_preprocessing=attrs.get("preprocessing"),
        best_metrics=best.user_attrs.get("metrics", {}),
        n_trials=count["complete"] + count["pruned"],
        n_complete=count["complete"],
        n_pruned=count["pruned"],
        n_failed=count["fail"],
        trials=rows,
        space=setup.space.raw,
    )
