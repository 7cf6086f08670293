"""Open Inference Protocol (KServe V2) REST codec, with the binary tensor data extension."""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conveyor.serving.protocols import ProtocolError, TabularBatch, v2
from conveyor.serving.protocols.v2 import (
    DATATYPES,
    HEADER_LENGTH,
    InputTensor,
    RequestedOutput,
    TensorMetadata,
)

# --------------------------------------------------------------------- round trips


def _element_arrays(
    elements: st.SearchStrategy[bytes] | st.SearchStrategy[str],
) -> st.SearchStrategy[np.ndarray]:
    """Object arrays of ``bytes`` (text elements are UTF-8 encoded) of any small shape."""

    def fill(shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
        size = int(np.prod(shape))
        values = st.lists(elements, min_size=size, max_size=size)
        return values.map(
            lambda xs: _object_array([x.encode() if isinstance(x, str) else x for x in xs], shape)
        )

    return hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4).flatmap(fill)


def _arrays(datatype: str) -> st.SearchStrategy[np.ndarray]:
    if datatype == "BYTES":
        return _element_arrays(st.binary(max_size=8))
    return hnp.arrays(
        DATATYPES[datatype], hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)
    )


def _object_array(values: Sequence[object], shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out.reshape(shape)


def _same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    assert a.dtype == b.dtype
    if a.dtype.kind == "f":
        np.testing.assert_array_equal(a, b)  # NaN == NaN here
    else:
        assert a.tolist() == b.tolist()


@pytest.mark.parametrize("datatype", list(DATATYPES))
@given(data=st.data())
@settings(max_examples=30, deadline=None)
def test_binary_round_trip_every_datatype(datatype: str, data: st.DataObject) -> None:
    array = data.draw(_arrays(datatype))
    encoded = v2.encode_infer_request(
        {"x": InputTensor("x", datatype, array.shape, array)}, binary=True
    )
    assert HEADER_LENGTH in encoded.headers
    parsed = v2.parse_infer_request(encoded.body, encoded.headers)
    assert parsed.inputs["x"].datatype == datatype
    assert parsed.inputs["x"].shape == array.shape
    _same(parsed.inputs["x"].data, array)


def _json_arrays(datatype: str) -> st.SearchStrategy[np.ndarray]:
    shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)
    if datatype == "BYTES":  # JSON carries BYTES as UTF-8 strings
        return _element_arrays(st.text(max_size=6))
    dtype = DATATYPES[datatype]
    elements = None
    if dtype.kind == "f":  # JSON has no NaN/Infinity
        elements = st.floats(allow_nan=False, allow_infinity=False, width=dtype.itemsize * 8)
    return hnp.arrays(dtype, shapes, elements=elements)


@pytest.mark.parametrize("datatype", list(DATATYPES))
@given(data=st.data())
@settings(max_examples=30, deadline=None)
def test_json_round_trip_every_datatype(datatype: str, data: st.DataObject) -> None:
    array = data.draw(_json_arrays(datatype))
    encoded = v2.encode_infer_request({"x": InputTensor("x", datatype, array.shape, array)})
    assert HEADER_LENGTH not in encoded.headers
    assert encoded.headers["Content-Type"] == "application/json"
    parsed = v2.parse_infer_request(encoded.body, {})
    _same(parsed.inputs["x"].data, array)


@pytest.mark.parametrize("binary", [False, True])
@given(
    ints=hnp.arrays(np.int64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=5)),
    floats=hnp.arrays(np.float32, st.integers(0, 6), elements=st.floats(-1e6, 1e6, width=32)),
)
@settings(max_examples=40, deadline=None)
def test_response_round_trip(binary: bool, ints: np.ndarray, floats: np.ndarray) -> None:
    encoded = v2.encode_infer_response(
        "m",
        {"a": ints, "b": floats},
        model_version="3",
        request_id="r1",
        binary_data_output=binary,
    )
    assert (HEADER_LENGTH in encoded.headers) is binary
    parsed = v2.parse_infer_response(encoded.body, encoded.headers)
    assert (parsed.model_name, parsed.model_version, parsed.id) == ("m", "3", "r1")
    _same(parsed.outputs["a"].data, ints)
    _same(parsed.outputs["b"].data, floats)


