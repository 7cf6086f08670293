"""Canary requests: which rows can be sent, how they are encoded, how answers are compared."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conveyor.modeling.bundle_errors import SignatureError
from conveyor.modeling.bundle_signature import infer_signature
from conveyor.serving.canary_requests import canary_rows, compare, decode_answer, encode_request

FRAME = pd.DataFrame(
    {
        "x": [0.5, np.nan, 2.0, 3.0, 4.0],
        "n": [1, 2, 3, 4, 5],
        "city": ["Lyon", None, "Nice", None, "Paris"],
        "member": [True, False, True, True, False],
        "since": pd.to_datetime(
            ["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01", "2024-05-01"]
        ),
    }
)
SIGNATURE = infer_signature(FRAME).for_task("binary", [0, 1])


def test_rows_whose_missing_value_no_protocol_carries_are_left_out() -> None:
    rows, skipped = canary_rows(FRAME.assign(extra="ignored"), SIGNATURE, 2)
    assert list(rows.index) == [0, 2] and skipped == 1  # row 1 has no city; NaN x is fine
    assert list(rows.columns) == ["x", "n", "city", "member", "since"]
    rows, skipped = canary_rows(FRAME, SIGNATURE, 10)
    assert list(rows.index) == [0, 2, 4] and skipped == 2
    rows, skipped = canary_rows(FRAME, SIGNATURE, 10, skip_missing=False)
    assert len(rows) == 5 and skipped == 0
    with pytest.raises(SignatureError, match="missing column 'city'"):
        canary_rows(FRAME.drop(columns="city"), SIGNATURE, 3)


def test_requests_are_json_as_a_client_writes_them() -> None:
    rows = FRAME.iloc[:2]
    document = json.loads(encode_request(rows, "v2", "canary-0"))
    tensors = {t["name"]: t for t in document["inputs"]}
    assert document["id"] == "canary-0"
    assert {n: t["datatype"] for n, t in tensors.items()} == {
        "x": "FP64", "n": "INT64", "city": "BYTES", "member": "BOOL", "since": "BYTES",
    }  # fmt: skip
    assert tensors["x"]["data"][0] == 0.5 and np.isnan(tensors["x"]["data"][1])  # NaN token
    assert tensors["city"]["data"] == ["Lyon", None]
    assert tensors["since"]["data"] == ["2024-01-01T00:00:00", "2024-02-01T00:00:00"]
    assert all(t["shape"] == [2] for t in tensors.values())
    columnar = json.loads(encode_request(rows, "v1", "canary-0"))["inputs"]
    assert columnar["x"][0] == 0.5 and np.isnan(columnar["x"][1])
    del columnar["x"]
    assert columnar == {n: t["data"] for n, t in tensors.items() if n != "x"}


def test_answers_are_decoded_per_protocol() -> None:
    v1 = json.dumps({"outputs": {"label": [">50K"], "probabilities": [[0.1, 0.9]]}}).encode()
    got = decode_answer(v1, {}, "v1", ["label", "probabilities"])
    assert got["label"].tolist() == [">50K"] and got["probabilities"].tolist() == [[0.1, 0.9]]
    single = decode_answer(b'{"outputs": [1.5, 2.5]}', {}, "v1", ["prediction"])
    assert single["prediction"].tolist() == [1.5, 2.5]
    v2 = {
        "model_name": "m",
        "outputs": [{"name": "label", "datatype": "BYTES", "shape": [1], "data": [">50K"]}],
    }
    assert decode_answer(json.dumps(v2).encode(), {}, "v2", ["label"])["label"].tolist() == [
        ">50K"
    ]  # BYTES come back as text
    with pytest.raises(ValueError, match="no 'outputs' in the answer"):
        decode_answer(b'{"predictions": []}', {}, "v1", ["label"])


def test_compare_names_every_differing_row_and_output() -> None:
    expected = {
        "label": np.array([">50K", "<=50K", ">50K"], dtype=object),
        "probabilities": np.array([[0.2, 0.8], [0.7, 0.3], [0.4, 0.6]]),
    }
    got = {
        "label": np.array([">50K", ">50K", ">50K"], dtype=object),
        "probabilities": np.array([[0.2, 0.8], [0.7, 0.3], [0.4 + 1e-6, 0.6 - 1e-6]]),
    }
    differences = compare(expected, got, [10, 11, 12])
    assert [d.describe() for d in differences] == [
        "row 11 label: expected '<=50K', got '>50K'",
        "row 12 probabilities: expected [0.4, 0.6], got [0.400001, 0.599999]",
    ]
    assert [d.output for d in compare(expected, got, [10, 11, 12], tolerance=1e-5)] == ["label"]
    missing = compare(expected, {"label": expected["label"]}, [10, 11, 12])
    assert [(d.row, d.got) for d in missing] == [
        (10, "no 'probabilities' in the answer"),
        (11, "no 'probabilities' in the answer"),
        (12, "no 'probabilities' in the answer"),
    ]
    labels = compare({"label": np.array([1, 0])}, {"label": np.array([1.0, 0.0])}, [0, 1])
    assert labels == [], "1 and 1.0 are the same label"
