"""The standard ``evaluate`` step: a candidate model against production, on the same data.

Written with the public API only (``conveyor.component``, ``Dataset``, ``current_step``), like
any user component. The step

1. reads the candidate bundle's manifest (task, classes) and validates the configuration --
   thresholds, metrics, slice specs, sensitive features -- then checks the evaluated split's
   columns, all *before* any model is loaded, so bad input fails the step at once and nothing
   downstream (``register``) runs;
2. finds the baseline, by default the version under the ``production`` alias of
   ``model_name``, in the run's registry (``current_step().metadata_url``);
3. scores the candidate and the baseline on the same rows with the same configuration (so a
   metric or slice added today is measured for both: "metrics evolve") and blesses the
   candidate with :func:`conveyor.modeling.thresholds.bless`.

With no baseline yet (first run, no such alias) the candidate is judged on absolute thresholds
alone, and the blessing's note says so. :func:`evaluate_models` is the same work on loaded
bundles and a DataFrame, without the engine: ``conveyor models evaluate`` uses it to
re-evaluate any registered version on any data.

The step is not cached (``cache=False``): the baseline is not one of its inputs, so a cache
hit could miss a promotion. Its outputs are byte-identical for identical inputs, so steps
downstream of it still hit their caches.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, NamedTuple

import pandas as pd

from conveyor import Dataset, component, current_step
from conveyor.exceptions import ConveyorError, NotFoundError
from conveyor.modeling.bundle import LoadedBundle, ModelBundle, load_bundle
from conveyor.modeling.evaluation_artifacts import EvaluationConfig, EvaluationReport, compare
from conveyor.modeling.evaluation_model import Blessing, EvaluationResult, Task
from conveyor.modeling.explain import Explanation
from conveyor.modeling.metrics import TASKS, EvaluationError
from conveyor.modeling.slicing import DEFAULT_MIN_COUNT, compute_sliced_metrics
from conveyor.modeling.thresholds import bless
from conveyor.registry import ModelRegistry, ModelVersionRecord
from conveyor.store.artifact_store import ArtifactStore
from conveyor.store.metadata.registry_records import version_number

__all__ = [
    "Baseline",
    "Evaluation",
    "as_task",
    "evaluate",
    "evaluate_bundle",
    "evaluate_models",
    "find_baseline",
    "load_registered",
]

_PRED = "__conveyor_prediction__"
_SCORE = "__conveyor_score_{}__"


class Evaluation(NamedTuple):
    """The two outputs of ``evaluate``: the full report and the gate's verdict."""

    evaluation: EvaluationReport
    blessing: Blessing


@dataclass(frozen=True)
class Baseline:
    """The model a candidate is compared with, or why there is none.

    Attributes:
        bundle: the loaded baseline bundle; None when there is no baseline.
        version: its name in reasons and reports, e.g. ``"census:3"``.
        note: why there is no baseline (e.g. "model 'census' has no alias 'production'").
    """

    bundle: LoadedBundle | None = None
    version: str | None = None
    note: str = ""


def as_task(value: object, where: str) -> Task:
    """``value`` as a task name; EvaluationError naming ``where`` for anything else."""
    for task in TASKS:
        if value == task:
            return task
    raise EvaluationError(f"{where}: the bundle's task is {value!r}, not one of {list(TASKS)}")


def _score_columns(bundle: LoadedBundle, labels: list[Any]) -> list[int]:
    """Positions of ``labels`` among the bundle's probability columns."""
    own = list(bundle.manifest.classes or ())
    missing = [label for label in labels if label not in own]
    if missing:
        raise EvaluationError(
            f"{bundle.path}: the model has no class {missing[0]!r} (its classes: {own}); "
            "the candidate and the baseline must predict the same labels"
        )
    return [own.index(label) for label in labels]


def evaluate_bundle(
    bundle: LoadedBundle,
    frame: pd.DataFrame,
    label: str,
    config: EvaluationConfig,
    *,
    labels: Sequence[Any] | None = None,
    model_version: str | None = None,
) -> EvaluationResult:
    """Score ``frame`` with ``bundle`` and measure it as ``config`` says.

    Args:
        bundle: the loaded model bundle.
        frame: features (extra columns are ignored) and the ``label`` column.
        label: the label column.
        config: what to measure (validated).
        labels: class labels in order (binary: ``[negative, positive]``); default: the
            bundle's classes.
        model_version: names the model in reasons and reports.

    Example:
        >>> evaluate_bundle(load_bundle("bundle"), frame, "y", config).overall["roc_auc"]
        0.91
    """
    scored = frame.copy(deep=False)
    scored[_PRED] = bundle.predict(frame, allow_extra=True)
    score_cols: list[str] = []
    ordered = list(labels if labels is not None else bundle.manifest.classes or ())
    if config.task != "regression":
        proba = bundle.predict_proba(frame, allow_extra=True)
        columns = _score_columns(bundle, ordered)
        if config.task == "binary":
            columns = columns[-1:]  # the positive class's probability
        for i, column in enumerate(columns):
            scored[_SCORE.format(i)] = proba[:, column]
            score_cols.append(_SCORE.format(i))
    return compute_sliced_metrics(
        scored,
        label,
        task=config.task,
        y_pred_col=_PRED,
        y_score_col=score_cols or None,
        slices=config.slices,
        metrics=config.metric_list,
        labels=ordered or None,
        sensitive_features=config.sensitive_features,
        min_count=config.min_count,
        model_version=model_version,
    )


