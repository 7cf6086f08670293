"""The Open Inference Protocol over gRPC: ``inference.GRPCInferenceService`` beside the REST app.

``conveyor serve --grpc-port N`` (or ``create_app(..., grpc_port=N)``) starts a ``grpc.aio``
server on the app's event loop when the app starts and stops it, letting calls in flight
finish, before the app flushes its prediction log. Every RPC answers from the same
:class:`~conveyor.serving.state.ServingState` as the REST endpoints: the same routing (the
sticky header is read from the call's metadata), input checks, micro-batching, prediction log
(``protocol = "grpc"``), shadows, Prometheus metrics and access log.

- ``ServerLive``, ``ServerReady`` (every deployed version loaded), ``ServerMetadata``;
- ``ModelReady`` and ``ModelMetadata`` (metadata read without loading the model); an empty
  ``version`` asks the model's routing, like the REST URLs without ``/versions/{v}``;
- ``ModelInfer`` with typed ``contents`` or ``raw_input_contents`` (the answer uses the same
  layout), requested outputs, and the request ``id`` echoed (else ``x-request-id`` metadata,
  else a new one).

Errors are gRPC statuses with the same message as the REST ``{"error": ...}``:
``INVALID_ARGUMENT`` for a client's mistake (the REST 400), ``NOT_FOUND`` (404),
``RESOURCE_EXHAUSTED`` for a message over the body limit (413, enforced by gRPC itself),
``UNAVAILABLE`` (503) and ``INTERNAL`` only for a genuine server fault. Initial metadata
carries ``x-request-id``, ``x-model-version`` and ``x-model-route``. Metrics and the access
log count a call with ``protocol="grpc"`` and the HTTP status its outcome maps to, so one
dashboard covers both transports.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc import aio
from starlette.concurrency import run_in_threadpool

from conveyor.serving import access_log
from conveyor.serving.access_log import AccessLine
from conveyor.serving.endpoints_v2 import tensor_metadata
from conveyor.serving.http import SERVER_NAME, error_status
from conveyor.serving.inference import Call
from conveyor.serving.protocols import open_inference_pb2 as pb
from conveyor.serving.protocols import v2_grpc
from conveyor.serving.protocols.errors import invalid, not_found
from conveyor.serving.router import Decision
from conveyor.serving.state import ServingState

__all__ = ["GRPC_STATUS", "SERVICE", "GrpcInferenceService", "start_grpc_server"]

logger = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"
"""The service's full name in the specification (the path prefix of every call)."""

GRPC_STATUS: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}
"""The gRPC status of each HTTP status the REST endpoints use (anything else: INTERNAL)."""


@dataclass
class _CallInfo:
    """What one call learned on its way, for its metadata, metrics and access-log line."""

    metadata: dict[str, str]
    request_id: str | None = None
    labels: tuple[str, str, str] = ("", "", "")


Handler = Callable[[Any, _CallInfo], Awaitable[Any]]


def _metadata(context: aio.ServicerContext) -> dict[str, str]:
    """The call's text metadata (keys are lowercase; binary ``-bin`` entries are skipped)."""
    return {
        key: value for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)
    }


