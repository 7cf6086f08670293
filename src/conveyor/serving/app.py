"""The serving HTTP app: Open Inference Protocol (V2) and TF Serving REST over the model bundles.

:func:`create_app` builds a Starlette (ASGI) app, run by uvicorn (see
:mod:`conveyor.serving.server`). Every registered model that has an alias is served (or the
``models`` subset); versions load on first use within the memory budget. Endpoints:

- Open Inference Protocol (:mod:`conveyor.serving.endpoints_v2`): ``GET /v2``,
  ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{m}[/versions/{v}]``, ``.../ready``,
  ``POST .../infer`` (JSON or the binary tensor extension; no Content-Type needed);
- TF Serving (:mod:`conveyor.serving.endpoints_tfserving`):
  ``GET /v1/models/{m}[/versions/{v}|/labels/{l}][/metadata]``,
  ``POST /v1/models/{m}[/versions/{v}|/labels/{l}]:(predict|classify|regress)``;
- ``POST /v1/feedback``: ``{"request_id", "label"}`` or ``{"feedback": [...]}`` (needs
  ``Authorization: Bearer <token>`` when the app has a ``token``);
- ``GET /metrics``: Prometheus metrics (:mod:`conveyor.serving.metrics`);
- ``GET /openapi.json``: the OpenAPI 3.1 description of all of the above
  (:mod:`conveyor.serving.openapi`).

Routing: a request is routed by the registry's aliases and traffic splits
(:meth:`ServedModels.resolve`); the value of the sticky header (``X-Sticky-Key`` by default)
keeps one caller on one version of a weighted route. Inputs are checked against the bundle's
signature before predicting; a client's mistake is a 4xx ``{"error": ...}`` naming the field,
never a 500. Every answer carries ``X-Model-Version``, ``X-Model-Route`` and ``X-Request-Id``
(echoed, or generated); every prediction (and every shadow answer) goes to the prediction log
under ``<artifact_url>/predictions``, flushed when the app shuts down. Every request is counted
in the app's own Prometheus registry and written as one JSON line to the access log
(:mod:`conveyor.serving.access_log`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.exceptions import ConveyorError
from conveyor.registry import ModelRegistry
from conveyor.serving import access_log
from conveyor.serving.auth import Handler, require_token
from conveyor.serving.endpoints_tfserving import TFServingEndpoints
from conveyor.serving.endpoints_v2 import V2Endpoints
from conveyor.serving.feedback import FeedbackStore
from conveyor.serving.grpc_server import start_grpc_server
from conveyor.serving.http import (
    DEFAULT_STICKY_HEADER,
    REQUEST_ID,
    SERVER_NAME,
    error_response,
    json_response,
    read_body,
)
from conveyor.serving.inference import Inference
from conveyor.serving.metrics import OpsMiddleware, ServingMetrics
from conveyor.serving.metrics_multiprocess import aggregated_endpoint
from conveyor.serving.models import ServedModels
from conveyor.serving.openapi import openapi_document
from conveyor.serving.prediction_log import PredictionLog, prediction_log_url
from conveyor.serving.protocols.errors import invalid
from conveyor.serving.state import ServingState
from conveyor.store.workspace import Workspace

__all__ = ["DEFAULT_MAX_BODY_BYTES", "SERVER_NAME", "ServingState", "create_app"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 16 << 20
"""Largest request body accepted (16 MiB); a bigger one is a 413."""
GRPC_GRACE_S = 5.0
"""How long shutdown lets gRPC calls in flight finish."""

_FEEDBACK_FIELDS = {"request_id", "label", "time"}


def _feedback_items(body: bytes) -> list[dict[str, Any]]:
    """The feedback items of a ``POST /v1/feedback`` body, checked.

    Raises:
        ProtocolError: 400 naming the item and field at fault.
    """
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
        if set(item) - _FEEDBACK_FIELDS:
            extra = sorted(set(item) - _FEEDBACK_FIELDS)[0]
            raise invalid(f"feedback[{index}]: unknown field '{extra}'")
        if item.get("time") is not None and not isinstance(item["time"], str):
            raise invalid(
                f"feedback[{index}]: 'time' must be an ISO 8601 date-time string such as "
                "'2024-05-01T12:00:00Z'"
            )
    return items


def _feedback_endpoint(state: ServingState) -> Handler:
    async def feedback(request: Request) -> Response:
        """``POST /v1/feedback``: ``{"request_id", "label"}`` or ``{"feedback": [...]}``."""
        try:
            items = _feedback_items(await read_body(request, state.max_body_bytes))
            try:
                stored = await run_in_threadpool(state.feedback.add_many, items)
            except (ValueError, TypeError) as exc:
                raise invalid(str(exc)) from None
        except Exception as exc:
            return error_response(exc, None)
        return json_response({"stored": stored})

    return feedback


def _openapi_endpoint(sticky_header: str) -> Handler:
    from conveyor import __version__

    body = json.dumps(openapi_document(__version__, sticky_header=sticky_header)).encode()

    async def openapi(request: Request) -> Response:
        """``GET /openapi.json``."""
        return Response(body, 200, media_type="application/json")

    return openapi


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
    sticky_header: str = DEFAULT_STICKY_HEADER,
    close_workspace: bool = False,
    metrics_dir: str | None = None,
    grpc_port: int | None = None,
    grpc_host: str = "127.0.0.1",
    grpc_reuse_port: bool = False,
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
        sticky_header: The request header whose value is the sticky routing key.
        close_workspace: Close ``workspace`` when the app shuts down (a worker process that
            opened it for this app alone).
        metrics_dir: prometheus_client's multi-process folder (``PROMETHEUS_MULTIPROC_DIR``,
            set before the process started): ``/metrics`` then sums the counters and
            histograms of every worker process (:mod:`conveyor.serving.metrics_multiprocess`).
        grpc_port: Also serve the Open Inference Protocol over gRPC on this port
            (:mod:`conveyor.serving.grpc_server`), started and stopped with the app.
        grpc_host: The address the gRPC server listens on.
        grpc_reuse_port: Share the gRPC port with other processes (``--workers N``).

    Raises:
        NotFoundError: A name in ``models`` is not registered or has no alias.
        ValueError: ``token`` or ``sticky_header`` is empty, or ``reload_interval_s`` is not
            positive.
    """
    if token is not None and not token:
        raise ValueError("the auth token must not be empty")
    if reload_interval_s is not None and not reload_interval_s > 0:
        raise ValueError(f"reload_interval_s must be > 0 or None, got {reload_interval_s!r}")
    if not sticky_header.strip():
        raise ValueError("the sticky header name must not be empty")
    state = _state(
        workspace, models, memory_budget_bytes, flush_interval_s, max_body_bytes, sticky_header
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if preload:
            await run_in_threadpool(state.models.preload)
        grpc_server = (
            await start_grpc_server(state, grpc_host, grpc_port, reuse_port=grpc_reuse_port)
            if grpc_port is not None
            else None
        )
        _freeze_startup_objects()
        state.ready = True
        watcher = (
            asyncio.create_task(_watch(state.models, reload_interval_s))
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
            if grpc_server is not None:  # calls in flight finish before the log is flushed
                await grpc_server.stop(GRPC_GRACE_S)
            await run_in_threadpool(_shut_down, state, workspace if close_workspace else None)
            gc.unfreeze()  # a process that goes on (tests, an embedding app) may collect them

    app = Starlette(
        routes=_routes(state, token, metrics_dir),
        lifespan=lifespan,
        middleware=[Middleware(OpsMiddleware, metrics=state.metrics, request_id_header=REQUEST_ID)],
        exception_handlers={ConveyorError: _conveyor_error, 404: _not_found, 405: _not_allowed},
    )
    app.state.serving = state
    return app


def _state(
    workspace: Workspace,
    models: list[str] | None,
    memory_budget_bytes: int,
    flush_interval_s: float,
    max_body_bytes: int,
    sticky_header: str,
) -> ServingState:
    served = ServedModels(
        ModelRegistry(workspace), models=models, memory_budget_bytes=memory_budget_bytes
    )
    root = workspace.settings.artifact_url.rstrip("/")
    log = PredictionLog(prediction_log_url(root), flush_interval_s=flush_interval_s)
    metrics = ServingMetrics(
        models_loaded=lambda: len(served.cache.loaded()),
        log_pending=lambda: log.pending,
        log_dropped=lambda: log.dropped,
    )
    return ServingState(
        models=served,
        log=log,
        feedback=FeedbackStore(root),
        max_body_bytes=max_body_bytes,
        metrics=metrics,
        inference=Inference(served, log, metrics.registry),
        sticky_header=sticky_header.strip(),
    )


def _shut_down(state: ServingState, workspace: Workspace | None) -> None:
    """Finish the queued shadow calls, flush the prediction log, close what the app owns."""
    try:
        state.inference.close()
        state.log.close()
    finally:
        access_log.flush()
        if workspace is not None:
            workspace.close()


def _routes(state: ServingState, token: str | None, metrics_dir: str | None) -> list[Route]:
    v2, tf = V2Endpoints(state), TFServingEndpoints(state)
    metrics: Handler = state.metrics.endpoint
    if metrics_dir is not None:
        metrics = aggregated_endpoint(state.metrics, metrics_dir)
    get, post = ["GET"], ["POST"]
    handlers: list[tuple[str, Callable[[Request], Any], list[str]]] = [
        ("/v2", v2.server, get),
        ("/v2/health/live", v2.live, get),
        ("/v2/health/ready", v2.ready, get),
        ("/v2/models/{model}", v2.model, get),
        ("/v2/models/{model}/ready", v2.model_ready, get),
        ("/v2/models/{model}/infer", v2.infer, post),
        ("/v2/models/{model}/versions/{version}", v2.model, get),
        ("/v2/models/{model}/versions/{version}/ready", v2.model_ready, get),
        ("/v2/models/{model}/versions/{version}/infer", v2.infer, post),
        ("/v1/feedback", require_token(_feedback_endpoint(state), token), post),
        ("/metrics", metrics, get),
        ("/openapi.json", _openapi_endpoint(state.sticky_header), get),
        ("/v1/models/{path:path}", tf.get, get),
        ("/v1/models/{path:path}", tf.post, post),
    ]
    return [Route(path, handler, methods=methods) for path, handler, methods in handlers]


def _freeze_startup_objects() -> None:
    """Move what startup allocated (modules, loaded models: ~200,000 objects) out of the
    garbage collector's reach. A full collection walks every tracked object and holds the
    GIL meanwhile: 110-270 ms here, every few seconds under load (the prediction log's
    buffered records keep promoting objects), which was the whole p99 at 16 connections.
    Frozen, a full collection walks only what serving allocated: ~2 ms."""
    gc.collect()
    gc.freeze()


async def _watch(served: ServedModels, interval_s: float) -> None:
    """Hot reload: every ``interval_s`` seconds, re-read the registry's aliases if it changed."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await run_in_threadpool(served.refresh_if_changed)
        except Exception:
            logger.exception("hot reload: reading the registry failed")


async def _conveyor_error(request: Request, exc: Exception) -> Response:
    return error_response(exc, request.headers.get(REQUEST_ID))


async def _not_found(request: Request, exc: Exception) -> Response:
    return json_response({"error": f"no such endpoint: {request.method} {request.url.path}"}, 404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return json_response({"error": f"{request.method} is not allowed on {request.url.path}"}, 405)
