"""The gRPC codec of the Open Inference Protocol: typed and raw contents, checks, answers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conveyor.serving.protocols import open_inference_pb2 as pb
from conveyor.serving.protocols.errors import ProtocolError
from conveyor.serving.protocols.tensor_data import DATATYPES, encode_binary
from conveyor.serving.protocols.v2 import InferRequest, RequestedOutput
from conveyor.serving.protocols.v2_grpc import (
    CONTENTS_FIELDS,
    encode_infer_response,
    parse_infer_request,
)

NUMERIC = [d for d in DATATYPES if d not in ("BYTES", "FP16")]


def _arrays(datatype: str) -> st.SearchStrategy[np.ndarray]:
    dtype = DATATYPES[datatype]
    elements = (
        st.floats(width=32 if datatype == "FP32" else 64, allow_nan=False)
        if dtype.kind == "f"
        else None
    )
    return hnp.arrays(
        dtype, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), elements=elements
    )


def _typed_request(name: str, datatype: str, array: np.ndarray) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name=name, datatype=datatype, shape=array.shape)
    getattr(tensor.contents, CONTENTS_FIELDS[datatype]).extend(array.ravel().tolist())
    return request


@settings(max_examples=60, deadline=None)
@given(data=st.data(), datatype=st.sampled_from(NUMERIC), raw=st.booleans())
def test_typed_and_raw_contents_give_back_the_tensor(
    data: st.DataObject, datatype: str, raw: bool
) -> None:
    array = data.draw(_arrays(datatype))
    if raw:
        request = pb.ModelInferRequest(model_name="m")
        request.inputs.add(name="t", datatype=datatype, shape=array.shape)
        request.raw_input_contents.append(encode_binary(array, datatype))
    else:
        request = _typed_request("t", datatype, array)
    parsed = parse_infer_request(pb.ModelInferRequest.FromString(request.SerializeToString()))
    tensor = parsed.inputs["t"]
    assert tensor.datatype == datatype and tensor.shape == array.shape
    assert tensor.data.dtype == array.dtype
    np.testing.assert_array_equal(tensor.data, array)


@settings(max_examples=40, deadline=None)
@given(
    texts=st.lists(st.binary(max_size=20), min_size=1, max_size=6),
    raw=st.booleans(),
)
def test_bytes_elements_round_trip_both_ways(texts: list[bytes], raw: bool) -> None:
    array = np.empty(len(texts), dtype=object)
    array[:] = texts
    if raw:
        request = pb.ModelInferRequest(model_name="m")
        request.inputs.add(name="b", datatype="BYTES", shape=[len(texts)])
        request.raw_input_contents.append(encode_binary(array, "BYTES"))
    else:
        request = _typed_request("b", "BYTES", array)
    parsed = parse_infer_request(request)
    assert parsed.inputs["b"].data.tolist() == texts
    answer = encode_infer_response(
        "m",
        {"out": parsed.inputs["b"].data},
        model_version="1",
        request=parsed,
        request_id="r",
        raw=raw,
    )
    if raw:
        assert answer.raw_output_contents[0] == encode_binary(array, "BYTES")
    else:
        assert list(answer.outputs[0].contents.bytes_contents) == texts


def _request() -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m", id="abc")
    x = request.inputs.add(name="x", datatype="FP64", shape=[2])
    x.contents.fp64_contents.extend([0.5, 1.5])
    n = request.inputs.add(name="n", datatype="INT8", shape=[2, 1])
    n.contents.int_contents.extend([1, -3])
    return request


def test_ids_parameters_and_requested_outputs_are_read() -> None:
    request = _request()
    request.parameters["priority"].int64_param = 3
    request.outputs.add(name="label").parameters["top"].bool_param = True
    parsed = parse_infer_request(request)
    assert parsed.id == "abc" and parsed.parameters == {"priority": 3}
    assert parsed.outputs == [RequestedOutput("label", None, {"top": True})]
    assert parsed.inputs["n"].data.dtype == np.int8 and parsed.inputs["n"].shape == (2, 1)
    assert parse_infer_request(pb.ModelInferRequest(model_name="m")).id is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: setattr(r.inputs[1], "name", ""), "inputs[1] needs a name"),
        (lambda r: setattr(r.inputs[1], "name", "x"), "input 'x' is given twice"),
        (lambda r: setattr(r.inputs[0], "datatype", "fp64"), "unknown datatype 'fp64'"),
        (lambda r: r.inputs[0].shape.append(-1), "non-negative"),
        (lambda r: r.inputs[0].contents.fp64_contents.append(2.0), "has 3 elements but shape [2]"),
        (lambda r: r.inputs[1].contents.int_contents.__setitem__(0, 300), "300 in contents"),
        (lambda r: r.inputs[0].contents.fp32_contents.append(1.0), "takes contents.fp64_contents"),
        (lambda r: setattr(r.inputs[0], "datatype", "FP16"), "FP16 must be sent in raw"),
        (lambda r: r.raw_input_contents.append(b"1"), "raw_input_contents has 1 entries"),
        (
            lambda r: (
                r.inputs[0]
                .parameters["shared_memory_region"]
                .MergeFrom(pb.InferParameter(string_param="region"))
            ),
            "shared memory",
        ),
        (lambda r: [r.outputs.add(name="p") for _ in range(2)], "output 'p' is requested twice"),
        (
            lambda r: (
                r.outputs.add(name="p")
                .parameters["classification"]
                .MergeFrom(pb.InferParameter(int64_param=2))
            ),
            "classification",
        ),
    ],
)
def test_bad_requests_are_400s_naming_the_field(change: object, message: str) -> None:
    request = _request()
    change(request)  # type: ignore[operator]
    with pytest.raises(ProtocolError) as refused:
        parse_infer_request(request)
    assert refused.value.status == 400 and message in refused.value.message


def test_raw_contents_are_checked_against_the_shape() -> None:
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype="FP64", shape=[3])
    request.raw_input_contents.append(np.zeros(2).tobytes())
    with pytest.raises(ProtocolError, match="input 'x': its raw_input_contents entry is 16 bytes"):
        parse_infer_request(request)
    request.raw_input_contents[0] = np.zeros(3).tobytes()
    request.inputs[0].contents.fp64_contents.append(1.0)
    with pytest.raises(ProtocolError, match="has contents although the request uses"):
        parse_infer_request(request)


def test_answers_follow_the_requested_outputs_and_fall_back_to_raw_for_fp16() -> None:
    outputs = {"label": np.array([1, 0]), "probabilities": np.array([[0.2, 0.8], [0.9, 0.1]])}
    request = InferRequest("r", {}, [RequestedOutput("probabilities")])
    answer = encode_infer_response(
        "m", outputs, model_version="3", request=request, request_id="r", raw=False
    )
    assert [o.name for o in answer.outputs] == ["probabilities"]
    assert list(answer.outputs[0].shape) == [2, 2] and answer.outputs[0].datatype == "FP64"
    assert list(answer.outputs[0].contents.fp64_contents) == [0.2, 0.8, 0.9, 0.1]
    assert (answer.model_name, answer.model_version, answer.id) == ("m", "3", "r")
    with pytest.raises(ProtocolError, match="unknown output 'margin'"):
        encode_infer_response(
            "m",
            outputs,
            model_version="3",
            request=InferRequest("r", {}, [RequestedOutput("margin")]),
            request_id="r",
            raw=False,
        )
    half = {"h": np.array([1.5], dtype=np.float16), "label": np.array([1])}
    mixed = encode_infer_response(
        "m", half, model_version="1", request=InferRequest(None, {}), request_id="r", raw=False
    )
    assert len(mixed.raw_output_contents) == 2  # never typed and raw in one answer
    assert not mixed.outputs[1].HasField("contents")
