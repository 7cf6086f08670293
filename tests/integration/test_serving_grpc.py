"""Acceptance: the Open Inference Protocol over gRPC, with NVIDIA's own client
(``tritonclient.grpc``, raw input contents) and with plain grpc calls carrying typed contents,
against a real server (REST and gRPC on loopback) serving two versions of one model.

Every answer is compared with the offline predictions of the version's bundle; errors must be
gRPC statuses naming the field at fault, and every call lands in the prediction log, the
metrics and the access log with ``protocol="grpc"``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as triton
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2 as triton_pb
from tritonclient.utils import InferenceServerException

from conveyor.config import load_settings
from conveyor.modeling.bundle import LoadedBundle
from conveyor.registry import ModelRegistry
from conveyor.serving import access_log
from conveyor.serving.access_log import ACCESS_LOGGER
from conveyor.serving.app import create_app
from conveyor.serving.grpc_server import SERVICE
from conveyor.serving.prediction_log import connect
from conveyor.serving.protocols import open_inference_pb2 as pb
from conveyor.serving.protocols.v2_grpc import CONTENTS_FIELDS
from conveyor.serving.server import BackgroundServer, parse_size
from conveyor.store.workspace import Workspace
from serving_support import free_port, register_two_versions, store_bundle

ROWS = pd.DataFrame(
    {
        "x": [0.5, -1.25, 2.0, -0.1, 0.05],
        "n": [1, 7, 3, 0, 9],
        "city": ["Lyon", "Paris", "Nice", "Lyon", "Zürich"],
    }
)
DATATYPES = {"x": "FP64", "n": "INT64", "city": "BYTES"}


@dataclass
class Served:
    url: str
    grpc_target: str
    artifact_url: str
    bundles: dict[str, LoadedBundle]
    server: BackgroundServer


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("grpc")
    ws = Workspace.open(load_settings(home=root / "home"))
    try:
        bundles = register_two_versions(ws, root)
        grpc_port = free_port()
        app = create_app(
            ws,
            memory_budget_bytes=parse_size("256MB"),
            reload_interval_s=None,
            grpc_port=grpc_port,
            max_body_bytes=1 << 20,
        )
        with BackgroundServer(app, port=free_port()) as server:
            yield Served(
                server.url,
                f"127.0.0.1:{grpc_port}",
                ws.settings.artifact_url.rstrip("/"),
                bundles,
                server,
            )
    finally:
        ws.close()


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[triton.InferenceServerClient]:
    grpc_client = triton.InferenceServerClient(url=served.grpc_target)
    try:
        yield grpc_client
    finally:
        grpc_client.close()


@pytest.fixture(scope="module")
def channel(served: Served) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(served.grpc_target) as opened:
        yield opened


def _unary(channel: grpc.Channel, method: str, response: Any) -> Any:
    return channel.unary_unary(
        f"/{SERVICE}/{method}",
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=response.FromString,
    )


def _inputs(frame: pd.DataFrame) -> list[triton.InferInput]:
    inputs = []
    for name, datatype in DATATYPES.items():
        array = frame[name].to_numpy(object if datatype == "BYTES" else None)
        tensor = triton.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def _assert_offline(
    label: np.ndarray | None, probabilities: np.ndarray | None, bundle: LoadedBundle
) -> None:
    assert label is not None and probabilities is not None
    assert label.dtype == np.int64 and probabilities.shape == (len(ROWS), 2)
    np.testing.assert_array_equal(label, bundle.predict(ROWS))
    np.testing.assert_allclose(probabilities, bundle.predict_proba(ROWS), rtol=0, atol=1e-12)


def test_our_messages_are_the_specification_s_on_the_wire() -> None:
    """Every message and field number matches Triton's grpc_service.proto (a superset of
    the specification's), so the bytes on the wire are the same."""
    for name, ours in pb.DESCRIPTOR.message_types_by_name.items():
        theirs = triton_pb.DESCRIPTOR.message_types_by_name[name]
        _same_fields(ours, theirs)


