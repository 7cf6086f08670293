"""TensorFlow Serving REST endpoints over one :class:`ServingState`.

``GET /v1/models/{m}[/versions/{v}|/labels/{l}][/metadata]`` (status or signature metadata)
and ``POST /v1/models/{m}[/versions/{v}|/labels/{l}]:(predict|classify|regress)``, as
``tensorflow_serving/g3doc/api_rest.md`` describes them:

- ``:predict`` takes ``instances`` (rows) or ``inputs`` (columns) and answers
  ``predictions`` or ``outputs``, every output of the signature by name;
- ``:classify`` and ``:regress`` take ``{"signature_name"?, "context"?, "examples": [...]}``
  (context features merged into every example) and answer ``{"results": ...}``: per example
  ``[[label, score], ...]`` over the signature's classes (as strings) for a classifier, one
  number for a regression model. The verb must fit the model's task, else a 400 names it.

The codec is :mod:`conveyor.serving.protocols.tfserving`; predictions go through
:meth:`conveyor.serving.inference.Inference.answer`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from conveyor.serving.fast_path import numeric_instances
from conveyor.serving.http import (
    decision_headers,
    error_response,
    finite_json,
    json_response,
    new_request_id,
    parse_json,
    parse_version,
    read_body,
)
from conveyor.serving.inference import Answer, Call, Verb
from conveyor.serving.metrics import tag
from conveyor.serving.protocols import TabularBatch, tfserving
from conveyor.serving.protocols.errors import ProtocolError, invalid, not_found
from conveyor.serving.router import Decision
from conveyor.serving.state import ServingState

__all__ = ["TFServingEndpoints"]

_VERBS: dict[str, Verb] = {"predict": "predict", "classify": "classify", "regress": "regress"}
Encoder = Callable[[Answer], dict[str, Any]]
_NUMPY_KINDS = {"int": "int64", "float": "float64", "bool": "bool"}


def _tf_dtype(kind: str) -> str:
    return tfserving.tf_dtype(_NUMPY_KINDS.get(kind, "object"))


class TFServingEndpoints:
    """The TF Serving request handlers."""

    def __init__(self, state: ServingState) -> None:
        self.state = state

    def _target(self, request: Request) -> tuple[str, Decision, str, str]:
        """Parse ``{m}[/versions/{v}|/labels/{l}][/metadata][:verb]`` and route it."""
        path, _, verb = request.path_params["path"].partition(":")
        parts = [p for p in path.split("/") if p]
        suffix = ""
        if parts and parts[-1] == "metadata":
            suffix = parts.pop()
        if len(parts) == 1:
            ref = None
        elif len(parts) == 3 and parts[1] == "versions":
            ref = str(parse_version(parts[2]))
        elif len(parts) == 3 and parts[1] == "labels":
            ref = parts[2]
            if ref[:1].isdigit() or ref.lower() == "latest":
                raise not_found(f"label {ref!r} is not an alias")
        else:
            raise not_found(f"no such endpoint: /v1/models/{path}")
        model = parts[0]
        decision = self.state.decide(request, model, ref)
        tag(request, model, decision.version, decision.route_name)
        return model, decision, suffix, verb

    async def get(self, request: Request) -> Response:
        """``GET /v1/models/{m}[/versions/{v}|/labels/{l}][/metadata]``: status or metadata."""
        try:
            model, decision, suffix, verb = self._target(request)
            if verb:
                raise ProtocolError(405, f":{verb} needs POST")
            headers = decision_headers(decision)
            if suffix == "metadata":
                return json_response(await self._metadata(model, decision), headers=headers)
            ready = self.state.models.ready(model, decision.version)
            status = tfserving.ModelVersionStatus(
                decision.version,
                "AVAILABLE" if ready else "UNKNOWN",
                "OK" if ready else "UNAVAILABLE",
                "" if ready else "the version failed to load",
            )
            return json_response(tfserving.model_status_response([status]), headers=headers)
        except Exception as exc:
            return error_response(exc, None)

    async def _metadata(self, model: str, decision: Decision) -> dict[str, Any]:
        manifest = await run_in_threadpool(self.state.models.manifest, model, decision.version)
        signature = manifest.signature
        inputs = {c.name: (_tf_dtype(c.type), [-1]) for c in signature.inputs}
        outputs = {o.name: (_tf_dtype(o.type), list(o.shape)) for o in signature.outputs}
        return tfserving.model_metadata_response(model, decision.version, inputs, outputs)

    async def post(self, request: Request) -> Response:
        """``POST /v1/models/{m}[/versions/{v}|/labels/{l}]:(predict|classify|regress)``."""
        started, arrived = time.perf_counter(), dt.datetime.now(dt.UTC)
        request_id = new_request_id(request)
        try:
            model, decision, suffix, name = self._target(request)
            verb = _VERBS.get(name)
            if verb is None or suffix:
                raise not_found(f"no such endpoint: POST /v1/models/{request.path_params['path']}")
            body = await read_body(request, self.state.max_body_bytes)
            batch, encode = _parse(verb, body)
            call = Call(model, decision, batch, request_id, "v1", started, arrived, verb)
            answer = await self.state.inference.answer(call)
            document = encode(answer)
        except Exception as exc:
            return error_response(exc, request_id)
        headers = decision_headers(decision, request_id)
        return Response(_dumps(answer, document), 200, headers, "application/json")


def _dumps(answer: Answer, document: dict[str, Any]) -> bytes:
    """The answer's JSON; non-finite outputs are written as TF Serving's NaN/Infinity tokens."""
    finite = all(
        array.dtype.kind != "f" or bool(np.isfinite(array).all())
        for array in answer.outputs.values()
    )
    return finite_json(document) if finite else tfserving.dumps(document)


def _numeric_rows(document: Any) -> TabularBatch | None:
    """The batch of a row-format ``:predict`` document of plain numbers (the common case),
    read without the codec's per-value work; None for anything else (the codec decides)."""
    columns = numeric_instances(document)
    if columns is None:
        return None
    return TabularBatch(columns, len(document["instances"]))


