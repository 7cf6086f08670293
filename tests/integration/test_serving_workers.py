"""``conveyor serve --workers 2`` as a real process tree: both workers answer, SIGTERM flushes.

Which worker answered is read from the prediction log itself: every worker writes its own
files, named ``part-<time>-<pid>-<seq>.parquet``, so two distinct pids (neither the parent's)
mean two processes answered, and the row count after SIGTERM shows nothing was lost.
``/metrics`` sums both workers' counters, whichever worker takes the scrape.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from prometheus_client.parser import text_string_to_metric_families

from serving_support import free_port, home_with_production

pytestmark = pytest.mark.slow

ROWS = {"instances": [{"x": 0.5, "n": 1, "city": "Lyon"}, {"x": -1.0, "n": 3, "city": "Nice"}]}
TOKEN_ENV = "CONVEYOR_TEST_WORKERS_TOKEN"
_PID_RE = re.compile(r"^part-[0-9TZ]+-(?P<pid>\d+)-\d+\.parquet$")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    grpc_target: str
    predictions: Path
    stderr: Path


def _wait_ready(server: Server, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.process.poll() is None, server.stderr.read_text()
        try:
            if httpx.get(f"{server.url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{server.url} was not ready in {timeout} s")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    settings = home_with_production(tmp_path)
    port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "conveyor", "--home", str(settings.home), "serve"]
    command += ["--port", str(port), "--workers", "2", "--no-access-log"]
    command += ["--grpc-port", str(grpc_port)]
    command += ["--sticky-header", "X-User", "--token-env", TOKEN_ENV]
    env = {**os.environ, TOKEN_ENV: "workers-token"}
    stderr = tmp_path / "serve.stderr"
    with stderr.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stderr=sink)
    predictions = Path(settings.artifact_url) / "predictions"
    served = Server(
        process, f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", predictions, stderr
    )
    try:
        _wait_ready(served)
        yield served
    finally:
        if process.poll() is None:  # the test failed before its own SIGTERM
            process.terminate()  # SIGTERM: the parent stops its workers too
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)


def _writer_pids(predictions: Path) -> set[int]:
    names = (p.name for p in predictions.rglob("*.parquet"))
    return {int(m["pid"]) for m in map(_PID_RE.match, names) if m is not None}


def _predictions_counted(http: httpx.Client) -> float:
    labels = {"model": "census", "route": "production", "protocol": "v1", "code": "200"}
    text = http.get("/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "conveyor_requests_total" and labels.items() <= sample.labels.items()
    )


def _logged_rows(predictions: Path) -> int:
    pattern = f"{predictions}/**/*.parquet"
    ((count,),) = duckdb.sql(f"SELECT count(*) FROM read_parquet('{pattern}')").fetchall()
    return int(count)


def test_two_workers_answer_and_sigterm_flushes_the_log(server: Server) -> None:
    answered = 0
    deadline = time.monotonic() + 60
    # A fresh connection per request lets either worker accept it.
    no_keepalive = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=server.url, timeout=30, limits=no_keepalive) as http:
        while len(_writer_pids(server.predictions)) < 2:
            assert time.monotonic() < deadline, "only one worker answered in 60 s"
            for _ in range(20):
                response = http.post("/v1/models/census:predict", json=ROWS)
                assert response.status_code == 200, response.text
                answered += 1
            time.sleep(0.2)  # each worker flushes its log every second
        spec = http.get("/openapi.json").json()
        assert spec["components"]["parameters"]["sticky_key"]["name"] == "X-User"
        refused = http.post("/v1/feedback", json={"request_id": "r", "label": 1})
        assert refused.status_code == 401  # the token reached the workers
        # whichever worker takes the scrape, /metrics counts the answers of both
        assert [_predictions_counted(http) for _ in range(6)] == [answered] * 6
    for _ in range(10):  # both workers listen on the gRPC port too (SO_REUSEPORT)
        client = triton_grpc.InferenceServerClient(server.grpc_target)
        try:
            assert client.is_server_ready()
            inputs = []
            for name, datatype, value in (
                ("x", "FP64", np.array([0.5])),
                ("n", "INT64", np.array([1], dtype=np.int64)),
                ("city", "BYTES", np.array(["Lyon"], dtype=object)),
            ):
                tensor = triton_grpc.InferInput(name, [1], datatype)
                tensor.set_data_from_numpy(value)
                inputs.append(tensor)
            result = client.infer("census", inputs)
            assert result.as_numpy("label") is not None
            answered += 1
        finally:
            client.close()

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(60) == 0
    pids = _writer_pids(server.predictions)
    assert len(pids) == 2 and server.process.pid not in pids
    for pid in pids:  # the workers are gone too
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert _logged_rows(server.predictions) == answered  # every answer flushed at shutdown