def _same_fields(ours: Any, theirs: Any) -> None:
    for field in ours.fields:
        other = theirs.fields_by_name[field.name]
        assert (field.number, field.type, field.is_repeated) == (
            other.number,
            other.type,
            other.is_repeated,
        )
        if field.message_type is not None:
            _same_fields(field.message_type, other.message_type)


def test_health_readiness_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.get_server_metadata().name == "conveyor"
    assert client.is_model_ready("census")
    assert client.is_model_ready("census", "2")
    for version in ("", "1", "2"):
        meta = client.get_model_metadata("census", version)
        assert meta.name == "census" and list(meta.versions) == ["1", "2"]
        assert {t.name: t.datatype for t in meta.inputs} == DATATYPES
        assert all(list(t.shape) == [-1] for t in meta.inputs)
        assert {t.name: (t.datatype, list(t.shape)) for t in meta.outputs} == {
            "label": ("INT64", [-1]),
            "probabilities": ("FP64", [-1, 2]),
        }
    for call in (
        lambda: client.get_model_metadata("census", "7"),
        lambda: client.is_model_ready("nope"),
        lambda: client.get_model_metadata("census", "x"),
    ):
        with pytest.raises(InferenceServerException) as missing:
            call()
        assert missing.value.status() == "StatusCode.NOT_FOUND"


@pytest.mark.parametrize("version", ["", "1", "2"])
def test_infer_by_name_and_version_matches_offline_predictions(
    client: triton.InferenceServerClient, served: Served, version: str
) -> None:
    request_id = f"grpc-{version or 'default'}"
    result = client.infer("census", _inputs(ROWS), model_version=version, request_id=request_id)
    response = result.get_response()
    assert response.model_name == "census" and response.id == request_id
    assert response.model_version == (version or "1")  # no version: the production alias
    assert len(response.raw_output_contents) == 2  # raw in, raw out
    _assert_offline(
        result.as_numpy("label"), result.as_numpy("probabilities"), served.bundles[version or "1"]
    )


def test_requested_outputs_come_in_the_order_asked(client: triton.InferenceServerClient) -> None:
    outputs = [triton.InferRequestedOutput("probabilities"), triton.InferRequestedOutput("label")]
    response = client.infer("census", _inputs(ROWS), outputs=outputs).get_response()
    assert [o.name for o in response.outputs] == ["probabilities", "label"]


def test_typed_contents_get_typed_answers(channel: grpc.Channel, served: Served) -> None:
    request = pb.ModelInferRequest(model_name="census", model_version="2", id="typed-1")
    x = request.inputs.add(name="x", datatype="FP64", shape=[len(ROWS)])
    x.contents.fp64_contents.extend(ROWS["x"].tolist())
    n = request.inputs.add(name="n", datatype="INT64", shape=[len(ROWS)])
    n.contents.int64_contents.extend(ROWS["n"].tolist())
    city = request.inputs.add(name="city", datatype="BYTES", shape=[len(ROWS), 1])
    city.contents.bytes_contents.extend(c.encode() for c in ROWS["city"])
    answer, call = _unary(channel, "ModelInfer", pb.ModelInferResponse).with_call(
        request, metadata=[("x-request-id", "ignored: the body's id wins")]
    )
    assert not answer.raw_output_contents
    assert answer.id == "typed-1" and answer.model_version == "2"
    outputs = {o.name: o for o in answer.outputs}
    label = np.array(outputs["label"].contents.int64_contents, dtype=np.int64)
    probabilities = np.array(outputs["probabilities"].contents.fp64_contents).reshape(
        list(outputs["probabilities"].shape)
    )
    _assert_offline(label, probabilities, served.bundles["2"])
    headers = dict(call.initial_metadata())
    assert headers["x-request-id"] == "typed-1"
    assert (headers["x-model-version"], headers["x-model-route"]) == ("2", "v2")


