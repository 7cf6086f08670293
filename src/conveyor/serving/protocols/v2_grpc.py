"""The Open Inference Protocol's gRPC messages <-> the same objects as the REST codec.

:func:`parse_infer_request` turns a ``ModelInferRequest`` into the
:class:`~conveyor.serving.protocols.v2.InferRequest` the REST endpoint builds from JSON, with
the same checks and messages naming the input at fault; :func:`encode_infer_response` builds
a ``ModelInferResponse``. Tensor elements come either typed (``contents``, the field matching
the datatype) or raw (``raw_input_contents``: the binary tensor data layout, one entry per
input); an answer uses the layout of its request, so a client gets back what it sent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from conveyor.serving.protocols import open_inference_pb2 as pb
from conveyor.serving.protocols.errors import invalid
from conveyor.serving.protocols.tensor_data import DATATYPES, decode_binary, encode_binary
from conveyor.serving.protocols.v2 import (
    InferRequest,
    InputTensor,
    RequestedOutput,
    as_tensor,
    refuse_shared_memory,
    select_outputs,
)

__all__ = [
    "CONTENTS_FIELDS",
    "encode_infer_response",
    "parameter_values",
    "parse_infer_request",
]

CONTENTS_FIELDS: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
"""The ``InferTensorContents`` field of each datatype (FP16 travels as raw contents only)."""

_RAW = "raw_input_contents"


def parameter_values(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """``map<string, InferParameter>`` as plain values (an unset parameter is None)."""
    values: dict[str, Any] = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[key] = getattr(parameter, choice) if choice else None
    return values


def _typed(contents: Any, datatype: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    field = CONTENTS_FIELDS.get(datatype)
    if field is None:
        raise invalid(f"{where}: datatype {datatype} must be sent in {_RAW}")
    values = getattr(contents, field)
    expected = math.prod(shape)
    if len(values) != expected:
        raise invalid(
            f"{where}: contents.{field} has {len(values)} elements but shape {list(shape)} "
            f"needs {expected}"
        )
    for other in set(CONTENTS_FIELDS.values()) - {field}:
        if len(getattr(contents, other)):
            raise invalid(f"{where}: datatype {datatype} takes contents.{field}, not {other}")
    dtype = DATATYPES[datatype]
    if datatype == "BYTES":
        array = np.empty(expected, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    if dtype.kind in "iu" and expected:
        limits = np.iinfo(dtype)
        low, high = min(values), max(values)
        if low < limits.min or high > limits.max:
            bad = low if low < limits.min else high
            raise invalid(f"{where}: {bad} in contents.{field} is out of range for {datatype}")
    return np.array(values, dtype=dtype).reshape(shape)


def parse_infer_request(message: Any) -> InferRequest:
    """An :class:`InferRequest` from a ``ModelInferRequest``.

    Raises:
        ProtocolError: 400 naming the input or field at fault: no or duplicate names,
            unknown datatypes, negative shapes, element counts that do not match the shape,
            typed and raw contents mixed, a raw entry per input missing, shared memory, or
            Triton's classification extension.
    """
    raw: Sequence[bytes] = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise invalid(
            f"inference request: {_RAW} has {len(raw)} entries but there are "
            f"{len(message.inputs)} inputs; give one per input, in order"
        )
    inputs: dict[str, InputTensor] = {}
    for index, tensor in enumerate(message.inputs):
        name = tensor.name
        if not name:
            raise invalid(f"inference request: inputs[{index}] needs a name")
        where = f"input '{name}'"
        if name in inputs:
            raise invalid(f"{where} is given twice")
        datatype = tensor.datatype
        if datatype not in DATATYPES:
            raise invalid(
                f"{where}: unknown datatype {datatype!r}; expected one of {', '.join(DATATYPES)}"
            )
        if any(d < 0 for d in tensor.shape):
            raise invalid(
                f"{where}: shape must hold non-negative integers, got {list(tensor.shape)}"
            )
        shape = tuple(int(d) for d in tensor.shape)
        params = parameter_values(tensor.parameters)
        refuse_shared_memory(params, where)
        if raw:
            if tensor.HasField("contents"):
                raise invalid(f"{where}: has contents although the request uses {_RAW}")
            data = decode_binary(raw[index], datatype, shape, where, f"its {_RAW} entry")
        else:
            data = _typed(tensor.contents, datatype, shape, where)
        inputs[name] = InputTensor(name, datatype, shape, data, params)
    outputs: list[RequestedOutput] = []
    seen: set[str] = set()
    for index, wanted in enumerate(message.outputs):
        if not wanted.name:
            raise invalid(f"inference request: outputs[{index}] needs a name")
        if wanted.name in seen:
            raise invalid(f"output '{wanted.name}' is requested twice")
        seen.add(wanted.name)
        params = parameter_values(wanted.parameters)
        refuse_shared_memory(params, f"output '{wanted.name}'")
        if "classification" in params:
            raise invalid(
                f"output '{wanted.name}': parameters.classification (Triton's classification "
                "extension) is not supported; request the 'probabilities' output instead"
            )
        outputs.append(RequestedOutput(wanted.name, None, params))
    return InferRequest(message.id or None, inputs, outputs, parameter_values(message.parameters))


def _fill_contents(contents: Any, tensor: InputTensor) -> None:
    values = getattr(contents, CONTENTS_FIELDS[tensor.datatype])
    flat = tensor.data.ravel()
    if tensor.datatype == "BYTES":
        values.extend(e.encode("utf-8") if isinstance(e, str) else bytes(e) for e in flat)
    else:
        values.extend(flat.tolist())


def encode_infer_response(
    model_name: str,
    outputs: Mapping[str, np.ndarray | InputTensor],
    *,
    model_version: str,
    request: InferRequest,
    request_id: str,
    raw: bool,
) -> Any:
    """A ``ModelInferResponse``: the outputs the request asks for (all by default, an unknown
    name is a 400), in raw contents when ``raw`` (or when a datatype has no typed field),
    else typed."""
    selected = [as_tensor(name, value) for name, value, _ in select_outputs(outputs, request)]
    raw = raw or any(t.datatype not in CONTENTS_FIELDS for t in selected)
    response = pb.ModelInferResponse(
        model_name=model_name, model_version=model_version, id=request_id
    )
    for tensor in selected:
        out = response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        if raw:
            response.raw_output_contents.append(encode_binary(tensor.data, tensor.datatype))
        else:
            _fill_contents(out.contents, tensor)
    return response
