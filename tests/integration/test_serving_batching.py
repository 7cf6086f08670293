"""Micro-batching end to end: a real server, concurrent clients, every answer its own.

Two registered models: ``numeric`` (scikit-learn logistic regression on numeric inputs: the
numpy fast path) and ``census`` (text input, one-hot preprocessing: the pandas path). Bursts
of concurrent requests, good and bad mixed, must be batched (fewer model calls than requests)
and each answered exactly as the bundle answers its own rows, bad ones with a 400 of their
own; the prediction log holds each request with its own rows.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from conveyor.config import load_settings
from conveyor.modeling.bundle import LoadedBundle, load_bundle
from conveyor.registry import ModelRegistry
from conveyor.serving.app import create_app
from conveyor.serving.batching import BatchStats
from conveyor.serving.prediction_log import tail
from conveyor.serving.server import BackgroundServer, parse_size
from conveyor.store.workspace import Workspace
from serving_bundles import register_model
from serving_support import free_port, register_production

COLUMNS = ["a", "b", "n"]


def register_numeric(ws: Workspace, folder: Path) -> Path:
    """A logistic regression on a, b (floats) and n (int), registered as ``numeric``."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {"a": rng.normal(size=400), "b": rng.normal(size=400), "n": rng.integers(0, 9, 400)}
    )
    y = (frame["a"] - frame["b"] + frame["n"] / 4 + rng.normal(0, 0.5, 400) > 1).astype(int)
    register_model(
        ws, "numeric", folder, LogisticRegression().fit(frame, y), frame, task="binary",
        alias="production",
    )  # fmt: skip
    return Path(ModelRegistry(ws).load_bundle_path("numeric", "production"))


@dataclass
class Served:
    url: str
    numeric: LoadedBundle
    census: LoadedBundle
    app: Any
    artifact_url: str

    @property
    def stats(self) -> BatchStats:
        stats: BatchStats = self.app.state.serving.inference.batcher.stats
        return stats


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("batching")
    ws = Workspace.open(load_settings(home=root / "home"))
    try:
        census = register_production(ws, root)
        numeric = register_numeric(ws, root / "numeric-bundle")
        app = create_app(ws, memory_budget_bytes=parse_size("256MB"), flush_interval_s=0.2)
        with BackgroundServer(app, port=free_port()) as server:
            yield Served(
                server.url,
                load_bundle(numeric),
                load_bundle(census),
                app,
                ws.settings.artifact_url,
            )
    finally:
        ws.close()


def numeric_rows(seed: int, rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"a": rng.normal(size=rows), "b": rng.normal(size=rows), "n": rng.integers(0, 9, rows)}
    )


def instances(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


@dataclass
class Sent:
    """One request of a burst: its body, what it should get back, and what it got."""

    request_id: str
    body: dict[str, Any]
    expected: pd.DataFrame | str  # the rows it sent, or a fragment of the 400 it must get
    answer: httpx.Response | None = None


def burst(url: str, path: str, sent: list[Sent]) -> None:
    """Send every request at once from 16 threads (one keep-alive connection each)."""

    def post(item: Sent) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            headers = {"X-Request-Id": item.request_id, "Content-Type": "application/json"}
            content = json.dumps(item.body).encode()  # json= refuses NaN, which TF Serving takes
            item.answer = client.post(path, content=content, headers=headers)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(post, sent))


def check_answers(bundle: LoadedBundle, sent: list[Sent]) -> None:
    for item in sent:
        assert item.answer is not None
        if isinstance(item.expected, str):
            assert item.answer.status_code == 400, item.answer.text
            assert item.expected in item.answer.json()["error"]
            continue
        assert item.answer.status_code == 200, item.answer.text
        predictions = item.answer.json()["predictions"]
        labels = [p["label"] for p in predictions]
        probabilities = np.array([p["probabilities"] for p in predictions])
        assert labels == bundle.predict(item.expected).tolist()
        np.testing.assert_allclose(probabilities, bundle.predict_proba(item.expected), rtol=1e-12)