def test_the_request_id_may_come_in_the_metadata(channel: grpc.Channel) -> None:
    request = pb.ModelInferRequest(model_name="census")
    for name, datatype, value in (("x", "FP64", 0.5), ("n", "INT64", 1), ("city", "BYTES", b"L")):
        tensor = request.inputs.add(name=name, datatype=datatype, shape=[1])
        getattr(tensor.contents, CONTENTS_FIELDS[datatype]).append(value)
    infer = _unary(channel, "ModelInfer", pb.ModelInferResponse)
    answer, call = infer.with_call(request, metadata=[("x-request-id", "from-metadata")])
    assert answer.id == "from-metadata"
    assert dict(call.initial_metadata())["x-model-route"] == "production"
    generated, _ = infer.with_call(request)
    assert len(generated.id) == 32  # none given: a new one


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        (lambda r: r.inputs.pop(), grpc.StatusCode.INVALID_ARGUMENT, "city"),
        (
            lambda r: setattr(r.inputs[0], "datatype", "FP99"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "FP99",
        ),
        (lambda r: r.inputs[1].shape.append(3), grpc.StatusCode.INVALID_ARGUMENT, "input 'n'"),
        (
            lambda r: r.inputs[0].contents.int64_contents.append(1),
            grpc.StatusCode.INVALID_ARGUMENT,
            "fp64_contents",
        ),
        (
            lambda r: r.raw_input_contents.append(b"\0" * 8),
            grpc.StatusCode.INVALID_ARGUMENT,
            "raw_input_contents",
        ),
        (lambda r: setattr(r, "model_name", "nope"), grpc.StatusCode.NOT_FOUND, "nope"),
        (lambda r: setattr(r, "model_version", "9"), grpc.StatusCode.NOT_FOUND, "9"),
        (lambda r: r.outputs.add(name="margin"), grpc.StatusCode.INVALID_ARGUMENT, "margin"),
        (
            lambda r: r.inputs[0].contents.fp64_contents.__setitem__(0, float("nan")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "x",
        ),
        (
            lambda r: r.inputs[2].contents.bytes_contents.extend([b"x" * (1 << 20)]),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "",
        ),
    ],
)
def test_a_client_mistake_is_a_status_naming_the_field(
    channel: grpc.Channel, change: Any, code: grpc.StatusCode, message: str
) -> None:
    request = pb.ModelInferRequest(model_name="census")
    for name, datatype in DATATYPES.items():
        tensor = request.inputs.add(name=name, datatype=datatype, shape=[1])
        if datatype == "FP64":
            tensor.contents.fp64_contents.append(0.5)
        elif datatype == "INT64":
            tensor.contents.int64_contents.append(1)
        else:
            tensor.contents.bytes_contents.append(b"Lyon")
    change(request)
    with pytest.raises(grpc.RpcError) as failed:
        _unary(channel, "ModelInfer", pb.ModelInferResponse)(request)
    assert failed.value.code() == code
    assert message in failed.value.details()


_NAMES = st.sampled_from(["x", "n", "city", "", "extra"])
_DATATYPES = st.sampled_from([*DATATYPES.values(), "INT8", "UINT16", "FP32", "FP16", "BOOL", "??"])


