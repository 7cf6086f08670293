"""ModelCache: load once per key, LRU within a budget, pinning, eviction, failures."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass

import pytest

from conveyor.serving.model_cache import ModelCache


@dataclass
class FakeModel:
    model: str
    version: int
    size_bytes: int


class FakeLoader:
    """Sizes per key (default 10), load counts, optional sleep and failures."""

    def __init__(
        self,
        sizes: dict[tuple[str, int], int] | None = None,
        *,
        sleep: float = 0.0,
        fail: int = 0,
    ) -> None:
        self.sizes = sizes or {}
        self.sleep = sleep
        self.fail = fail  # the first `fail` calls raise
        self.calls: Counter[tuple[str, int]] = Counter()
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def __call__(self, model: str, version: int) -> FakeModel:
        with self._lock:
            self.calls[(model, version)] += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            failing = self.fail > 0
            if failing:
                self.fail -= 1
        try:
            if self.sleep:
                time.sleep(self.sleep)
            if failing:
                raise OSError(f"cannot load {model} v{version}")
            return FakeModel(model, version, self.sizes.get((model, version), 10))
        finally:
            with self._lock:
                self.active -= 1


def test_loads_on_first_use_and_reuses() -> None:
    loader = FakeLoader()
    cache = ModelCache(loader, budget_bytes=100)
    m = cache.get("a", 1)
    assert (m.model, m.version) == ("a", 1)
    assert cache.get("a", 1) is m
    assert loader.calls[("a", 1)] == 1
    assert cache.loaded() == [("a", 1)]
    assert cache.used_bytes == 10


def test_lru_order_and_eviction_within_budget() -> None:
    loader = FakeLoader()
    cache = ModelCache(loader, budget_bytes=30)
    for v in (1, 2, 3):
        cache.get("m", v)
    assert cache.loaded() == [("m", 1), ("m", 2), ("m", 3)]
    cache.get("m", 1)  # touch: now most recent
    assert cache.loaded() == [("m", 2), ("m", 3), ("m", 1)]
    cache.get("m", 4)  # over budget: the least recently used (2) goes
    assert cache.loaded() == [("m", 3), ("m", 1), ("m", 4)]
    assert cache.used_bytes == 30
    cache.get("m", 2)  # loads again
    assert loader.calls[("m", 2)] == 2
    assert cache.loaded() == [("m", 1), ("m", 4), ("m", 2)]


def test_budget_respected_with_mixed_sizes() -> None:
    sizes = {("m", 1): 50, ("m", 2): 30, ("m", 3): 40, ("m", 4): 20}
    unloaded: list[tuple[str, int]] = []
    cache = ModelCache(
        FakeLoader(sizes), budget_bytes=100, on_unload=lambda m, v, _: unloaded.append((m, v))
    )
    for v in (1, 2, 3, 4):
        cache.get("m", v)
        assert cache.used_bytes <= 100
    assert unloaded == [("m", 1)]
    assert cache.loaded() == [("m", 2), ("m", 3), ("m", 4)]
    assert cache.used_bytes == 90


def test_no_eviction_while_in_use() -> None:
    cache = ModelCache(FakeLoader(), budget_bytes=20)
    with cache.use("m", 1) as m1:
        assert cache.in_use("m", 1) == 1
        cache.get("m", 2)
        cache.get("m", 3)  # over budget: 1 is pinned, so 2 goes
        assert ("m", 1) in cache.loaded()
        assert ("m", 2) not in cache.loaded()
        cache.get("m", 4)  # 3 goes; 1 still pinned
        assert cache.loaded() == [("m", 1), ("m", 4)]
        assert m1.version == 1
    assert cache.in_use("m", 1) == 0
    assert cache.used_bytes <= 20


def test_in_use_entries_may_exceed_budget_then_shrink_on_release() -> None:
    cache = ModelCache(FakeLoader(), budget_bytes=20)
    with cache.use("m", 1), cache.use("m", 2), cache.use("m", 3):
        assert cache.used_bytes == 30  # all pinned
    # Released innermost first: when 3 is released, 1 and 2 are still pinned, so the only
    # idle entry (3) goes; then the cache is within budget again.
    assert cache.used_bytes <= 20
    assert cache.loaded() == [("m", 1), ("m", 2)]


def test_entry_bigger_than_budget_loads_alone_with_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = ModelCache(FakeLoader({("big", 1): 500}), budget_bytes=100)
    cache.get("m", 1)
    cache.get("m", 2)
    with caplog.at_level(logging.WARNING, logger="conveyor.serving.model_cache"):
        big = cache.get("big", 1)
    assert big.size_bytes == 500
    assert cache.loaded() == [("big", 1)]
    assert "more than the whole cache budget" in caplog.text
    cache.get("m", 1)  # the big one is now the idle LRU entry and goes
    assert cache.loaded() == [("m", 1)]


def test_concurrent_first_requests_load_once() -> None:
    loader = FakeLoader(sleep=0.2)
    cache = ModelCache(loader, budget_bytes=1_000)
    results: list[FakeModel] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        with cache.use("m", 1) as m:
            results.append(m)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loader.calls[("m", 1)] == 1
    assert len(results) == 8
    assert all(r is results[0] for r in results)
    assert cache.in_use("m", 1) == 0


def test_different_keys_load_in_parallel() -> None:
    loader = FakeLoader(sleep=0.3)
    cache = ModelCache(loader, budget_bytes=1_000)
    threads = [threading.Thread(target=cache.get, args=("m", v)) for v in range(1, 5)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    assert loader.max_active == 4
    assert elapsed < 1.0  # sequential would take 1.2 s
    assert sorted(cache.loaded()) == [("m", v) for v in range(1, 5)]


def test_failing_load_raises_and_is_retried() -> None:
    loader = FakeLoader(fail=1)
    cache = ModelCache(loader, budget_bytes=100)
    with pytest.raises(OSError, match="cannot load m v1"):
        cache.get("m", 1)
    assert cache.loaded() == []
    assert not cache.ready([("m", 1)])
    m = cache.get("m", 1)
    assert m.version == 1
    assert loader.calls[("m", 1)] == 2


def test_failing_load_raises_to_waiting_callers_too() -> None:
    loader = FakeLoader(sleep=0.2, fail=1)
    cache = ModelCache(loader, budget_bytes=100)
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        try:
            cache.get("m", 1)
            outcomes.append("ok")
        except OSError:
            outcomes.append("error")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == ["error"] * 4
    assert loader.calls[("m", 1)] == 1
    cache.get("m", 1)
    assert loader.calls[("m", 1)] == 2


def test_bad_size_is_a_failed_load() -> None:
    cache = ModelCache(lambda m, v: FakeModel(m, v, -1), budget_bytes=100)
    with pytest.raises(TypeError, match="size_bytes"):
        cache.get("m", 1)
    assert cache.loaded() == []


def test_preload_ready_and_loaded() -> None:
    loader = FakeLoader()
    cache = ModelCache(loader, budget_bytes=100)
    keys = [("a", 1), ("b", 2)]
    assert not cache.ready(keys)
    cache.preload(keys)
    assert cache.ready(keys)
    assert cache.ready([])
    assert cache.loaded() == keys
    cache.preload(keys)
    assert sum(loader.calls.values()) == 2


def test_preload_tries_every_key_then_raises_first_error() -> None:
    loader = FakeLoader(fail=1)
    cache = ModelCache(loader, budget_bytes=100)
    with pytest.raises(OSError):
        cache.preload([("a", 1), ("b", 1)])
    assert cache.loaded() == [("b", 1)]


def test_evict_idle_entry() -> None:
    unloaded: list[tuple[str, int]] = []
    cache = ModelCache(
        FakeLoader(), budget_bytes=100, on_unload=lambda m, v, _: unloaded.append((m, v))
    )
    cache.get("m", 1)
    assert cache.evict("m", 1) is True
    assert cache.loaded() == []
    assert cache.used_bytes == 0
    assert unloaded == [("m", 1)]
    assert cache.evict("m", 1) is False


def test_evict_in_use_is_deferred_until_last_use() -> None:
    unloaded: list[tuple[str, int]] = []
    loader = FakeLoader()
    cache = ModelCache(loader, budget_bytes=100, on_unload=lambda m, v, _: unloaded.append((m, v)))
    with cache.use("m", 1) as first:
        with cache.use("m", 1):
            assert cache.evict("m", 1) is True
            assert cache.loaded() == []  # detached: no longer handed out
            assert unloaded == []
            assert cache.used_bytes == 10  # still in memory
        assert unloaded == []
        assert first.version == 1
    assert unloaded == [("m", 1)]
    assert cache.used_bytes == 0
    cache.get("m", 1)  # a new request loads afresh
    assert loader.calls[("m", 1)] == 2


def test_evict_wait_times_out_but_still_unloads_later() -> None:
    cache = ModelCache(FakeLoader(), budget_bytes=100)
    entered = threading.Event()
    release = threading.Event()

    def user() -> None:
        with cache.use("m", 1):
            entered.set()
            release.wait()

    t = threading.Thread(target=user)
    t.start()
    entered.wait()
    with pytest.raises(TimeoutError, match="still in use"):
        cache.evict("m", 1, wait=True, timeout=0.05)
    assert cache.loaded() == []  # detached anyway: unloaded after the last use
    assert cache.used_bytes == 10
    release.set()
    t.join()
    assert cache.used_bytes == 0


def test_evict_wait_returns_after_last_use() -> None:
    cache = ModelCache(FakeLoader(), budget_bytes=100)
    entered = threading.Event()

    def user() -> None:
        with cache.use("m", 1):
            entered.set()
            time.sleep(0.2)

    t = threading.Thread(target=user)
    t.start()
    entered.wait()
    start = time.monotonic()
    assert cache.evict("m", 1, wait=True, timeout=5) is True
    assert time.monotonic() - start >= 0.1
    assert cache.used_bytes == 0
    t.join()


def test_concurrent_use_under_pressure_keeps_invariants() -> None:
    loader = FakeLoader(sleep=0.001)
    cache = ModelCache(loader, budget_bytes=50)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(200):
                v = (n * 7 + i) % 9 + 1
                with cache.use("m", v) as m:
                    assert m.version == v
                    assert cache.in_use("m", v) >= 1 or ("m", v) not in cache.loaded()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cache.used_bytes <= 50
    assert cache.used_bytes == 10 * len(cache.loaded())


def test_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="budget_bytes"):
        ModelCache(FakeLoader(), budget_bytes=0)
