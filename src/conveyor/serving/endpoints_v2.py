"""Open Inference Protocol (KServe V2) REST endpoints over one :class:`ServingState`.

``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{m}[/versions/{v}]``,
``.../ready`` and ``POST .../infer`` (JSON or the binary tensor extension; no Content-Type
needed). The codec is :mod:`conveyor.serving.protocols.v2`; predictions go through
:meth:`conveyor.serving.inference.Inference.answer`.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from conveyor.modeling.bundle_signature import Signature
from conveyor.serving.http import (
    REQUEST_ID,
    SERVER_NAME,
    decision_headers,
    error_response,
    json_response,
    parse_version,
    read_body,
)
from conveyor.serving.inference import Call
from conveyor.serving.metrics import tag
from conveyor.serving.protocols import v2
from conveyor.serving.router import Decision
from conveyor.serving.state import ServingState

__all__ = ["V2Endpoints", "tensor_metadata"]


def tensor_metadata(
    signature: Signature,
) -> tuple[list[v2.TensorMetadata], list[v2.TensorMetadata]]:
    """A signature's inputs (one column each, any number of rows) and outputs as tensors."""
    inputs = [v2.TensorMetadata(c.name, v2.column_datatype(c.type), [-1]) for c in signature.inputs]
    outputs = [
        v2.TensorMetadata(o.name, v2.column_datatype(o.type), list(o.shape))
        for o in signature.outputs
    ]
    return inputs, outputs


class V2Endpoints:
    """The V2 request handlers."""

    def __init__(self, state: ServingState) -> None:
        self.state = state

    async def server(self, request: Request) -> Response:
        """``GET /v2``: server metadata."""
        from conveyor import __version__

        return json_response(v2.server_metadata_response(SERVER_NAME, __version__))

    async def live(self, request: Request) -> Response:
        """``GET /v2/health/live``."""
        return json_response(v2.server_live_response(True))

    async def ready(self, request: Request) -> Response:
        """``GET /v2/health/ready``: 200 once every deployed version was loaded."""
        ready = self.state.ready and self.state.models.all_loaded()
        return json_response(v2.server_ready_response(ready), 200 if ready else 503)

    def _decision(self, request: Request) -> tuple[str, Decision]:
        model = request.path_params["model"]
        version = request.path_params.get("version")
        if version is not None:
            parse_version(version)
        decision = self.state.decide(request, model, version)
        tag(request, model, decision.version, decision.route_name)
        return model, decision

    async def model(self, request: Request) -> Response:
        """``GET /v2/models/{m}[/versions/{v}]``: metadata, read without loading the model."""
        try:
            model, decision = self._decision(request)
            manifest = await run_in_threadpool(self.state.models.manifest, model, decision.version)
            inputs, outputs = tensor_metadata(manifest.signature)
            versions = [str(v) for v in self.state.models.router.versions(model)]
            body = v2.model_metadata_response(model, versions, "conveyor", inputs, outputs)
            return json_response(body, headers=decision_headers(decision))
        except Exception as exc:
            return error_response(exc, None)

    async def model_ready(self, request: Request) -> Response:
        """``GET /v2/models/{m}[/versions/{v}]/ready``."""
        try:
            model, decision = self._decision(request)
        except Exception as exc:
            return error_response(exc, None)
        ready = self.state.models.ready(model, decision.version)
        return json_response(
            v2.model_ready_response(model, ready),
            200 if ready else 503,
            decision_headers(decision),
        )

    async def infer(self, request: Request) -> Response:
        """``POST /v2/models/{m}[/versions/{v}]/infer``."""
        started, arrived = time.perf_counter(), dt.datetime.now(dt.UTC)
        request_id = request.headers.get(REQUEST_ID)
        try:
            body = await read_body(request, self.state.max_body_bytes)
            parsed = v2.parse_infer_request(
                body, request.headers, max_body_bytes=self.state.max_body_bytes
            )
            request_id = parsed.id or request_id or uuid.uuid4().hex
            model, decision = self._decision(request)
            call = Call(model, decision, parsed.to_tabular(), request_id, "v2", started, arrived)
            answer = await self.state.inference.answer(call)
            encoded = v2.encode_infer_response(
                model,
                answer.outputs,
                model_version=str(decision.version),
                request=parsed,
                request_id=request_id,
            )
        except Exception as exc:
            return error_response(exc, request_id)
        headers = {**encoded.headers, **decision_headers(decision, request_id)}
        return Response(encoded.body, 200, headers=headers)
