"""Open Inference Protocol (KServe V2) REST codec, with Triton's binary tensor data extension.

Pure functions over bytes and header mappings: the server hands in the raw body and headers (no
Content-Type is needed) and gets back typed numpy tensors, or hands in model outputs and gets back
the body and headers to send. Specs: ``kserve/open-inference-protocol``
``specification/protocol/inference_rest.md`` and Triton's
``docs/protocol/extension_binary_data.md``. A compressed request body (``Content-Encoding: gzip``
or ``deflate``, as Triton's clients send on demand) is decoded first. Triton extensions this
server does not implement (shared memory, classification) are refused with a 400 naming them,
never silently ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conveyor.serving.protocols.content_coding import decode_body
from conveyor.serving.protocols.errors import ProtocolError, invalid
from conveyor.serving.protocols.tabular import TabularBatch
from conveyor.serving.protocols.tensor_data import (
    DATATYPES,
    datatype_of,
    decode_binary,
    decode_json,
    encode_binary,
    encode_json,
)

__all__ = [
    "BINARY_EXTENSION",
    "DATATYPES",
    "HEADER_LENGTH",
    "MAX_BODY_BYTES",
    "EncodedBody",
    "InferRequest",
    "InferResponse",
    "InputTensor",
    "RequestedOutput",
    "TensorMetadata",
    "as_tensor",
    "column_datatype",
    "datatype_of",
    "encode_infer_request",
    "encode_infer_response",
    "error_body",
    "model_metadata_response",
    "model_ready_response",
    "parse_infer_request",
    "parse_infer_response",
    "refuse_shared_memory",
    "select_outputs",
    "server_live_response",
    "server_metadata_response",
    "server_ready_response",
]

_COLUMN_DATATYPES = {"int": "INT64", "float": "FP64", "bool": "BOOL"}


def column_datatype(kind: str) -> str:
    """The V2 datatype of a signature column type (text and anything else is BYTES)."""
    return _COLUMN_DATATYPES.get(kind, "BYTES")


HEADER_LENGTH = "Inference-Header-Content-Length"
"""Header giving the length of the JSON part of a body that carries binary tensor data."""

BINARY_EXTENSION = "binary_tensor_data"
"""Name of the binary tensor data extension in the server metadata ``extensions`` list."""

MAX_BODY_BYTES = 16 << 20
"""Default limit of a request body once its ``Content-Encoding`` is decoded (16 MiB)."""

_SHARED_MEMORY = "shared_memory_region"


@dataclass(frozen=True)
class InputTensor:
    """A named, typed tensor of a request (or of a response, for clients)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestedOutput:
    """An entry of the request's ``outputs``; ``binary_data`` is None when not given."""

    name: str
    binary_data: bool | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InferRequest:
    """A parsed ``$inference_request``."""

    id: str | None
    inputs: dict[str, InputTensor]
    outputs: list[RequestedOutput] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def binary_data_output(self) -> bool:
        """The request-level ``binary_data_output`` parameter (False when not given)."""
        return bool(self.parameters.get("binary_data_output", False))

    def to_tabular(self) -> TabularBatch:
        """The inputs as a batch (BYTES elements decoded as UTF-8 where they are valid UTF-8)."""
        columns: dict[str, np.ndarray] = {}
        for name, tensor in self.inputs.items():
            data = tensor.data
            if tensor.datatype == "BYTES":
                data = np.vectorize(_maybe_text, otypes=[object])(data) if data.size else data
            columns[name] = data
        return TabularBatch.from_columns(columns)


@dataclass(frozen=True)
class EncodedBody:
    """A body to send and the headers that describe it."""

    body: bytes
    headers: dict[str, str]


def _maybe_text(value: bytes) -> str | bytes:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value


# ---------------------------------------------------------------------------- parsing helpers


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def _split_body(body: bytes, headers: Mapping[str, str], what: str) -> tuple[Any, bytes]:
    """Split a body into its decoded JSON object and the binary tensor data that follows it."""
    raw_length = _header(headers, HEADER_LENGTH)
    if raw_length is None:
        json_part, binary = body, b""
    else:
        try:
            length = int(raw_length.strip())
        except ValueError:
            raise invalid(
                f"{HEADER_LENGTH} header must be an integer, got {raw_length!r}"
            ) from None
        if length < 0 or length > len(body):
            raise invalid(f"{HEADER_LENGTH} header is {length} but the body has {len(body)} bytes")
        json_part, binary = body[:length], body[length:]
    try:
        document = json.loads(json_part)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise invalid(f"{what} must be a JSON object, got {type(document).__name__}")
    return document, binary


