"""Open Inference Protocol (KServe V2) REST codec, with Triton's binary tensor data extension.

Pure functions over bytes and header mappings: the server hands in the raw body and headers (no
Content-Type is needed) and gets back typed numpy tensors, or hands in model outputs and gets back
the body and headers to send. Specs: ``kserve/open-inference-protocol``
``specification/protocol/inference_rest.md`` and Triton's
``docs/protocol/extension_binary_data.md``.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conveyor.serving.protocols.errors import ProtocolError, invalid
from conveyor.serving.protocols.tabular import TabularBatch

HEADER_LENGTH = "Inference-Header-Content-Length"
"""Header giving the length of the JSON part of a body that carries binary tensor data."""

BINARY_EXTENSION = "binary_tensor_data"
"""Name of the binary tensor data extension in the server metadata ``extensions`` list."""

DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
"""Tensor data types of the spec (section "Tensor Data Types") and their numpy dtypes.

BYTES tensors are object arrays whose elements are :class:`bytes`.
"""

_KIND_TO_DATATYPE = {dt: name for name, dt in DATATYPES.items() if name != "BYTES"}


def datatype_of(array: np.ndarray) -> str:
    """The V2 datatype for a numpy array (strings, bytes and objects are BYTES)."""
    if array.dtype in _KIND_TO_DATATYPE:
        return _KIND_TO_DATATYPE[array.dtype]
    if array.dtype.kind in "OSU":
        return "BYTES"
    raise ProtocolError(500, f"numpy dtype {array.dtype} has no Open Inference Protocol datatype")


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


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    stack: list[Iterable[Any]] = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _check_kind(values: list[Any], datatype: str, where: str) -> None:
    for value in values:
        if not _kind_ok(value, datatype):
            expected = (
                "booleans"
                if datatype == "BOOL"
                else "integers"
                if datatype.startswith(("INT", "UINT"))
                else "numbers"
            )
            raise invalid(f"{where}: datatype {datatype} needs {expected} in 'data', got {value!r}")


def _kind_ok(value: Any, datatype: str) -> bool:
    if datatype == "BOOL":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if datatype.startswith(("INT", "UINT")):
        return isinstance(value, int)
    return isinstance(value, int | float)


def _json_tensor(data: Any, datatype: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    values = _flatten(data)
    expected = math.prod(shape)
    if len(values) != expected:
        raise invalid(
            f"{where}: 'data' has {len(values)} elements but shape {list(shape)} needs {expected}"
        )
    if datatype == "BYTES":
        out = np.empty(len(values), dtype=object)
        for i, value in enumerate(values):
            if isinstance(value, str):
                out[i] = value.encode("utf-8")
            else:
                raise invalid(f"{where}: datatype BYTES needs strings in 'data', got {value!r}")
        return out.reshape(shape)
    _check_kind(values, datatype, where)
    try:
        array = np.array(values, dtype=DATATYPES[datatype])
    except OverflowError:
        raise invalid(f"{where}: a value in 'data' is out of range for {datatype}") from None
    return array.reshape(shape)


def _binary_tensor(chunk: bytes, datatype: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    count = math.prod(shape)
    if datatype == "BYTES":
        out = np.empty(count, dtype=object)
        offset = 0
        for i in range(count):
            if offset + 4 > len(chunk):
                raise invalid(f"{where}: binary BYTES data ends after {i} of {count} elements")
            (length,) = struct.unpack_from("<I", chunk, offset)
            offset += 4
            if offset + length > len(chunk):
                raise invalid(
                    f"{where}: binary BYTES element {i} needs {length} bytes but only "
                    f"{len(chunk) - offset} remain"
                )
            out[i] = bytes(chunk[offset : offset + length])
            offset += length
        if offset != len(chunk):
            raise invalid(
                f"{where}: binary_data_size is {len(chunk)} but {count} BYTES elements "
                f"use {offset} bytes"
            )
        return out.reshape(shape)
    dtype = DATATYPES[datatype]
    if len(chunk) != count * dtype.itemsize:
        raise invalid(
            f"{where}: binary_data_size is {len(chunk)} but shape {list(shape)} of {datatype} "
            f"needs {count * dtype.itemsize} bytes"
        )
    if datatype == "BOOL":
        raw = np.frombuffer(chunk, dtype=np.uint8)
        if raw.size and raw.max() > 1:
            raise invalid(f"{where}: binary BOOL elements must be bytes 0 or 1")
        return raw.astype(np.bool_).reshape(shape)
    return np.frombuffer(chunk, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)


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
            data = _binary_tensor(binary[offset : offset + size], datatype, shape, where)
            offset += size
        else:
            if "data" not in item:
                raise invalid(f"{where}: needs 'data' or parameters.binary_data_size")
            data = _json_tensor(item["data"], datatype, shape, where)
        tensors[name] = InputTensor(name, datatype, shape, data, params)
    if offset != len(binary):
        raise invalid(
            f"{what}: {len(binary) - offset} bytes of binary data are not claimed by any "
            "binary_data_size"
        )
    return tensors, offset


# ---------------------------------------------------------------------------- server side


def parse_infer_request(body: bytes, headers: Mapping[str, str] | None = None) -> InferRequest:
    """Parse an ``$inference_request`` body (JSON, or JSON + binary tensor data).

    Args:
        body: The raw HTTP body, whatever its Content-Type (or none).
        headers: The request headers; ``Inference-Header-Content-Length`` (any case) splits the
            JSON header from the binary tensor data.

    Raises:
        ProtocolError: 400 with a message naming the input or field at fault.
    """
    document, binary = _split_body(body, headers or {}, "inference request")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise invalid("inference request: 'id' must be a string")
    if "inputs" not in document:
        raise invalid("inference request: missing 'inputs'")
    inputs, _ = _tensors(document["inputs"], binary, "inference request", "inputs")
    outputs: list[RequestedOutput] = []
    raw_outputs = document.get("outputs", [])
    if not isinstance(raw_outputs, list):
        raise invalid("inference request: 'outputs' must be a list")
    seen: set[str] = set()
    for index, item in enumerate(raw_outputs):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise invalid(f"inference request: outputs[{index}] needs a string 'name'")
        name = item["name"]
        if name in seen:
            raise invalid(f"output '{name}' is requested twice")
        seen.add(name)
        params = _parameters(item, f"output '{name}'")
        flag = params.get("binary_data")
        if flag is not None and not isinstance(flag, bool):
            raise invalid(f"output '{name}': parameters.binary_data must be a boolean")
        outputs.append(RequestedOutput(name, flag, params))
    params = _parameters(document, "inference request")
    flag = params.get("binary_data_output")
    if flag is not None and not isinstance(flag, bool):
        raise invalid("inference request: parameters.binary_data_output must be a boolean")
    return InferRequest(request_id, inputs, outputs, params)


def _tensor_bytes(data: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for element in data.ravel():
            raw = element.encode("utf-8") if isinstance(element, str) else bytes(element)
            parts.append(struct.pack("<I", len(raw)))
            parts.append(raw)
        return b"".join(parts)
    dtype = DATATYPES[datatype]
    return np.ascontiguousarray(data, dtype=dtype.newbyteorder("<")).tobytes()


def _json_data(data: np.ndarray, datatype: str, name: str) -> list[Any]:
    flat = data.ravel()
    if datatype != "BYTES":
        return [float(v) for v in flat] if datatype == "FP16" else flat.tolist()
    out = []
    for element in flat:
        if isinstance(element, str):
            out.append(element)
            continue
        try:
            out.append(bytes(element).decode("utf-8"))
        except UnicodeDecodeError:
            raise ProtocolError(
                500, f"output '{name}' holds bytes that are not UTF-8; request it as binary_data"
            ) from None
    return out


def _as_tensor(name: str, value: np.ndarray | InputTensor) -> InputTensor:
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
            chunk = _tensor_bytes(tensor.data, tensor.datatype)
            chunks.append(chunk)
            params["binary_data_size"] = len(chunk)
        if params:
            item["parameters"] = params
        if not binary:
            item["data"] = _json_data(tensor.data, tensor.datatype, tensor.name)
        items.append(item)
    document[key] = items
    header = json.dumps(document, separators=(",", ":")).encode("utf-8")
    if not chunks:
        return EncodedBody(header, {"Content-Type": "application/json"})
    return EncodedBody(
        header + b"".join(chunks),
        {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))},
    )


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
    selected: list[tuple[InputTensor, bool]] = []
    if request is not None and request.outputs:
        for wanted in request.outputs:
            if wanted.name not in outputs:
                raise invalid(f"unknown output '{wanted.name}'; the model has {', '.join(outputs)}")
            binary = wanted.binary_data if wanted.binary_data is not None else default_binary
            selected.append((_as_tensor(wanted.name, outputs[wanted.name]), binary))
    else:
        selected = [(_as_tensor(name, value), default_binary) for name, value in outputs.items()]
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
    return _encode(document, "inputs", [(_as_tensor(n, v), binary) for n, v in inputs.items()])


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
