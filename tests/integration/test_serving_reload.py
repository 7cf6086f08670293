"""Hot reload end to end: aliases moved in the registry while a real uvicorn server answers."""

from __future__ import annotations

import logging
import threading
import time
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

INSTANCES = {"instances": [{"x": 0.5, "n": 1, "city": "Lyon"}, {"x": -1.0, "n": 3, "city": "Nice"}]}


def _register(ws: Workspace, root: Path, seed: int, name: str = "census") -> int:
    artifact_id, _ = store_bundle(ws, root / f"bundle-{seed}", seed)
    record = ModelRegistry(ws).register(name, artifact_id, require_blessing=False)
    return int(record.version)


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    ws = Workspace.open(load_settings(home=tmp_path / "home"))
    try:
        yield ws
    finally:
        ws.close()


def _registry_with_production(ws: Workspace, root: Path) -> ModelRegistry:
    registry = ModelRegistry(ws)
    artifact_id, _ = store_bundle(ws, root / "bundle-1", seed=1)
    registry.register("census", artifact_id, require_blessing=False, alias="production")
    return registry


def _broken_bundle(ws: Workspace, root: Path) -> int:
    """A stored bundle whose files are corrupt (its manifest is intact): it fails to load."""
    artifact_id, folder = store_bundle(ws, root / "bundle-3", seed=3)
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix != ".json":
            path.write_bytes(b"corrupt")
    return artifact_id


class _Load:
    """One client thread sending predictions continuously; records status and version."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.results: list[tuple[int, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self._stop.is_set():
                try:
                    response = http.post("/v1/models/census:predict", json=INSTANCES)
                    self.results.append(
                        (response.status_code, response.headers.get("X-Model-Version"))
                    )
                except httpx.HTTPError as exc:
                    self.results.append((-1, repr(exc)))

    def __enter__(self) -> _Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def wait_for(self, version: str, count: int = 20, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while sum(1 for _, v in self.results if v == version) < count:
            assert time.monotonic() < deadline, f"no answers from version {version}"
            time.sleep(0.02)


def test_alias_moves_without_failed_requests(workspace: Workspace, tmp_path: Path) -> None:
    registry = _registry_with_production(workspace, tmp_path)
    app = create_app(workspace, memory_budget_bytes=parse_size("256MB"), reload_interval_s=3600)
    served: ServedModels = app.state.serving.models
    with (
        BackgroundServer(app, port=free_port()) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        assert http.get("/v2/health/ready").status_code == 200
        with _Load(server.url) as load:
            load.wait_for("1")
            version = _register(workspace, tmp_path, seed=2)
            assert version == 2
            served.refresh()  # v2 has no alias yet: nothing moves
            assert served.router.route("census", "production").weights == {1: 1.0}
            registry.promote("census", 2, reason="hot reload test")
            served.refresh()
            load.wait_for("2")
        assert http.get("/v2/health/ready").status_code == 200
        assert http.get("/v1/models/census").headers["X-Model-Version"] == "2"
        assert http.get("/v2/models/census/versions/1/ready").status_code == 200
    failed = [r for r in load.results if r[0] != 200]
    assert not failed, failed[:5]
    versions = [v for _, v in load.results]
    switch = versions.index("2")
    assert set(versions[:switch]) == {"1"} and set(versions[switch:]) == {"2"}
    assert ("census", 1) not in served.cache.loaded()
    assert ("census", 2) in served.cache.loaded()
    assert served.deployed() == [("census", 2)]


def test_watcher_load_failure_new_and_removed_models(
    workspace: Workspace, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = _registry_with_production(workspace, tmp_path)
    app = create_app(workspace, memory_budget_bytes=parse_size("256MB"), reload_interval_s=0.1)
    served: ServedModels = app.state.serving.models

    def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "the watcher did not apply the change"
            time.sleep(0.05)

    with (
        BackgroundServer(app, port=free_port()) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        # A broken version: the alias keeps the old one, readiness stays, the error is logged.
        broken_id = _broken_bundle(workspace, tmp_path)
        with caplog.at_level(logging.ERROR, logger="conveyor.serving.models"):
            registry.register("census", broken_id, require_blessing=False)
            registry.promote("census", 2, reason="broken on purpose")
            until(lambda: ("census", 2) in served._failed)
            until(lambda: "failed to load" in caplog.text)
        assert served.router.route("census", "production").weights == {1: 1.0}
        answer = http.post("/v1/models/census:predict", json=INSTANCES)
        assert answer.status_code == 200 and answer.headers["X-Model-Version"] == "1"
        assert http.get("/v2/health/ready").status_code == 200

        # A new aliased model appears (loaded before it is routed).
        other_id, _ = store_bundle(workspace, tmp_path / "bundle-4", seed=4)
        registry.register("other", other_id, require_blessing=False, alias="staging")
        until(lambda: "other" in served.names())
        assert ("other", 1) in served.cache.loaded()
        assert http.post("/v1/models/other:predict", json=INSTANCES).status_code == 200
        assert http.get("/v2/health/ready").status_code == 200

        # Back to a good version in the registry: the broken one was never routed.
        registry.promote("census", 1, reason="roll back")
        until(lambda: served.registry.aliases("census") == {"production": 1})
        answer = http.post("/v1/models/census:predict", json=INSTANCES)
        assert answer.status_code == 200 and answer.headers["X-Model-Version"] == "1"

        # A model whose last alias is removed disappears and unloads.
        registry.store.remove_alias("other", "staging", actor="test", reason="retired")
        until(lambda: "other" not in served.names())
        assert ("other", 1) not in served.cache.loaded()
        assert http.post("/v1/models/other:predict", json=INSTANCES).status_code == 404
        assert http.get("/v2/health/ready").status_code == 200


def test_refresh_if_changed_rereads_only_after_a_change_and_retries_failed_loads(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = _registry_with_production(workspace, tmp_path)
    served = ServedModels(registry, memory_budget_bytes=parse_size("256MB"))
    reads: list[str] = []
    read_registry = served._read_registry
    monkeypatch.setattr(
        served, "_read_registry", lambda initial: reads.append("read") or read_registry(initial)
    )
    assert served.refresh_if_changed() is False  # the constructor read this revision
    assert reads == []

    assert _register(workspace, tmp_path, seed=2) == 2  # a new version, no alias yet
    assert served.refresh_if_changed() is True
    assert served.refresh_if_changed() is False
    assert served.router.route("census", "production").weights == {1: 1.0}
    assert reads == ["read"]

    registry.promote("census", 2, reason="go")
    assert served.refresh_if_changed() is True
    assert served.router.route("census", "production").weights == {2: 1.0}

    # A version that fails to load: the route keeps v2, and every call tries again.
    broken_id = _broken_bundle(workspace, tmp_path)
    registry.register("census", broken_id, require_blessing=False)
    registry.promote("census", 3, reason="broken on purpose")
    assert served.refresh_if_changed() is True
    assert served.refresh_if_changed() is True, "a failed load is retried without a change"
    assert served.router.route("census", "production").weights == {2: 1.0}
    registry.promote("census", 2, reason="roll back")
    assert served.refresh_if_changed() is True
    assert served.refresh_if_changed() is False, "nothing left to retry"
