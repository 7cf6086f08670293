"""The numeric fast path agrees with the general path wherever it answers, and steps aside
everywhere else."""

from __future__ import annotations

import gc
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.modeling.bundle import LoadedBundle, load_bundle, save_bundle
from conveyor.modeling.bundle_errors import SignatureError
from conveyor.modeling.bundle_signature import ColumnSpec, Signature
from conveyor.serving.fast_path import ArrayModels, array_model, checked_columns, numeric_instances
from conveyor.serving.inference import input_frame, model_outputs
from conveyor.serving.protocols import TabularBatch
from conveyor.serving.protocols.errors import ProtocolError
from conveyor.serving.protocols.tfserving import parse_predict_request

# -- numeric_instances vs the TF Serving codec ------------------------------------------------

numbers = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
)
values = st.one_of(numbers, numbers, numbers, st.booleans(), st.text(max_size=3), st.none())


@st.composite
def instance_documents(draw: st.DrawFn) -> Any:
    names = draw(st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, unique=True))
    rows = draw(st.integers(1, 4))
    instances = []
    for _ in range(rows):
        keys = names if draw(st.integers(0, 9)) else [*names[:-1], "z"]
        instances.append({k: draw(values) for k in keys})
    document: dict[str, Any] = {"instances": instances}
    if not draw(st.integers(0, 9)):
        document["signature_name"] = "serving_default"
    return document


@settings(max_examples=300, deadline=None)
@given(instance_documents())
def test_numeric_instances_reads_what_the_codec_reads(document: Any) -> None:
    fast = numeric_instances(document)
    if fast is None:
        return
    parsed = parse_predict_request(json.dumps(document))  # raises if the fast path was wrong
    assert list(fast) == list(parsed.inputs)
    for name, array in fast.items():
        assert array.dtype == parsed.inputs[name].dtype, name
        np.testing.assert_array_equal(array, parsed.inputs[name])


@pytest.mark.parametrize(
    "document",
    [
        {"instances": [{"a": 1.0}, {"a": True}]},
        {"instances": [{"a": 1.0}, {"a": "x"}]},
        {"instances": [{"a": [1.0, 2.0]}]},
        {"instances": [{"a": 1.0}, {"b": 2.0}]},
        {"instances": [{"a": 1.0}, {"a": 2.0, "b": 3.0}]},
        {"instances": [{"a": 2**64}]},
        {"instances": [{}]},
        {"instances": [[1.0, 2.0]]},
        {"instances": []},
        {"inputs": {"a": [1.0]}},
        {"instances": [{"a": 1.0}], "signature_name": 3},
        [1.0],
    ],
)
def test_numeric_instances_steps_aside_for_anything_else(document: Any) -> None:
    assert numeric_instances(document) is None


def test_numeric_instances_keeps_ints_and_widens_mixed_columns() -> None:
    fast = numeric_instances({"instances": [{"i": 1, "m": 1}, {"i": 2, "m": 2.5}]})
    assert fast is not None
    assert (fast["i"].dtype, fast["m"].dtype) == (np.int64, np.float64)
    assert fast["m"].tolist() == [1.0, 2.5]


# -- checked_columns vs input_frame -----------------------------------------------------------

SPECS = [
    ColumnSpec("f", "float"),
    ColumnSpec("fn", "float", nullable=True),
    ColumnSpec("i", "int"),
    ColumnSpec("in", "int", nullable=True),
]
SIGNATURE = Signature(tuple(SPECS))

cell = st.one_of(
    st.integers(-5, 5).map(float),
    st.floats(-1e6, 1e6),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.5]),
)


@st.composite
def column_sets(draw: st.DrawFn) -> dict[str, np.ndarray]:
    rows = draw(st.integers(1, 4))
    columns: dict[str, np.ndarray] = {}
    for spec in SPECS:
        kind = draw(st.sampled_from(["float", "int", "bool", "str", "2d", "missing"]))
        if kind == "missing":
            continue
        if kind == "int":
            columns[spec.name] = np.array(
                draw(st.lists(st.integers(-9, 9), min_size=rows, max_size=rows))
            )
        elif kind == "bool":
            columns[spec.name] = np.array([True] * rows)
        elif kind == "str":
            columns[spec.name] = np.array(["x"] * rows, dtype=object)
        else:
            data = np.array(draw(st.lists(cell, min_size=rows, max_size=rows)), dtype=float)
            columns[spec.name] = data.reshape(-1, 1) if kind == "2d" else data
    if draw(st.booleans()) and not draw(st.integers(0, 4)):
        columns["extra"] = np.zeros(rows)
    return columns


