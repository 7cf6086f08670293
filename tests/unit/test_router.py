"""Router: weighted and sticky choice, explicit versions, shadows, live atomic updates."""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest

from conveyor.exceptions import ConveyorError
from conveyor.serving.router import Decision, Route, Router, RoutingError, sticky_point


def _router(seed: int = 0) -> Router:
    router = Router(rng=random.Random(seed))
    router.update("census", Route("production", {3: 0.9, 4: 0.1}, shadows=[5]))
    router.update("census", Route("staging", {4: 1.0}))
    return router


def test_weighted_proportions_with_seeded_rng() -> None:
    router = _router(seed=1234)
    counts = Counter(router.choose("census", "production", None).version for _ in range(10_000))
    assert set(counts) == {3, 4}
    assert abs(counts[4] / 10_000 - 0.10) < 0.02


def test_seeded_rng_is_reproducible() -> None:
    a, b = _router(seed=7), _router(seed=7)
    assert [a.choose("census", "production").version for _ in range(200)] == [
        b.choose("census", "production").version for _ in range(200)
    ]


def test_relative_weights_and_three_way_split() -> None:
    router = Router(rng=random.Random(5))
    router.update("m", Route("production", {1: 2, 2: 1, 3: 1}))
    counts = Counter(router.choose("m").version for _ in range(10_000))
    assert abs(counts[1] / 10_000 - 0.5) < 0.02
    assert abs(counts[2] / 10_000 - 0.25) < 0.02
    assert abs(counts[3] / 10_000 - 0.25) < 0.02


def test_zero_weight_version_never_chosen() -> None:
    router = Router(rng=random.Random(0))
    router.update("m", Route("production", {1: 0.0, 2: 1.0, 3: 0.0}))
    assert {router.choose("m").version for _ in range(2_000)} == {2}
    assert {router.choose("m", sticky_key=f"k{i}").version for i in range(2_000)} == {2}


def test_sticky_keys_are_stable_and_spread() -> None:
    router = _router()
    keys = [f"user-{i}" for i in range(10_000)]
    first = {k: router.choose("census", "production", k).version for k in keys}
    for k in keys[:500]:
        for _ in range(3):
            assert router.choose("census", "production", k).version == first[k]
    share = sum(v == 4 for v in first.values()) / len(keys)
    assert abs(share - 0.10) < 0.02
    # Stable across router instances (and processes: sha1, not hash()).
    other = Router(rng=random.Random(99))
    other.update("census", Route("production", {4: 0.1, 3: 0.9}))
    assert all(other.choose("census", "production", k).version == first[k] for k in keys[:500])


def test_sticky_point_is_deterministic_in_unit_interval() -> None:
    points = [sticky_point("m", f"k{i}") for i in range(1_000)]
    assert all(0.0 <= p < 1.0 for p in points)
    assert points == [sticky_point("m", f"k{i}") for i in range(1_000)]
    assert sticky_point("m", "k") != sticky_point("other", "k")


def test_growing_canary_only_moves_callers_into_it() -> None:
    router = Router()
    router.update("m", Route("production", {1: 0.9, 2: 0.1}))
    keys = [f"c{i}" for i in range(5_000)]
    before = {k: router.choose("m", sticky_key=k).version for k in keys}
    router.update("m", Route("production", {1: 0.8, 2: 0.2}))
    after = {k: router.choose("m", sticky_key=k).version for k in keys}
    assert all(after[k] == 2 for k in keys if before[k] == 2)


def test_shadows_returned_and_exclude_chosen_version() -> None:
    router = _router()
    decision = router.choose("census", "production", "someone")
    assert decision.route_name == "production"
    assert decision.shadows == (5,)
    router.update("m", Route("production", {1: 1.0}, shadows=[1, 2, 2]))
    assert router.choose("m").shadows == (2,)
    assert router.choose("census", "staging").shadows == ()


def test_explicit_version_bypasses_weights() -> None:
    router = _router()
    assert router.choose("census", "4") == Decision(4, "v4", ())
    assert router.choose("census", "v3", "sticky") == Decision(3, "v3", ())
    # Any version is accepted until versions are declared.
    assert router.choose("census", "17").version == 17
    router.set_versions("census", [1, 2, 3, 4, 5])
    assert router.choose("census", "1").version == 1
    with pytest.raises(RoutingError, match=r"no version 17 \(valid: 1, 2, 3, 4, 5\)"):
        router.choose("census", "17")
    assert router.choose("census", "latest") == Decision(5, "latest", ())