class GrpcInferenceService:
    """The six RPCs of the Open Inference Protocol over one :class:`ServingState`."""

    def __init__(self, state: ServingState) -> None:
        self.state = state
        self._sticky = state.sticky_header.lower()

    def handler(self) -> grpc.GenericRpcHandler:
        """The generic handler registering every RPC under :data:`SERVICE`."""
        rpcs: dict[str, tuple[Handler, Any]] = {
            "ServerLive": (self.server_live, pb.ServerLiveRequest),
            "ServerReady": (self.server_ready, pb.ServerReadyRequest),
            "ModelReady": (self.model_ready, pb.ModelReadyRequest),
            "ServerMetadata": (self.server_metadata, pb.ServerMetadataRequest),
            "ModelMetadata": (self.model_metadata, pb.ModelMetadataRequest),
            "ModelInfer": (self.model_infer, pb.ModelInferRequest),
        }
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                self._observed(name, method),
                request_deserializer=message.FromString,
                response_serializer=lambda response: response.SerializeToString(),
            )
            for name, (method, message) in rpcs.items()
        }
        return grpc.method_handlers_generic_handler(SERVICE, handlers)

    # -- the RPCs ---------------------------------------------------------------------------

    async def server_live(self, request: Any, call: _CallInfo) -> Any:
        """``ServerLive``: always live while the process answers."""
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, request: Any, call: _CallInfo) -> Any:
        """``ServerReady``: true once every deployed version was loaded."""
        return pb.ServerReadyResponse(ready=self.state.ready and self.state.models.all_loaded())

    async def server_metadata(self, request: Any, call: _CallInfo) -> Any:
        """``ServerMetadata``: the server's name and version."""
        from conveyor import __version__

        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__)

    async def model_ready(self, request: Any, call: _CallInfo) -> Any:
        """``ModelReady``: whether the routed (or given) version is loaded."""
        decision = self._decide(call, request.name, request.version)
        return pb.ModelReadyResponse(ready=self.state.models.ready(request.name, decision.version))

    async def model_metadata(self, request: Any, call: _CallInfo) -> Any:
        """``ModelMetadata``: inputs and outputs from the bundle's manifest (no loading)."""
        decision = self._decide(call, request.name, request.version)
        manifest = await run_in_threadpool(
            self.state.models.manifest, request.name, decision.version
        )
        inputs, outputs = tensor_metadata(manifest.signature)
        response = pb.ModelMetadataResponse(
            name=request.name,
            versions=[str(v) for v in self.state.models.router.versions(request.name)],
            platform="conveyor",
        )
        for target, tensors in ((response.inputs, inputs), (response.outputs, outputs)):
            for tensor in tensors:
                target.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        return response

    async def model_infer(self, request: Any, call: _CallInfo) -> Any:
        """``ModelInfer``: check, predict, log (and shadow) like ``POST .../infer``."""
        started, arrived = time.perf_counter(), dt.datetime.now(dt.UTC)
        parsed = v2_grpc.parse_infer_request(request)
        request_id = parsed.id or call.metadata.get("x-request-id") or uuid.uuid4().hex
        call.request_id = request_id  # for the access log, even when the call fails
        if not request.model_name:
            raise invalid("inference request: model_name is empty")
        decision = self._decide(call, request.model_name, request.model_version)
        prediction = Call(
            request.model_name, decision, parsed.to_tabular(), request_id, "grpc", started, arrived
        )
        answer = await self.state.inference.answer(prediction)
        return v2_grpc.encode_infer_response(
            request.model_name,
            answer.outputs,
            model_version=str(decision.version),
            request=parsed,
            request_id=request_id,
            raw=bool(request.raw_input_contents),
        )

    # -- shared -----------------------------------------------------------------------------

    def _decide(self, call: _CallInfo, model: str, version: str) -> Decision:
        """Route ``model`` (at ``version`` when given) and tell the caller where it went."""
        if version and (not version.isdigit() or int(version) < 1):
            raise not_found(f"version {version!r} is not a version number")
        sticky = call.metadata.get(self._sticky) or None
        decision = self.state.models.resolve(model, version or None, sticky_key=sticky)
        call.labels = (model, str(decision.version), decision.route_name)
        return decision

    def _observed(self, name: str, method: Handler) -> Handler:
        """``method`` with errors mapped to gRPC statuses, metrics and one access-log line."""
        path = f"/{SERVICE}/{name}"

        async def rpc(request: Any, context: aio.ServicerContext) -> Any:
            started = time.perf_counter()
            call = _CallInfo(_metadata(context))
            status, message = 200, ""
            try:
                response = await method(request, call)
            except Exception as exc:
                status, message = error_status(exc)
            finally:
                self._done(path, call, status, time.perf_counter() - started)
            if status != 200:
                await context.abort(GRPC_STATUS.get(status, grpc.StatusCode.INTERNAL), message)
            _, version, route = call.labels
            metadata = [("x-request-id", call.request_id)] if call.request_id else []
            if version:
                metadata += [("x-model-version", version), ("x-model-route", route)]
            if metadata:
                await context.send_initial_metadata(metadata)
            return response

        return rpc

    def _done(self, path: str, call: _CallInfo, status: int, seconds: float) -> None:
        model, version, route = call.labels
        self.state.metrics.observe(model, version, route, "grpc", status, seconds)
        if access_log.enabled():
            access_log.emit(
                AccessLine(
                    "POST",
                    path,
                    status,
                    seconds,
                    call.request_id,
                    model or None,
                    version or None,
                    route or None,
                    "grpc",
                )
            )


async def start_grpc_server(
    state: ServingState, host: str, port: int, *, reuse_port: bool = False
) -> aio.Server:
    """Start the gRPC service on ``host:port`` on the running event loop.

    Messages over the app's body limit are refused by gRPC (``RESOURCE_EXHAUSTED``).
    ``reuse_port`` lets several worker processes listen on one port (``SO_REUSEPORT``);
    without it a port already taken is an error, as for the HTTP port.

    Raises:
        RuntimeError: The port could not be bound.
    """
    limit = state.max_body_bytes
    server = aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", max(limit, 64 << 20)),
            ("grpc.so_reuseport", int(reuse_port)),
        ]
    )
    server.add_generic_rpc_handlers((GrpcInferenceService(state).handler(),))
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:
        raise RuntimeError(f"gRPC: cannot listen on {host}:{port}: {exc}") from None
    if bound == 0:
        raise RuntimeError(f"gRPC: cannot listen on {host}:{port}")
    await server.start()
    logger.info("Open Inference Protocol over gRPC on %s:%d", host, bound)
    return server
