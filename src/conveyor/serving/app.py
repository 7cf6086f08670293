"""The serving HTTP app: Open Inference Protocol (V2) and TF Serving REST over the model bundles.

:func:`create_app` builds a Starlette (ASGI) app, run by uvicorn (see
:mod:`conveyor.serving.server`). Every registered model that has an alias is served (or the
``models`` subset); versions load on first use within the memory budget. Endpoints:

- Open Inference Protocol: ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``,
  ``/v2/models/{m}[/versions/{v}]``, ``.../ready``, ``POST .../infer`` (JSON or the binary
  tensor extension; no Content-Type needed);
- TF Serving: ``GET /v1/models/{m}[/versions/{v}|/labels/{l}][/metadata]``,
  ``POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict`` (``instances`` or ``inputs``);
- ``POST /v1/feedback``: ``{"request_id", "label"}`` or ``{"feedback": [...]}`` (needs
  ``Authorization: Bearer <token>`` when the app has a ``token``);
- ``GET /metrics``: Prometheus metrics (:mod:`conveyor.serving.metrics`).

Inputs are checked against the bundle's signature before predicting; a client's mistake is a
4xx ``{"error": ...}`` naming the field, never a 500. Every answer carries ``X-Model-Version``
and ``X-Request-Id`` (echoed, or generated); every prediction goes to the prediction log under
``<artifact_url>/predictions``, flushed when the app shuts down. Every request is counted in
the app's own Prometheus registry and logged as one JSON line on ``conveyor.serving.access``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.exceptions import ConveyorError, NotFoundError
from conveyor.modeling.bundle import LoadedBundle
from conveyor.modeling.bundle_errors import SignatureError
from conveyor.modeling.bundle_signature import Signature
from conveyor.registry import ModelRegistry
from conveyor.serving.auth import require_token
from conveyor.serving.feedback import FeedbackStore
from conveyor.serving.metrics import OpsMiddleware, ServingMetrics, tag
from conveyor.serving.models import ServedModels
from conveyor.serving.prediction_log import PredictionLog, PredictionRecord
from conveyor.serving.protocols import TabularBatch, tfserving, v2
from conveyor.serving.protocols.errors import ProtocolError, invalid, not_found
from conveyor.serving.router import Decision
from conveyor.store.workspace import Workspace

__all__ = ["DEFAULT_MAX_BODY_BYTES", "SERVER_NAME", "ServingState", "create_app"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 16 << 20
"""Largest request body accepted (16 MiB); a bigger one is a 413."""

SERVER_NAME = "conveyor"
REQUEST_ID = "X-Request-Id"
MODEL_VERSION = "X-Model-Version"

_V2_DATATYPES = {"int": "INT64", "float": "FP64", "bool": "BOOL"}


@dataclass
class ServingState:
    """What the endpoints share: the served models, the prediction log, the feedback store."""

    models: ServedModels
    log: PredictionLog
    feedback: FeedbackStore
    max_body_bytes: int
    metrics: ServingMetrics
    ready: bool = False


# ---------------------------------------------------------------------------- helpers


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) one over ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ProtocolError(413, f"the request body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProtocolError(413, f"the request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(document, allow_nan=True, default=_plain).encode("utf-8")
    return Response(body, status, headers=headers, media_type="application/json")


def _plain(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    return str(value)


def _error(exc: Exception, request_id: str | None) -> Response:
    """The ``{"error": ...}`` answer for an exception; only genuine server faults are 500."""
    if isinstance(exc, ProtocolError):
        status, message = exc.status, exc.message
    elif isinstance(exc, SignatureError):
        status, message = 400, str(exc)
    elif isinstance(exc, NotFoundError):
        status, message = 404, str(exc)
    else:
        logger.exception("request failed")
        status, message = 500, f"internal error: {exc}"
    headers = {REQUEST_ID: request_id} if request_id else None
    return _json({"error": message}, status, headers)


def _request_id(request: Request) -> str:
    return request.headers.get(REQUEST_ID) or uuid.uuid4().hex


def _version(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise not_found(f"version {text!r} is not a version number")
    return int(text)


def _frame(batch: TabularBatch, signature: Signature) -> pd.DataFrame:
    """The batch as the model's input frame: [rows, 1] columns flattened, then checked."""
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
        if spec.name in frame and not spec.nullable and frame[spec.name].isna().any():
            raise invalid(f"input '{spec.name}' holds NaN or null; the model does not allow it")
    return signature.check_input(frame)


