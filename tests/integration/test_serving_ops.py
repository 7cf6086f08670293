"""Serving operations end to end on a real uvicorn: /metrics, the access log, bearer-token auth."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor.config import load_settings
from conveyor.serving import access_log
from conveyor.serving.app import create_app
from conveyor.serving.feedback import FeedbackStore
from conveyor.serving.metrics import ACCESS_LOGGER
from conveyor.serving.protocols import v2
from conveyor.serving.server import BackgroundServer, parse_size
from conveyor.store.workspace import Workspace
from serving_support import free_port, register_production

TOKEN = "s3cret-token"
ROWS = pd.DataFrame({"x": [0.5, -1.25], "n": [1, 7], "city": ["Lyon", "Paris"]})


@dataclass
class Served:
    url: str
    artifact_url: str
    workspace: Workspace


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("serving-ops")
    ws = Workspace.open(load_settings(home=root / "home"))
    try:
        register_production(ws, root)
        app = create_app(
            ws, memory_budget_bytes=parse_size("256MB"), flush_interval_s=0.2, token=TOKEN
        )
        with BackgroundServer(app, port=free_port()) as server:
            yield Served(server.url, ws.settings.artifact_url, ws)
    finally:
        ws.close()


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=30) as http:
        yield http


def _metrics(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _labels(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def _feedback_count(served: Served) -> int:
    store = FeedbackStore(served.artifact_url.rstrip("/"))
    return int(store.sql("SELECT count(*) AS n FROM feedback").column("n")[0].as_py())


def test_metrics_count_requests_errors_and_latency(client: httpx.Client) -> None:
    rows = {"instances": ROWS.to_dict(orient="records")}
    for _ in range(3):
        assert client.post("/v1/models/census:predict", json=rows).status_code == 200
    assert client.post("/v1/models/census/versions/1:predict", json=rows).status_code == 200
    encoded = v2.encode_infer_request(
        {
            "x": ROWS["x"].to_numpy(np.float64),
            "n": ROWS["n"].to_numpy(np.int64),
            "city": ROWS["city"].to_numpy(object),
        },
        binary=True,
    )
    infer = client.post("/v2/models/census/infer", content=encoded.body, headers=encoded.headers)
    assert infer.status_code == 200
    bad = client.post("/v1/models/census:predict", json={"inputs": {"x": [1.0]}})
    assert bad.status_code == 400
    assert client.post("/v1/models/nope:predict", json=rows).status_code == 404

    samples = _metrics(client)
    ok_v1 = _labels(model="census", version="1", route="production", protocol="v1", code="200")
    assert samples[("conveyor_requests_total", ok_v1)] == 3
    by_version = _labels(model="census", version="1", route="v1", protocol="v1", code="200")
    assert samples[("conveyor_requests_total", by_version)] == 1
    ok_v2 = _labels(model="census", version="1", route="production", protocol="v2", code="200")
    assert samples[("conveyor_requests_total", ok_v2)] == 1
    bad_v1 = _labels(model="census", version="1", route="production", protocol="v1", code="400")
    assert samples[("conveyor_requests_total", bad_v1)] == 1
    assert samples[("conveyor_errors_total", bad_v1)] == 1
    assert ("conveyor_errors_total", ok_v1) not in samples
    unknown = _labels(model="", version="", route="", protocol="v1", code="404")
    assert samples[("conveyor_errors_total", unknown)] == 1  # client-chosen names not labels
    assert not any(dict(labels).get("model") == "nope" for _, labels in samples)
    latency = _labels(model="census", version="1", route="production")
    assert samples[("conveyor_request_latency_seconds_count", latency)] >= 5
    assert samples[("conveyor_request_latency_seconds_sum", latency)] > 0
    assert samples[("conveyor_models_loaded", ())] == 1
    assert ("conveyor_prediction_log_pending_records", ()) in samples
    assert samples[("conveyor_prediction_log_dropped_records", ())] == 0


def test_each_app_has_its_own_registry(served: Served) -> None:
    other = create_app(served.workspace, memory_budget_bytes=parse_size("64MB"), preload=False)
    try:
        text = other.state.serving.metrics.exposition().decode()
        assert "conveyor_requests_total" in text
        assert 'model="census"' not in text  # nothing counted by the running app leaks in
    finally:
        other.state.serving.log.close()


def test_access_log_is_one_json_line_per_request(
    client: httpx.Client, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(access_log, "_writer", None)  # lines go to the logger, not stderr
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    response = client.post(
        "/v1/models/census/labels/production:predict",
        json={"instances": ROWS.to_dict(orient="records")},
        headers={"X-Request-Id": "access-1"},
    )
    assert response.status_code == 200
    assert client.get("/v2/health/live").status_code == 200
    deadline = time.monotonic() + 5
    lines: list[dict[str, object]] = []
    while time.monotonic() < deadline:  # logged just after the answer was sent
        lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS_LOGGER]
        if any(line["path"] == "/v2/health/live" for line in lines):
            break
        time.sleep(0.02)
    predict = next(line for line in lines if line["request_id"] == "access-1")
    assert predict["method"] == "POST"
    assert predict["path"] == "/v1/models/census/labels/production:predict"
    assert predict["status"] == 200
    assert predict["model"] == "census" and predict["version"] == "1"
    assert isinstance(predict["latency_ms"], float) and predict["latency_ms"] > 0
    health = next(line for line in lines if line["path"] == "/v2/health/live")
    assert health["status"] == 200 and health["model"] is None and health["method"] == "GET"


def test_feedback_needs_the_bearer_token(client: httpx.Client, served: Served) -> None:
    body = {"request_id": "access-1", "label": 1}
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": "Bearer"},
    ):
        refused = client.post("/v1/feedback", json=body, headers=headers)
        assert refused.status_code == 401, headers
        assert "error" in refused.json()
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert _feedback_count(served) == 0  # nothing changed

    accepted = client.post("/v1/feedback", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert accepted.status_code == 200 and accepted.json() == {"stored": 1}
    assert _feedback_count(served) == 1


def test_prediction_health_and_metrics_stay_open(client: httpx.Client) -> None:
    rows = {"instances": ROWS.to_dict(orient="records")}
    assert client.post("/v1/models/census:predict", json=rows).status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/v2/models/census").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_empty_token_is_refused(served: Served) -> None:
    with pytest.raises(ValueError, match="empty"):
        create_app(served.workspace, memory_budget_bytes=1 << 20, preload=False, token="")


def test_serve_command_reads_the_token_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer
    from typer.testing import CliRunner

    from conveyor.cli.serve import serve_command

    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CONVEYOR_TEST_SERVE_TOKEN", raising=False)
    app = typer.Typer()
    app.command("serve")(serve_command)
    app.command("other")(lambda: None)
    runner = CliRunner()
    unset = runner.invoke(app, ["serve", "--token-env", "CONVEYOR_TEST_SERVE_TOKEN"])
    assert unset.exit_code == 2 and "CONVEYOR_TEST_SERVE_TOKEN" in unset.output
    no_flag = runner.invoke(app, ["serve", "--token", TOKEN])
    assert no_flag.exit_code == 2  # never on the command line