def _parameters(obj: Mapping[str, Any], where: str) -> dict[str, Any]:
    params = obj.get("parameters", {})
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise invalid(f"{where}: 'parameters' must be an object")
    return params


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value
    ):
        raise invalid(f"{where}: 'shape' must be a list of non-negative integers, got {value!r}")
    return tuple(value)


def _tensors(items: Any, binary: bytes, what: str, kind: str) -> tuple[dict[str, InputTensor], int]:
    """Decode a list of ``$request_input`` / ``$response_output``; returns tensors, bytes used."""
    if not isinstance(items, list):
        raise invalid(f"{what}: '{kind}' must be a list")
    tensors: dict[str, InputTensor] = {}
    offset = 0
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise invalid(f"{what}: {kind}[{index}] must be an object")
        name = item.get("name")
        if not isinstance(name, str):
            raise invalid(f"{what}: {kind}[{index}] needs a string 'name'")
        where = f"{kind[:-1]} '{name}'"
        if name in tensors:
            raise invalid(f"{where} is given twice")
        datatype = item.get("datatype")
        if datatype not in DATATYPES:
            raise invalid(
                f"{where}: unknown datatype {datatype!r}; expected one of {', '.join(DATATYPES)}"
            )
        shape = _shape(item.get("shape"), where)
        params = _parameters(item, where)
        refuse_shared_memory(params, where)
        size = params.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise invalid(f"{where}: binary_data_size must be a non-negative integer")
            if "data" in item:
                raise invalid(f"{where}: has both 'data' and binary_data_size")
            if offset + size > len(binary):
                raise invalid(
                    f"{where}: binary_data_size is {size} but only {len(binary) - offset} "
                    "bytes of binary data remain"
                )
            data = decode_binary(binary[offset : offset + size], datatype, shape, where)
            offset += size
        else:
            if "data" not in item:
                raise invalid(f"{where}: needs 'data' or parameters.binary_data_size")
            data = decode_json(item["data"], datatype, shape, where)
        tensors[name] = InputTensor(name, datatype, shape, data, params)
    if offset != len(binary):
        raise invalid(
            f"{what}: {len(binary) - offset} bytes of binary data are not claimed by any "
            "binary_data_size"
        )
    return tensors, offset


def refuse_shared_memory(params: Mapping[str, Any], where: str) -> None:
    """400 for Triton's shared-memory extension, which this server does not implement."""
    if _SHARED_MEMORY in params:
        raise invalid(
            f"{where}: shared memory (parameters.{_SHARED_MEMORY}) is not supported by this "
            "server; send the tensor in the body (JSON 'data' or binary_data_size)"
        )


# ---------------------------------------------------------------------------- server side


