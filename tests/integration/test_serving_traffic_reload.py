"""Traffic splits set in the registry while a real uvicorn server answers: applied live.

A coarse check of the shares (a few hundred requests); the 10,000-request acceptance test
of the percentages lives elsewhere.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conveyor.config import load_settings
from conveyor.registry import ModelRegistry
from conveyor.serving.app import create_app
from conveyor.serving.models import ServedModels
from conveyor.serving.server import BackgroundServer, parse_size
from conveyor.store.workspace import Workspace
from serving_support import free_port, store_bundle

INSTANCES = {"instances": [{"x": 0.5, "n": 1, "city": "Lyon"}]}


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    ws = Workspace.open(load_settings(home=tmp_path / "home"))
    try:
        yield ws
    finally:
        ws.close()


def _register(ws: Workspace, root: Path, seed: int, alias: str | None = None) -> None:
    artifact_id, _ = store_bundle(ws, root / f"bundle-{seed}", seed)
    ModelRegistry(ws).register("census", artifact_id, require_blessing=False, alias=alias)


def _until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"the watcher did not apply: {what}"
        time.sleep(0.05)


def _versions(http: httpx.Client, count: int) -> Counter[str]:
    """Send ``count`` predictions; every one must succeed. The versions that answered."""
    answered: Counter[str] = Counter()
    for _ in range(count):
        response = http.post("/v1/models/census:predict", json=INSTANCES)
        assert response.status_code == 200, response.text
        answered[response.headers["X-Model-Version"]] += 1
    return answered


def _weights(served: ServedModels) -> dict[int, float]:
    return dict(served.router.route("census", "production").weights)


def test_a_split_applies_live_follows_its_alias_and_clears(
    workspace: Workspace, tmp_path: Path
) -> None:
    _register(workspace, tmp_path, seed=1, alias="production")
    _register(workspace, tmp_path, seed=2, alias="canary")
    _register(workspace, tmp_path, seed=3)
    registry = ModelRegistry(workspace)
    app = create_app(workspace, memory_budget_bytes=parse_size("256MB"), reload_interval_s=0.1)
    served: ServedModels = app.state.serving.models
    with (
        BackgroundServer(app, port=free_port()) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        assert _versions(http, 20) == {"1": 20}

        registry.set_traffic("census", {"production": 90, "canary": 10}, reason="canary")
        _until(lambda: _weights(served) == {1: 0.9, 2: 0.1}, "the 90/10 split")
        answered = _versions(http, 300)
        assert answered.keys() <= {"1", "2"}
        # 10 % of 300 is 30 +- 5.2 (one standard deviation): 10..60 is wide enough never to
        # flake and still tells 10 % from 0 % or 50 %.
        assert 10 <= answered["2"] <= 60, answered

        # An unchanged route is left alone (the same object, not a rebuilt one).
        route = served.router.route("census", "production")
        served.refresh()
        assert served.router.route("census", "production") is route

        # The canary alias moves to version 3: the split follows it, and version 3 is
        # loaded by the time the route sends it requests.
        registry.promote("census", 3, "canary", reason="retrained canary")
        _until(lambda: _weights(served) == {1: 0.9, 3: 0.1}, "the split following canary")
        assert ("census", 3) in served.cache.loaded()
        _until(lambda: ("census", 2) not in served.cache.loaded(), "version 2 unloaded")
        assert _versions(http, 100).keys() <= {"1", "3"}
        assert http.get("/v2/health/ready").status_code == 200

        # Clearing the split sends everything back to production.
        registry.clear_traffic("census", reason="canary done")
        _until(lambda: _weights(served) == {1: 1.0}, "the cleared split")
        assert _versions(http, 50) == {"1": 50}
        assert served.deployed() == [("census", 1), ("census", 3)]  # canary's own route


def test_shadows_are_loaded_and_never_answer(workspace: Workspace, tmp_path: Path) -> None:
    _register(workspace, tmp_path, seed=1, alias="production")
    _register(workspace, tmp_path, seed=2)
    registry = ModelRegistry(workspace)
    app = create_app(workspace, memory_budget_bytes=parse_size("256MB"), reload_interval_s=0.1)
    served: ServedModels = app.state.serving.models
    with (
        BackgroundServer(app, port=free_port()) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        assert served.deployed() == [("census", 1)]
        registry.set_traffic("census", {"production": 100}, shadows=["v2"], reason="shadow")
        _until(lambda: served.router.route("census", "production").shadows == (2,), "shadow")
        assert served.deployed() == [("census", 1), ("census", 2)]
        assert ("census", 2) in served.cache.loaded()
        assert http.get("/v2/health/ready").status_code == 200
        assert _versions(http, 50) == {"1": 50}

        registry.clear_traffic("census")
        _until(lambda: ("census", 2) not in served.cache.loaded(), "the shadow unloaded")
        assert served.deployed() == [("census", 1)]


def test_a_split_whose_version_fails_to_load_is_not_applied(
    workspace: Workspace, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _register(workspace, tmp_path, seed=1, alias="production")
    broken_id, broken_folder = store_bundle(workspace, tmp_path / "bundle-2", seed=2)
    for path in broken_folder.rglob("*"):
        if path.is_file() and path.suffix != ".json":
            path.write_bytes(b"corrupt")
    registry = ModelRegistry(workspace)
    registry.register("census", broken_id, require_blessing=False)
    app = create_app(workspace, memory_budget_bytes=parse_size("256MB"), reload_interval_s=0.1)
    served: ServedModels = app.state.serving.models
    with (
        BackgroundServer(app, port=free_port()) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
        caplog.at_level(logging.ERROR, logger="conveyor.serving.models"),
    ):
        registry.set_traffic("census", {"production": 50, "v2": 50}, reason="broken on purpose")
        _until(lambda: "census version 2 failed to load" in caplog.text, "the failed load")
        assert _weights(served) == {1: 1.0}
        assert _versions(http, 50) == {"1": 50}
        assert http.get("/v2/health/ready").status_code == 200