def _predict(bundle: LoadedBundle, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Named outputs as the signature names them: label + probabilities, or prediction."""
    predictions = bundle.predict(frame)
    if bundle.signature.task == "regression" or bundle.signature.classes is None:
        return {"prediction": predictions}
    return {"label": predictions, "probabilities": bundle.predict_proba(frame)}


def _v2_datatype(kind: str) -> str:
    return _V2_DATATYPES.get(kind, "BYTES")


# ---------------------------------------------------------------------------- the app


class _Endpoints:
    """The request handlers over one :class:`ServingState`."""

    def __init__(self, state: ServingState) -> None:
        self.state = state

    # -- prediction core ------------------------------------------------------------------

    def _run(
        self,
        model: str,
        decision: Decision,
        batch: TabularBatch,
        request_id: str,
        protocol: str,
        started: float,
        arrived: dt.datetime,
    ) -> dict[str, np.ndarray]:
        """Check, predict and log one request (runs in a worker thread)."""
        with self.state.models.use(model, decision.version) as bundle:
            frame = _frame(batch, bundle.signature)
            outputs = _predict(bundle, frame)
        self.state.log.record(
            PredictionRecord(
                request_id=request_id,
                model=model,
                version=str(decision.version),
                route=decision.route_name,
                inputs={name: array for name, array in batch.columns.items()},
                outputs=outputs,
                latency_ms=(time.perf_counter() - started) * 1000.0,
                time=arrived,
                protocol=protocol,
            )
        )
        return outputs

    # -- Open Inference Protocol ----------------------------------------------------------

    async def v2_server(self, request: Request) -> Response:
        """``GET /v2``: server metadata."""
        from conveyor import __version__

        return _json(v2.server_metadata_response(SERVER_NAME, __version__))

    async def v2_live(self, request: Request) -> Response:
        """``GET /v2/health/live``."""
        return _json(v2.server_live_response(True))

    async def v2_ready(self, request: Request) -> Response:
        """``GET /v2/health/ready``: 200 once every deployed version was loaded."""
        ready = self.state.ready and self.state.models.all_loaded()
        return _json(v2.server_ready_response(ready), 200 if ready else 503)

    def _v2_decision(self, request: Request) -> tuple[str, Decision]:
        model = request.path_params["model"]
        version = request.path_params.get("version")
        if version is not None:
            _version(version)
        return model, self.state.models.resolve(model, version)

    async def v2_model(self, request: Request) -> Response:
        """``GET /v2/models/{m}[/versions/{v}]``: metadata, read without loading the model."""
        try:
            model, decision = self._v2_decision(request)
            tag(request, model, decision.version, decision.route_name)
            manifest = await run_in_threadpool(self.state.models.manifest, model, decision.version)
            signature = manifest.signature
            inputs = [
                v2.TensorMetadata(c.name, _v2_datatype(c.type), [-1]) for c in signature.inputs
            ]
            outputs = [
                v2.TensorMetadata(o.name, _v2_datatype(o.type), list(o.shape))
                for o in signature.outputs
            ]
            versions = [str(v) for v in self.state.models.router.versions(model)]
            body = v2.model_metadata_response(model, versions, "conveyor", inputs, outputs)
            return _json(body, headers={MODEL_VERSION: str(decision.version)})
        except Exception as exc:
            return _error(exc, None)

    async def v2_model_ready(self, request: Request) -> Response:
        """``GET /v2/models/{m}[/versions/{v}]/ready``."""
        try:
            model, decision = self._v2_decision(request)
        except Exception as exc:
            return _error(exc, None)
        tag(request, model, decision.version, decision.route_name)
        ready = self.state.models.ready(model, decision.version)
        return _json(
            v2.model_ready_response(model, ready),
            200 if ready else 503,
            {MODEL_VERSION: str(decision.version)},
        )

    async def v2_infer(self, request: Request) -> Response:
        """``POST /v2/models/{m}[/versions/{v}]/infer``."""
        started, arrived = time.perf_counter(), dt.datetime.now(dt.UTC)
        request_id = request.headers.get(REQUEST_ID)
        try:
            body = await _body(request, self.state.max_body_bytes)
            parsed = v2.parse_infer_request(body, dict(request.headers))
            request_id = parsed.id or request_id or uuid.uuid4().hex
            model, decision = self._v2_decision(request)
            tag(request, model, decision.version, decision.route_name)
            outputs = await run_in_threadpool(
                self._run,
                model,
                decision,
                parsed.to_tabular(),
                request_id,
                "v2",
                started,
                arrived,
            )
            encoded = v2.encode_infer_response(
                model,
                outputs,
                model_version=str(decision.version),
                request=parsed,
                request_id=request_id,
            )
        except Exception as exc:
            return _error(exc, request_id)
        headers = {**encoded.headers, REQUEST_ID: request_id, MODEL_VERSION: str(decision.version)}
        return Response(encoded.body, 200, headers=headers)

    # -- TF Serving -----------------------------------------------------------------------

    def _tf_target(self, path: str) -> tuple[str, Decision, str, str]:
        """Parse ``{m}[/versions/{v}|/labels/{l}][/metadata][:verb]``."""
        path, _, verb = path.partition(":")
        parts = [p for p in path.split("/") if p]
        suffix = ""
        if parts and parts[-1] == "metadata":
            suffix = parts.pop()
        if len(parts) == 1:
            ref = None
        elif len(parts) == 3 and parts[1] == "versions":
            ref = str(_version(parts[2]))
        elif len(parts) == 3 and parts[1] == "labels":
            ref = parts[2]
            if ref[:1].isdigit() or ref.lower() == "latest":
                raise not_found(f"label {ref!r} is not an alias")
        else:
            raise not_found(f"no such endpoint: /v1/models/{path}")
        model = parts[0]
        return model, self.state.models.resolve(model, ref), suffix, verb

    async def tf_get(self, request: Request) -> Response:
        """``GET /v1/models/{m}[/versions/{v}|/labels/{l}][/metadata]``: status or metadata."""
        try:
            model, decision, suffix, verb = self._tf_target(request.path_params["path"])
            tag(request, model, decision.version, decision.route_name)
            if verb:
                raise ProtocolError(405, f":{verb} needs POST")
            headers = {MODEL_VERSION: str(decision.version)}
            if suffix == "metadata":
                manifest = await run_in_threadpool(
                    self.state.models.manifest, model, decision.version
                )
                inputs = {
                    c.name: (tfserving.tf_dtype(_numpy_kind(c.type)), [-1])
                    for c in manifest.signature.inputs
                }
                outputs = {
                    o.name: (tfserving.tf_dtype(_numpy_kind(o.type)), list(o.shape))
                    for o in manifest.signature.outputs
                }
                body = tfserving.model_metadata_response(model, decision.version, inputs, outputs)
                return _json(body, headers=headers)
            ready = self.state.models.ready(model, decision.version)
            status = tfserving.ModelVersionStatus(
                decision.version,
                "AVAILABLE" if ready else "UNKNOWN",
                "OK" if ready else "UNAVAILABLE",
                "" if ready else "the version failed to load",
            )
            return _json(tfserving.model_status_response([status]), headers=headers)
        except Exception as exc:
            return _error(exc, None)

    async def tf_post(self, request: Request) -> Response:
        """``POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict``."""
        started, arrived = time.perf_counter(), dt.datetime.now(dt.UTC)
        request_id = _request_id(request)
        try:
            model, decision, suffix, verb = self._tf_target(request.path_params["path"])
            tag(request, model, decision.version, decision.route_name)
            if verb != "predict" or suffix:
                raise not_found(f"no such endpoint: POST /v1/models/{request.path_params['path']}")
            body = await _body(request, self.state.max_body_bytes)
            parsed = tfserving.parse_predict_request(body)
            outputs = await run_in_threadpool(
                self._run,
                model,
                decision,
                parsed.to_tabular(),
                request_id,
                "v1",
                started,
                arrived,
            )
            document = tfserving.encode_predict_response(outputs, parsed.format)
        except Exception as exc:
            return _error(exc, request_id)
        headers = {REQUEST_ID: request_id, MODEL_VERSION: str(decision.version)}
        return Response(tfserving.dumps(document), 200, headers, "application/json")

    # -- feedback -------------------------------------------------------------------------

    async def feedback(self, request: Request) -> Response:
        """``POST /v1/feedback``: ``{"request_id", "label"}`` or ``{"feedback": [...]}``."""
        try:
            body = await _body(request, self.state.max_body_bytes)
            try:
                document = json.loads(body)
            except (ValueError, UnicodeDecodeError) as exc:
                raise invalid(f"JSON parse error: {exc}") from None
            if not isinstance(document, dict):
                raise invalid("the feedback body must be a JSON object")
            items = document.get("feedback", [document])
            if not isinstance(items, list) or not items:
                raise invalid("'feedback' must be a non-empty list")
            for index, item in enumerate(items):
                if not isinstance(item, dict) or "request_id" not in item or "label" not in item:
                    raise invalid(f"feedback[{index}] needs 'request_id' and 'label'")
                if not isinstance(item["request_id"], str) or not item["request_id"]:
                    raise invalid(f"feedback[{index}]: 'request_id' must be a non-empty string")
                if set(item) - {"request_id", "label", "time"}:
                    extra = sorted(set(item) - {"request_id", "label", "time"})[0]
                    raise invalid(f"feedback[{index}]: unknown field '{extra}'")
            try:
                stored = await run_in_threadpool(self.state.feedback.add_many, items)
            except (ValueError, TypeError) as exc:
                raise invalid(str(exc)) from None
        except Exception as exc:
            return _error(exc, None)
        return _json({"stored": stored})


def _numpy_kind(kind: str) -> str:
    return {"int": "int64", "float": "float64", "bool": "bool"}.get(kind, "object")


def create_app(
    workspace: Workspace,
    *,
    models: list[str] | None = None,
    memory_budget_bytes: int,
    flush_interval_s: float = 1.0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    preload: bool = True,
    token: str | None = None,
    reload_interval_s: float | None = 2.0,
) -> Starlette:
    """The serving app over ``workspace``'s registry and artifact store.

    Args:
        workspace: The open workspace (kept open while the app serves).
        models: Serve only these model names (default: every registered model with an alias).
        memory_budget_bytes: Memory budget of the model cache.
        flush_interval_s: How often the prediction log is flushed.
        max_body_bytes: Largest request body accepted; bigger ones get a 413.
        preload: Load every deployed version at startup (readiness waits for it).
        token: When set, ``POST /v1/feedback`` (and any management endpoint) needs
            ``Authorization: Bearer <token>``; otherwise it is a 401 and nothing changes.
        reload_interval_s: How often the registry's aliases are re-read while serving (hot
            reload, :meth:`ServedModels.refresh`); None turns the watcher off.

    Raises:
        NotFoundError: A name in ``models`` is not registered or has no alias.
        ValueError: ``token`` is an empty string, or ``reload_interval_s`` is not positive.
    """
    if token is not None and not token:
        raise ValueError("the auth token must not be empty")
    if reload_interval_s is not None and not reload_interval_s > 0:
        raise ValueError(f"reload_interval_s must be > 0 or None, got {reload_interval_s!r}")
    served = ServedModels(
        ModelRegistry(workspace), models=models, memory_budget_bytes=memory_budget_bytes
    )
    root = workspace.settings.artifact_url.rstrip("/")
    log = PredictionLog(f"{root}/predictions", flush_interval_s=flush_interval_s)
    metrics = ServingMetrics(
        models_loaded=lambda: len(served.cache.loaded()),
        log_pending=lambda: log.pending,
        log_dropped=lambda: log.dropped,
    )
    state = ServingState(
        models=served,
        log=log,
        feedback=FeedbackStore(root),
        max_body_bytes=max_body_bytes,
        metrics=metrics,
    )
    endpoints = _Endpoints(state)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if preload:
            await run_in_threadpool(served.preload)
        state.ready = True
        watcher = (
            asyncio.create_task(_watch(served, reload_interval_s))
            if reload_interval_s is not None
            else None
        )
        try:
            yield
        finally:
            state.ready = False
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await run_in_threadpool(state.log.close)

    get, post = ["GET"], ["POST"]
    handlers: list[tuple[str, Callable[[Request], Any], list[str]]] = [
        ("/v2", endpoints.v2_server, get),
        ("/v2/health/live", endpoints.v2_live, get),
        ("/v2/health/ready", endpoints.v2_ready, get),
        ("/v2/models/{model}", endpoints.v2_model, get),
        ("/v2/models/{model}/ready", endpoints.v2_model_ready, get),
        ("/v2/models/{model}/infer", endpoints.v2_infer, post),
        ("/v2/models/{model}/versions/{version}", endpoints.v2_model, get),
        ("/v2/models/{model}/versions/{version}/ready", endpoints.v2_model_ready, get),
        ("/v2/models/{model}/versions/{version}/infer", endpoints.v2_infer, post),
        ("/v1/feedback", require_token(endpoints.feedback, token), post),
        ("/metrics", metrics.endpoint, get),
        ("/v1/models/{path:path}", endpoints.tf_get, get),
        ("/v1/models/{path:path}", endpoints.tf_post, post),
    ]
    app = Starlette(
        routes=[Route(path, handler, methods=methods) for path, handler, methods in handlers],
        lifespan=lifespan,
        middleware=[Middleware(OpsMiddleware, metrics=metrics, request_id_header=REQUEST_ID)],
        exception_handlers={ConveyorError: _conveyor_error, 404: _not_found, 405: _not_allowed},
    )
    app.state.serving = state
    return app


async def _watch(served: ServedModels, interval_s: float) -> None:
    """Hot reload: re-read the registry's aliases every ``interval_s`` seconds."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await run_in_threadpool(served.refresh)
        except Exception:
            logger.exception("hot reload: reading the registry failed")


async def _conveyor_error(request: Request, exc: Exception) -> Response:
    return _error(exc, request.headers.get(REQUEST_ID))


async def _not_found(request: Request, exc: Exception) -> Response:
    return _json({"error": f"no such endpoint: {request.method} {request.url.path}"}, 404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return _json({"error": f"{request.method} is not allowed on {request.url.path}"}, 405)