@st.composite
def _infer_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    """Requests a careless or hostile client could send: odd names, datatypes, shapes,
    contents in the wrong field, raw contents of any length, unknown outputs."""
    request = pb.ModelInferRequest(
        model_name=draw(st.sampled_from(["census", "census", "", "nope"])),
        model_version=draw(st.sampled_from(["", "", "1", "2", "0", "x", "99"])),
    )
    raw = draw(st.booleans())
    for _ in range(draw(st.integers(0, 4))):
        tensor = request.inputs.add(
            name=draw(_NAMES),
            datatype=draw(_DATATYPES),
            shape=draw(st.lists(st.integers(-1, 3), max_size=3)),
        )
        if raw:
            request.raw_input_contents.append(draw(st.binary(max_size=40)))
        else:
            field = draw(st.sampled_from(sorted(set(CONTENTS_FIELDS.values()))))
            values = getattr(tensor.contents, field)
            count = draw(st.integers(0, 4))
            if field == "bytes_contents":
                values.extend(draw(st.lists(st.binary(max_size=8), min_size=count, max_size=count)))
            elif field == "bool_contents":
                values.extend(draw(st.lists(st.booleans(), min_size=count, max_size=count)))
            elif field in ("fp32_contents", "fp64_contents"):
                floats = st.floats(width=32) if field == "fp32_contents" else st.floats()
                values.extend(draw(st.lists(floats, min_size=count, max_size=count)))
            else:
                low = 0 if field.startswith("uint") else -(2**31)
                values.extend(
                    draw(st.lists(st.integers(low, 2**31 - 1), min_size=count, max_size=count))
                )
    if draw(st.booleans()):
        request.outputs.add(name=draw(st.sampled_from(["label", "probabilities", "margin"])))
    return request


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=_infer_requests())
def test_fuzzed_requests_never_fail_on_the_server_side(
    channel: grpc.Channel, request: pb.ModelInferRequest
) -> None:
    try:
        _unary(channel, "ModelInfer", pb.ModelInferResponse)(request, timeout=30)
    except grpc.RpcError as failed:
        assert failed.code() in (
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.NOT_FOUND,
        ), (failed.code(), failed.details(), request)


def test_calls_are_logged_counted_and_access_logged(
    client: triton.InferenceServerClient,
    served: Served,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(access_log, "_writer", None)  # lines go to the logger, not stderr
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    client.infer("census", _inputs(ROWS), request_id="grpc-logged")
    deadline = time.monotonic() + 5
    while not any("grpc-logged" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "no access-log line"
        time.sleep(0.02)
    line = next(
        json.loads(r.getMessage()) for r in caplog.records if "grpc-logged" in r.getMessage()
    )
    assert line["path"] == f"/{SERVICE}/ModelInfer" and line["protocol"] == "grpc"
    assert (line["status"], line["model"], line["version"]) == (200, "census", "1")
    metrics = httpx.get(f"{served.url}/metrics").text
    assert 'protocol="grpc"' in metrics
    assert any('code="400"' in m and 'protocol="grpc"' in m for m in metrics.splitlines()), (
        "the failed calls of the earlier test were counted as 400s"
    )


def test_shutdown_flushes_grpc_predictions_to_the_log(served: Served) -> None:
    served.server.stop()
    con = connect(f"{served.artifact_url}/predictions")
    try:
        rows = con.execute(
            "SELECT request_id, version, route FROM predictions WHERE protocol = 'grpc'"
        ).fetchall()
    finally:
        con.close()
    logged = {request_id: (version, route) for request_id, version, route in rows}
    assert logged["grpc-2"] == ("2", "v2")
    assert logged["grpc-default"] == ("1", "production")
    assert logged["typed-1"] == ("2", "v2")
    assert "grpc-logged" in logged


def test_the_grpc_port_must_be_free(tmp_path: Path) -> None:
    ws = Workspace.open(load_settings(home=tmp_path / "home"))
    try:
        artifact_id, _ = store_bundle(ws, tmp_path / "bundle", seed=1)
        ModelRegistry(ws).register("census", artifact_id, require_blessing=False, alias="p")
        busy = free_port()
        with grpc_listener(busy):
            app = create_app(ws, memory_budget_bytes=parse_size("64MB"), grpc_port=busy)
            server = BackgroundServer(app, port=free_port())
            with pytest.raises(RuntimeError):
                server.start(timeout=30)
            server.stop()
    finally:
        ws.close()


def grpc_listener(port: int) -> Any:
    """A plain grpc server holding ``port`` without SO_REUSEPORT (a context manager)."""
    import contextlib
    from concurrent import futures

    @contextlib.contextmanager
    def hold() -> Iterator[None]:
        holder = grpc.server(futures.ThreadPoolExecutor(1), options=[("grpc.so_reuseport", 0)])
        holder.add_insecure_port(f"127.0.0.1:{port}")
        holder.start()
        try:
            yield
        finally:
            holder.stop(None)

    return hold()
