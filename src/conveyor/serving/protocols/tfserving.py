"""TensorFlow Serving REST API codec (``tensorflow_serving/g3doc/api_rest.md``).

Parses ``:predict`` bodies in row (``instances``) and columnar (``inputs``) format and
``:classify`` / ``:regress`` bodies (``examples`` + ``context``), and encodes the responses the
way TF Serving does: ``predictions`` for row requests, ``outputs`` for columnar ones, ``results``
for classify and regress, ``{"error": ...}`` with 400 (invalid argument) or 404 (not found).
Binary values travel as ``{"b64": ...}``; JSON's missing ``NaN``/``Infinity`` tokens are accepted
and produced, as the spec's "JSON conformance" section requires.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from conveyor.serving.protocols.errors import ProtocolError, invalid
from conveyor.serving.protocols.tabular import ModelOutputs, TabularBatch

Format = Literal["row", "columnar"]

DEFAULT_SIGNATURE = "serving_default"
SINGLE_INPUT = "inputs"
"""Column name given to the one unnamed input of ``{"instances": [v, ...]}`` / ``{"inputs": v}``."""

MODEL_STATES = ("UNKNOWN", "START", "LOADING", "AVAILABLE", "UNLOADING", "END")
"""``ModelVersionStatus.State`` values of ``get_model_status.proto``."""

_TF_DTYPES: dict[str, str] = {
    "b": "DT_BOOL",
    "int8": "DT_INT8",
    "int16": "DT_INT16",
    "int32": "DT_INT32",
    "int64": "DT_INT64",
    "uint8": "DT_UINT8",
    "uint16": "DT_UINT16",
    "uint32": "DT_UINT32",
    "uint64": "DT_UINT64",
    "float16": "DT_HALF",
    "float32": "DT_FLOAT",
    "float64": "DT_DOUBLE",
}


def tf_dtype(dtype: np.dtype[Any] | type | str) -> str:
    """The TensorFlow ``DataType`` name (``DT_FLOAT``...) for a numpy dtype; text is DT_STRING."""
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return "DT_BOOL"
    if dt.kind in "OSU":
        return "DT_STRING"
    if dt.name in _TF_DTYPES:
        return _TF_DTYPES[dt.name]
    raise ValueError(f"numpy dtype {dt} has no TensorFlow DataType")


@dataclass(frozen=True)
class PredictRequest:
    """A parsed ``:predict`` body.

    ``inputs`` maps input names to arrays; a request with one unnamed input (a list of values
    in ``instances`` or a non-object ``inputs``) has the single name :data:`SINGLE_INPUT` and
    ``named`` False, so the response omits the name too.
    """

    signature_name: str | None
    format: Format
    inputs: dict[str, np.ndarray]
    named: bool = True

    def to_tabular(self) -> TabularBatch:
        """The inputs as a batch; every input must have the same 0-th dimension."""
        return TabularBatch.from_columns(self.inputs)


@dataclass(frozen=True)
class ExamplesRequest:
    """A parsed ``:classify`` or ``:regress`` body: one row per example, context broadcast."""

    signature_name: str | None
    examples: TabularBatch


# ---------------------------------------------------------------------------- decoding values


def _load(body: bytes | str) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid(f"JSON parse error: {exc}") from None
    if not isinstance(document, dict):
        raise invalid("the request body must be a JSON object")
    return document


def _signature(document: Mapping[str, Any]) -> str | None:
    name = document.get("signature_name")
    if name is not None and not isinstance(name, str):
        raise invalid("'signature_name' must be a string")
    return name


def _decode(value: Any, where: str, kinds: set[str]) -> Any:
    """Replace ``{"b64": ...}`` objects by bytes, recording the kinds of leaf values."""
    if isinstance(value, list):
        return [_decode(v, where, kinds) for v in value]
    if isinstance(value, dict):
        if set(value) == {"b64"} and isinstance(value["b64"], str):
            try:
                decoded = base64.b64decode(value["b64"], validate=True)
            except binascii.Error:
                raise invalid(f"{where}: 'b64' value is not valid base64") from None
            kinds.add("bytes")
            return decoded
        raise invalid(f'{where}: objects are only allowed as {{"b64": ...}} binary values')
    if isinstance(value, bool):
        kinds.add("bool")
    elif isinstance(value, int | float):
        kinds.add("number")
    elif isinstance(value, str):
        kinds.add("string")
    else:
        raise invalid(f"{where}: null is not a valid value")
    return value


def _to_array(value: Any, where: str) -> np.ndarray:
    kinds: set[str] = set()
    decoded = _decode(value, where, kinds)
    if len(kinds) > 1:
        raise invalid(f"{where}: mixes value types ({', '.join(sorted(kinds))})")
    try:
        if kinds & {"string", "bytes"}:
            array = np.array(decoded, dtype=object)
            probe = np.array(decoded, dtype=bytes if "bytes" in kinds else str)
            if probe.shape != array.shape:
                raise ValueError
        else:
            array = np.array(decoded)
    except (ValueError, OverflowError):
        raise invalid(f"{where}: lists must be rectangular (same length at each level)") from None
    if array.dtype == object and not kinds & {"string", "bytes"}:
        raise invalid(f"{where}: lists must be rectangular (same length at each level)")
    return array


# ---------------------------------------------------------------------------- requests


def parse_predict_request(body: bytes | str | dict[str, Any]) -> PredictRequest:
    """Parse a ``:predict`` body in row (``instances``) or columnar (``inputs``) format.

    ``body`` may also be the body already parsed as a JSON object.

    Raises:
        ProtocolError: 400 naming the field; in row format, an input whose rows disagree (a
            missing key, another shape) is named with the instance index.
    """
    document = body if isinstance(body, dict) else _load(body)
    signature = _signature(document)
    has_rows, has_cols = "instances" in document, "inputs" in document
    if has_rows and has_cols:
        raise invalid("a request can have either 'instances' or 'inputs' but not both")
    if not has_rows and not has_cols:
        raise invalid("missing 'instances' or 'inputs' key")
    if has_cols:
        columns = document["inputs"]
        if isinstance(columns, dict) and set(columns) != {"b64"}:
            if not columns:
                raise invalid("'inputs' is an empty object")
            named_columns = {k: _to_array(v, f"input '{k}'") for k, v in columns.items()}
            return PredictRequest(signature, "columnar", named_columns, named=True)
        array = _to_array(columns, "'inputs'")
        return PredictRequest(signature, "columnar", {SINGLE_INPUT: array}, named=False)
    instances = document["instances"]
    if not isinstance(instances, list):
        raise invalid("'instances' must be a list")
    if not instances:
        raise invalid("'instances' is an empty list")
    named = [isinstance(i, dict) and set(i) != {"b64"} for i in instances]
    if not any(named):
        array = _to_array(instances, "'instances'")
        return PredictRequest(signature, "row", {SINGLE_INPUT: array}, named=False)
    if not all(named):
        index = named.index(False)
        raise invalid(f"instances[{index}] is not an object like instances[0] of named inputs")
    keys = list(instances[0])
    if not keys:
        raise invalid("instances[0] has no named inputs")
    for index, instance in enumerate(instances):
        missing = [k for k in keys if k not in instance]
        extra = [k for k in instance if k not in keys]
        if missing or extra:
            name = (missing or extra)[0]
            raise invalid(
                f"input '{name}' is {'missing from' if missing else 'only in'} "
                f"instances[{index}]; in row format all named inputs must have the same 0-th "
                "dimension (use the columnar 'inputs' format otherwise)"
            )
    arrays: dict[str, np.ndarray] = {}
    for key in keys:
        rows = [_to_array(instance[key], f"input '{key}'") for instance in instances]
        for index, row in enumerate(rows):
            if row.shape != rows[0].shape:
                raise invalid(
                    f"input '{key}' has shape {list(row.shape)} in instances[{index}] but "
                    f"{list(rows[0].shape)} in instances[0]"
                )
        kinds = {row.dtype.kind for row in rows}
        if len(kinds) > 1 and not kinds <= {"i", "f"}:
            raise invalid(f"input '{key}' mixes value types across instances")
        arrays[key] = np.stack(rows)
    return PredictRequest(signature, "row", arrays, named=True)


def _parse_examples(body: bytes | str) -> ExamplesRequest:
    document = _load(body)
    signature = _signature(document)
    if "examples" not in document:
        raise invalid("missing 'examples' key")
    examples = document["examples"]
    if not isinstance(examples, list) or not examples:
        raise invalid("'examples' must be a non-empty list of objects")
    context = document.get("context", {})
    if not isinstance(context, dict):
        raise invalid("'context' must be an object")
    names: list[str] = list(context)
    for index, example in enumerate(examples):
        if not isinstance(example, dict):
            raise invalid(f"examples[{index}] must be an object")
        for key in example:
            if key in context:
                raise invalid(f"feature '{key}' appears in both 'context' and examples[{index}]")
            if key not in names:
                names.append(key)
    columns: dict[str, np.ndarray] = {}
    for name in names:
        values = [example.get(name, context.get(name)) for example in examples]
        decoded = [None if v is None else _decode(v, f"feature '{name}'", set()) for v in values]
        column = np.empty(len(decoded), dtype=object)
        column[:] = decoded
        if all(v is not None and not isinstance(v, list | bytes | str) for v in decoded):
            kinds = {type(v) for v in decoded}
            if bool in kinds and len(kinds) > 1:
                raise invalid(f"feature '{name}' mixes value types across examples")
            column = np.array(decoded)
        columns[name] = column
    return ExamplesRequest(signature, TabularBatch.from_columns(columns))


def parse_classify_request(body: bytes | str) -> ExamplesRequest:
    """Parse a ``:classify`` body (``signature_name``, ``context``, ``examples``).

    A feature missing from an example (and from the context) is None in its column.
    """
    return _parse_examples(body)


def parse_regress_request(body: bytes | str) -> ExamplesRequest:
    """Parse a ``:regress`` body; the same format as ``:classify``."""
    return _parse_examples(body)


# ---------------------------------------------------------------------------- responses


def _jsonable(array: np.ndarray, name: str) -> Any:
    """Nested lists, with bytes as ``{"b64": ...}`` when ``name`` ends in ``_bytes``."""
    if array.dtype.kind not in "OSU":
        if array.dtype.kind == "f":
            return array.astype(np.float64).tolist()
        return array.tolist()
    binary = name.endswith("_bytes")

    def convert(value: Any) -> Any:
        if isinstance(value, list):
            return [convert(v) for v in value]
        if isinstance(value, bytes):
            if binary:
                return {"b64": base64.b64encode(value).decode("ascii")}
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                return {"b64": base64.b64encode(value).decode("ascii")}
        if isinstance(value, str) and binary:
            return {"b64": base64.b64encode(value.encode("utf-8")).decode("ascii")}
        if isinstance(value, np.generic):
            return value.item()
        return value

    return convert(array.tolist())


def encode_predict_response(
    outputs: Mapping[str, np.ndarray] | ModelOutputs,
    format: Format = "row",
) -> dict[str, Any]:
    """Encode ``:predict`` outputs as TF Serving does.

    Row format: ``{"predictions": [...]}``, a list of values when there is one output, else a
    list of objects (one per row, keyed by output name). Columnar format: ``{"outputs": ...}``,
    the value of the one output, else an object keyed by output name. Output names ending in
    ``_bytes`` are encoded as ``{"b64": ...}``.

    Raises:
        ProtocolError: 400 when, in row format, outputs have different 0-th dimensions.
    """
    tensors = outputs.as_tensors() if isinstance(outputs, ModelOutputs) else dict(outputs)
    if not tensors:
        raise ProtocolError(500, "the model returned no outputs")
    arrays = {name: np.asarray(value) for name, value in tensors.items()}
    if format == "columnar":
        if len(arrays) == 1:
            ((name, array),) = arrays.items()
            return {"outputs": _jsonable(array, name)}
        return {"outputs": {name: _jsonable(a, name) for name, a in arrays.items()}}
    if len(arrays) == 1:
        ((name, array),) = arrays.items()
        return {"predictions": _jsonable(array, name)}
    batch = TabularBatch.from_columns(arrays, kind="output")
    lists = {name: _jsonable(a, name) for name, a in arrays.items()}
    return {"predictions": [{n: lists[n][i] for n in lists} for i in range(batch.num_rows)]}


def encode_classify_response(
    probabilities: np.ndarray | ModelOutputs, class_labels: Sequence[str] | None = None
) -> dict[str, Any]:
    """``{"results": [[[label, score], ...], ...]}``, one list of pairs per example.

    A model without class labels gets ``""`` labels, as the spec allows.
    """
    if isinstance(probabilities, ModelOutputs):
        if probabilities.probabilities is None:
            raise ProtocolError(400, "this model has no class probabilities; use :regress")
        class_labels = class_labels or probabilities.class_labels
        probabilities = probabilities.probabilities
    scores = np.asarray(probabilities, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"probabilities must have shape (rows, classes), got {scores.shape}")
    labels = [str(c) for c in class_labels] if class_labels is not None else [""] * scores.shape[1]
    if len(labels) != scores.shape[1]:
        raise ValueError(f"{len(labels)} class labels for {scores.shape[1]} classes")
    return {
        "results": [
            [[lab, s] for lab, s in zip(labels, row, strict=True)] for row in scores.tolist()
        ]
    }


def encode_regress_response(values: np.ndarray | ModelOutputs) -> dict[str, Any]:
    """``{"results": [v, ...]}``, one number per example."""
    if isinstance(values, ModelOutputs):
        values = values.predictions
    return {"results": np.asarray(values, dtype=np.float64).reshape(-1).tolist()}


@dataclass(frozen=True)
class ModelVersionStatus:
    """One entry of ``model_version_status``."""

    version: str | int
    state: str = "AVAILABLE"
    error_code: str = "OK"
    error_message: str = ""

    def to_json(self) -> dict[str, Any]:
        """The JSON form of ``ModelVersionStatus`` (int64 version as a string, as proto3 does)."""
        if self.state not in MODEL_STATES:
            raise ValueError(f"unknown model state {self.state!r}")
        return {
            "version": str(self.version),
            "state": self.state,
            "status": {"error_code": self.error_code, "error_message": self.error_message},
        }


def model_status_response(statuses: Sequence[ModelVersionStatus]) -> dict[str, Any]:
    """``GetModelStatusResponse``: ``{"model_version_status": [...]}``."""
    return {"model_version_status": [s.to_json() for s in statuses]}


def _tensor_info(name: str, dtype: str, shape: Sequence[int] | None) -> dict[str, Any]:
    tensor_shape: dict[str, Any] = (
        {"dim": [{"size": str(d), "name": ""} for d in shape], "unknown_rank": False}
        if shape is not None
        else {"dim": [], "unknown_rank": True}
    )
    return {"dtype": dtype, "tensor_shape": tensor_shape, "name": name}


def model_metadata_response(
    name: str,
    version: str | int,
    inputs: Mapping[str, tuple[str, Sequence[int] | None]],
    outputs: Mapping[str, tuple[str, Sequence[int] | None]],
    *,
    signature_name: str = DEFAULT_SIGNATURE,
    method_name: str = "tensorflow/serving/predict",
) -> dict[str, Any]:
    """``GetModelMetadataResponse`` with one signature.

    ``inputs`` and ``outputs`` map tensor names to ``(DT_* dtype, shape)``; -1 marks a variable
    dimension and a None shape an unknown rank. The tensor's graph name is the key itself.
    """

    def infos(tensors: Mapping[str, tuple[str, Sequence[int] | None]]) -> dict[str, Any]:
        return {key: _tensor_info(key, dtype, shape) for key, (dtype, shape) in tensors.items()}

    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(version)},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    signature_name: {
                        "inputs": infos(inputs),
                        "outputs": infos(outputs),
                        "method_name": method_name,
                    }
                }
            }
        },
    }


def dumps(document: Mapping[str, Any]) -> bytes:
    """Serialize a response, writing ``NaN``/``Infinity`` tokens as TF Serving does."""
    return json.dumps(document, allow_nan=True).encode("utf-8")


def error_body(error: ProtocolError) -> bytes:
    """The JSON error body ``{"error": message}``."""
    return dumps(error.to_body())