# --------------------------------------------------------------------- spec examples

# inference_rest.md, "Inference Request Examples". The spec's own example gives input1 shape
# [3] with one element (`"data": [true]`), which breaks its "Tensor Data" rule; it is checked
# below as an error, and here with three elements.
SPEC_REQUEST = {
    "id": "42",
    "inputs": [
        {"name": "input0", "shape": [2, 2], "datatype": "UINT32", "data": [1, 2, 3, 4]},
        {"name": "input1", "shape": [3], "datatype": "BOOL", "data": [True, False, True]},
    ],
    "outputs": [{"name": "output0"}],
}


def test_spec_json_request_and_response() -> None:
    request = v2.parse_infer_request(json.dumps(SPEC_REQUEST).encode(), {})
    assert request.id == "42"
    assert request.inputs["input0"].data.dtype == np.uint32
    assert request.inputs["input0"].data.tolist() == [[1, 2], [3, 4]]
    assert request.inputs["input1"].data.tolist() == [True, False, True]
    assert request.outputs == [RequestedOutput("output0")]
    # The model returns a [3, 2] FP32 tensor and an output that was not asked for.
    out = np.array([[1.0, 1.1], [2.0, 2.1], [3.0, 3.1]], dtype=np.float64)
    encoded = v2.encode_infer_response(
        "mymodel", {"output0": out.astype(np.float32), "other": np.zeros(3)}, request=request
    )
    assert encoded.headers == {"Content-Type": "application/json"}
    body = json.loads(encoded.body)
    assert body["id"] == "42"
    assert body["model_name"] == "mymodel"
    assert "model_version" not in body
    (output,) = body["outputs"]
    assert output["name"] == "output0"
    assert output["shape"] == [3, 2]
    assert output["datatype"] == "FP32"
    assert output["data"] == pytest.approx([1.0, 1.1, 2.0, 2.1, 3.0, 3.1], rel=1e-6)


def test_spec_example_with_wrong_element_count_is_rejected() -> None:
    bad = json.loads(json.dumps(SPEC_REQUEST))
    bad["inputs"][1]["data"] = [True]  # as printed in the spec
    with pytest.raises(ProtocolError, match=r"input 'input1'.*1 elements.*\[3\] needs 3") as err:
        v2.parse_infer_request(json.dumps(bad).encode())
    assert err.value.status == 400


def test_spec_tensor_data_nested_and_flat() -> None:
    # inference_rest.md, "Tensor Data": natural and flattened forms are the same tensor.
    for data in ([[1, 2], [4, 5]], [1, 2, 4, 5]):
        body = {"inputs": [{"name": "m", "shape": [2, 2], "datatype": "INT32", "data": data}]}
        parsed = v2.parse_infer_request(json.dumps(body).encode())
        assert parsed.inputs["m"].data.tolist() == [[1, 2], [4, 5]]


def _binary_spec_request() -> tuple[bytes, dict[str, str]]:
    # extension_binary_data.md, "Examples": 16 bytes of UINT32 then 3 bytes of BOOL.
    header = json.dumps(
        {
            "model_name": "mymodel",
            "inputs": [
                {
                    "name": "input0",
                    "shape": [2, 2],
                    "datatype": "UINT32",
                    "parameters": {"binary_data_size": 16},
                },
                {
                    "name": "input1",
                    "shape": [3],
                    "datatype": "BOOL",
                    "parameters": {"binary_data_size": 3},
                },
            ],
            "outputs": [{"name": "output0", "parameters": {"binary_data": True}}],
        }
    ).encode()
    payload = struct.pack("<4I", 1, 2, 3, 4) + bytes([1, 0, 1])
    # No Content-Type: the parser must not need one.
    return header + payload, {"inference-header-content-length": str(len(header))}