def _encode_rows(answer: Answer) -> dict[str, Any]:
    return tfserving.encode_predict_response(answer.outputs, "row")


def _parse(verb: Verb, body: bytes) -> tuple[TabularBatch, Encoder]:
    """The batch of a ``:verb`` body and the function that encodes its answer."""
    if verb == "predict":
        try:
            document = parse_json(body)
        except ValueError:
            document = None  # the codec names the error
        fast = _numeric_rows(document)
        if fast is not None:
            return fast, _encode_rows
        # parsed once: the codec takes the document when it is a JSON object
        parsed = tfserving.parse_predict_request(document if isinstance(document, dict) else body)
        _check_signature_name(parsed.signature_name, verb)

        def encode(answer: Answer) -> dict[str, Any]:
            return tfserving.encode_predict_response(answer.outputs, parsed.format)

        return parsed.to_tabular(), encode
    if verb == "classify":
        examples = tfserving.parse_classify_request(body)
        _check_signature_name(examples.signature_name, verb)
        return examples.examples, _classify
    examples = tfserving.parse_regress_request(body)
    _check_signature_name(examples.signature_name, verb)
    return examples.examples, _regress


def _check_signature_name(name: str | None, verb: Verb) -> None:
    """A bundle has one signature: the default one, also known by the verb's method name."""
    known = (tfserving.DEFAULT_SIGNATURE, f"tensorflow/serving/{verb}")
    if name is not None and name not in known:
        raise invalid(
            f"'signature_name' {name!r} is not a signature of this model; use "
            f"{known[0]!r} or {known[1]!r}, or leave it out"
        )


def _classify(answer: Answer) -> dict[str, Any]:
    classes = answer.signature.classes or ()
    return tfserving.encode_classify_response(
        answer.outputs["probabilities"], [str(c) for c in classes]
    )


def _regress(answer: Answer) -> dict[str, Any]:
    return tfserving.encode_regress_response(answer.outputs["prediction"])
