"""Tensor data of the Open Inference Protocol: datatypes and the two layouts of elements.

- JSON ``data``: a flat or nested list of booleans, numbers or strings, row major;
- the binary tensor data extension: little-endian, row major, no padding; BOOL as one byte
  (0 or 1), BYTES as a 4-byte little-endian length before each element's bytes.

:mod:`conveyor.serving.protocols.v2` splits bodies into tensors and calls these per tensor;
``where`` names the tensor in every error (a 400 naming it).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from typing import Any

import numpy as np

from conveyor.serving.protocols.errors import ProtocolError, invalid

__all__ = [
    "DATATYPES",
    "datatype_of",
    "decode_binary",
    "decode_json",
    "encode_binary",
    "encode_json",
]

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


def decode_json(data: Any, datatype: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    """A tensor from JSON ``data`` (BYTES elements come back as :class:`bytes`)."""
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


def decode_binary(
    chunk: bytes,
    datatype: str,
    shape: tuple[int, ...],
    where: str,
    source: str = "binary_data_size",
) -> np.ndarray:
    """A tensor from its bytes of binary tensor data (the same layout as gRPC raw contents).

    ``source`` names where the bytes came from in errors (the JSON header's
    ``binary_data_size``, or a gRPC request's ``raw_input_contents`` entry).
    """
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
                f"{where}: {source} is {len(chunk)} bytes but {count} BYTES elements "
                f"use {offset} bytes"
            )
        return out.reshape(shape)
    dtype = DATATYPES[datatype]
    if len(chunk) != count * dtype.itemsize:
        raise invalid(
            f"{where}: {source} is {len(chunk)} bytes but shape {list(shape)} of {datatype} "
            f"needs {count * dtype.itemsize} bytes"
        )
    if datatype == "BOOL":
        raw = np.frombuffer(chunk, dtype=np.uint8)
        if raw.size and raw.max() > 1:
            raise invalid(f"{where}: binary BOOL elements must be bytes 0 or 1")
        return raw.astype(np.bool_).reshape(shape)
    return np.frombuffer(chunk, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)


def encode_binary(data: np.ndarray, datatype: str) -> bytes:
    """The binary tensor data of a tensor (str elements of BYTES are UTF-8 encoded)."""
    if datatype == "BYTES":
        parts = []
        for element in data.ravel():
            raw = element.encode("utf-8") if isinstance(element, str) else bytes(element)
            parts.append(struct.pack("<I", len(raw)))
            parts.append(raw)
        return b"".join(parts)
    dtype = DATATYPES[datatype]
    return np.ascontiguousarray(data, dtype=dtype.newbyteorder("<")).tobytes()


def encode_json(data: np.ndarray, datatype: str, name: str) -> list[Any]:
    """The flat JSON ``data`` of output ``name``; BYTES that are not UTF-8 are a 500."""
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
