"""Contract tests of traffic splits in the registry, run against SQLite and PostgreSQL.

PostgreSQL tests need ``CONVEYOR_TEST_POSTGRES_URL`` (see ``tests/conftest.py``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, insert, inspect, select

from conveyor.exceptions import NotFoundError
from conveyor.registry import (
    AuditAction,
    ModelRegistry,
    RegistryStoreError,
    TrafficSplit,
)
from conveyor.store.metadata import MetadataStore, NewArtifact, migrations, tables

SPLIT = {"production": 90, "canary": 10}
V2_AUDIT = migrations._V2_AUDIT  # the audit table as schema version 2 wrote it


def _populate(store: MetadataStore, count: int = 4) -> ModelRegistry:
    """census versions 1..count; production -> 1, canary -> 2; churn version 1, no alias."""
    pipeline = store.register_pipeline("train", {}, "h")
    run = store.create_run(pipeline, {}, {}, "host", os.getpid())
    execution = store.create_executions(run.id, [("train", "train", {})])["train"]
    outputs = {
        f"m{i}": NewArtifact("Model", f"/store/model-{i}", f"{i:064d}", 10) for i in range(count)
    }
    made = store.succeed_execution(execution, {}, outputs)
    registry = ModelRegistry(store)
    for i in range(count):
        registry.register("census", made[f"m{i}"].id, require_blessing=False, actor="ci")
    registry.register("churn", made["m0"].id, require_blessing=False, actor="ci")
    registry.promote("census", 1, reason="first", actor="ci")
    registry.promote("census", 2, "canary", reason="try it", actor="ci")
    return registry


@pytest.fixture
def registry(metadata_url: str) -> Iterator[ModelRegistry]:
    store = MetadataStore.open(metadata_url)
    yield _populate(store)
    store.close()


def _snapshot(registry: ModelRegistry) -> tuple[Any, ...]:
    store = registry.store
    return store.aliases("census"), store.traffic("census"), store.audit(limit=10_000)


def _refused(
    registry: ModelRegistry, call: Callable[[], object], error: type[Exception], match: str
) -> None:
    """``call`` raises ``error`` matching ``match`` and leaves the registry as it was."""
    before = _snapshot(registry)
    with pytest.raises(error, match=match):
        call()
    assert _snapshot(registry) == before


# -- setting, reading, auditing -------------------------------------------------------------
def test_a_split_is_stored_resolved_and_audited(registry: ModelRegistry) -> None:
    started = datetime.now(UTC)
    entry = registry.set_traffic("census", SPLIT, shadows=["3"], actor="alice")
    assert entry is not None
    assert (entry.action, entry.alias, entry.actor, entry.from_version, entry.to_version) == (
        AuditAction.TRAFFIC,
        "production",
        "alice",
        None,
        None,
    )
    assert entry.reason == ""  # optional: the details say what changed
    new = {"weights": {"canary": 10.0, "production": 90.0}, "shadows": ["v3"]}
    assert entry.details == {"old": None, "new": new}
    assert registry.history("census", limit=1) == [entry]

    (split,) = registry.traffic("census").values()
    assert isinstance(split, TrafficSplit)
    assert (split.model, split.route, split.weights, split.shadows, split.updated_by) == (
        "census",
        "production",
        {"canary": 10.0, "production": 90.0},
        ("v3",),
        "alice",
    )
    assert started - timedelta(seconds=5) <= split.updated_at <= datetime.now(UTC)
    assert split.updated_at.utcoffset() == timedelta(0)
    assert registry.resolved_routes("census") == {
        "canary": ({2: 1.0}, ()),
        "production": ({1: 0.9, 2: 0.1}, (3,)),
    }
    assert registry.resolved_routes("churn") == {}
    assert registry.traffic("churn") == {}


def test_setting_the_same_split_again_changes_nothing(registry: ModelRegistry) -> None:
    registry.set_traffic("census", SPLIT, shadows=["v3", "4"])
    before = _snapshot(registry)
    same = {"canary": 10.0, "production": 90}  # other order, int or float
    assert registry.set_traffic("census", same, shadows=["v4", "3", "3"]) is None
    assert _snapshot(registry) == before

    changed = registry.set_traffic("census", {"production": 80, "canary": 20}, reason="more")
    assert changed is not None and changed.reason == "more"
    assert changed.details == {
        "old": {"weights": {"canary": 10.0, "production": 90.0}, "shadows": ["v3", "v4"]},
        "new": {"weights": {"canary": 20.0, "production": 80.0}, "shadows": []},
    }
    assert registry.resolved_routes("census")["production"] == ({1: 0.8, 2: 0.2}, ())


def test_versions_are_normalised_and_numbers_accepted(registry: ModelRegistry) -> None:
    registry.set_traffic("census", {"production": 50, "3": 25, "v4": 25})
    assert registry.traffic("census")["production"].weights == {
        "production": 50.0,
        "v3": 25.0,
        "v4": 25.0,
    }
    registry.set_traffic("census", {4: 100}, route="canary")  # type: ignore[dict-item]
    assert registry.traffic("census")["canary"].weights == {"v4": 100.0}
    assert registry.resolved_routes("census")["canary"] == ({4: 1.0}, ())
    # Within the tolerance: thirds written to seven places.
    third = 100 / 3
    registry.set_traffic("census", {"production": third, "v3": third, "v4": third})
    weights, _ = registry.resolved_routes("census")["production"]
    assert weights.keys() == {1, 3, 4} and sum(weights.values()) == pytest.approx(1.0)


def test_a_split_follows_its_target_aliases(registry: ModelRegistry) -> None:
    registry.set_traffic("census", SPLIT)
    registry.promote("census", 3, "canary", reason="new canary")
    assert registry.resolved_routes("census")["production"] == ({1: 0.9, 3: 0.1}, ())
    registry.promote("census", 3, reason="canary won")
    # Both targets on version 3 now: their shares add up.
    assert registry.resolved_routes("census")["production"] == ({3: 1.0}, ())
    assert registry.traffic("census")["production"].weights == {"canary": 10.0, "production": 90.0}


def test_zero_percent_targets_stay_in_the_route(registry: ModelRegistry) -> None:
    registry.set_traffic("census", {"production": 100, "canary": 0})
    assert registry.resolved_routes("census")["production"] == ({1: 1.0, 2: 0.0}, ())


def test_clear_traffic(registry: ModelRegistry) -> None:
    registry.set_traffic("census", SPLIT, shadows=["v3"])
    entry = registry.clear_traffic("census", actor="bob", reason="canary done")
    assert entry is not None
    assert (entry.action, entry.alias, entry.actor, entry.reason) == (
        AuditAction.TRAFFIC,
        "production",
        "bob",
        "canary done",
    )
    assert entry.details == {
        "old": {"weights": {"canary": 10.0, "production": 90.0}, "shadows": ["v3"]},
        "new": None,
    }
    assert registry.traffic("census") == {}
    assert registry.resolved_routes("census")["production"] == ({1: 1.0}, ())
    before = _snapshot(registry)
    assert registry.clear_traffic("census") is None
    assert registry.clear_traffic("census", route="canary") is None
    assert _snapshot(registry) == before
    with pytest.raises(NotFoundError, match="no model named 'cenus'"):
        registry.clear_traffic("cenus")


# -- refusals ---------------------------------------------------------------------------------
# One registry for every case (a fresh one each would cost most of this file's time):
# each refusal is checked to leave the registry exactly as it was.
REFUSALS: list[tuple[dict[Any, Any], dict[str, Any], type[Exception], str]] = [
    (SPLIT, {"route": "staging"}, NotFoundError, "has no alias 'staging' to split"),
    (SPLIT, {"route": "v2"}, RegistryStoreError, "invalid alias 'v2'"),
    (
        {"production": 90, "canry": 10},
        {},
        NotFoundError,
        r"traffic target 'canry' is not an alias of the model \(aliases: canary, production\)",
    ),
    (
        {"production": 90, "v9": 10},
        {},
        NotFoundError,
        r"traffic target 'v9': no version 9 \(versions: 1-4\)",
    ),
    ({"production": 90, "bad name": 10}, {}, RegistryStoreError, "target 'bad name'"),
    ({"production": 90, "latest": 10}, {}, RegistryStoreError, "target 'latest'"),
    ({"production": 90, "v0": 10}, {}, RegistryStoreError, "invalid traffic target 'v0'"),
    (
        {"production": 90, "canary": "ten"},
        {},
        RegistryStoreError,
        "the percent of 'canary' must be a number, got 'ten'",
    ),
    (
        {"production": 90, "canary": True},
        {},
        RegistryStoreError,
        "the percent of 'canary' must be a number, got True",
    ),
    (
        {"production": 100, "canary": float("nan")},
        {},
        RegistryStoreError,
        "the percent of 'canary' must be a finite number >= 0, got nan",
    ),
    (
        {"production": 105, "canary": -5},
        {},
        RegistryStoreError,
        "the percent of 'canary' must be a finite number >= 0, got -5",
    ),
    (
        {"production": 80, "canary": 10},
        {},
        RegistryStoreError,
        r"route 'production': the percents must sum to 100, they sum to 90 "
        r"\(canary=10, production=80\)",
    ),
    (
        {"production": 90.1, "canary": 10},
        {},
        RegistryStoreError,
        "they sum to 100.1 ",
    ),
    (
        {"production": 33.33, "v3": 33.33, "v4": 33.33},
        {},
        RegistryStoreError,
        "they sum to 99.99 ",
    ),
    ({}, {}, RegistryStoreError, "give at least one target with its percent"),
    (
        {"2": 50, "v2": 50},
        {},
        RegistryStoreError,
        r"target 'v2' is given twice \('2' and 'v2'\)",
    ),
    (
        SPLIT,
        {"shadows": ["canary"]},
        RegistryStoreError,
        "'canary' is both a weighted target and a shadow",
    ),
    (SPLIT, {"shadows": ["v9"]}, NotFoundError, "traffic target 'v9': no version 9"),
    (SPLIT, {"shadows": ["nope"]}, NotFoundError, "traffic target 'nope' is not an alias"),
    (SPLIT, {"actor": "  "}, RegistryStoreError, "a non-empty actor is required"),
    (SPLIT, {"shadows": "canary"}, RegistryStoreError, "shadows must be a list of targets"),
]


def test_refused_splits_change_nothing(registry: ModelRegistry) -> None:
    registry.set_traffic("census", {"production": 100}, route="canary")  # something to keep
    for weights, kwargs, error, match in REFUSALS:
        call = lambda: registry.set_traffic("census", weights, **kwargs)  # noqa: B023, E731
        _refused(registry, call, error, match)


def test_unknown_model_is_refused(registry: ModelRegistry) -> None:
    call = lambda: registry.set_traffic("cenus", SPLIT)  # noqa: E731
    _refused(registry, call, NotFoundError, r"no model named 'cenus' .*did you mean 'census'")
    with pytest.raises(NotFoundError, match="no model named 'cenus'"):
        registry.traffic("cenus")
    with pytest.raises(NotFoundError, match="no model named 'cenus'"):
        registry.resolved_routes("cenus")


def test_archived_versions_and_split_targets(registry: ModelRegistry) -> None:
    registry.archive("census", 4, reason="leaky")
    call = lambda: registry.set_traffic("census", {"production": 90, "4": 10})  # noqa: E731
    _refused(registry, call, RegistryStoreError, "traffic target 'v4': version 4 is archived")
    call = lambda: registry.set_traffic("census", SPLIT, shadows=["v4"])  # noqa: E731
    _refused(registry, call, RegistryStoreError, "traffic target 'v4': version 4 is archived")

    # A version a split names explicitly cannot be archived under it.
    registry.set_traffic("census", {"production": 90, "v3": 10})
    archive = lambda: registry.archive("census", 3, reason="x")  # noqa: E731
    match = "version 3 is a traffic target of route 'production'; change or clear that split"
    _refused(registry, archive, RegistryStoreError, match)
    registry.set_traffic("census", {"production": 100}, shadows=["3"])
    _refused(registry, archive, RegistryStoreError, match)
    registry.clear_traffic("census")
    assert registry.archive("census", 3, reason="x").action == AuditAction.ARCHIVE


# -- targets and routes that go away ------------------------------------------------------
def test_a_removed_target_alias_is_skipped_with_one_warning(
    registry: ModelRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    registry.promote("census", 3, "shadow", reason="shadow it", actor="ci")
    registry.set_traffic("census", SPLIT, shadows=["shadow"])
    registry.set_traffic("census", {"canary": 100}, route="shadow")
    registry.store.remove_alias("census", "canary", actor="ci", reason="canary over")
    with caplog.at_level(logging.WARNING, logger="conveyor.registry"):
        routes = registry.resolved_routes("census")
        assert routes == {
            "production": ({1: 1.0}, (3,)),  # canary's 10 % went back to production
            "shadow": ({3: 1.0}, ()),  # nothing weighted left: its own version
        }
        assert registry.resolved_routes("census") == routes
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "model 'census' route 'production': traffic target 'canary' no longer exists; skipped",
        "model 'census' route 'shadow': no weighted target is left; all requests go to version 3",
        "model 'census' route 'shadow': traffic target 'canary' no longer exists; skipped",
    ], "each warning once, not on every read"
    # The split itself is kept: a new canary alias picks it up again.
    registry.promote("census", 4, "canary", reason="second canary", actor="ci")
    assert registry.resolved_routes("census")["production"] == ({1: 0.9, 4: 0.1}, (3,))

    registry.store.remove_alias("census", "shadow", actor="ci", reason="enough")
    assert registry.resolved_routes("census")["production"] == ({1: 0.9, 4: 0.1}, ())


def test_removing_the_route_alias_deletes_its_split(registry: ModelRegistry) -> None:
    registry.set_traffic("census", {"canary": 50, "v3": 50}, route="canary", reason="a/b")
    registry.set_traffic("census", SPLIT)
    removed = registry.store.remove_alias("census", "canary", actor="ops", reason="a/b done")
    assert removed.action == AuditAction.REMOVE_ALIAS
    assert list(registry.traffic("census")) == ["production"]
    dropped, remove_entry = registry.history("census", limit=2)
    assert remove_entry == removed
    assert (dropped.action, dropped.alias, dropped.actor, dropped.reason) == (
        AuditAction.TRAFFIC,
        "canary",
        "ops",
        "removed: a/b done",
    )
    assert dropped.details == {
        "old": {"weights": {"canary": 50.0, "v3": 50.0}, "shadows": []},
        "new": None,
    }
    # Pointing the alias somewhere again does not bring the old split back.
    registry.promote("census", 2, "canary", reason="again", actor="ci")
    assert registry.resolved_routes("census")["canary"] == ({2: 1.0}, ())
    assert [h.action for h in registry.history("census", alias="canary")][:3] == [
        AuditAction.PROMOTE,
        AuditAction.TRAFFIC,
        AuditAction.REMOVE_ALIAS,
    ]


def test_moving_the_route_alias_keeps_its_split(registry: ModelRegistry) -> None:
    registry.set_traffic("census", SPLIT)
    registry.promote("census", 3, reason="retrained")
    registry.rollback("census", reason="oops")
    assert registry.traffic("census")["production"].weights == {"canary": 10.0, "production": 90.0}
    assert registry.resolved_routes("census")["production"] == ({1: 0.9, 2: 0.1}, ())


# -- schema ----------------------------------------------------------------------------------
def _v2_audit_trail(store: MetadataStore, url: str) -> None:
    """A model with two versions and its audit trail, written the way version 2 did."""
    pipeline = store.register_pipeline("train", {}, "h")
    run = store.create_run(pipeline, {}, {}, "host", os.getpid())
    execution = store.create_executions(run.id, [("train", "train", {})])["train"]
    outputs = {f"m{i}": NewArtifact("Model", f"/m/{i}", f"{i:064d}", 1) for i in range(2)}
    made = store.succeed_execution(execution, {}, outputs)
    now = datetime.now(UTC)
    engine = create_engine(url)
    with engine.begin() as conn:
        for i in range(2):
            conn.execute(
                insert(tables.model_versions).values(
                    name="census",
                    version=i + 1,
                    artifact_id=made[f"m{i}"].id,
                    metrics={},
                    params={},
                    tags={},
                    description="",
                    status="active",
                    created_at=now,
                    created_by="ci",
                )
            )
            audit = {"name": "census", "actor": "ci", "reason": "", "at": now}
            conn.execute(insert(V2_AUDIT).values(**audit, action="register", to_version=i + 1))
        ids = {
            v: conn.scalar(
                select(tables.model_versions.c.id).where(tables.model_versions.c.version == v)
            )
            for v in (1, 2)
        }
        for alias, version in (("production", 1), ("canary", 2)):
            conn.execute(
                insert(tables.model_aliases).values(
                    name="census", alias=alias, version_id=ids[version], updated_at=now
                )
            )
            conn.execute(
                insert(V2_AUDIT).values(
                    name="census",
                    action="promote",
                    alias=alias,
                    to_version=version,
                    actor="ci",
                    reason="first",
                    at=now,
                )
            )
    engine.dispose()


def test_a_version_2_database_upgrades_keeping_its_audit_trail(
    metadata_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:2])
        with MetadataStore.open(metadata_url) as old:
            _v2_audit_trail(old, metadata_url)
    engine = create_engine(metadata_url)
    with engine.connect() as conn:
        assert migrations.current_version(conn) == 2
        assert "details" not in {c["name"] for c in inspect(conn).get_columns("model_audit")}
    with MetadataStore.open(metadata_url) as upgraded:
        trail = upgraded.registry.audit("census")
        assert [(e.action, e.alias, e.to_version) for e in trail] == [
            (AuditAction.PROMOTE, "canary", 2),
            (AuditAction.PROMOTE, "production", 1),
            (AuditAction.REGISTER, None, 2),
            (AuditAction.REGISTER, None, 1),
        ]
        assert all(entry.details is None for entry in trail)
        registry = ModelRegistry(upgraded)
        assert registry.set_traffic("census", SPLIT) is not None
        assert registry.resolved_routes("census")["production"] == ({1: 0.9, 2: 0.1}, ())
    with engine.connect() as conn:
        assert migrations.current_version(conn) == len(migrations.MIGRATIONS)
    engine.dispose()