@settings(max_examples=400, deadline=None)
@given(column_sets())
def test_checked_columns_accepts_only_what_the_general_check_accepts(
    columns: dict[str, np.ndarray],
) -> None:
    fast = checked_columns(SIGNATURE, columns)
    if fast is None:
        return
    rows = len(next(iter(columns.values())))
    frame = input_frame(TabularBatch(columns, rows), SIGNATURE)  # raises if fast was wrong
    assert list(fast) == list(frame.columns) == SIGNATURE.names
    for name, array in fast.items():
        assert array.ndim == 1
        np.testing.assert_array_equal(array, frame[name].to_numpy())


@pytest.mark.parametrize(
    ("column", "why"),
    [
        ({"f": np.array([math.nan])}, "NaN where the signature forbids it"),
        ({"fn": np.array([math.inf])}, "Infinity"),
        ({"i": np.array([1.5])}, "a fraction in an int column"),
        ({"f": np.array([True])}, "a bool in a float column"),
        ({"f": np.array(["1.0"], dtype=object)}, "text"),
        ({"f": np.zeros((1, 2))}, "two values per row"),
    ],
)
def test_checked_columns_leaves_errors_to_the_general_path(
    column: dict[str, np.ndarray], why: str
) -> None:
    columns = {"f": np.array([1.0]), "fn": np.array([1.0]), "i": np.array([1]), "in": np.array([1])}
    columns.update(column)
    assert checked_columns(SIGNATURE, columns) is None, why
    with pytest.raises((ProtocolError, SignatureError)):
        input_frame(TabularBatch(columns, 1), SIGNATURE)


def test_checked_columns_allows_nan_where_nullable_and_integral_floats_for_ints() -> None:
    columns = {
        "f": np.array([1.0]),
        "fn": np.array([math.nan]),
        "i": np.array([[3.0]]),
        "in": np.array([math.nan]),
    }
    fast = checked_columns(SIGNATURE, columns)
    assert fast is not None
    assert fast["i"].tolist() == [3.0] and fast["i"].ndim == 1


# -- ArrayModel -------------------------------------------------------------------------------


def fitted(tmp_path: Path, kind: str, seed: int = 0) -> LoadedBundle:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(size=300), "b": rng.integers(0, 9, 300)})
    y = (frame["a"] + frame["b"] / 4 + rng.normal(0, 0.3, 300) > 1).astype(int)
    if kind == "logistic":
        model: Any = LogisticRegression().fit(frame, y)
        task = "binary"
    elif kind == "linear":
        model, task = LinearRegression().fit(frame, frame["a"] * 2), "regression"
    else:  # a pipeline that selects columns by name: it needs a DataFrame
        select = ColumnTransformer([("s", StandardScaler(), ["a", "b"])])
        model, task = make_pipeline(select, LogisticRegression()).fit(frame, y), "binary"
    folder = tmp_path / f"{kind}-{seed}"
    save_bundle(folder, model, signature=frame, task=task)
    return load_bundle(folder)


@pytest.mark.parametrize(("kind", "outputs"), [("logistic", 2), ("linear", 1)])
def test_array_model_answers_exactly_what_the_bundle_answers(
    tmp_path: Path, kind: str, outputs: int
) -> None:
    bundle = fitted(tmp_path, kind)
    fast = array_model(bundle)
    assert fast is not None
    rng = np.random.default_rng(7)
    for rows in (1, 5, 64):
        columns = {"a": rng.normal(size=rows), "b": rng.integers(0, 9, rows)}
        ours = fast.outputs(columns)
        theirs = model_outputs(bundle, pd.DataFrame(columns))
        assert list(ours) == list(theirs) and len(ours) == outputs
        for name in ours:
            assert ours[name].dtype == theirs[name].dtype
            np.testing.assert_array_equal(ours[name], theirs[name])


def test_a_model_that_needs_a_dataframe_keeps_the_general_path(tmp_path: Path) -> None:
    assert array_model(fitted(tmp_path, "pipeline")) is None


def test_a_bundle_with_preprocessing_or_text_inputs_keeps_the_general_path(tmp_path: Path) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"x": [0.1, 0.9, 0.4, 0.8], "city": ["Lyon", "Nice", "Lyon", "Nice"]})
    prep = ColumnTransformer([("city", OneHotEncoder(), ["city"])], remainder="passthrough").fit(
        frame
    )
    model = LogisticRegression().fit(prep.transform(frame), [0, 1, 0, 1])
    save_bundle(tmp_path / "b", model, signature=frame, task="binary", preprocessing=prep)
    assert array_model(load_bundle(tmp_path / "b")) is None


def test_array_models_decides_once_per_bundle_and_forgets_unloaded_ones(tmp_path: Path) -> None:
    models = ArrayModels()
    first = fitted(tmp_path, "logistic", seed=1)
    decided = models.get(first)
    assert decided is not None and models.get(first) is decided
    del first, decided
    gc.collect()
    second = fitted(tmp_path, "logistic", seed=2)
    assert models.get(second) is not None
    assert len(models) == 1