def test_spec_binary_request_and_response() -> None:
    body, headers = _binary_spec_request()
    request = v2.parse_infer_request(body, headers)
    assert request.inputs["input0"].data.tolist() == [[1, 2], [3, 4]]
    assert request.inputs["input0"].data.dtype == np.uint32
    assert request.inputs["input1"].data.tolist() == [True, False, True]
    assert request.outputs[0].binary_data is True
    out = np.arange(6, dtype=np.float32).reshape(3, 2)
    encoded = v2.encode_infer_response("mymodel", {"output0": out}, request=request)
    length = int(encoded.headers[HEADER_LENGTH])
    assert encoded.headers["Content-Type"] == "application/octet-stream"
    assert len(encoded.body) == length + 24
    header = json.loads(encoded.body[:length])
    assert header["outputs"] == [
        {
            "name": "output0",
            "shape": [3, 2],
            "datatype": "FP32",
            "parameters": {"binary_data_size": 24},
        }
    ]
    assert encoded.body[length:] == out.astype("<f4").tobytes()


def test_binary_data_output_and_per_output_override() -> None:
    body = {
        "parameters": {"binary_data_output": True},
        "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}],
        "outputs": [{"name": "a"}, {"name": "b", "parameters": {"binary_data": False}}],
    }
    request = v2.parse_infer_request(json.dumps(body).encode())
    assert request.binary_data_output
    encoded = v2.encode_infer_response("m", {"a": np.ones(2), "b": np.ones(2)}, request=request)
    header = json.loads(encoded.body[: int(encoded.headers[HEADER_LENGTH])])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 16}
    assert "data" not in header["outputs"][0]
    assert header["outputs"][1]["data"] == [1.0, 1.0]


def test_bytes_tensor_is_length_prefixed() -> None:
    array = _object_array([b"ab", b"", b"xyz"], (3,))
    encoded = v2.encode_infer_response("m", {"s": array}, binary_data_output=True)
    length = int(encoded.headers[HEADER_LENGTH])
    assert encoded.body[length:] == b"\x02\x00\x00\x00ab\x00\x00\x00\x00\x03\x00\x00\x00xyz"
    assert json.loads(encoded.body[:length])["outputs"][0]["datatype"] == "BYTES"


def test_strings_become_bytes_and_tabular_text() -> None:
    body = {
        "inputs": [
            {"name": "city", "shape": [2], "datatype": "BYTES", "data": ["Oslo", "Lima"]},
            {"name": "age", "shape": [2, 1], "datatype": "INT64", "data": [[30], [41]]},
        ]
    }
    request = v2.parse_infer_request(json.dumps(body).encode())
    assert request.inputs["city"].data.tolist() == [b"Oslo", b"Lima"]
    batch = request.to_tabular()
    assert batch.num_rows == 2
    frame = batch.to_pandas()
    assert frame["city"].tolist() == ["Oslo", "Lima"]
    assert [list(v) for v in frame["age"]] == [[30], [41]]


def test_unknown_requested_output() -> None:
    request = v2.parse_infer_request(
        json.dumps({"inputs": [], "outputs": [{"name": "nope"}]}).encode()
    )
    with pytest.raises(ProtocolError, match="unknown output 'nope'") as err:
        v2.encode_infer_response("m", {"y": np.ones(1)}, request=request)
    assert err.value.status == 400


