"""The standard ``register`` step: a pipeline's model becomes a numbered version in the registry.

Written with the public API only (``conveyor.component`` and ``conveyor.current_step``), like
any user component. A step runs in a worker process without a workspace object, so it learns
from :func:`conveyor.current_step` the run and execution it belongs to and the URL of the
run's metadata database, finds the model's artifact record among the outputs of its own run
(the lineage edge: data -> train -> model -> version) and registers it through
:class:`conveyor.registry.ModelRegistry`.

The model and the blessing arrive as handles (:class:`conveyor.Artifact`), so any model
artifact fits (``train``'s "ModelBundle", a scikit-learn "Model", a folder) and so does any
blessing: ``evaluate``'s typed "Blessing" or a JSON mapping (``{"blessed": ..., "reasons":
[...]}``) from a step of your own. Given ``evaluate``'s report as ``evaluation``, the version
records the candidate's metrics overall and per slice, which ``conveyor models diff`` compares.

An unblessed candidate is not an error of the pipeline: the step succeeds, registers nothing,
and says why in its output (``registered: false`` with the blessing's reasons) and its log.
A retried step returns the version its first attempt made instead of making another; a
cached step (same model, blessing and parameters) does not register again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conveyor import Artifact, StepContext, component, current_step
from conveyor.modeling.evaluation_artifacts import EvaluationReport
from conveyor.modeling.evaluation_model import Blessing
from conveyor.registry import ModelRegistry, NotBlessedError, RegistryError, blessing_verdict
from conveyor.registry.registry import as_blessing_dict
from conveyor.store.metadata.store import MetadataStore

__all__ = ["register"]


def _artifact_id(store: MetadataStore, run_id: int, execution_id: int, model: Artifact) -> int:
    """The id of the artifact record behind ``model``: an output of another step of the run."""
    for execution in store.list_executions(run_id):
        if execution.id == execution_id:
            continue
        for artifact in store.execution_outputs(execution.id).values():
            if artifact.uri == model.uri and artifact.sha256 == model.sha256:
                return artifact.id
    raise RegistryError(
        f"the model to register ({model.uri or 'not stored'}) is not an output of run {run_id}; "
        "pass register the model output of a step of the same pipeline"
    )


def _step_context() -> StepContext:
    """The running step, which must know a metadata database its process can reach."""
    ctx = current_step()
    if ctx is None or not ctx.metadata_url:
        raise RegistryError(
            "register records into the run's metadata database: run it as a pipeline step "
            "(conveyor.run or conveyor run), not as a plain function"
        )
    if ":memory:" in ctx.metadata_url or "mode=memory" in ctx.metadata_url:
        raise RegistryError(
            "register needs a metadata database its worker process can reach; an in-memory "
            "SQLite database lives in the runner's process only"
        )
    return ctx


def _blessing(blessing: Any) -> dict[str, Any] | None:
    """The blessing as a mapping: from a "Blessing" or "JSON" artifact, a Blessing, a mapping."""
    if not isinstance(blessing, Artifact):
        return as_blessing_dict(blessing)
    if blessing.type_name == "Blessing":
        return as_blessing_dict(blessing.load(Blessing))
    if blessing.type_name == "JSON":
        return as_blessing_dict(blessing.load(dict))
    raise RegistryError(
        f"blessing: a {blessing.type_name!r} artifact is not a blessing; pass evaluate's "
        "'blessing' output or a JSON mapping like {'blessed': true, 'reasons': []}"
    )


def _metrics(model: Artifact, evaluation: EvaluationReport | None) -> dict[str, Any] | None:
    """The candidate's evaluation metrics (overall, ``slices``) over the model's own."""
    if evaluation is None:
        return None  # the registry takes the model's ``metrics`` property, or the blessing's
    trained = model.properties.get("metrics")
    own = dict(trained) if isinstance(trained, Mapping) else {}
    overall = evaluation.candidate.overall
    slices = {name: dict(s.metrics) for name, s in evaluation.candidate.slices.items()}
    return {**overall, **{k: v for k, v in own.items() if k not in overall}, "slices": slices}


@component
def register(
    model: Artifact,
    blessing: Artifact | None = None,
    name: str = "model",
    require_blessing: bool = True,
    alias: str | None = None,
    evaluation: EvaluationReport | None = None,
) -> dict[str, Any]:
    """Register ``model`` as the next version of ``name`` if ``blessing`` blesses it.

    Args:
        model: the model artifact (``train``'s bundle, a scikit-learn "Model", a folder).
        blessing: the verdict: ``evaluate``'s "Blessing" output, or a JSON mapping
            (``{"blessed": bool, "reasons": [...]}``) made by a step of your own.
        name: the registered model's name.
        require_blessing: False registers without (or despite) a blessing.
        alias: also point this alias (e.g. ``"staging"``) at the new version.
        evaluation: ``evaluate``'s "Evaluation" output: its metrics, overall and per slice,
            are recorded with the version.

    Returns:
        ``registered``, ``name``, ``version`` (None when not registered), ``alias``,
        ``artifact_id``, ``run_id``, ``execution_id`` and the blessing's ``reasons``.

    Example:
        >>> @pipeline
        ... def training() -> None:
        ...     data = make_data()
        ...     model = train(data, label="y", estimator={"flavour": "lightgbm"})
        ...     checked = evaluate(model, data, label="y", model_name="census")
        ...     register(model, checked.blessing, name="census", alias="production",
        ...              evaluation=checked.evaluation)
    """
    ctx = _step_context()
    verdict = _blessing(blessing)
    outcome: dict[str, Any] = {"name": name, "alias": None, "reasons": []}
    outcome.update(run_id=ctx.run_id, execution_id=ctx.execution_id)
    with ModelRegistry.open(ctx.metadata_url or "") as registry:
        artifact_id = _artifact_id(registry.metadata, ctx.run_id, ctx.execution_id, model)
        outcome["artifact_id"] = artifact_id
        try:
            record = registry.register(
                name,
                artifact_id,
                blessing=verdict,
                require_blessing=require_blessing,
                metrics=_metrics(model, evaluation),
                run_id=ctx.run_id,
                execution_id=ctx.execution_id,
                alias=alias,
                reason=f"registered by run {ctx.run_id}, step {ctx.step!r}",
            )
        except NotBlessedError as exc:
            print(f"not registered: {exc}")  # goes to the step's log
            reasons = blessing_verdict(verdict)[1]
            return {**outcome, "registered": False, "version": None, "reasons": reasons}
    print(f"registered {record.ref} (artifact {artifact_id})")
    return {**outcome, "registered": True, "version": record.version, "alias": alias}
