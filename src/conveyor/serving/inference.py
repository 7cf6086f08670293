"""The prediction path shared by every protocol: check, predict, log, then shadow.

The endpoints parse a request into a :class:`~conveyor.serving.protocols.TabularBatch`, resolve
the :class:`~conveyor.serving.router.Decision` that answers it, and ``await``
:meth:`Inference.answer` with both as one :class:`Call`. The call goes through a
:class:`~conveyor.serving.batching.MicroBatcher` (one lane per model version and verb), which:

1. pins the decided version's bundle in the model cache (loading it if needed, never on the
   event loop);
2. checks the verb against the model's task (``:classify`` needs a classifier, ``:regress`` a
   regression model) and the call's inputs against the bundle's signature, each call on its
   own, as 400s naming the task or the input: plain numeric inputs with numpy only
   (:mod:`conveyor.serving.fast_path`), anything else through a pandas frame
   (:func:`input_frame`);
3. predicts the calls that queued together in one model call (:func:`model_outputs`:
   ``label`` + ``probabilities``, or ``prediction``) and splits the outputs back per call.

Then :meth:`Inference.answer` records the answer in the prediction log (O(1), no I/O on this
path) and hands the call to :class:`Shadows` when the decision lists shadow versions.

Shadows run on one background thread of their own, after the main answer is computed, so
they never delay or change it. Each shadow answer is logged with the same request id, the
shadow's version and the route ``"<route>:shadow"``; a shadow failure is logged on this
module's logger and counted in ``conveyor_shadow_predictions_total{outcome="error"}``, never
returned to the client. At most ``max_pending`` shadow calls wait; beyond that they are
dropped (``outcome="dropped"``) rather than let a slow shadow grow memory without bound.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, cast

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry, Counter

from conveyor.modeling.bundle_signature import Signature
from conveyor.serving.batching import DEFAULT_MAX_BATCH_ROWS, MicroBatcher
from conveyor.serving.fast_path import ArrayModels, checked_columns, model_outputs
from conveyor.serving.models import ServedModels
from conveyor.serving.prediction_log import PredictionLog, PredictionRecord
from conveyor.serving.protocols import TabularBatch
from conveyor.serving.protocols.errors import invalid
from conveyor.serving.router import Decision

__all__ = [
    "SHADOW_SUFFIX",
    "Answer",
    "Call",
    "Inference",
    "Shadows",
    "Verb",
    "check_verb",
    "input_frame",
    "model_outputs",
]

logger = logging.getLogger(__name__)

Verb = Literal["predict", "classify", "regress"]

SHADOW_SUFFIX = ":shadow"
"""Appended to the route of a shadow answer in the prediction log (``production:shadow``)."""


@dataclass(frozen=True, slots=True)
class Call:
    """One prediction request as the endpoints hand it over.

    Attributes:
        model: The model name.
        decision: The version that answers, its route and its shadow versions.
        batch: The parsed inputs (one column per input, one row per example).
        request_id: The id the answer and the prediction log carry.
        protocol: ``"v1"`` (TF Serving) or ``"v2"`` (Open Inference Protocol).
        started: ``time.perf_counter()`` when the request arrived (for the latency).
        arrived: When the request arrived, in UTC.
        verb: ``predict``, ``classify`` or ``regress`` (the last two check the task).
    """

    model: str
    decision: Decision
    batch: TabularBatch
    request_id: str
    protocol: str
    started: float
    arrived: dt.datetime
    verb: Verb = "predict"


@dataclass(frozen=True, slots=True)
class Answer:
    """The named outputs of one call and the signature of the version that computed them."""

    outputs: dict[str, np.ndarray]
    signature: Signature


def input_frame(batch: TabularBatch, signature: Signature) -> pd.DataFrame:
    """The batch as the model's input frame: [rows, 1] columns flattened, then checked.

    Raises:
        ProtocolError: 400 naming an input with more than one value per row, or holding
            NaN/null (where the signature forbids it) or an infinite number.
        SignatureError: An input is unknown, missing or of the wrong type.
    """
    columns: dict[str, np.ndarray] = {}
    for name, array in batch.columns.items():
        if array.ndim == 2 and array.shape[1] == 1:
            array = array.reshape(-1)
        if array.ndim != 1:
            raise invalid(
                f"input '{name}' has shape {list(array.shape)}; the model takes one value per "
                "row (shape [rows] or [rows, 1])"
            )
        columns[name] = array
    frame = pd.DataFrame(columns)
    for spec in signature.inputs:  # NaN reaches floats only through JSON tokens: name it
        if spec.name not in frame:
            continue
        values = frame[spec.name]
        if not spec.nullable and values.isna().any():
            raise invalid(f"input '{spec.name}' holds NaN or null; the model does not allow it")
        if values.dtype.kind == "f" and np.isinf(values.to_numpy()).any():
            raise invalid(
                f"input '{spec.name}' holds Infinity; the model takes finite numbers only"
            )
    return signature.check_input(frame)


def check_verb(model: str, version: int, signature: Signature, verb: Verb) -> None:
    """Refuse ``:classify`` on a model without classes and ``:regress`` on a non-regressor.

    Raises:
        ProtocolError: 400 naming the model's task and the verbs that fit it.
    """
    if verb == "predict":
        return
    task = signature.task or "untyped"
    classifier = signature.task != "regression" and signature.classes is not None
    if verb == "classify" and not classifier:
        raise invalid(
            f"model '{model}' version {version} is a {task} model, not a classifier: "
            "use :regress or :predict"
        )
    if verb == "regress" and signature.task != "regression":
        raise invalid(
            f"model '{model}' version {version} is a {task} model, not a regression model: "
            f"use {':classify or :predict' if classifier else ':predict'}"
        )


def _record(
    call: Call, version: int, route: str, outputs: dict[str, np.ndarray], latency_ms: float
) -> PredictionRecord:
    return PredictionRecord(
        request_id=call.request_id,
        model=call.model,
        version=str(version),
        route=route,
        inputs=dict(call.batch.columns),
        outputs=outputs,
        latency_ms=latency_ms,
        time=call.arrived,
        protocol=call.protocol,
    )


class _Key(NamedTuple):
    """What a batch shares: calls for one model version and verb."""

    model: str
    version: int
    verb: Verb


class _CheckedFrame(dict[str, np.ndarray]):
    """A call's columns with the frame the general check built from them, so that a call
    predicted alone is not turned into a DataFrame twice."""

    frame: pd.DataFrame


class Inference:
    """Check, predict and log calls, concurrent ones in shared model calls; shadows go to
    :attr:`shadows`.

    :meth:`answer` hands each call to a :class:`~conveyor.serving.batching.MicroBatcher`
    keyed by model, version and verb. Each call is checked on its own (numeric inputs by
    :func:`~conveyor.serving.fast_path.checked_columns`, anything else by :func:`input_frame`),
    so a bad input is a 400 for that call only; the calls that queued together are then
    predicted in one model call (numeric scikit-learn bundles on one array, see
    :class:`~conveyor.serving.fast_path.ArrayModels`; others on one frame) and each gets its
    own rows back, is logged with them and handed to the shadows.

    Args:
        models: The served models (routing and the model cache).
        log: The prediction log every answer goes to.
        registry: The app's Prometheus registry (the shadow counter is added to it).
        max_pending_shadows: Shadow calls allowed to wait before new ones are dropped.
        max_batch_rows: Most rows predicted in one model call.
    """

    def __init__(
        self,
        models: ServedModels,
        log: PredictionLog,
        registry: CollectorRegistry,
        *,
        max_pending_shadows: int = 1000,
        max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
    ) -> None:
        self.models = models
        self.log = log
        self.shadows = Shadows(models, log, registry, max_pending=max_pending_shadows)
        self.arrays = ArrayModels()
        self.batcher = MicroBatcher(
            self._predict,
            check=self._check,
            max_batch_rows=max_batch_rows,
            inline_ok=self._loaded,
        )
        self._signatures: dict[tuple[str, int], Signature] = {}

    async def answer(self, call: Call) -> Answer:
        """Answer one call (on the event loop; the work runs where the batcher decides).

        Raises:
            ProtocolError: 400 for a verb the model's task does not fit, or an input that
                does not fit the signature; 404 for an unknown version.
            SignatureError: An input is unknown, missing or of the wrong type.
        """
        version = call.decision.version
        key = _Key(call.model, version, call.verb)
        outputs = await self.batcher.submit(key, call.batch.columns, call.batch.num_rows)
        latency_ms = (time.perf_counter() - call.started) * 1000.0
        self.log.record(_record(call, version, call.decision.route_name, outputs, latency_ms))
        if call.decision.shadows:
            self.shadows.submit(call)
        return Answer(outputs, self._signatures[(call.model, version)])

    def _loaded(self, key: Hashable) -> bool:
        """Whether the key's version is loaded: only then may a batch run on the event loop."""
        model, version, _ = cast(_Key, key)
        return self.models.cache.ready([(model, version)])

    def _check(self, key: Hashable, columns: Mapping[str, np.ndarray], rows: int) -> Any:
        """One call's inputs checked against its version's signature."""
        model, version, verb = cast(_Key, key)
        with self.models.use(model, version) as bundle:
            signature = bundle.signature
        self._signatures[(model, version)] = signature
        check_verb(model, version, signature, verb)
        fast = checked_columns(signature, columns)
        if fast is not None:
            return fast
        checked = _CheckedFrame(columns)
        checked.frame = input_frame(TabularBatch(dict(columns), rows), signature)
        return checked

    def _predict(
        self, key: Hashable, columns: Mapping[str, np.ndarray], rows: int
    ) -> dict[str, np.ndarray]:
        """Outputs for the checked (and maybe concatenated) columns of a batch."""
        model, version, _ = cast(_Key, key)
        with self.models.use(model, version) as bundle:
            if isinstance(columns, _CheckedFrame):
                return model_outputs(bundle, columns.frame)
            fast = self.arrays.get(bundle)
            if fast is not None and fast.accepts(columns):
                return fast.outputs(columns)
            frame = input_frame(TabularBatch(dict(columns), rows), bundle.signature)
            return model_outputs(bundle, frame)

    def close(self, timeout: float = 10.0) -> None:
        """Finish the batches in flight; let the waiting shadow calls finish (up to
        ``timeout`` seconds), then stop."""
        self.batcher.close()
        self.shadows.close(timeout)


