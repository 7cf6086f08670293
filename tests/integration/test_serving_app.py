"""The serving app end to end: a real bundle in the registry, a real uvicorn server, httpx."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pandas as pd
import pytest

from conveyor.config import load_settings
from conveyor.modeling.bundle import LoadedBundle, load_bundle
from conveyor.serving.app import create_app
from conveyor.serving.feedback import FeedbackStore
from conveyor.serving.protocols import v2
from conveyor.serving.server import BackgroundServer, parse_size
from conveyor.store.workspace import Workspace
from serving_support import free_port, register_production

ROWS = pd.DataFrame(
    {
        "x": [0.5, -1.25, 2.0, -0.1],
        "n": [1, 7, 3, 0],
        "city": ["Lyon", "Paris", "Nice", "Lyon"],
    }
)


@dataclass
class Served:
    url: str
    bundle: LoadedBundle
    artifact_url: str
    server: BackgroundServer


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("serving")
    ws = Workspace.open(load_settings(home=root / "home"))
    try:
        bundle_path = register_production(ws, root)
        app = create_app(ws, memory_budget_bytes=parse_size("256MB"), flush_interval_s=0.2)
        app.state.serving.max_body_bytes = 64 << 10
        server = BackgroundServer(app, port=free_port())
        server.start()
        try:
            yield Served(server.url, load_bundle(bundle_path), ws.settings.artifact_url, server)
        finally:
            server.stop()
    finally:
        ws.close()


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=30) as http:
        yield http


def _v2_inputs(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {
        "x": frame["x"].to_numpy(np.float64),
        "n": frame["n"].to_numpy(np.int64),
        "city": frame["city"].to_numpy(object),
    }


def test_health_metadata_and_readiness(client: httpx.Client) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/v2").json()["extensions"] == ["binary_tensor_data"]
    ready = client.get("/v2/models/census/ready")
    assert ready.status_code == 200 and ready.json() == {"name": "census", "ready": True}
    assert client.get("/v2/models/census/versions/1/ready").status_code == 200
    meta = client.get("/v2/models/census").json()
    assert meta["versions"] == ["1"]
    assert {t["name"]: t["datatype"] for t in meta["inputs"]} == {
        "x": "FP64",
        "n": "INT64",
        "city": "BYTES",
    }
    status = client.get("/v1/models/census")
    assert status.json()["model_version_status"][0]["state"] == "AVAILABLE"
    assert status.headers["X-Model-Version"] == "1"
    assert client.get("/v1/models/census/labels/production/metadata").status_code == 200


@pytest.mark.parametrize("binary", [False, True])
def test_v2_infer_matches_offline(client: httpx.Client, served: Served, binary: bool) -> None:
    encoded = v2.encode_infer_request(_v2_inputs(ROWS), binary=binary, request_id=f"v2-{binary}")
    headers = {k: v for k, v in encoded.headers.items() if k != "Content-Type"}  # no Content-Type
    response = client.post("/v2/models/census/infer", content=encoded.body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["X-Model-Version"] == "1"
    assert response.headers["X-Request-Id"] == f"v2-{binary}"
    parsed = v2.parse_infer_response(response.content, dict(response.headers))
    assert parsed.model_version == "1" and parsed.id == f"v2-{binary}"
    np.testing.assert_array_equal(parsed.outputs["label"].data, served.bundle.predict(ROWS))
    np.testing.assert_allclose(
        parsed.outputs["probabilities"].data, served.bundle.predict_proba(ROWS)
    )


def test_v2_binary_outputs_by_version(client: httpx.Client, served: Served) -> None:
    encoded = v2.encode_infer_request(
        _v2_inputs(ROWS), binary=True, parameters={"binary_data_output": True}
    )
    response = client.post(
        "/v2/models/census/versions/1/infer", content=encoded.body, headers=encoded.headers
    )
    assert response.status_code == 200, response.text
    assert v2.HEADER_LENGTH in response.headers
    parsed = v2.parse_infer_response(response.content, dict(response.headers))
    assert parsed.id and response.headers["X-Request-Id"] == parsed.id  # generated
    np.testing.assert_array_equal(parsed.outputs["label"].data, served.bundle.predict(ROWS))


def test_tf_serving_row_and_columnar(client: httpx.Client, served: Served) -> None:
    expected = served.bundle.predict(ROWS).tolist()
    rows = client.post(
        "/v1/models/census:predict",
        json={"instances": ROWS.to_dict(orient="records")},
        headers={"X-Request-Id": "tf-rows"},
    )
    assert rows.status_code == 200, rows.text
    assert rows.headers["X-Request-Id"] == "tf-rows"
    assert [p["label"] for p in rows.json()["predictions"]] == expected
    columns = client.post(
        "/v1/models/census/labels/production:predict",
        json={"inputs": ROWS.to_dict(orient="list")},
    )
    assert columns.status_code == 200, columns.text
    assert columns.json()["outputs"]["label"] == expected
    np.testing.assert_allclose(
        columns.json()["outputs"]["probabilities"], served.bundle.predict_proba(ROWS)
    )
    assert columns.headers["X-Model-Version"] == "1"
    by_version = client.post(
        "/v1/models/census/versions/1:predict", json={"instances": ROWS.to_dict(orient="records")}
    )
    assert by_version.status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"inputs": {"x": [1.0], "n": [1], "city": ["Lyon"], "age": [3]}}, "age"),
        ({"inputs": {"x": [1.0], "city": ["Lyon"]}}, "n"),
        ({"inputs": {"x": ["high"], "n": [1], "city": ["Lyon"]}}, "x"),
        ({"inputs": {"x": [1.0], "n": [1], "city": [7]}}, "city"),
        ('{"inputs": {"x": [NaN], "n": [1], "city": ["Lyon"]}}', "x"),
        ({"instances": [{"x": 1.0, "n": 1, "city": "Lyon"}, {"x": 1.0, "city": "Nice"}]}, "n"),
        ('{"instances": [', "JSON"),
    ],
)
def test_bad_tf_input_is_400_naming_the_field(
    client: httpx.Client, body: object, field: str
) -> None:
    if isinstance(body, str):
        response = client.post("/v1/models/census:predict", content=body)
    else:
        response = client.post("/v1/models/census:predict", json=body)
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]


def test_bad_v2_input_is_400_naming_the_field(client: httpx.Client) -> None:
    inputs = _v2_inputs(ROWS)
    inputs["x"] = inputs["x"].astype(object).astype(str)  # BYTES where FP64 is expected
    encoded = v2.encode_infer_request(inputs)
    response = client.post("/v2/models/census/infer", content=encoded.body)
    assert response.status_code == 400 and "'x'" in response.json()["error"]
    garbage = client.post("/v2/models/census/infer", content=b'{"inputs": [{"name": "x"}]}')
    assert garbage.status_code == 400 and "x" in garbage.json()["error"]


def test_too_big_and_unknown(client: httpx.Client) -> None:
    big = {"instances": [{"x": 1.0, "n": 1, "city": "Lyon" * 10}] * 2000}
    too_big = client.post("/v1/models/census:predict", json=big)
    assert too_big.status_code == 413 and "limit" in too_big.json()["error"]
    for response in (
        client.post("/v1/models/nope:predict", json={"instances": [1]}),
        client.get("/v1/models/nope"),
        client.get("/v2/models/nope"),
        client.get("/v2/models/census/versions/9"),
        client.post("/v2/models/nope/infer", content=b'{"inputs": []}'),
        client.get("/v1/models/census/labels/staging"),
        client.get("/nowhere"),
    ):
        assert response.status_code == 404, response.text
        assert "error" in response.json()
    wrong_method = client.get("/v2/models/census/infer")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


def test_feedback_and_prediction_log(client: httpx.Client, served: Served) -> None:
    one = client.post("/v1/feedback", json={"request_id": "tf-rows", "label": 1})
    assert one.status_code == 200 and one.json() == {"stored": 1}
    many = client.post(
        "/v1/feedback",
        json={
            "feedback": [{"request_id": "v2-False", "label": 0}, {"request_id": "x", "label": 1}]
        },
    )
    assert many.json() == {"stored": 2}
    bad = client.post("/v1/feedback", json={"label": 1})
    assert bad.status_code == 400 and "request_id" in bad.json()["error"]

    served.server.stop()  # graceful shutdown flushes the log
    root = served.artifact_url.rstrip("/")
    rows = duckdb.sql(
        f"SELECT request_id, model, version, route, protocol, latency_ms, outputs "
        f"FROM read_parquet('{root}/predictions/**/*.parquet', hive_partitioning=true)"
    ).fetchall()
    by_id = {r[0]: r for r in rows}
    assert {"v2-False", "v2-True", "tf-rows"} <= set(by_id)
    assert len(rows) == 6  # two V2 JSON/binary, one V2 by version, three TF Serving
    assert by_id["tf-rows"][1:5] == ("census", "1", "production", "v1")
    assert all(r[5] > 0 for r in rows)
    joined = FeedbackStore(root).joined()
    assert sorted(joined.column("request_id").to_pylist()) == ["tf-rows", "v2-False"]


def test_serve_command_refuses_bad_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    from conveyor.cli.serve import serve_command
    from conveyor.exceptions import NotFoundError

    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "home"))
    app = typer.Typer()
    app.command("serve")(serve_command)
    app.command("other")(lambda: None)
    runner = CliRunner()
    bad_size = runner.invoke(app, ["serve", "--memory-budget", "lots"])
    assert bad_size.exit_code == 2 and "memory-budget" in bad_size.output
    same_port = runner.invoke(app, ["serve", "--port", "8500", "--grpc-port", "8500"])
    assert same_port.exit_code == 2 and "--grpc-port: 8500 is the HTTP port" in same_port.output
    unknown = runner.invoke(app, ["serve", "--models", "nope", "--port", str(free_port())])
    assert isinstance(unknown.exception, NotFoundError) and "nope" in str(unknown.exception)
    assert parse_size("512MiB") == 512 << 20 and parse_size("2GB") == 2 * 10**9