def test_metadata_shapes() -> None:
    # inference_rest.md, "Model Metadata Response JSON Object" / "Server Metadata ...".
    meta = v2.model_metadata_response(
        "m",
        ["1", "2"],
        "sklearn",
        [TensorMetadata("x", "FP32", [-1, 20])],
        [TensorMetadata("y", "INT64", [-1])],
    )
    assert meta == {
        "name": "m",
        "versions": ["1", "2"],
        "platform": "sklearn",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 20]}],
        "outputs": [{"name": "y", "datatype": "INT64", "shape": [-1]}],
    }
    assert "versions" not in v2.model_metadata_response("m", None, "p", [], [])
    assert v2.server_metadata_response("conveyor", "0.1") == {
        "name": "conveyor",
        "version": "0.1",
        "extensions": ["binary_tensor_data"],
    }
    assert v2.model_ready_response("m", True) == {"name": "m", "ready": True}
    assert v2.server_live_response(True) == {"live": True}
    with pytest.raises(ValueError, match="unknown datatype"):
        TensorMetadata("x", "FLOAT", [1]).to_json()


def test_error_body() -> None:
    assert json.loads(v2.error_body(ProtocolError(400, "bad"))) == {"error": "bad"}


# --------------------------------------------------------------------- errors


def _one(**fields: object) -> bytes:
    tensor: dict[str, object] = {"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0]}
    tensor.update(fields)
    return json.dumps({"inputs": [tensor]}).encode()


@pytest.mark.parametrize(
    ("body", "headers", "pattern"),
    [
        (b"{not json", {}, "not valid JSON"),
        (b"\xff\xfe", {}, "not valid JSON"),
        (b"[1, 2]", {}, "must be a JSON object"),
        (b"{}", {}, "missing 'inputs'"),
        (b'{"inputs": {}}', {}, "'inputs' must be a list"),
        (b'{"inputs": [{"shape": [1]}]}', {}, r"inputs\[0\] needs a string 'name'"),
        (b'{"inputs": [], "id": 5}', {}, "'id' must be a string"),
        (_one(datatype="FLOAT32"), {}, "input 'x': unknown datatype 'FLOAT32'"),
        (_one(shape="2"), {}, "input 'x': 'shape' must be a list of non-negative integers"),
        (_one(shape=[2.0]), {}, "input 'x': 'shape' must be a list"),
        (_one(shape=[-1]), {}, "input 'x': 'shape' must be a list"),
        (_one(shape=[3]), {}, r"input 'x': 'data' has 2 elements but shape \[3\] needs 3"),
        (_one(data=["a", "b"]), {}, "input 'x': datatype FP32 needs numbers"),
        (_one(datatype="INT32", data=[1.5, 2]), {}, "input 'x': datatype INT32 needs integers"),
        (_one(datatype="BOOL", data=[1, 0]), {}, "input 'x': datatype BOOL needs booleans"),
        (_one(datatype="UINT8", data=[1, 300]), {}, "input 'x'.*out of range for UINT8"),
        (_one(datatype="BYTES", data=[1, 2]), {}, "input 'x': datatype BYTES needs strings"),
        (_one(data=None), {}, r"input 'x': 'data' has 1 elements"),
        (_one(parameters=[]), {}, "input 'x': 'parameters' must be an object"),
        (
            json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}).encode(),
            {},
            "input 'x': needs 'data' or parameters.binary_data_size",
        ),
        (
            json.dumps(
                {
                    "inputs": [
                        {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]},
                        {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]},
                    ]
                }
            ).encode(),
            {},
            "input 'x' is given twice",
        ),
        (
            json.dumps({"inputs": [], "outputs": [{"name": "y"}, {"name": "y"}]}).encode(),
            {},
            "output 'y' is requested twice",
        ),
        (
            json.dumps(
                {"inputs": [], "outputs": [{"name": "y", "parameters": {"binary_data": "yes"}}]}
            ).encode(),
            {},
            "output 'y': parameters.binary_data must be a boolean",
        ),
        (
            json.dumps({"inputs": [], "parameters": {"binary_data_output": 1}}).encode(),
            {},
            "binary_data_output must be a boolean",
        ),
        (b'{"inputs": []}', {HEADER_LENGTH: "abc"}, "header must be an integer"),
        (b'{"inputs": []}', {HEADER_LENGTH: "99"}, "header is 99 but the body has 14 bytes"),
        (b'{"inputs": []}xx', {HEADER_LENGTH: "14"}, "2 bytes of binary data are not claimed"),
    ],
)
def test_request_errors(body: bytes, headers: dict[str, str], pattern: str) -> None:
    with pytest.raises(ProtocolError, match=pattern) as err:
        v2.parse_infer_request(body, headers)
    assert err.value.status == 400


