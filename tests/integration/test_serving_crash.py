"""Acceptance: ``kill -9`` of ``conveyor serve`` under load, then a restart on the same
workspace: the prediction log holds every request answered more than the flush interval
before the kill, exactly once, every file in it is readable, and the restarted server serves
and logs normally.

The server runs as the CLI does (``python -m conveyor --home ... serve``) in a subprocess, so
it can be SIGKILLed; clients record when each request was answered.
"""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from conveyor.config import load_settings
from conveyor.registry import ModelRegistry
from conveyor.serving.app import create_app
from conveyor.serving.prediction_log import connect
from conveyor.store.workspace import Workspace
from serving_support import free_port, store_bundle

pytestmark = pytest.mark.slow

FLUSH_INTERVAL_S: float = inspect.signature(create_app).parameters["flush_interval_s"].default
"""The flush interval ``conveyor serve`` runs with (create_app's default)."""
MARGIN_S = 1.0
"""Time a flush may take to write and fsync its files on a busy machine."""
CLIENTS = 4
LOAD_S = 4.0
TF_PATH, V2_PATH = "/v1/models/census:predict", "/v2/models/census/infer"
TF_BODY = {"instances": [{"x": 0.5, "n": 1, "city": "Lyon"}]}
V2_BODY = {
    "inputs": [
        {"name": "x", "datatype": "FP64", "shape": [1], "data": [0.5]},
        {"name": "n", "datatype": "INT64", "shape": [1], "data": [1]},
        {"name": "city", "datatype": "BYTES", "shape": [1], "data": ["Lyon"]},
    ]
}


class ServerProcess:
    """``conveyor serve`` in a subprocess on a free port; its output goes to a file."""

    def __init__(self, home: Path, output: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = output
        command = [sys.executable, "-m", "conveyor", "--home", str(home), "serve"]
        command += ["--port", str(self.port), "--no-access-log"]
        with output.open("ab") as sink:
            self.process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the server exited: {self.output.read_text()}"
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the server was not ready in {timeout} s: {self.output.read_text()}")

    def stop(self) -> None:
        """Make sure the process is gone (SIGKILL when it is still running)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    ws = Workspace.open(load_settings(home=home))
    try:
        artifact_id, _ = store_bundle(ws, tmp_path / "bundle")
        ModelRegistry(ws).register(
            "census", artifact_id, require_blessing=False, alias="production"
        )
    finally:
        ws.close()
    return home


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    try:
        yield started
    finally:
        for server in started:
            server.stop()


class Clients:
    """CLIENTS threads sending predictions back to back (V2 and TF Serving alternately), each
    with its own request id; they stop at the first transport error (the server is gone)."""

    def __init__(self, url: str, phase: str) -> None:
        self.url, self.phase = url, phase
        self.sent: set[str] = set()
        self.answered: dict[str, float] = {}  # request id -> wall-clock time answered
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(CLIENTS)
        ]

    def _run(self, client: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            i = 0
            while not self._stop.is_set():
                request_id = f"{self.phase}-{client}-{i}"
                self.sent.add(request_id)
                try:
                    response = (
                        http.post(TF_PATH, json=TF_BODY, headers={"X-Request-Id": request_id})
                        if i % 2
                        else http.post(V2_PATH, json={"id": request_id, **V2_BODY})
                    )
                except httpx.TransportError:
                    return
                if response.status_code == 200:
                    self.answered[request_id] = time.time()
                else:
                    self.failures.append(f"{request_id}: {response.status_code} {response.text}")
                i += 1

    def __enter__(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


def _logged(root: Path) -> dict[str, int]:
    """Request id -> how many times it is in the log, read with the library's DuckDB view."""
    con = connect(root)
    try:
        rows = con.sql("SELECT request_id, count(*) FROM predictions GROUP BY ALL").fetchall()
    finally:
        con.close()
    return {request_id: int(count) for request_id, count in rows}


def test_kill_9_under_load_then_restart(
    home: Path, tmp_path: Path, servers: list[ServerProcess]
) -> None:
    root = Path(load_settings(home=home).artifact_url) / "predictions"
    output = tmp_path / "server.log"

    first = ServerProcess(home, output)
    servers.append(first)
    first.wait_ready()
    with Clients(first.url, "before") as before:
        time.sleep(LOAD_S)
        killed_at = time.time()
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=30)
    assert first.process.returncode == -signal.SIGKILL
    assert not before.failures, before.failures[:3]
    assert len(before.answered) > 20, f"only {len(before.answered)} answers before the kill"
    assert len(before.sent) > len(before.answered)  # requests were in flight at the kill

    second = ServerProcess(home, output)
    servers.append(second)
    second.wait_ready()
    with Clients(second.url, "after") as after:
        time.sleep(1.0)
    assert not after.failures and after.answered, after.failures[:3]
    # the restarted server logs while it runs: everything is flushed within the interval
    deadline = max(after.answered.values()) + FLUSH_INTERVAL_S + MARGIN_S
    while not set(after.answered) <= _logged(root).keys() and time.time() < deadline:
        time.sleep(0.1)
    assert set(after.answered) <= _logged(root).keys(), "the restarted server did not log"
    second.process.send_signal(signal.SIGTERM)  # graceful: flushes the rest of the log
    # uvicorn re-raises the signal it shut down for once it is done, hence -SIGTERM
    assert second.process.wait(timeout=60) in (0, -signal.SIGTERM), output.read_text()

    # every file is complete: readable on its own, none hidden or temporary left behind
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files and all(p.suffix == ".parquet" and not p.name.startswith(".") for p in files)
    for path in files:
        pq.read_table(path)

    logged = _logged(root)
    assert {rid: n for rid, n in logged.items() if n != 1} == {}, "duplicates in the log"
    cutoff = killed_at - FLUSH_INTERVAL_S - MARGIN_S
    lost = sorted(rid for rid, at in before.answered.items() if at < cutoff and rid not in logged)
    assert not lost, f"{len(lost)} requests answered before the cutoff are missing: {lost[:5]}"
    assert set(logged) <= before.sent | after.sent  # nothing in the log that was not sent
    assert set(after.answered) <= set(logged)  # the graceful stop lost nothing
