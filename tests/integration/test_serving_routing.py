"""Traffic routing end to end: registry splits, sticky keys and shadows on a real uvicorn server.

Four versions of ``census`` are registered: ``production`` -> 1, ``canary`` -> 2, and 3 and 4
without an alias (4 was trained on another column, so it refuses these requests: a shadow that
fails). The split is set with ``ModelRegistry.set_traffic`` and applied by a refresh of the
served models, exactly as the hot-reload watcher does it.

The 10,000-request split is measured on real predictions over 16 connections (a few seconds
with micro-batching); the model status, routed by the same decision, is checked too.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor.config import load_settings
from conveyor.modeling.bundle import LoadedBundle, load_bundle
from conveyor.registry import ModelRegistry
from conveyor.serving.app import ServingState, create_app
from conveyor.serving.server import BackgroundServer, parse_size
from conveyor.store.workspace import Workspace
from serving_bundles import register_model
from serving_support import free_port

ROW = {"instances": [{"x": 0.5, "n": 1.0}]}
ROWS = pd.DataFrame({"x": [0.5, -1.0, 2.0], "n": [1.0, 3.0, 0.0]})


@dataclass
class Served:
    url: str
    workspace: Workspace
    registry: ModelRegistry
    state: ServingState
    bundles: dict[int, LoadedBundle]

    def refresh(self) -> None:
        """Apply the registry's aliases and splits now (what the watcher does every 2 s)."""
        self.state.models.refresh()


def _register(ws: Workspace, root: Path, seed: int, alias: str | None, columns: str = "xn") -> int:
    """Register a small logistic regression on numeric ``columns`` as the next version.

    Routing does not care what the model is; a model without preprocessing keeps the
    requests cheap on a shared machine.
    """
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({c: rng.normal(size=100) for c in columns})
    model = LogisticRegression().fit(frame, (frame["x"] + rng.normal(0, 0.5, 100) > 0).astype(int))
    folder = root / f"bundle-{seed}"
    return register_model(ws, "census", folder, model, frame, task="binary", alias=alias)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("routing")
    ws = Workspace.open(load_settings(home=root / "home"))
    try:
        for seed, alias in ((1, "production"), (2, "canary"), (3, None)):
            assert _register(ws, root, seed, alias) == seed
        assert _register(ws, root, 4, None, columns="xnz") == 4  # refuses requests without z
        registry = ModelRegistry(ws)
        bundles = {v: load_bundle(registry.load_bundle_path("census", v)) for v in (1, 2, 3)}
        registry.set_traffic("census", {"production": 90, "canary": 10}, reason="canary")
        app = create_app(
            ws,
            memory_budget_bytes=parse_size("256MB"),
            flush_interval_s=0.2,
            reload_interval_s=None,
        )
        with BackgroundServer(app, port=free_port()) as server:
            yield Served(server.url, ws, registry, app.state.serving, bundles)
    finally:
        ws.close()


def _request(sticky_key: str | None, predict: bool) -> bytes:
    """One HTTP/1.1 request: ``ROW`` to ``:predict``, or the model status.

    The status (``GET /v1/models/census``) is routed by the same :meth:`ServingState.decide`
    as a prediction and answers with the same headers, at a fraction of the server's CPU.
    """
    headers = "Host: 127.0.0.1\r\n"
    if sticky_key is not None:
        headers += f"X-Sticky-Key: {sticky_key}\r\n"
    if not predict:
        return f"GET /v1/models/census HTTP/1.1\r\n{headers}\r\n".encode()
    body = json.dumps(ROW).encode()
    head = f"POST /v1/models/census:predict HTTP/1.1\r\n{headers}Content-Length: {len(body)}\r\n"
    return head.encode() + b"Content-Type: application/json\r\n\r\n" + body


async def _send_all(url: str, requests: list[bytes], concurrency: int) -> list[dict[str, str]]:
    """Send every request over ``concurrency`` keep-alive connections; each answer's headers.

    A minimal HTTP/1.1 client on asyncio streams: httpx.AsyncClient costs about four times
    the server's CPU per request, which would make 10,000 requests a minute-long test.
    """
    host, port = httpx.URL(url).host, httpx.URL(url).port
    answers: list[dict[str, str]] = [{} for _ in requests]
    pending = list(range(len(requests)))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while pending:
                index = pending.pop()
                writer.write(requests[index])
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                headers = {k.lower(): v for k, _, v in (h.partition(": ") for h in head[1:] if h)}
                body = await reader.readexactly(int(headers["content-length"]))
                assert head[0] == "HTTP/1.1 200 OK", (head[0], body)
                answers[index] = headers
        finally:
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return answers


def _versions(
    url: str, sticky_keys: list[str | None], *, predict: bool = True, concurrency: int = 16
) -> list[str]:
    """The version answering each request (one per sticky key, None for no key)."""
    requests = [_request(key, predict) for key in sticky_keys]
    answers = asyncio.run(_send_all(url, requests, concurrency))
    assert {a["x-model-route"] for a in answers} == {"production"}
    return [a["x-model-version"] for a in answers]


