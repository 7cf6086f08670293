"""Acceptance: the production alias moves to a new version during a bounded load (30 s, 16
connections, loopback): zero failed requests, and answers switch to the new version.

The server is a real uvicorn with the hot-reload watcher on a short interval; the alias is moved
through the registry's public API on its own connection, as another process would. Every
answer is checked against the offline predictions of the version it names.
"""

from __future__ import annotations

import asyncio
import json
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
from conveyor.modeling.bundle import load_bundle
from conveyor.registry import ModelRegistry
from conveyor.serving.app import create_app
from conveyor.serving.models import ServedModels, bundle_size_bytes
from conveyor.serving.server import BackgroundServer, parse_size
from conveyor.store.workspace import Workspace
from serving_support import free_port, store_bundle

pytestmark = pytest.mark.slow

DURATION_S = 30.0
PROMOTE_AT_S = 10.0
CONNECTIONS = 16
RELOAD_INTERVAL_S = 0.25
MAX_SETTLE_S = 10.0
"""Longest acceptable time from the alias change to the first answer of the new version
(one watcher interval plus loading the bundle, with a wide margin for a busy machine)."""

ROWS = pd.DataFrame({"x": [0.5, -1.25, 0.05], "n": [1, 7, 9], "city": ["Lyon", "Paris", "Nice"]})
BODY = {"instances": ROWS.to_dict(orient="records")}


@dataclass(frozen=True)
class Answer:
    sent: float
    done: float
    status: int
    version: str | None
    body: bytes


@dataclass
class Setup:
    workspace: Workspace
    served: ServedModels
    url: str
    expected: dict[str, np.ndarray]  # version -> offline probabilities for ROWS
    folders: dict[str, str]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    ws = Workspace.open(load_settings(home=tmp_path / "home"))
    try:
        registry = ModelRegistry(ws)
        folders: dict[str, str] = {}
        for seed, alias in ((1, "production"), (2, None)):
            artifact_id, _ = store_bundle(ws, tmp_path / f"bundle-{seed}", seed=seed)
            record = registry.register("census", artifact_id, require_blessing=False, alias=alias)
            folders[str(record.version)] = registry.load_bundle_path("census", record.version)
        expected = {v: load_bundle(f).predict_proba(ROWS) for v, f in folders.items()}
        assert not np.allclose(expected["1"], expected["2"])  # the switch must be visible
        app = create_app(
            ws,
            memory_budget_bytes=parse_size("256MB"),
            flush_interval_s=0.5,
            reload_interval_s=RELOAD_INTERVAL_S,
        )
        with BackgroundServer(app, port=free_port()) as server:
            yield Setup(ws, app.state.serving.models, server.url, expected, folders)
    finally:
        ws.close()


async def _connection(http: httpx.AsyncClient, deadline: float, answers: list[Answer]) -> None:
    """One client connection sending predictions back to back until ``deadline``."""
    while time.monotonic() < deadline:
        sent = time.monotonic()
        try:
            response = await http.post("/v1/models/census:predict", json=BODY)
            version = response.headers.get("X-Model-Version")
            answers.append(
                Answer(sent, time.monotonic(), response.status_code, version, response.content)
            )
        except httpx.HTTPError as exc:
            answers.append(Answer(sent, time.monotonic(), -1, None, repr(exc).encode()))


async def _probe(http: httpx.AsyncClient, deadline: float, statuses: list[int]) -> None:
    """Readiness probed every 100 ms, as an orchestrator would."""
    while time.monotonic() < deadline:
        statuses.append((await http.get("/v2/health/ready")).status_code)
        await asyncio.sleep(0.1)


async def _load(setup: Setup) -> tuple[list[Answer], list[int], float, float]:
    """Run the load; move the alias at PROMOTE_AT_S; returns answers, probes and the times
    the promotion started and was committed."""
    answers: list[Answer] = []
    probes: list[int] = []
    limits = httpx.Limits(
        max_connections=CONNECTIONS + 1, max_keepalive_connections=CONNECTIONS + 1
    )
    async with httpx.AsyncClient(base_url=setup.url, timeout=30, limits=limits) as http:
        deadline = time.monotonic() + DURATION_S
        tasks = [
            asyncio.create_task(_connection(http, deadline, answers)) for _ in range(CONNECTIONS)
        ]
        tasks.append(asyncio.create_task(_probe(http, deadline, probes)))
        await asyncio.sleep(PROMOTE_AT_S)
        started = time.monotonic()
        await asyncio.to_thread(_promote, setup.workspace.settings.metadata_url)
        committed = time.monotonic()
        await asyncio.gather(*tasks)
    return answers, probes, started, committed


def _promote(metadata_url: str) -> None:
    with ModelRegistry.open(metadata_url) as registry:
        registry.promote("census", 2, reason="swap under load")


def _loaded_gauge(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        if family.name == "conveyor_models_loaded":
            return float(family.samples[0].value)
    raise AssertionError("no conveyor_models_loaded gauge in /metrics")


def test_alias_swap_under_load(setup: Setup) -> None:
    answers, probes, started, committed = asyncio.run(_load(setup))

    failed = [a for a in answers if a.status != 200]
    assert not failed, f"{len(failed)} failed requests, e.g. {failed[:3]}"
    assert len(answers) > 30 * CONNECTIONS, f"only {len(answers)} requests in {DURATION_S} s"
    assert set(probes) == {200}, "readiness dropped during the swap"

    # every answer is the offline prediction of the version it names
    for answer in answers:
        assert answer.version in setup.expected, answer
        got = [row["probabilities"] for row in json.loads(answer.body)["predictions"]]
        np.testing.assert_allclose(got, setup.expected[answer.version], rtol=0, atol=1e-12)

    # v1 until the alias moved; once one v2 answer came back, only v2 (the route swapped
    # before that request was resolved, so every request sent later resolves to v2)
    assert {a.version for a in answers if a.done < started} == {"1"}
    first_v2 = min(a.done for a in answers if a.version == "2")
    assert first_v2 - committed < MAX_SETTLE_S, f"v2 answered {first_v2 - committed:.1f} s late"
    after = [a for a in answers if a.sent > first_v2]
    assert after and {a.version for a in after} == {"2"}
    assert max(a.done for a in after) - first_v2 > 10.0  # the new version carried real load

    # the old version was unloaded: only v2's bytes are held, and /metrics agrees
    assert setup.served.cache.loaded() == [("census", 2)]
    assert setup.served.cache.used_bytes == bundle_size_bytes(setup.folders["2"])
    assert _loaded_gauge(setup.url) == 1.0
    assert setup.served.deployed() == [("census", 2)]
