"""The standard ``register`` step: a pipeline's model becomes a numbered version in the registry.

Written with the public API only (``conveyor.component`` and ``conveyor.current_step``), like
any user component. A step runs in a worker process without a workspace object, so it learns
from :func:`conveyor.current_step` the run and execution it belongs to and the URL of the
run's metadata database, finds the model's artifact record among the outputs of its own run
(the lineage edge: data -> train -> model -> version) and registers it through
:class:`conveyor.registry.ModelRegistry`.

An unblessed candidate is not an error of the pipeline: the step succeeds, registers nothing,
and says why in its output (``registered: false`` with the blessing's reasons) and its log.
A retried step returns the version its first attempt made instead of making another; a
cached step (same model, blessing and parameters) does not register again.
"""

from __future__ import annotations

from typing import Any

from conveyor import Model, StepContext, component, current_step
from conveyor.registry import ModelRegistry, NotBlessedError, RegistryError, blessing_verdict
from conveyor.store.metadata.store import MetadataStore

__all__ = ["register"]


def _artifact_id(store: MetadataStore, run_id: int, execution_id: int, model: Model) -> int:
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


@component
def register(
    model: Model,
    blessing: dict[str, Any] | None = None,
    name: str = "model",
    require_blessing: bool = True,
    alias: str | None = None,
) -> dict[str, Any]:
    """Register ``model`` as the next version of ``name`` if ``blessing`` blesses it.

    Args:
        model: the model artifact (any "Model": a scikit-learn estimator, a bundle folder).
        blessing: the evaluation's verdict (``{"blessed": bool, "reasons": [...]}``).
        name: the registered model's name.
        require_blessing: False registers without (or despite) a blessing.
        alias: also point this alias (e.g. ``"staging"``) at the new version.

    Returns:
        ``registered``, ``name``, ``version`` (None when not registered), ``alias``,
        ``artifact_id``, ``run_id``, ``execution_id`` and the blessing's ``reasons``.

    Example:
        >>> @pipeline
        ... def training(n: int = 100):
        ...     model = train(make_data(n))
        ...     register(model, evaluate(model), name="census", alias="staging")
    """
    ctx = _step_context()
    outcome: dict[str, Any] = {"name": name, "alias": None, "reasons": []}
    outcome.update(run_id=ctx.run_id, execution_id=ctx.execution_id)
    with ModelRegistry.open(ctx.metadata_url or "") as registry:
        artifact_id = _artifact_id(registry.metadata, ctx.run_id, ctx.execution_id, model)
        outcome["artifact_id"] = artifact_id
        try:
            record = registry.register(
                name,
                artifact_id,
                blessing=blessing,
                require_blessing=require_blessing,
                run_id=ctx.run_id,
                execution_id=ctx.execution_id,
                alias=alias,
                reason=f"registered by run {ctx.run_id}, step {ctx.step!r}",
            )
        except NotBlessedError as exc:
            print(f"not registered: {exc}")  # goes to the step's log
            reasons = blessing_verdict(blessing)[1]
            return {**outcome, "registered": False, "version": None, "reasons": reasons}
    print(f"registered {record.ref} (artifact {artifact_id})")
    return {**outcome, "registered": True, "version": record.version, "alias": alias}
