"""Operations for the serving app: Prometheus metrics and the structured access log.

:class:`ServingMetrics` owns a per-app :class:`~prometheus_client.CollectorRegistry` (never the
process-global one, so several apps in one process do not clash) with:

- ``conveyor_requests_total{model,version,route,protocol,code}``: every answered request;
- ``conveyor_errors_total{model,version,route,protocol,code}``: those answered with a 4xx or 5xx;
- ``conveyor_request_latency_seconds{model,version,route}``: latency of requests that resolved
  a served model (predictions and metadata);
- ``conveyor_models_loaded``, ``conveyor_prediction_log_pending_records`` and
  ``conveyor_prediction_log_dropped_records``: gauges read when scraped.

:class:`OpsMiddleware` is a pure ASGI middleware that times each HTTP request, counts it, and
writes one JSON line per request to the access log (:mod:`conveyor.serving.access_log`). Handlers
name the model, version and route that answered with :func:`tag`; requests that did not resolve
a served model (health, feedback, unknown names) get empty labels, so client-chosen names never
become label values.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.serving import access_log
from conveyor.serving.access_log import ACCESS_LOGGER, AccessLine

__all__ = ["ACCESS_LOGGER", "OpsMiddleware", "ServingMetrics", "tag"]


_TAG = "conveyor.labels"
_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def tag(request: Request, model: str, version: int | str, route: str) -> None:
    """Record which model, version and route answer ``request`` (for metrics and the log)."""
    request.scope[_TAG] = (model, str(version), route)


class ServingMetrics:
    """The app's Prometheus metrics in their own registry.

    Args:
        models_loaded: Called at scrape time: how many model versions are loaded.
        log_pending: Called at scrape time: prediction-log records waiting to be flushed.
        log_dropped: Called at scrape time: prediction-log records dropped so far.
    """

    def __init__(
        self,
        *,
        models_loaded: Callable[[], float],
        log_pending: Callable[[], float],
        log_dropped: Callable[[], float],
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["model", "version", "route", "protocol", "code"]
        self.requests = Counter(
            "conveyor_requests",
            "HTTP requests answered, by model, version, route, protocol and status code.",
            labels,
            registry=self.registry,
        )
        self.errors = Counter(
            "conveyor_errors",
            "HTTP requests answered with a 4xx or 5xx status.",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "conveyor_request_latency_seconds",
            "Latency of requests that resolved a served model, in seconds.",
            ["model", "version", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        gauges = [
            ("conveyor_models_loaded", "Model versions loaded in this worker.", models_loaded),
            (
                "conveyor_prediction_log_pending_records",
                "Prediction-log records buffered, not yet flushed.",
                log_pending,
            ),
            (
                "conveyor_prediction_log_dropped_records",
                "Prediction-log records dropped because the buffer was full.",
                log_dropped,
            ),
        ]
        for name, description, read in gauges:
            Gauge(name, description, registry=self.registry).set_function(read)

    def observe(
        self, model: str, version: str, route: str, protocol: str, code: int, seconds: float
    ) -> None:
        """Count one answered request."""
        values = (model, version, route, protocol, str(code))
        self.requests.labels(*values).inc()
        if code >= 400:
            self.errors.labels(*values).inc()
        if model:
            self.latency.labels(model, version, route).observe(seconds)

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)

    async def endpoint(self, request: Request) -> Response:
        """``GET /metrics``."""
        return Response(self.exposition(), 200, media_type=CONTENT_TYPE_LATEST)


def _protocol(path: str) -> str:
    if path == "/v2" or path.startswith("/v2/"):
        return "v2"
    if path.startswith("/v1/"):
        return "v1"
    return "http"


class OpsMiddleware:
    """Times, counts and access-logs every HTTP request (pure ASGI; streams untouched)."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics, request_id_header: str) -> None:
        self.app = app
        self.metrics = metrics
        self.request_id_header = request_id_header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        request_id = ""

        async def send_wrapper(message: Message) -> None:
            nonlocal status, request_id
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for key, value in message.get("headers", ()):
                    if key.lower() == self.request_id_header:
                        request_id = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self._done(scope, status, request_id, time.perf_counter() - started)

    def _done(self, scope: Scope, status: int, request_id: str, seconds: float) -> None:
        model, version, route = scope.get(_TAG, ("", "", ""))
        path: str = scope.get("path", "")
        protocol = _protocol(path)
        self.metrics.observe(model, version, route, protocol, status, seconds)
        if access_log.enabled():
            if not request_id:
                for key, value in scope.get("headers", ()):
                    if key.lower() == self.request_id_header:
                        request_id = value.decode("latin-1")
            access_log.emit(
                AccessLine(
                    scope.get("method", ""),
                    path,
                    status,
                    seconds,
                    request_id or None,
                    model or None,
                    version or None,
                    route or None,
                    protocol,
                )
            )