def parse_infer_request(
    body: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> InferRequest:
    """Parse an ``$inference_request`` body (JSON, or JSON + binary tensor data).

    Args:
        body: The raw HTTP body, whatever its Content-Type (or none).
        headers: The request headers (any case): ``Content-Encoding`` (gzip or deflate) says
            how the body is compressed; ``Inference-Header-Content-Length`` splits the decoded
            body into the JSON header and the binary tensor data.
        max_body_bytes: Largest body accepted once decoded.

    Raises:
        ProtocolError: 400 with a message naming the input or field at fault (also for the
            Triton extensions this server does not implement: shared memory and
            classification); 413 for a decoded body over ``max_body_bytes``; 415 for an
            unknown ``Content-Encoding``.
    """
    headers = headers or {}
    body = decode_body(body, _header(headers, "Content-Encoding"), max_body_bytes)
    document, binary = _split_body(body, headers, "inference request")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise invalid("inference request: 'id' must be a string")
    if "inputs" not in document:
        raise invalid("inference request: missing 'inputs'")
    inputs, _ = _tensors(document["inputs"], binary, "inference request", "inputs")
    outputs = _requested_outputs(document.get("outputs", []))
    params = _parameters(document, "inference request")
    flag = params.get("binary_data_output")
    if flag is not None and not isinstance(flag, bool):
        raise invalid("inference request: parameters.binary_data_output must be a boolean")
    return InferRequest(request_id, inputs, outputs, params)


def _requested_outputs(raw_outputs: Any) -> list[RequestedOutput]:
    """The request's ``outputs`` (``$request_output`` objects), checked."""
    if not isinstance(raw_outputs, list):
        raise invalid("inference request: 'outputs' must be a list")
    outputs: list[RequestedOutput] = []
    seen: set[str] = set()
    for index, item in enumerate(raw_outputs):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise invalid(f"inference request: outputs[{index}] needs a string 'name'")
        name = item["name"]
        if name in seen:
            raise invalid(f"output '{name}' is requested twice")
        seen.add(name)
        params = _parameters(item, f"output '{name}'")
        refuse_shared_memory(params, f"output '{name}'")
        if "classification" in params:
            raise invalid(
                f"output '{name}': parameters.classification (Triton's classification "
                "extension) is not supported; request the 'probabilities' output instead"
            )
        flag = params.get("binary_data")
        if flag is not None and not isinstance(flag, bool):
            raise invalid(f"output '{name}': parameters.binary_data must be a boolean")
        outputs.append(RequestedOutput(name, flag, params))
    return outputs


def as_tensor(name: str, value: np.ndarray | InputTensor) -> InputTensor:
    """``value`` as a named tensor (its datatype from its numpy dtype)."""
    if isinstance(value, InputTensor):
        return value
    array = np.asarray(value)
    datatype = datatype_of(array)
    if datatype == "BYTES" and array.dtype.kind != "O":
        array = array.astype(object)
    return InputTensor(name, datatype, tuple(array.shape), array)


def _encode(
    document: dict[str, Any],
    key: str,
    tensors: Sequence[tuple[InputTensor, bool]],
) -> EncodedBody:
    items: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for tensor, binary in tensors:
        item: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        params = {k: v for k, v in tensor.parameters.items() if k != "binary_data_size"}
        if binary:
            chunk = encode_binary(tensor.data, tensor.datatype)
            chunks.append(chunk)
            params["binary_data_size"] = len(chunk)
        if params:
            item["parameters"] = params
        if not binary:
            item["data"] = encode_json(tensor.data, tensor.datatype, tensor.name)
        items.append(item)
    document[key] = items
    header = json.dumps(document, separators=(",", ":")).encode("utf-8")
    if not chunks:
        return EncodedBody(header, {"Content-Type": "application/json"})
    return EncodedBody(
        header + b"".join(chunks),
        {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))},
    )


def select_outputs(
    outputs: Mapping[str, Any], request: InferRequest | None, default_binary: bool = False
) -> list[tuple[str, Any, bool]]:
    """``(name, value, binary)`` of the outputs to answer with: the request's ``outputs`` in
    its order (each binary as its ``binary_data`` says, else ``default_binary``), or all.

    Raises:
        ProtocolError: 400 for a requested output the model does not have.
    """
    if request is None or not request.outputs:
        return [(name, value, default_binary) for name, value in outputs.items()]
    selected = []
    for wanted in request.outputs:
        if wanted.name not in outputs:
            raise invalid(f"unknown output '{wanted.name}'; the model has {', '.join(outputs)}")
        binary = wanted.binary_data if wanted.binary_data is not None else default_binary
        selected.append((wanted.name, outputs[wanted.name], binary))
    return selected