def test_split_90_10_over_10000_requests(served: Served) -> None:
    versions = _versions(served.url, [None] * 10_000)  # real predictions, 16 connections
    counts = Counter(versions)
    assert set(counts) == {"1", "2"}
    assert abs(counts["2"] / len(versions) - 0.10) <= 0.02, counts
    statuses = Counter(_versions(served.url, [None] * 500, predict=False))
    assert set(statuses) == {"1", "2"} and statuses["1"] > statuses["2"], statuses


def test_sticky_key_keeps_one_version_and_keys_spread_90_10(served: Served) -> None:
    same = _versions(served.url, ["user-42"] * 200)
    assert len(set(same)) == 1
    keys: list[str | None] = [f"user-{i}" for i in range(1000)]
    spread = _versions(served.url, keys)
    assert abs(spread.count("2") / len(spread) - 0.10) <= 0.03, Counter(spread)
    again = _versions(served.url, keys[:100], predict=False)
    assert again == spread[:100]  # a key's version does not change while the split does not


def test_the_sticky_header_is_configurable(served: Served) -> None:
    app = create_app(
        served.workspace,
        memory_budget_bytes=parse_size("64MB"),
        reload_interval_s=None,
        sticky_header="X-User",
    )
    with (
        BackgroundServer(app, port=free_port()) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        pinned = {
            http.get("/v1/models/census", headers={"X-User": "caller-7"}).headers["X-Model-Version"]
            for _ in range(100)
        }
        unpinned = {
            http.get("/v1/models/census", headers={"X-Sticky-Key": "caller-7"}).headers[
                "X-Model-Version"
            ]
            for _ in range(100)
        }
    assert len(pinned) == 1
    assert unpinned == {"1", "2"}  # the default header means nothing to this app
    with pytest.raises(ValueError, match="sticky header"):
        create_app(served.workspace, memory_budget_bytes=1 << 20, preload=False, sticky_header=" ")


def test_explicit_version_bypasses_the_split(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=30) as http:
        for _ in range(20):
            response = http.post("/v1/models/census/versions/3:predict", json=ROW)
            assert response.status_code == 200, response.text
            assert response.headers["X-Model-Version"] == "3"
            assert response.headers["X-Model-Route"] == "v3"
        canary = http.post("/v1/models/census/labels/canary:predict", json=ROW)
        assert canary.headers["X-Model-Version"] == "2"
        assert canary.headers["X-Model-Route"] == "canary"
        infer = http.post(
            "/v2/models/census/versions/2/infer",
            json={
                "inputs": [
                    {"name": c, "shape": [1], "datatype": "FP64", "data": [0.5]} for c in "xn"
                ]
            },
        )
        assert infer.status_code == 200, infer.text
        assert infer.headers["X-Model-Route"] == "v2" and infer.json()["model_version"] == "2"


def _log_rows(served: Served, request_ids: list[str]) -> list[tuple[str, str, str, str]]:
    assert served.state.inference.shadows.wait_idle(timeout=30)
    served.state.log.flush()
    root = served.workspace.settings.artifact_url.rstrip("/")
    ids = ", ".join(f"'{i}'" for i in request_ids)
    return duckdb.sql(
        f"SELECT request_id, version, route, outputs FROM read_parquet("
        f"'{root}/predictions/**/*.parquet', hive_partitioning=true) WHERE request_id IN ({ids})"
    ).fetchall()


def _metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_shadows_are_logged_never_returned(served: Served) -> None:
    served.registry.set_traffic(
        "census", {"production": 90, "canary": 10}, shadows=["v3", "v4"], reason="shadow"
    )
    served.refresh()
    instances = {"instances": ROWS.to_dict(orient="records")}
    ids = [f"shadow-{uuid.uuid4().hex[:8]}-{i}" for i in range(40)]
    answered: dict[str, str] = {}
    with httpx.Client(base_url=served.url, timeout=30) as http:
        for request_id in ids:
            response = http.post(
                "/v1/models/census:predict", json=instances, headers={"X-Request-Id": request_id}
            )
            assert response.status_code == 200, response.text  # v4's failures never surface
            answered[request_id] = response.headers["X-Model-Version"]
    assert set(answered.values()) <= {"1", "2"}

    rows = _log_rows(served, ids)
    main = {r[0]: r for r in rows if r[2] == "production"}
    shadow = {r[0]: r for r in rows if r[2] == "production:shadow"}
    assert set(main) == set(ids) and set(shadow) == set(ids)  # same request ids
    assert all(main[i][1] == answered[i] for i in ids)
    assert {r[1] for r in shadow.values()} == {"3"}  # v4 failed: no answer logged
    expected = served.bundles[3].predict(ROWS).tolist()
    assert all(json.loads(r[3])["label"] == expected for r in shadow.values())
    labels = {"model": "census", "route": "production"}
    assert _metric(
        served.url, "conveyor_shadow_predictions_total", version="3", outcome="ok", **labels
    ) == len(ids)
    assert _metric(
        served.url, "conveyor_shadow_predictions_total", version="4", outcome="error", **labels
    ) == len(ids)
