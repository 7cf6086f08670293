"""Acceptance: NVIDIA's own V2 client (``tritonclient.http``, binary tensors on by default)
against a real ``conveyor`` server with two versions of one model served side by side.

Every answer is compared with the offline predictions of the version's bundle, and the TF
Serving JSON endpoint of each version must agree with the V2 answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
import tritonclient.http.aio as triton_aio
from tritonclient.utils import InferenceServerException

from conveyor.config import load_settings
from conveyor.modeling.bundle import LoadedBundle
from conveyor.serving.app import create_app
from conveyor.serving.server import BackgroundServer, parse_size
from conveyor.store.workspace import Workspace
from serving_support import free_port, register_two_versions

ROWS = pd.DataFrame(
    {
        "x": [0.5, -1.25, 2.0, -0.1, 0.05],
        "n": [1, 7, 3, 0, 9],
        "city": ["Lyon", "Paris", "Nice", "Lyon", "Zürich"],  # an unseen, non-ASCII category
    }
)
DATATYPES = {"x": "FP64", "n": "INT64", "city": "BYTES"}


@dataclass
class Served:
    url: str
    port: int
    bundles: dict[str, LoadedBundle]  # version -> the bundle as loaded offline


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("tritonclient")
    ws = Workspace.open(load_settings(home=root / "home"))
    try:
        bundles = register_two_versions(ws, root)
        app = create_app(ws, memory_budget_bytes=parse_size("256MB"), reload_interval_s=None)
        with BackgroundServer(app, port=free_port()) as server:
            yield Served(server.url, server.port, bundles)
    finally:
        ws.close()


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[triton.InferenceServerClient]:
    http = triton.InferenceServerClient(
        url=f"127.0.0.1:{served.port}", connection_timeout=10, network_timeout=30
    )
    try:
        yield http
    finally:
        http.close()


def _inputs(
    frame: pd.DataFrame, binary: bool = True, column: bool = False
) -> list[triton.InferInput]:
    """One InferInput per signature input; strings as a numpy object array (BYTES)."""
    inputs = []
    for name, datatype in DATATYPES.items():
        array = frame[name].to_numpy(object if datatype == "BYTES" else None)
        if column:
            array = array.reshape(-1, 1)
        tensor = triton.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def _assert_offline(result: triton.InferResult, bundle: LoadedBundle, frame: pd.DataFrame) -> None:
    label, probabilities = result.as_numpy("label"), result.as_numpy("probabilities")
    assert label is not None and probabilities is not None
    assert label.dtype == np.int64 and probabilities.shape == (len(frame), 2)
    np.testing.assert_array_equal(label, bundle.predict(frame))
    np.testing.assert_allclose(probabilities, bundle.predict_proba(frame), rtol=0, atol=1e-12)


def test_health_readiness_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    assert client.is_model_ready("census")
    assert client.is_model_ready("census", "1")
    assert client.is_model_ready("census", "2")
    assert not client.is_model_ready("census", "3")
    assert not client.is_model_ready("nope")
    for version in ("", "1", "2"):
        meta = client.get_model_metadata("census", version)
        assert meta["name"] == "census" and meta["versions"] == ["1", "2"]
        assert {t["name"]: t["datatype"] for t in meta["inputs"]} == DATATYPES
        assert all(t["shape"] == [-1] for t in meta["inputs"])
        assert {t["name"]: (t["datatype"], t["shape"]) for t in meta["outputs"]} == {
            "label": ("INT64", [-1]),
            "probabilities": ("FP64", [-1, 2]),
        }
    with pytest.raises(InferenceServerException, match="no version 7") as missing:
        client.get_model_metadata("census", "7")
    assert missing.value.status() == "404"


@pytest.mark.parametrize("version", ["", "1", "2"])
@pytest.mark.parametrize("binary_inputs", [True, False])
@pytest.mark.parametrize("outputs", ["default", "binary", "json", "mixed"])
def test_infer_matches_offline_predictions(
    client: triton.InferenceServerClient,
    served: Served,
    version: str,
    binary_inputs: bool,
    outputs: str,
) -> None:
    names = ("label", "probabilities")
    requested = {
        "default": None,  # tritonclient then asks for every output as binary
        "binary": [triton.InferRequestedOutput(n, binary_data=True) for n in names],
        "json": [triton.InferRequestedOutput(n, binary_data=False) for n in names],
        "mixed": [
            triton.InferRequestedOutput("probabilities", binary_data=False),
            triton.InferRequestedOutput("label", binary_data=True),
        ],
    }[outputs]
    request_id = f"triton-{version or 'default'}-{binary_inputs}-{outputs}"
    result = client.infer(
        "census",
        _inputs(ROWS, binary_inputs),
        model_version=version,
        outputs=requested,
        request_id=request_id,
    )
    response = result.get_response()
    assert response["model_name"] == "census" and response["id"] == request_id
    assert response["model_version"] == (version or "1")  # no version: the production alias
    binary = {
        o["name"] for o in response["outputs"] if "binary_data_size" in o.get("parameters", {})
    }
    assert (
        binary
        == {
            "default": {"label", "probabilities"},
            "binary": {"label", "probabilities"},
            "json": set(),
            "mixed": {"label"},
        }[outputs]
    )
    if requested is not None:
        assert [o["name"] for o in response["outputs"]] == [o.name() for o in requested]
    _assert_offline(result, served.bundles[version or "1"], ROWS)


def test_two_versions_answer_for_themselves(
    client: triton.InferenceServerClient, served: Served
) -> None:
    answers = {v: client.infer("census", _inputs(ROWS), model_version=v) for v in ("1", "2")}
    one, two = (answers[v].as_numpy("probabilities") for v in ("1", "2"))
    assert one is not None and two is not None
    assert not np.allclose(one, two)  # two different models, not one answering twice
    with httpx.Client(base_url=served.url, timeout=30) as http:
        for version, path in (
            ("1", "/v1/models/census/versions/1:predict"),
            ("2", "/v1/models/census/versions/2:predict"),
            ("2", "/v1/models/census/labels/candidate:predict"),
            ("1", "/v1/models/census:predict"),
        ):
            rows = http.post(path, json={"instances": ROWS.to_dict(orient="records")})
            assert rows.status_code == 200, rows.text
            assert rows.headers["X-Model-Version"] == version
            predictions = rows.json()["predictions"]
            assert [p["label"] for p in predictions] == answers[version].as_numpy("label").tolist()
            np.testing.assert_allclose(
                [p["probabilities"] for p in predictions],
                answers[version].as_numpy("probabilities"),
                rtol=0,
                atol=1e-12,
            )
            _assert_offline(answers[version], served.bundles[version], ROWS)


def test_column_shaped_inputs_and_bytes_elements(
    client: triton.InferenceServerClient, served: Served
) -> None:
    # [rows, 1] tensors are one value per row, as [rows] ones are
    _assert_offline(client.infer("census", _inputs(ROWS, column=True)), served.bundles["1"], ROWS)
    # bytes elements in the object array (what a Triton client sends for BYTES) work too
    inputs = _inputs(ROWS)
    city = np.array([c.encode("utf-8") for c in ROWS["city"]], dtype=object)
    inputs[2].set_data_from_numpy(city)
    _assert_offline(client.infer("census", inputs, model_version="2"), served.bundles["2"], ROWS)


def test_mixed_inputs_concurrent_requests_and_the_asyncio_client(served: Served) -> None:
    # one request with JSON and binary inputs side by side
    inputs = _inputs(ROWS)
    inputs[0].set_data_from_numpy(ROWS["x"].to_numpy(), binary_data=False)
    with triton.InferenceServerClient(url=f"127.0.0.1:{served.port}", concurrency=4) as http:
        _assert_offline(http.infer("census", inputs), served.bundles["1"], ROWS)
        # concurrent requests on the client's connection pool, each answered for itself
        pending = {
            f"async-{k}": http.async_infer(
                "census", _inputs(ROWS), model_version=str(1 + k % 2), request_id=f"async-{k}"
            )
            for k in range(8)
        }
        for request_id, future in pending.items():
            result = future.get_result()
            assert result.get_response()["id"] == request_id
            _assert_offline(result, served.bundles[result.get_response()["model_version"]], ROWS)

    async def with_aiohttp() -> triton_aio.InferResult:
        async with triton_aio.InferenceServerClient(url=f"127.0.0.1:{served.port}") as aio:
            assert await aio.is_server_ready() and await aio.is_model_ready("census", "2")
            tensors = []
            for name, datatype in DATATYPES.items():
                array = ROWS[name].to_numpy(object if datatype == "BYTES" else None)
                tensor = triton_aio.InferInput(name, list(array.shape), datatype)
                tensors.append(tensor.set_data_from_numpy(array))
            return await aio.infer("census", tensors, model_version="2")

    _assert_offline(asyncio.run(with_aiohttp()), served.bundles["2"], ROWS)


@pytest.mark.parametrize(
    ("inputs", "status", "match"),
    [
        (lambda: _inputs(ROWS)[:2], "400", "missing column 'city'"),
        (
            lambda: [
                *_inputs(ROWS)[:2],
                triton.InferInput("city", [5], "FP64").set_data_from_numpy(ROWS["x"].to_numpy()),
            ],
            "400",
            "column 'city': expected string",
        ),
        (
            lambda: [
                *_inputs(ROWS),
                triton.InferInput("age", [5], "INT64").set_data_from_numpy(np.arange(5)),
            ],
            "400",
            "age",
        ),
        (lambda: _inputs(ROWS.iloc[:0]), "400", "no rows"),
    ],
)
def test_client_mistakes_are_4xx_naming_the_input(
    client: triton.InferenceServerClient,
    inputs: object,
    status: str,
    match: str,
) -> None:
    assert callable(inputs)
    with pytest.raises(InferenceServerException, match=match) as raised:
        client.infer("census", inputs())
    assert raised.value.status() == status


def test_unknown_model_version_and_output(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match="unknown model 'nope'") as model:
        client.infer("nope", _inputs(ROWS))
    assert model.value.status() == "404"
    with pytest.raises(InferenceServerException, match="no version 9") as version:
        client.infer("census", _inputs(ROWS), model_version="9")
    assert version.value.status() == "404"
    with pytest.raises(InferenceServerException, match="unknown output 'score'") as output:
        client.infer("census", _inputs(ROWS), outputs=[triton.InferRequestedOutput("score")])
    assert output.value.status() == "400"


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
@pytest.mark.parametrize("binary_inputs", [True, False])
def test_compressed_requests(
    client: triton.InferenceServerClient, served: Served, algorithm: str, binary_inputs: bool
) -> None:
    result = client.infer(
        "census",
        _inputs(ROWS, binary_inputs),
        model_version="2",
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,  # the server may answer uncompressed
    )
    _assert_offline(result, served.bundles["2"], ROWS)


def test_unsupported_triton_extensions_are_refused(client: triton.InferenceServerClient) -> None:
    classify = triton.InferRequestedOutput("probabilities", class_count=1)
    with pytest.raises(InferenceServerException, match="classification") as raised:
        client.infer("census", _inputs(ROWS), outputs=[classify])
    assert raised.value.status() == "400"
    in_shm = triton.InferInput("x", [5], "FP64")
    in_shm.set_shared_memory("region", 40)
    with pytest.raises(InferenceServerException, match="shared memory") as raised:
        client.infer("census", [in_shm, *_inputs(ROWS)[1:]])
    assert raised.value.status() == "400"
    out_shm = triton.InferRequestedOutput("label")
    out_shm.set_shared_memory("region", 40)
    with pytest.raises(InferenceServerException, match="shared memory") as raised:
        client.infer("census", _inputs(ROWS), outputs=[out_shm])
    assert raised.value.status() == "400"