def test_default_alias() -> None:
    router = _router()
    assert router.choose("census", None).route_name == "production"
    router.update("solo", Route("staging", {2: 1}))
    assert router.choose("solo").route_name == "staging"
    router.update("two", Route("staging", {2: 1}))
    router.update("two", Route("canary", {3: 1}))
    with pytest.raises(RoutingError, match="no 'production' alias"):
        router.choose("two")


def test_unknown_model_and_alias_name_valid_ones() -> None:
    router = _router()
    with pytest.raises(RoutingError, match="did you mean 'census'") as info:
        router.choose("censu", "production")
    assert isinstance(info.value, ConveyorError)
    with pytest.raises(RoutingError, match="did you mean 'staging'"):
        router.choose("census", "stagin")
    with pytest.raises(RoutingError, match=r"valid: 'production', 'staging'"):
        router.choose("census", "zzz")


def test_route_validation() -> None:
    with pytest.raises(ValueError, match="sum to more than zero"):
        Route("production", {1: 0.0})
    with pytest.raises(ValueError, match="sum to more than zero"):
        Route("production", {})
    with pytest.raises(ValueError, match="finite number >= 0"):
        Route("production", {1: -1.0, 2: 2.0})
    with pytest.raises(ValueError, match="finite number >= 0"):
        Route("production", {1: float("nan")})
    with pytest.raises(ValueError, match="looks like a version"):
        Route("v3", {1: 1.0})
    with pytest.raises(ValueError, match="invalid alias"):
        Route("3prod", {1: 1.0})
    with pytest.raises(ValueError, match="versions are integers"):
        Route("production", {0: 1.0})
    with pytest.raises(ValueError, match="versions are integers"):
        Route("production", {1: 1.0}, shadows=[-2])


def test_route_is_immutable_copy() -> None:
    weights = {1: 1.0}
    shadows = [2]
    route = Route("production", weights, shadows)
    weights[3] = 100.0
    shadows.append(9)
    assert dict(route.weights) == {1: 1.0}
    assert route.shadows == (2,)
    assert route.versions == (1, 2)
    assert route == Route("production", {1: 1}, [2])
    assert len({route, Route("production", {1: 1.0}, [2])}) == 1


def test_update_replaces_and_remove() -> None:
    router = _router()
    router.update("census", Route("production", {4: 1.0}))
    assert {router.choose("census", "production").version for _ in range(100)} == {4}
    assert set(router.routes("census")) == {"production", "staging"}
    router.remove("census", "staging")
    assert set(router.routes("census")) == {"production"}
    with pytest.raises(RoutingError, match="no alias 'staging'"):
        router.remove("census", "staging")
    router.remove("census")
    assert router.models() == []
    with pytest.raises(RoutingError, match="unknown model"):
        router.choose("census")


def test_initial_routes_and_versions() -> None:
    router = Router({"m": [Route("production", {1: 1}, [2]), Route("canary", {3: 1})]})
    assert router.models() == ["m"]
    assert router.versions("m") == [1, 2, 3]
    assert router.route("m", "canary").weights == {3: 1.0}


def test_concurrent_update_and_choose() -> None:
    """Readers never see half an update: every decision matches one complete route."""
    router = Router(rng=random.Random(0))
    router.update("m", Route("production", {1: 0.5, 2: 0.5}, shadows=[9]))
    valid = {(1, (9,)), (2, (9,)), (3, (10,)), (4, (10,))}
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: Counter[int] = Counter()
    lock = threading.Lock()

    def reader(n: int) -> None:
        local: Counter[int] = Counter()
        try:
            i = 0
            while not stop.is_set():
                d = router.choose("m", "production", f"k{n}-{i}" if i % 2 else None)
                if (d.version, d.shadows) not in valid:
                    raise AssertionError(f"torn decision {d}")
                local[d.version] += 1
                i += 1
        except BaseException as exc:
            errors.append(exc)
        with lock:
            seen.update(local)

    def writer() -> None:
        try:
            for i in range(2_000):
                if i % 2:
                    route = Route("production", {1: 0.5, 2: 0.5}, shadows=[9])
                else:
                    route = Route("production", {3: 0.5, 4: 0.5}, shadows=[10])
                router.update("m", route)
                router.update("other", Route(f"a{i % 7}", {1: 1}))
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=reader, args=(n,)) for n in range(4)]
    writers = [threading.Thread(target=writer) for _ in range(2)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors
    assert sum(seen.values()) > 0
    assert set(router.routes("other")) == {f"a{i}" for i in range(7)}