def _binary(tensor: dict[str, object], payload: bytes) -> tuple[bytes, dict[str, str]]:
    header = json.dumps({"inputs": [{"name": "x", **tensor}]}).encode()
    return header + payload, {HEADER_LENGTH: str(len(header))}


@pytest.mark.parametrize(
    ("tensor", "payload", "pattern"),
    [
        (
            {"shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
            b"\x00" * 4,
            "input 'x': binary_data_size is 8 but only 4 bytes of binary data remain",
        ),
        (
            {"shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 4}},
            b"\x00" * 4,
            r"input 'x': binary_data_size is 4 bytes but shape \[2\] of FP32 needs 8 bytes",
        ),
        (
            {"shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": -1}},
            b"",
            "input 'x': binary_data_size must be a non-negative integer",
        ),
        (
            {
                "shape": [1],
                "datatype": "FP32",
                "data": [1.0],
                "parameters": {"binary_data_size": 4},
            },
            b"\x00" * 4,
            "input 'x': has both 'data' and binary_data_size",
        ),
        (
            {"shape": [2], "datatype": "BOOL", "parameters": {"binary_data_size": 2}},
            b"\x01\x07",
            "input 'x': binary BOOL elements must be bytes 0 or 1",
        ),
        (
            {"shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 6}},
            b"\x02\x00\x00\x00ab",
            "input 'x': binary BYTES data ends after 1 of 2 elements",
        ),
        (
            {"shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}},
            b"\x09\x00\x00\x00ab",
            "input 'x': binary BYTES element 0 needs 9 bytes but only 2 remain",
        ),
        (
            {"shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 7}},
            b"\x02\x00\x00\x00abc",
            "input 'x': binary_data_size is 7 bytes but 1 BYTES elements use 6 bytes",
        ),
    ],
)
def test_binary_errors(tensor: dict[str, object], payload: bytes, pattern: str) -> None:
    body, headers = _binary(tensor, payload)
    with pytest.raises(ProtocolError, match=pattern) as err:
        v2.parse_infer_request(body, headers)
    assert err.value.status == 400


def test_non_utf8_bytes_output_in_json_is_a_server_error() -> None:
    with pytest.raises(ProtocolError, match="output 's' holds bytes that are not UTF-8") as err:
        v2.encode_infer_response("m", {"s": _object_array([b"\xff"], (1,))})
    assert err.value.status == 500


# --------------------------------------------------------------------- Triton client habits


def _binary_request() -> tuple[bytes, dict[str, str]]:
    encoded = v2.encode_infer_request(
        {"x": np.array([1.5, -2.0]), "s": _object_array([b"Z\xc3\xbcrich", b""], (2,))},
        binary=True,
        request_id="r1",
    )
    return encoded.body, encoded.headers


@pytest.mark.parametrize(
    ("coding", "compress"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),  # "deflate" is the zlib format (RFC 9110), as Triton sends
        ("identity", lambda body: body),
    ],
)
def test_compressed_request_bodies(coding: str, compress: Callable[[bytes], bytes]) -> None:
    body, headers = _binary_request()
    # Inference-Header-Content-Length counts bytes of the decoded body
    parsed = v2.parse_infer_request(compress(body), {**headers, "content-encoding": coding})
    assert parsed.id == "r1"
    np.testing.assert_array_equal(parsed.inputs["x"].data, [1.5, -2.0])
    assert parsed.to_tabular().columns["s"].tolist() == ["Zürich", ""]


@pytest.mark.parametrize(
    ("body", "coding", "limit", "status", "pattern"),
    [
        (b"{}", "br", 1 << 20, 415, "Content-Encoding 'br' is not supported; send .*gzip"),
        (b"{}", "gzip, deflate", 1 << 20, 415, "not supported"),
        (b"not gzip at all", "gzip", 1 << 20, 400, "not valid gzip data"),
        (gzip.compress(b'{"inputs": []}')[:-6], "gzip", 1 << 20, 400, "gzip body is truncated"),
        (gzip.compress(b'{"inputs": []}') + b"xx", "gzip", 1 << 20, 400, "trailing bytes"),
        (zlib.compress(b" " * 5000 + b"{}"), "deflate", 4096, 413, "over the limit of 4096"),
    ],
)
def test_bad_compressed_bodies(
    body: bytes, coding: str, limit: int, status: int, pattern: str
) -> None:
    with pytest.raises(ProtocolError, match=pattern) as err:
        v2.parse_infer_request(body, {"Content-Encoding": coding}, max_body_bytes=limit)
    assert err.value.status == status


def test_decoded_size_is_bounded_without_inflating_everything() -> None:
    bomb = zlib.compress(b"\x00" * (64 << 20))  # 64 MiB of zeros in ~64 KB
    with pytest.raises(ProtocolError, match="over the limit") as err:
        v2.parse_infer_request(bomb, {"Content-Encoding": "deflate"}, max_body_bytes=1 << 20)
    assert err.value.status == 413


@pytest.mark.parametrize(
    ("document", "pattern"),
    [
        (
            {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [2],
                        "datatype": "FP32",
                        "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 8},
                    }
                ]
            },
            r"input 'x': shared memory \(parameters.shared_memory_region\) is not supported",
        ),
        (
            {
                "inputs": [],
                "outputs": [
                    {"name": "y", "parameters": {"binary_data": False, "shared_memory_region": "r"}}
                ],
            },
            "output 'y': shared memory",
        ),
        (
            {"inputs": [], "outputs": [{"name": "p", "parameters": {"classification": 2}}]},
            "output 'p': parameters.classification .*not supported; request the 'probabilities'",
        ),
    ],
)
def test_unsupported_triton_extensions_are_refused(document: object, pattern: str) -> None:
    with pytest.raises(ProtocolError, match=pattern) as err:
        v2.parse_infer_request(json.dumps(document).encode())
    assert err.value.status == 400


def test_a_batch_without_rows_is_a_client_error() -> None:
    encoded = v2.encode_infer_request({"x": np.zeros(0), "s": _object_array([], (0,))}, binary=True)
    parsed = v2.parse_infer_request(encoded.body, encoded.headers)
    with pytest.raises(
        ProtocolError, match=r"the batch has no rows .*'x'.*send at least one"
    ) as err:
        parsed.to_tabular()
    assert err.value.status == 400
    # outputs may be empty (only a request needs rows)
    assert TabularBatch.from_columns({"y": np.zeros(0)}, kind="output").num_rows == 0


def test_triton_style_requests_with_reserved_parameters() -> None:
    """What ``tritonclient.http`` sends: an int header length, request-level parameters, output
    parameters with ``binary_data`` on every requested output."""
    header = json.dumps(
        {
            "id": "7",
            "inputs": [
                {
                    "name": "x",
                    "shape": [2, 1],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": 16},
                }
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
            "parameters": {"priority": 1, "timeout": 1000, "sequence_id": 3},
        }
    ).encode()
    body = header + np.array([1.0, 2.0], dtype="<f8").tobytes()
    parsed = v2.parse_infer_request(body, {"inference-header-content-length": f" {len(header)}"})
    assert parsed.inputs["x"].data.shape == (2, 1)
    response = v2.encode_infer_response("m", {"y": np.array([3, 4])}, request=parsed)
    assert response.headers["Content-Type"] == "application/octet-stream"
    json_part = response.body[: int(response.headers[HEADER_LENGTH])]
    assert json.loads(json_part)["outputs"] == [
        {"name": "y", "datatype": "INT64", "shape": [2], "parameters": {"binary_data_size": 16}}
    ]