def numeric_burst(round_: int) -> list[Sent]:
    """32 requests of 1 to 3 rows, 4 of them bad in different ways."""
    sent = []
    for i in range(32):
        frame = numeric_rows(1000 * round_ + i, 1 + i % 3)
        sent.append(Sent(f"r{round_}-{i}", {"instances": instances(frame)}, frame))
    bad = [
        ({"instances": [{"a": float("nan"), "b": 0.0, "n": 1}]}, "input 'a' holds NaN"),
        ({"instances": [{"a": 0.1, "b": 0.0, "n": 1, "zz": 2.0}]}, "unknown column 'zz'"),
        ({"instances": [{"a": 0.1, "b": "x", "n": 1}]}, "column 'b': expected float"),
        ({"instances": [{"a": 0.1, "b": 0.2, "n": 1.5}]}, "column 'n': expected int"),
    ]
    for k, (body, error) in enumerate(bad):
        sent[5 + 7 * k] = Sent(f"r{round_}-bad{k}", body, error)
    return sent


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(served: Served) -> None:
    before = dataclasses.replace(served.stats)
    for round_ in range(5):  # scheduling decides how many requests meet: retry, bounded
        sent = numeric_burst(round_)
        burst(served.url, "/v1/models/numeric:predict", sent)
        check_answers(served.numeric, sent)
        stats = served.stats
        if stats.requests - before.requests > stats.batches - before.batches:
            break
    assert stats.requests - before.requests > stats.batches - before.batches, stats
    assert stats.largest > 1


def test_the_pandas_path_is_batched_too_and_bad_rows_fail_alone(served: Served) -> None:
    sent = []
    for i in range(24):
        frame = pd.DataFrame(
            {"x": [0.1 * i], "n": [i % 10], "city": [["Lyon", "Paris", "Nice"][i % 3]]}
        )
        sent.append(Sent(f"census-{i}", {"instances": instances(frame)}, frame))
    sent[3] = Sent("census-bad", {"instances": [{"x": 0.5, "n": 2}]}, "missing column 'city'")
    burst(served.url, "/v1/models/census:predict", sent)
    check_answers(served.census, sent)


def test_v2_requests_share_the_batcher(served: Served) -> None:
    frames = [numeric_rows(5000 + i, 2) for i in range(16)]

    def body(frame: pd.DataFrame) -> dict[str, Any]:
        datatype = {"a": "FP64", "b": "FP64", "n": "INT64"}
        return {
            "inputs": [
                {
                    "name": c,
                    "shape": [len(frame)],
                    "datatype": datatype[c],
                    "data": frame[c].tolist(),
                }
                for c in COLUMNS
            ]
        }

    sent = [Sent(f"v2-{i}", body(f), f) for i, f in enumerate(frames)]
    burst(served.url, "/v2/models/numeric/infer", sent)
    for item in sent:
        assert item.answer is not None and item.answer.status_code == 200, item.answer
        outputs = {o["name"]: o for o in item.answer.json()["outputs"]}
        assert isinstance(item.expected, pd.DataFrame)
        assert outputs["label"]["data"] == served.numeric.predict(item.expected).tolist()


def test_the_prediction_log_holds_each_request_with_its_own_rows(served: Served) -> None:
    sent = numeric_burst(99)
    burst(served.url, "/v1/models/numeric:predict", sent)
    wanted = {s.request_id: s for s in sent if isinstance(s.expected, pd.DataFrame)}
    root = f"{served.artifact_url}/predictions"
    deadline = time.monotonic() + 20
    logged: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline and not wanted.keys() <= logged.keys():
        time.sleep(0.3)
        logged = {r["request_id"]: r for r in tail(root, n=10_000, model="numeric")}
    assert wanted.keys() <= logged.keys()
    for request_id, item in wanted.items():
        record = logged[request_id]
        assert isinstance(item.expected, pd.DataFrame)
        assert record["inputs"]["a"] == item.expected["a"].tolist()
        assert record["outputs"]["label"] == served.numeric.predict(item.expected).tolist()
        assert record["version"] == "1" and record["route"] == "production"
    assert not {s.request_id for s in sent if isinstance(s.expected, str)} & logged.keys()


def test_one_request_at_a_time_is_answered_alone_and_without_waiting(served: Served) -> None:
    body = {"instances": instances(numeric_rows(7, 1))}
    batcher = served.app.state.serving.inference.batcher
    default = batcher.inline_below_s
    batcher.inline_below_s = 10.0  # what the cost decides is timing-dependent: pin it
    try:
        with httpx.Client(base_url=served.url, timeout=30) as client:
            client.post("/v1/models/numeric:predict", json=body)  # the cost is known
            before = dataclasses.replace(served.stats)
            began = time.perf_counter()
            for _ in range(20):
                assert client.post("/v1/models/numeric:predict", json=body).status_code == 200
            elapsed = time.perf_counter() - began
    finally:
        batcher.inline_below_s = default
    stats = served.stats
    assert stats.batches - before.batches == 20
    assert stats.requests - before.requests == 20
    assert stats.inline - before.inline == 20  # a cheap loaded model: no thread hand-off
    assert elapsed < 10.0  # no timer anywhere: 20 round trips, not 20 waits