class Shadows:
    """Runs shadow versions on a background thread and logs their answers.

    Args:
        models: The served models.
        log: The prediction log.
        registry: Where ``conveyor_shadow_predictions_total`` is registered.
        max_pending: Shadow calls allowed to wait; more are dropped and counted.
    """

    def __init__(
        self,
        models: ServedModels,
        log: PredictionLog,
        registry: CollectorRegistry,
        *,
        max_pending: int = 1000,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self.models = models
        self.log = log
        self.max_pending = max_pending
        self.counter = Counter(
            "conveyor_shadow_predictions",
            "Shadow predictions by model, shadow version, route and outcome (ok, error, dropped).",
            ["model", "version", "route", "outcome"],
            registry=registry,
        )
        # One thread: shadows are extra work and must not compete with answers for cores.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="conveyor-shadow")
        self._idle = threading.Condition()
        self._pending = 0
        self._closed = False

    @property
    def pending(self) -> int:
        """Shadow calls submitted and not finished yet."""
        return self._pending

    def submit(self, call: Call) -> None:
        """Queue one shadow prediction per shadow version of ``call``; never blocks."""
        for version in call.decision.shadows:
            with self._idle:
                accepted = not self._closed and self._pending < self.max_pending
                if accepted:
                    self._pending += 1
            if not accepted:
                self._count(call, version, "dropped")
                continue
            self._executor.submit(self._run, call, version)

    def _run(self, call: Call, version: int) -> None:
        started = time.perf_counter()
        try:
            with self.models.use(call.model, version) as bundle:
                outputs = model_outputs(bundle, input_frame(call.batch, bundle.signature))
        except Exception as exc:
            logger.warning(
                "shadow %s version %d failed on request %s: %s",
                call.model,
                version,
                call.request_id,
                exc,
            )
            self._count(call, version, "error")
        else:
            route = call.decision.route_name + SHADOW_SUFFIX
            latency_ms = (time.perf_counter() - started) * 1000.0
            self.log.record(_record(call, version, route, outputs, latency_ms))
            self._count(call, version, "ok")
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def _count(self, call: Call, version: int, outcome: str) -> None:
        self.counter.labels(call.model, str(version), call.decision.route_name, outcome).inc()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no shadow call is queued or running; False if ``timeout`` s passed."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new shadow calls, wait up to ``timeout`` s for the queued ones, stop."""
        with self._idle:
            self._closed = True
        if not self.wait_idle(timeout):
            logger.warning("%d shadow calls were still waiting at shutdown: dropped", self._pending)
        self._executor.shutdown(wait=False, cancel_futures=True)