def _evaluate_baseline(
    baseline: Baseline, frame: pd.DataFrame, label: str, config: EvaluationConfig, labels: list[Any]
) -> EvaluationResult | None:
    if baseline.bundle is None:
        return None
    task = as_task(baseline.bundle.manifest.task, f"baseline {baseline.version}")
    if task != config.task:
        raise EvaluationError(
            f"the baseline {baseline.version} is a {task} model, the candidate a {config.task} "
            "one: they cannot be compared"
        )
    try:
        return evaluate_bundle(
            baseline.bundle, frame, label, config, labels=labels, model_version=baseline.version
        )
    except ConveyorError as exc:
        raise EvaluationError(
            f"the baseline {baseline.version} cannot be evaluated on this data: {exc}"
        ) from exc


def evaluate_models(
    candidate: LoadedBundle,
    frame: pd.DataFrame,
    label: str,
    config: EvaluationConfig,
    *,
    baseline: Baseline | None = None,
    model_name: str = "model",
    candidate_version: str | None = None,
    split: str | None = None,
    data_uri: str = "",
    data_sha256: str = "",
    explanation: Explanation | None = None,
) -> EvaluationReport:
    """Evaluate a candidate (and a baseline, on the same rows and configuration) and bless it.

    Args:
        candidate: the candidate's loaded bundle.
        frame: the evaluation data (features and ``label``).
        label: the label column.
        config: what to measure and the thresholds (see :meth:`EvaluationConfig.create`).
        baseline: the model to compare with, or why there is none; None: no baseline.
        model_name: the registered model's name (shown in the report).
        candidate_version: the candidate's name in the report (default ``"NAME:candidate"``).
        split, data_uri, data_sha256: where ``frame`` comes from, recorded in the report.
        explanation: the candidate's explanation, kept in the report and drawn in its page.

    Raises:
        EvaluationError: a missing column, labels the models do not know, a baseline of
            another task or that cannot score the data.

    Example:
        >>> config = EvaluationConfig.create("binary", slices=["sex"])
        >>> report = evaluate_models(load_bundle("bundle"), frame, "income", config)
        >>> report.blessing.note
        'no thresholds: blessed without checks; no baseline was asked for'
    """
    baseline = baseline or Baseline(note="no baseline was asked for")
    config.check_frame(frame, label)
    labels = list(candidate.manifest.classes or ())
    version = candidate_version or f"{model_name}:candidate"
    result = evaluate_bundle(candidate, frame, label, config, labels=labels, model_version=version)
    base = _evaluate_baseline(baseline, frame, label, config, labels)
    blessing = bless(result, config.thresholds, base)
    if base is None and baseline.note:
        blessing = blessing.model_copy(update={"note": f"{blessing.note}; {baseline.note}"})
    return EvaluationReport(
        model_name=model_name,
        label=label,
        split=split,
        data_uri=data_uri,
        data_sha256=data_sha256,
        candidate=result,
        baseline=base,
        blessing=blessing,
        comparison=compare(result, base),
        config=config,
        as_of=candidate.manifest.created_at,
        candidate_sha256=candidate.manifest.sha256,
        baseline_sha256="" if baseline.bundle is None else baseline.bundle.manifest.sha256,
        baseline_note=baseline.note if base is None else "",
        explanation=explanation,
    )


# -- the step ------------------------------------------------------------------------------


def _eval_frame(data: Dataset, split: str) -> tuple[pd.DataFrame, str | None]:
    """The split's rows; a Dataset without ``split=`` folders is evaluated whole."""
    if not data.splits():
        frame: pd.DataFrame = data.to_pandas()
        return frame, None
    return data.to_pandas(split=split), split


def load_registered(
    registry: ModelRegistry, name: str, ref: str, artifact_url: str | None, stack: ExitStack
) -> tuple[LoadedBundle, ModelVersionRecord]:
    """Load (verified) the bundle of version ``ref`` (number, alias, ``latest``) of ``name``.

    The bundle is read from the artifact store at ``artifact_url`` (None: its URI is a local
    folder); a remote store's download lives until ``stack`` closes.

    Raises:
        NotFoundError: no such model, version or alias.
    """
    record = registry.get(name, ref)
    uri = record.artifact_uri
    if artifact_url is None:
        return load_bundle(uri), record
    folder = stack.enter_context(ArtifactStore.open(artifact_url).local_folder(uri))
    return load_bundle(folder), record