def encode_infer_response(
    model_name: str,
    outputs: Mapping[str, np.ndarray | InputTensor],
    *,
    model_version: str | None = None,
    request: InferRequest | None = None,
    request_id: str | None = None,
    binary_data_output: bool | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> EncodedBody:
    """Encode an ``$inference_response``.

    When ``request`` is given, only the outputs it asks for are returned (in its order; an unknown
    name is a 400), its ``id`` is echoed, and each output is binary when its
    ``parameters.binary_data`` says so, else when the request's ``binary_data_output`` does.
    ``binary_data_output`` here overrides the request-level setting. A binary body comes with the
    ``Inference-Header-Content-Length`` header.
    """
    default_binary = (
        binary_data_output
        if binary_data_output is not None
        else (request.binary_data_output if request is not None else False)
    )
    selected = [
        (as_tensor(name, value), binary)
        for name, value, binary in select_outputs(outputs, request, default_binary)
    ]
    document: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        document["model_version"] = model_version
    rid = request_id if request_id is not None else (request.id if request else None)
    if rid is not None:
        document["id"] = rid
    if parameters:
        document["parameters"] = dict(parameters)
    return _encode(document, "outputs", selected)


# ---------------------------------------------------------------------------- client side


def encode_infer_request(
    inputs: Mapping[str, np.ndarray | InputTensor],
    *,
    binary: bool = False,
    request_id: str | None = None,
    outputs: Sequence[RequestedOutput] = (),
    parameters: Mapping[str, Any] | None = None,
) -> EncodedBody:
    """Encode an ``$inference_request`` as a client would (canary requests, tests)."""
    document: dict[str, Any] = {}
    if request_id is not None:
        document["id"] = request_id
    if parameters:
        document["parameters"] = dict(parameters)
    if outputs:
        document["outputs"] = [
            {"name": o.name, **({"parameters": o.parameters} if o.parameters else {})}
            for o in outputs
        ]
    return _encode(document, "inputs", [(as_tensor(n, v), binary) for n, v in inputs.items()])


@dataclass(frozen=True)
class InferResponse:
    """A parsed ``$inference_response`` (client side)."""

    model_name: str
    model_version: str | None
    id: str | None
    outputs: dict[str, InputTensor]
    parameters: dict[str, Any] = field(default_factory=dict)


def parse_infer_response(body: bytes, headers: Mapping[str, str] | None = None) -> InferResponse:
    """Parse an ``$inference_response`` body, JSON or JSON + binary tensor data."""
    document, binary = _split_body(body, headers or {}, "inference response")
    if "outputs" not in document:
        raise invalid("inference response: missing 'outputs'")
    outputs, _ = _tensors(document["outputs"], binary, "inference response", "outputs")
    return InferResponse(
        model_name=str(document.get("model_name", "")),
        model_version=document.get("model_version"),
        id=document.get("id"),
        outputs=outputs,
        parameters=_parameters(document, "inference response"),
    )


# ---------------------------------------------------------------------------- other payloads


@dataclass(frozen=True)
class TensorMetadata:
    """A ``$metadata_tensor``: name, datatype and shape (-1 for a variable dimension)."""

    name: str
    datatype: str
    shape: Sequence[int]

    def to_json(self) -> dict[str, Any]:
        """The ``$metadata_tensor`` object."""
        if self.datatype not in DATATYPES:
            raise ValueError(f"tensor '{self.name}': unknown datatype {self.datatype!r}")
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def model_metadata_response(
    name: str,
    versions: Sequence[str] | None,
    platform: str,
    inputs: Sequence[TensorMetadata],
    outputs: Sequence[TensorMetadata],
) -> dict[str, Any]:
    """A ``$metadata_model_response`` (``versions`` is left out when None)."""
    document: dict[str, Any] = {"name": name}
    if versions is not None:
        document["versions"] = [str(v) for v in versions]
    document["platform"] = platform
    document["inputs"] = [t.to_json() for t in inputs]
    document["outputs"] = [t.to_json() for t in outputs]
    return document


def server_metadata_response(
    name: str, version: str, extensions: Sequence[str] = (BINARY_EXTENSION,)
) -> dict[str, Any]:
    """A ``$metadata_server_response``; by default it reports the binary tensor extension."""
    return {"name": name, "version": version, "extensions": list(extensions)}


def server_live_response(live: bool) -> dict[str, Any]:
    """A ``$live_server_response``: ``{"live": bool}``."""
    return {"live": live}


def server_ready_response(ready: bool) -> dict[str, Any]:
    """A server ready response: ``{"ready": bool}``.

    The spec's ``$ready_server_response`` literally reads ``{"live": $bool}``, a copy of the live
    object; readiness is carried by the HTTP status anyway (200 ready, otherwise not).
    """
    return {"ready": ready}


def model_ready_response(name: str, ready: bool) -> dict[str, Any]:
    """A ``$ready_model_response``: ``{"name": ..., "ready": bool}``."""
    return {"name": name, "ready": ready}


def error_body(error: ProtocolError) -> bytes:
    """The JSON error body ``{"error": message}``."""
    return json.dumps(error.to_body()).encode("utf-8")
