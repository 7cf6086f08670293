"""The standard ``infra_validate`` step: serve the candidate for real before it may be deployed.

Written with the public API only (``conveyor.component``, ``Dataset``), like any user
component. The step hands the candidate bundle and the rows of one split of the examples to
:func:`conveyor.serving.infra_validation.validate_serving`, which registers the bundle in a
throw-away workspace, starts ``conveyor serve`` on it in a separate process, sends canary
requests built from the rows and compares every answer with the bundle's offline predictions.

A candidate that fails is a failure of the step: :class:`InfraValidationFailed` carries every
reason, the run fails and the steps after it (``register``) are skipped, as after
``validate``. Order ``register`` after it with ``conveyor.after``::

    checked = infra_validate(model, data, model_name="census")
    with after(checked):
        register(model, blessing, name="census", alias="production")

The step is not cached (``cache=False``): what it checks is the serving stack as installed
now, which is not one of its inputs.
"""

from __future__ import annotations

from typing import Literal

import pandas as pd

from conveyor import Dataset, component
from conveyor.modeling.bundle import ModelBundle
from conveyor.serving.infra_validation import (
    InfraValidation,
    InfraValidationFailed,
    validate_serving,
)

__all__ = ["InfraValidation", "InfraValidationFailed", "infra_validate"]


def _examples(data: Dataset, split: str) -> pd.DataFrame:
    """The split's rows; a Dataset without ``split=`` folders is used whole."""
    frame: pd.DataFrame = data.to_pandas(split=split) if data.splits() else data.to_pandas()
    return frame


def _log(result: InfraValidation) -> None:
    """The verdict in the step's log."""
    verdict = "passed" if result.blessed else "FAILED"
    latency = (
        f"latency p50 {result.latency_ms_p50} ms, p99 {result.latency_ms_p99} ms"
        if result.latency_ms_p99 is not None
        else "no latency measured"
    )
    print(
        f"infra validation {verdict}: {result.requests} {result.protocol} requests, "
        f"{result.rows} rows ({result.rows_skipped} skipped), {latency}, "
        f"server {result.server_version or 'unknown'}"
    )
    for reason in result.reasons:
        print(f"  failed: {reason}")


@component(cache=False)
def infra_validate(
    model: ModelBundle,
    examples: Dataset,
    split: str = "eval",
    model_name: str = "model",
    requests: int = 20,
    rows_per_request: int = 8,
    protocol: Literal["v2", "v1"] = "v2",
    timeout_s: float = 60.0,
    max_p99_ms: float | None = None,
    tolerance: float = 1e-9,
    skip_missing: bool = True,
    memory_budget: str = "2GB",
) -> InfraValidation:
    """Serve ``model`` in a separate ``conveyor serve`` process and check its answers.

    Args:
        model: the candidate bundle (``train``'s output).
        examples: a Dataset; the canary requests are built from its ``split`` sub-folder
            (the whole of it when it has no ``split=`` sub-folders), input columns only.
        split: the split to take the canary rows from.
        model_name: the name the candidate is served under (use the registered model's
            name, so the requests look like production's).
        requests: canary requests to send.
        rows_per_request: rows in each request.
        protocol: ``"v2"`` (Open Inference Protocol) or ``"v1"`` (TF Serving REST).
        timeout_s: how long the server may take to be ready.
        max_p99_ms: fail when the requests' 99th latency percentile is over this; None:
            measure only.
        tolerance: largest absolute difference allowed between a served and an offline
            probability or regression value; labels must be equal.
        skip_missing: leave out rows with a missing value outside float columns (no
            protocol can carry one); False sends them with ``null``.
        memory_budget: the server's ``--memory-budget``.

    Returns:
        The verdict ("InfraValidation" artifact): requests sent, latency percentiles, the
        server's version, and the first mismatches (none, since it passed).

    Raises:
        InfraValidationFailed: the server did not start (the reason quotes its output), a
            request failed, an answer differed from the offline prediction, or latency was
            over the limit. Nothing after the step runs.
        InfraValidationError: a bad setting, or examples the model cannot take.

    Example:
        >>> @pipeline
        ... def training() -> None:
        ...     data = make_data()
        ...     model = train(data, label="income", estimator={"flavour": "lightgbm"})
        ...     checked = infra_validate(model, data, model_name="census")
        ...     with after(checked):
        ...         register(model, name="census", require_blessing=False)
    """
    result = validate_serving(
        model.path,
        _examples(examples, split),
        model_name=model_name,
        requests=requests,
        rows_per_request=rows_per_request,
        protocol=protocol,
        timeout_s=timeout_s,
        max_p99_ms=max_p99_ms,
        tolerance=tolerance,
        skip_missing=skip_missing,
        memory_budget=memory_budget,
    )
    _log(result)
    if not result.blessed:
        reasons = "\n".join(f"- {reason}" for reason in result.reasons)
        raise InfraValidationFailed(
            f"infra validation of {model_name!r} failed; the model must not be deployed:\n"
            f"{reasons}",
            result=result,
        )
    return result
