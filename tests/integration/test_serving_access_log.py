"""``conveyor serve`` writes one JSON access line per request to stderr, and its graceful
shutdown writes every line (the writer batches them off the event loop)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from conveyor.serving.server_process import ServerProcess
from serving_support import home_with_production

pytestmark = pytest.mark.slow


def test_every_request_gets_one_access_line_on_stderr(tmp_path: Path) -> None:
    settings = home_with_production(tmp_path)
    server = ServerProcess(settings, models=["census"], access_log=True)
    server.start(timeout_s=120)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for i in range(20):
                answer = client.post(
                    "/v1/models/census:predict",
                    json={"instances": [{"x": 0.5, "n": i % 10, "city": "Lyon"}]},
                    headers={"X-Request-Id": f"access-{i}"},
                )
                assert answer.status_code == 200, answer.text
            assert client.get("/v1/models/nope").status_code == 404
    finally:
        server.stop()
    lines = [
        json.loads(text)
        for text in server.log_path.read_text().splitlines()
        if text.startswith('{"method"')
    ]
    predictions = [line for line in lines if str(line["request_id"]).startswith("access-")]
    assert [line["request_id"] for line in predictions] == [f"access-{i}" for i in range(20)]
    first = predictions[0]
    assert first["path"] == "/v1/models/census:predict" and first["status"] == 200
    assert first["model"] == "census" and first["version"] == "1"
    assert first["route"] == "production" and first["protocol"] == "v1"
    assert first["latency_ms"] > 0
    [missing] = [line for line in lines if line["path"] == "/v1/models/nope"]
    assert missing["status"] == 404 and missing["model"] is None
