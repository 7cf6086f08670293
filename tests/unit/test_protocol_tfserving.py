"""TensorFlow Serving REST codec (tensorflow_serving/g3doc/api_rest.md)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conveyor.serving.protocols import ModelOutputs, ProtocolError, TabularBatch, tfserving
from conveyor.serving.protocols.tfserving import SINGLE_INPUT, ModelVersionStatus

# --------------------------------------------------------------------- spec examples


def test_row_format_single_input_scalars() -> None:
    # "Specifying input tensors in row format": a list of 3 scalar tensors.
    request = tfserving.parse_predict_request('{"instances": [ "foo", "bar", "baz" ]}')
    assert request.format == "row"
    assert not request.named
    assert request.inputs[SINGLE_INPUT].tolist() == ["foo", "bar", "baz"]
    assert request.to_tabular().num_rows == 3


def test_row_format_single_input_tensors() -> None:
    # Same section: a list of 2 tensors each of [1, 2] shape.
    request = tfserving.parse_predict_request('{"instances": [ [[1, 2]], [[3, 4]] ]}')
    assert request.inputs[SINGLE_INPUT].shape == (2, 1, 2)


SPEC_ROWS = """
{
 "instances": [
   {"tag": "foo", "signal": [1, 2, 3, 4, 5], "sensor": [[1, 2], [3, 4]]},
   {"tag": "bar", "signal": [3, 4, 1, 2, 5], "sensor": [[4, 5], [6, 8]]}
 ]
}
"""
# The spec prints `[3, 4, 1, 2, 5]]` (one bracket too many) in the second instance; fixed here.

SPEC_COLUMNS = """
{
 "inputs": {
   "tag": ["foo", "bar"],
   "signal": [[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]],
   "sensor": [[[1, 2], [3, 4]], [[4, 5], [6, 8]]]
 }
}
"""


def test_row_and_columnar_spec_examples_are_the_same_tensors() -> None:
    # "Specifying input tensors in column format": the columnar form of the row example.
    rows = tfserving.parse_predict_request(SPEC_ROWS)
    cols = tfserving.parse_predict_request(SPEC_COLUMNS)
    assert (rows.format, cols.format) == ("row", "columnar")
    assert rows.inputs.keys() == cols.inputs.keys() == {"tag", "signal", "sensor"}
    for name in rows.inputs:
        assert rows.inputs[name].shape == cols.inputs[name].shape
        assert rows.inputs[name].tolist() == cols.inputs[name].tolist()
    assert rows.inputs["sensor"].shape == (2, 2, 2)
    frame = rows.to_tabular().to_pandas()
    assert frame["tag"].tolist() == ["foo", "bar"]
    assert frame["signal"][1].tolist() == [3, 4, 1, 2, 5]


def test_half_plus_three_example() -> None:
    # "Example": predict on half_plus_three.
    request = tfserving.parse_predict_request(b'{"instances": [1.0,2.0,5.0]}')
    x = request.inputs[SINGLE_INPUT]
    assert tfserving.encode_predict_response({"y": x * 0.5 + 3}) == {"predictions": [3.5, 4.0, 5.5]}
    # ... and regress with an explicit signature.
    regress = tfserving.parse_regress_request(
        '{"signature_name": "tensorflow/serving/regress", "examples": [{"x": 1.0}, {"x": 2.0}]}'
    )
    assert regress.signature_name == "tensorflow/serving/regress"
    values = regress.examples.columns["x"] * 0.5 + 3
    assert tfserving.encode_regress_response(values) == {"results": [3.5, 4.0]}


def test_model_status_example() -> None:
    # "Example": GET /v1/models/half_plus_three.
    assert tfserving.model_status_response([ModelVersionStatus(123)]) == {
        "model_version_status": [
            {
                "version": "123",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    with pytest.raises(ValueError, match="unknown model state"):
        ModelVersionStatus(1, state="READY").to_json()


def test_classify_with_binary_values_example() -> None:
    # "Encoding binary values": a classify request with an image and a caption.
    request = tfserving.parse_classify_request(
        """{
          "signature_name": "classify_objects",
          "examples": [
            {"image": { "b64": "aW1hZ2UgYnl0ZXM=" }, "caption": "seaside"},
            {"image": { "b64": "YXdlc29tZSBpbWFnZSBieXRlcw==" }, "caption": "mountains"}
          ]
        }"""
    )
    assert request.signature_name == "classify_objects"
    assert request.examples.columns["image"].tolist() == [b"image bytes", b"awesome image bytes"]
    assert request.examples.columns["caption"].tolist() == ["seaside", "mountains"]


def test_classify_response_and_context() -> None:
    # "Classify and Regress API": context is shared by every example.
    request = tfserving.parse_classify_request(
        '{"context": {"country": "NO"}, "examples": [{"age": 30}, {"age": 41}]}'
    )
    assert request.examples.columns["country"].tolist() == ["NO", "NO"]
    outputs = ModelOutputs(
        predictions=np.array(["no", "yes"]),
        probabilities=np.array([[0.75, 0.25], [0.5, 0.5]]),
        class_labels=["no", "yes"],
    )
    assert tfserving.encode_classify_response(outputs) == {
        "results": [[["no", 0.75], ["yes", 0.25]], [["no", 0.5], ["yes", 0.5]]]
    }
    # Without labels the spec allows empty strings.
    assert tfserving.encode_classify_response(np.array([[1.0]])) == {"results": [[["", 1.0]]]}
    assert tfserving.encode_regress_response(outputs.__class__(np.array([1.5]))) == {
        "results": [1.5]
    }


def test_predict_response_formats() -> None:
    # "Response format": one output drops the name; several give objects per row / by name.
    outputs = ModelOutputs(
        predictions=np.array([1, 0]), probabilities=np.array([[0.2, 0.8], [0.9, 0.1]])
    )
    assert tfserving.encode_predict_response(outputs, "row") == {
        "predictions": [
            {"predictions": 1, "probabilities": [0.2, 0.8]},
            {"predictions": 0, "probabilities": [0.9, 0.1]},
        ]
    }
    assert tfserving.encode_predict_response(outputs, "columnar") == {
        "outputs": {"predictions": [1, 0], "probabilities": [[0.2, 0.8], [0.9, 0.1]]}
    }
    assert tfserving.encode_predict_response({"y": np.array([1.0])}, "columnar") == {
        "outputs": [1.0]
    }


def test_binary_outputs_and_nan() -> None:
    # "Output of binary values" and "JSON conformance".
    raw = np.array([b"\x00\xff"], dtype=object)
    body = tfserving.encode_predict_response({"img_bytes": raw, "v": np.array([np.nan])})
    assert body["predictions"][0]["img_bytes"] == {"b64": base64.b64encode(b"\x00\xff").decode()}
    assert b"NaN" in tfserving.dumps(body)
    request = tfserving.parse_predict_request('{"instances": [1.0, NaN, Infinity]}')
    assert np.isnan(request.inputs[SINGLE_INPUT][1])


def test_metadata_response_shape() -> None:
    meta = tfserving.model_metadata_response(
        "m", 1, {"x": ("DT_FLOAT", [-1, 20])}, {"y": (tfserving.tf_dtype(np.int64), None)}
    )
    assert meta["model_spec"] == {"name": "m", "signature_name": "", "version": "1"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["method_name"] == "tensorflow/serving/predict"
    assert sig["inputs"]["x"] == {
        "dtype": "DT_FLOAT",
        "tensor_shape": {
            "dim": [{"size": "-1", "name": ""}, {"size": "20", "name": ""}],
            "unknown_rank": False,
        },
        "name": "x",
    }
    assert sig["outputs"]["y"]["tensor_shape"] == {"dim": [], "unknown_rank": True}
    assert sig["outputs"]["y"]["dtype"] == "DT_INT64"
    assert tfserving.tf_dtype(object) == "DT_STRING"


# --------------------------------------------------------------------- round trips


@given(
    columns=st.dictionaries(
        st.text("abcdefgh", min_size=1, max_size=5),
        st.sampled_from([np.int64, np.float64, np.bool_]),
        min_size=1,
        max_size=4,
    ),
    rows=st.integers(1, 5),
    data=st.data(),
)
@settings(max_examples=60, deadline=None)
def test_row_and_columnar_round_trip(
    columns: dict[str, type], rows: int, data: st.DataObject
) -> None:
    arrays = {
        name: data.draw(
            hnp.arrays(
                dtype,
                st.tuples(st.just(rows)).map(tuple)
                if name.startswith("a")
                else hnp.array_shapes(min_dims=1, max_dims=3, max_side=3).map(
                    lambda s: (rows, *s[1:])
                ),
                elements=st.floats(-1e9, 1e9) if dtype is np.float64 else None,
            )
        )
        for name, dtype in columns.items()
    }
    formats: tuple[tfserving.Format, ...] = ("row", "columnar")
    for fmt in formats:
        response = tfserving.encode_predict_response(arrays, fmt)
        key = "predictions" if fmt == "row" else "outputs"
        if len(arrays) == 1:
            request = {"instances" if fmt == "row" else "inputs": response[key]}
            ((name, array),) = arrays.items()
            parsed = tfserving.parse_predict_request(json.dumps(request)).inputs[SINGLE_INPUT]
            assert parsed.tolist() == array.tolist()
            continue
        request = {"instances" if fmt == "row" else "inputs": response[key]}
        parsed_all = tfserving.parse_predict_request(json.dumps(request))
        assert parsed_all.format == fmt
        for name, array in arrays.items():
            assert parsed_all.inputs[name].shape == array.shape
            assert parsed_all.inputs[name].tolist() == array.tolist()
        assert parsed_all.to_tabular().num_rows == rows


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=5))
@settings(max_examples=30, deadline=None)
def test_bytes_round_trip(values: list[bytes]) -> None:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    response = tfserving.encode_predict_response({"x_bytes": array}, "columnar")
    parsed = tfserving.parse_predict_request(json.dumps({"inputs": response["outputs"]}))
    assert parsed.inputs[SINGLE_INPUT].tolist() == values


# --------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        ("{bad", "JSON parse error"),
        ("[1]", "must be a JSON object"),
        ("{}", "missing 'instances' or 'inputs' key"),
        ('{"instances": [1], "inputs": [1]}', "either 'instances' or 'inputs' but not both"),
        ('{"instances": 1}', "'instances' must be a list"),
        ('{"instances": []}', "'instances' is an empty list"),
        ('{"inputs": {}}', "'inputs' is an empty object"),
        ('{"signature_name": 3, "instances": [1]}', "'signature_name' must be a string"),
        ('{"instances": [{"a": 1}, 2]}', r"instances\[1\] is not an object"),
        (
            '{"instances": [{"a": 1, "b": 2}, {"a": 1}]}',
            r"input 'b' is missing from instances\[1\]",
        ),
        ('{"instances": [{"a": 1}, {"a": 1, "c": 2}]}', r"input 'c' is only in instances\[1\]"),
        (
            '{"instances": [{"a": [1, 2]}, {"a": [1]}]}',
            r"input 'a' has shape \[1\] in instances\[1\] but \[2\] in instances\[0\]",
        ),
        ('{"instances": [{"a": 1}, {"a": "x"}]}', "input 'a' mixes value types"),
        ('{"inputs": {"a": [1, "x"]}}', r"input 'a': mixes value types \(number, string\)"),
        ('{"inputs": {"a": [[1, 2], [3]]}}', "input 'a': lists must be rectangular"),
        ('{"inputs": {"a": [["x", "y"], ["z"]]}}', "input 'a': lists must be rectangular"),
        ('{"inputs": {"a": [null]}}', "input 'a': null is not a valid value"),
        ('{"inputs": {"a": [{"c": 1}]}}', "input 'a': objects are only allowed as"),
        ('{"inputs": {"a": {"b64": "!!"}}}', "input 'a': 'b64' value is not valid base64"),
    ],
)
def test_predict_errors(body: str, pattern: str) -> None:
    with pytest.raises(ProtocolError, match=pattern) as err:
        tfserving.parse_predict_request(body)
    assert err.value.status == 400


def test_columnar_inputs_with_different_batch_sizes() -> None:
    # Columnar inputs need not share the 0-th dimension, but a table does.
    request = tfserving.parse_predict_request('{"inputs": {"a": [1, 2], "b": [1, 2, 3]}}')
    with pytest.raises(ProtocolError, match="input 'b' has 3 rows but input 'a' has 2") as err:
        request.to_tabular()
    assert err.value.status == 400


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        ("{}", "missing 'examples' key"),
        ('{"examples": []}', "'examples' must be a non-empty list"),
        ('{"examples": [1]}', r"examples\[0\] must be an object"),
        ('{"examples": [{"a": 1}], "context": []}', "'context' must be an object"),
        (
            '{"examples": [{"a": 1}], "context": {"a": 2}}',
            r"feature 'a' appears in both 'context' and examples\[0\]",
        ),
        ('{"examples": [{"a": 1}, {"a": true}]}', "feature 'a' mixes value types"),
    ],
)
def test_examples_errors(body: str, pattern: str) -> None:
    for parse in (tfserving.parse_classify_request, tfserving.parse_regress_request):
        with pytest.raises(ProtocolError, match=pattern) as err:
            parse(body)
        assert err.value.status == 400


def test_missing_feature_is_none() -> None:
    request = tfserving.parse_regress_request('{"examples": [{"a": 1, "b": 2}, {"a": 3}]}')
    assert request.examples.columns["b"].tolist() == [2, None]


def test_row_response_with_different_batch_sizes() -> None:
    with pytest.raises(ProtocolError, match="output 'b' has 1 rows but output 'a' has 2") as err:
        tfserving.encode_predict_response({"a": np.ones(2), "b": np.ones(1)}, "row")
    assert err.value.status == 400


def test_classify_without_probabilities() -> None:
    with pytest.raises(ProtocolError, match="no class probabilities") as err:
        tfserving.encode_classify_response(ModelOutputs(np.array([1.0])))
    assert err.value.status == 400


def test_error_bodies_and_statuses() -> None:
    error = ProtocolError(404, "Servable not found for request: Latest(half)")
    assert json.loads(tfserving.error_body(error)) == {
        "error": "Servable not found for request: Latest(half)"
    }
    assert repr(error) == "ProtocolError(404, 'Servable not found for request: Latest(half)')"


def test_tabular_batch_rules() -> None:
    with pytest.raises(ProtocolError, match="the batch has no columns"):
        TabularBatch.from_columns({})
    with pytest.raises(ProtocolError, match="input 'a' is a scalar"):
        TabularBatch.from_columns({"a": np.array(1)})
    with pytest.raises(ValueError, match="probabilities must have shape"):
        ModelOutputs(np.array([1, 2]), probabilities=np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="1 class labels for 2"):
        ModelOutputs(np.array([1]), probabilities=np.array([[0.5, 0.5]]), class_labels=["a"])