def find_baseline(
    registry: ModelRegistry, name: str, ref: str, artifact_url: str | None, stack: ExitStack
) -> Baseline:
    """The baseline version ``ref`` of ``name``, loaded, or why there is none.

    An alias nobody holds yet, or a model not registered yet, is no baseline (with a note):
    the first run is judged on absolute thresholds. A version *number* that does not exist
    is an error.
    """
    try:
        bundle, record = load_registered(registry, name, ref, artifact_url, stack)
    except NotFoundError as exc:
        if version_number(str(ref)) is not None:
            raise EvaluationError(f"baseline {name}:{ref}: {exc}") from exc
        return Baseline(note=f"no {ref!r} version of {name!r} yet: {exc}")
    return Baseline(bundle, f"{name}:{record.version}")


def _baseline(ref: str | None, model_name: str) -> Baseline:
    if ref is None:
        return Baseline(note="no baseline was asked for (baseline=None)")
    ctx = current_step()
    if ctx is None or not ctx.metadata_url:
        return Baseline(note="outside a pipeline run there is no registry to find a baseline in")
    if ":memory:" in ctx.metadata_url or "mode=memory" in ctx.metadata_url:
        return Baseline(note="the run's metadata database is in memory, out of this step's reach")
    with ModelRegistry.open(ctx.metadata_url) as registry, ExitStack() as stack:
        return find_baseline(registry, model_name, ref, ctx.artifact_url, stack)


def _log(report: EvaluationReport) -> None:
    """The verdict in the step's log."""
    verdict = "blessed" if report.blessing.blessed else "NOT blessed"
    print(f"{report.candidate.model_version}: {verdict} ({report.blessing.note})")
    for reason in report.blessing.failures:
        print(f"  failed: {reason.message}")


@component(cache=False)
def evaluate(
    model: ModelBundle,
    data: Dataset,
    label: str,
    split: str = "eval",
    slices: list[Any] | None = None,
    sensitive_features: list[str] | None = None,
    metrics: list[str] | None = None,
    thresholds: list[dict[str, Any]] | None = None,
    baseline: str | None = "production",
    model_name: str = "model",
    min_count: int = DEFAULT_MIN_COUNT,
    explanation: Explanation | None = None,
) -> Evaluation:
    """Evaluate ``model`` on a split of ``data``, against the baseline, and bless it or not.

    Args:
        model: the candidate bundle (``train``'s output).
        data: a Dataset; its ``split`` sub-folder is evaluated (the whole of it when it has
            no ``split=`` sub-folders).
        label: the label column.
        split: the split to evaluate.
        slices: slice specs, e.g. ``["sex", {"feature": "age", "buckets": [0, 30, 120]},
            ["sex", "race"]]``.
        sensitive_features: columns to compute fairness over (binary tasks).
        metrics: metric names; None: every metric of the task (thresholds add theirs).
        thresholds: e.g. ``[{"metric": "roc_auc", "min": 0.8}, {"metric": "accuracy",
            "max_drop": 0.01, "slices": True}]``.
        baseline: the alias (or version) of ``model_name`` to compare with; None: none.
        model_name: the registered model the candidate competes for.
        min_count: slices with fewer rows are reported but never gated.
        explanation: ``explain``'s output for this model: drawn in the HTML report.

    Returns:
        ``evaluation`` (an "Evaluation" artifact: JSON and an HTML report) and ``blessing``
        (a "Blessing" artifact for ``register``).

    Example:
        >>> @pipeline
        ... def training() -> None:
        ...     data = make_data()
        ...     model = train(data, label="income", estimator={"flavour": "lightgbm"})
        ...     checked = evaluate(model, data, label="income", slices=["sex"],
        ...                        thresholds=[{"metric": "roc_auc", "min": 0.8}],
        ...                        model_name="census")
        ...     register(model, checked.blessing, name="census", alias="production",
        ...              evaluation=checked.evaluation)
    """
    config = EvaluationConfig.create(
        as_task(model.manifest.task, f"bundle {model.uri or model.path}"),
        slices=slices or [],
        metrics=metrics,
        thresholds=thresholds or [],
        sensitive_features=sensitive_features or [],
        min_count=min_count,
    )
    frame, used_split = _eval_frame(data, split)
    config.check_frame(frame, label)
    report = evaluate_models(
        model.open(),
        frame,
        label,
        config,
        baseline=_baseline(baseline, model_name),
        model_name=model_name,
        split=used_split,
        data_uri=data.uri or str(data.path),
        data_sha256=data.sha256,
        explanation=explanation,
    )
    _log(report)
    return Evaluation(report, report.blessing)
