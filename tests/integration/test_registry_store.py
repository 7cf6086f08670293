"""Contract tests of the registry tables (RegistryStore), run against SQLite and PostgreSQL.

PostgreSQL tests need ``CONVEYOR_TEST_POSTGRES_URL`` (see ``tests/conftest.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect

import conveyor.store.metadata as metadata_package
from conveyor.exceptions import NotFoundError
from conveyor.store.metadata import MetadataStore, NewArtifact, migrations, tables
from conveyor.store.metadata.registry_records import (
    AuditAction,
    RegistryStoreError,
    VersionStatus,
)
from conveyor.store.metadata.registry_store import RegistryStore

V1_TABLES = {
    "schema_version",
    "pipelines",
    "runs",
    "executions",
    "artifacts",
    "events",
    "contexts",
    "context_executions",
    "context_artifacts",
}
REGISTRY_TABLES = {"model_versions", "model_aliases", "model_audit", "model_traffic"}
ACTIVITY_TABLES = {"ct_events", "ct_leases", "ct_state"}


@pytest.fixture
def reg(store: MetadataStore) -> RegistryStore:
    return store.registry


def _lineage(store: MetadataStore, count: int = 3) -> tuple[int, int, list[int]]:
    """A run with one execution that produced ``count`` model artifacts: (run, exec, ids)."""
    pipeline = store.register_pipeline("train", {}, "h")
    run = store.create_run(pipeline, {}, {}, "host", os.getpid())
    execution = store.create_executions(run.id, [("train", "train", {})])["train"]
    outputs = {
        f"m{i}": NewArtifact("Model", f"/store/model-{i}", f"{i:064d}", 10 + i)
        for i in range(count)
    }
    made = store.succeed_execution(execution, {}, outputs)
    return run.id, execution, [made[f"m{i}"].id for i in range(count)]


def _registered(reg: RegistryStore, store: MetadataStore, n: int, name: str = "census") -> None:
    run_id, execution_id, ids = _lineage(store, n)
    for i, artifact_id in enumerate(ids):
        reg.create_version(
            name,
            artifact_id,
            run_id=run_id,
            execution_id=execution_id,
            metrics={"auc": 0.8 + i / 100},
            actor="ci",
        )


def _snapshot(reg: RegistryStore) -> tuple[Any, ...]:
    models = reg.list_models()
    versions = [reg.list_versions(m.name, include_archived=True) for m in models]
    return models, versions, reg.audit(limit=10_000)


def _refused(
    reg: RegistryStore, call: Callable[[], object], error: type[Exception], match: str
) -> None:
    """``call`` raises ``error`` matching ``match`` and leaves the registry as it was."""
    before = _snapshot(reg)
    with pytest.raises(error, match=match):
        call()
    assert _snapshot(reg) == before


# -- schema -------------------------------------------------------------------------------
def _schema(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            found = inspect(conn)
            names = set(found.get_table_names())
            return {
                name: {
                    "columns": [
                        (c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(name)
                    ],
                    "pk": found.get_pk_constraint(name)["constrained_columns"],
                    "fks": sorted(
                        (tuple(fk["constrained_columns"]), fk["referred_table"])
                        for fk in found.get_foreign_keys(name)
                    ),
                    "indexes": sorted(
                        (tuple(i["column_names"]), bool(i["unique"]))
                        for i in found.get_indexes(name)
                    ),
                    "unique": sorted(
                        tuple(u["column_names"]) for u in found.get_unique_constraints(name)
                    ),
                }
                for name in names
            }
    finally:
        engine.dispose()


def _drop_everything(url: str) -> None:
    engine = create_engine(url)
    tables.metadata.drop_all(engine)
    engine.dispose()


def test_v1_database_upgrades_to_the_fresh_schema_keeping_its_data(
    metadata_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    MetadataStore.open(metadata_url).close()
    fresh = _schema(metadata_url)
    assert set(fresh) == V1_TABLES | REGISTRY_TABLES | ACTIVITY_TABLES
    assert set(fresh) == set(tables.metadata.tables)
    _drop_everything(metadata_url)

    with monkeypatch.context() as patch:
        patch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:1])
        with MetadataStore.open(metadata_url) as old:
            run_id, _, artifact_ids = _lineage(old, 1)
    v1 = _schema(metadata_url)
    assert set(v1) == V1_TABLES, "version 1 must not create the registry tables"

    with MetadataStore.open(metadata_url) as upgraded:
        assert upgraded.get_run(run_id).pipeline_name == "train"  # data survived
        version = upgraded.registry.create_version("census", artifact_ids[0], actor="ci")
        assert version.version == 1
    engine = create_engine(metadata_url)
    with engine.connect() as conn:
        assert migrations.current_version(conn) == len(migrations.MIGRATIONS) == 4
    engine.dispose()
    upgraded_schema = _schema(metadata_url)
    assert upgraded_schema == fresh, "an upgraded database must equal a fresh one"
    assert {name: upgraded_schema[name] for name in V1_TABLES} == v1, "v2 changed a v1 table"


# -- versions -----------------------------------------------------------------------------
def test_versions_count_from_one_per_name(reg: RegistryStore, store: MetadataStore) -> None:
    run_id, execution_id, ids = _lineage(store, 3)
    before = datetime.now(UTC)
    first = reg.create_version(
        "census",
        ids[0],
        run_id=run_id,
        execution_id=execution_id,
        metrics={"auc": 0.9, "slices": {"sex=F": {"auc": 0.88}}},
        blessing={"blessed": True, "reasons": []},
        params={"C": 0.5},
        tags={"team": "risk"},
        description="  first model  ",
        actor="alice",
        reason="initial",
    )
    second = reg.create_version("census", ids[1], actor="bob")
    other = reg.create_version("churn", ids[2], actor="bob")
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert (first.name, first.artifact_id, first.run_id, first.execution_id) == (
        "census",
        ids[0],
        run_id,
        execution_id,
    )
    assert first.artifact_uri == "/store/model-0" and first.artifact_sha256 == f"{0:064d}"
    assert first.metrics == {"auc": 0.9, "slices": {"sex=F": {"auc": 0.88}}}
    assert first.blessing == {"blessed": True, "reasons": []}
    assert (first.params, first.tags, first.description) == (
        {"C": 0.5},
        {"team": "risk"},
        "first model",
    )
    assert (first.status, first.created_by, first.aliases, first.ref) == (
        VersionStatus.ACTIVE,
        "alice",
        (),
        "census:1",
    )
    assert second.blessing is None and second.run_id is None and second.metrics == {}
    assert before - timedelta(seconds=5) <= first.created_at <= datetime.now(UTC)
    assert first.created_at.utcoffset() == timedelta(0)
    assert reg.get_version("census", 1) == first

    (register,) = [e for e in reg.audit("census") if e.to_version == 1]
    assert (register.action, register.actor, register.reason, register.alias) == (
        AuditAction.REGISTER,
        "alice",
        "initial",
        None,
    )


def test_create_version_refuses_bad_input_and_writes_nothing(
    reg: RegistryStore, store: MetadataStore
) -> None:
    _registered(reg, store, 1)
    artifact = reg.get_version("census", 1).artifact_id
    cases: list[tuple[Callable[[], object], type[Exception], str]] = [
        (lambda: reg.create_version("census", 4242, actor="ci"), NotFoundError, "artifact 4242"),
        (
            lambda: reg.create_version("census", artifact, run_id=4242, actor="ci"),
            NotFoundError,
            "run 4242",
        ),
        (
            lambda: reg.create_version("census", artifact, execution_id=4242, actor="ci"),
            NotFoundError,
            "execution 4242",
        ),
        (
            lambda: reg.create_version("bad name", artifact, actor="ci"),
            RegistryStoreError,
            "invalid model name 'bad name'",
        ),
        (
            lambda: reg.create_version(
                "census", artifact, metrics={"auc": float("nan")}, actor="ci"
            ),
            RegistryStoreError,
            "model 'census': metrics must be JSON data",
        ),
        (
            lambda: reg.create_version(
                "census", artifact, tags={"when": datetime.now()}, actor="ci"
            ),
            RegistryStoreError,
            "tags must be JSON data",
        ),
        (lambda: reg.create_version("census", artifact, actor="  "), RegistryStoreError, "actor"),
    ]
    for call, error, match in cases:
        _refused(reg, call, error, match)
    assert [v.version for v in reg.list_versions("census")] == [1]


def test_unknown_names_and_versions_say_what_exists(
    reg: RegistryStore, store: MetadataStore
) -> None:
    _registered(reg, store, 3)
    with pytest.raises(NotFoundError, match=r"model 'census' has no version 7 \(versions: 1-3\)"):
        reg.get_version("census", 7)
    with pytest.raises(NotFoundError, match=r"no model named 'censu' .*did you mean 'census'"):
        reg.get_version("censu", 1)
    with pytest.raises(NotFoundError, match="no model named 'x'"):
        reg.list_versions("x")
    with pytest.raises(NotFoundError, match="no model named 'x'"):
        reg.audit("x")
    with pytest.raises(RegistryStoreError, match="invalid version 0"):
        reg.get_version("census", 0)


def test_resolve_numbers_latest_and_aliases(reg: RegistryStore, store: MetadataStore) -> None:
    _registered(reg, store, 3)
    reg.set_alias("census", "staging", 2, actor="ci", reason="try it")
    assert [reg.resolve("census", ref).version for ref in (3, "3", "v3", " 1 ")] == [3, 3, 3, 1]
    assert reg.resolve("census", "latest").version == 3
    assert reg.resolve("census", "staging").version == 2
    assert reg.resolve("census", "staging").aliases == ("staging",)
    with pytest.raises(
        NotFoundError, match=r"model 'census' has no alias 'production' \(aliases: staging\)"
    ):
        reg.resolve("census", "production")
    with pytest.raises(NotFoundError, match="has no version 9"):
        reg.resolve("census", "9")


# -- aliases ------------------------------------------------------------------------------
def test_set_alias_moves_and_audits(reg: RegistryStore, store: MetadataStore) -> None:
    _registered(reg, store, 2)
    first = reg.set_alias("census", "production", 1, actor="alice", reason="first")
    assert first is not None
    assert (first.action, first.alias, first.from_version, first.to_version) == (
        AuditAction.SET_ALIAS,
        "production",
        None,
        1,
    )
    moved = reg.set_alias(
        "census", "production", 2, actor=" bob ", reason=" better ", action="promote"
    )
    assert moved is not None
    assert (moved.action, moved.from_version, moved.to_version, moved.actor, moved.reason) == (
        AuditAction.PROMOTE,
        1,
        2,
        "bob",
        "better",
    )
    audit_before = reg.audit("census")
    assert reg.set_alias("census", "production", 2, actor="bob", reason="again") is None
    assert reg.audit("census") == audit_before, "a no-op is not audited"
    assert reg.aliases("census") == {"production": 2}
    assert reg.get_version("census", 2).aliases == ("production",)
    assert reg.get_version("census", 1).aliases == ()
    summary = reg.list_models()
    assert [(m.name, m.latest_version, m.active_versions, m.aliases) for m in summary] == [
        ("census", 2, 2, {"production": 2})
    ]


def test_alias_changes_refuse_bad_input_and_change_nothing(
    reg: RegistryStore, store: MetadataStore
) -> None:
    _registered(reg, store, 3)
    reg.set_alias("census", "production", 1, actor="ci", reason="first")
    reg.archive("census", 3, actor="ci", reason="broken")

    def move(**kwargs: Any) -> Callable[[], object]:
        values: dict[str, Any] = {
            "name": "census",
            "alias": "production",
            "version": 2,
            "actor": "ci",
            "reason": "why",
        }
        values.update(kwargs)
        return lambda: reg.set_alias(**values)

    cases: list[tuple[Callable[[], object], type[Exception], str]] = [
        (move(name="nope"), NotFoundError, "no model named 'nope'"),
        (move(version=9), NotFoundError, r"has no version 9 \(versions: 1-3\)"),
        (move(version=3), RegistryStoreError, "version 3 is archived"),
        (move(reason=" "), RegistryStoreError, "a non-empty reason is required"),
        (move(actor=""), RegistryStoreError, "a non-empty actor is required"),
        (move(alias="latest"), RegistryStoreError, "invalid alias 'latest'"),
        (move(alias="v2"), RegistryStoreError, "invalid alias 'v2'"),
        (move(alias="7"), RegistryStoreError, "invalid alias '7'"),
        (move(alias="has space"), RegistryStoreError, "invalid alias 'has space'"),
        (move(action="archive"), RegistryStoreError, "'archive' does not move an alias"),
        (move(expect_current=2), RegistryStoreError, "moved to version 1 meanwhile"),
        (
            lambda: reg.remove_alias("census", "staging", actor="ci", reason="x"),
            NotFoundError,
            r"has no alias 'staging' \(aliases: production\)",
        ),
        (
            lambda: reg.alias_history("census", "staging"),
            NotFoundError,
            "has no alias 'staging'",
        ),
    ]
    for call, error, match in cases:
        _refused(reg, call, error, match)
    assert reg.aliases("census") == {"production": 1}


def test_remove_alias_is_audited(reg: RegistryStore, store: MetadataStore) -> None:
    _registered(reg, store, 1)
    reg.set_alias("census", "canary", 1, actor="ci", reason="try")
    removed = reg.remove_alias("census", "canary", actor="ci", reason="done")
    assert (removed.action, removed.from_version, removed.to_version) == (
        AuditAction.REMOVE_ALIAS,
        1,
        None,
    )
    assert reg.aliases("census") == {}
    history = reg.alias_history("census", "canary")
    assert [e.action for e in history] == [AuditAction.REMOVE_ALIAS, AuditAction.SET_ALIAS]


def test_previous_holder_walks_back_and_skips_archived(
    reg: RegistryStore, store: MetadataStore
) -> None:
    _registered(reg, store, 4)
    for version in (1, 2, 3):
        reg.set_alias("census", "production", version, actor="ci", reason="go", action="promote")
    assert reg.previous_holder("census", "production") == 2
    reg.set_alias("census", "production", 2, actor="ci", reason="bad", action="rollback")
    assert reg.previous_holder("census", "production") == 1, "a second rollback goes further"
    reg.set_alias("census", "production", 1, actor="ci", reason="bad", action="rollback")
    assert reg.previous_holder("census", "production") is None

    reg.set_alias("census", "staging", 1, actor="ci", reason="s")
    reg.set_alias("census", "staging", 2, actor="ci", reason="s")
    reg.set_alias("census", "staging", 4, actor="ci", reason="s")
    assert reg.previous_holder("census", "staging") == 2
    reg.archive("census", 2, actor="ci", reason="leaks labels")
    assert reg.previous_holder("census", "staging") == 1, "archived holders are skipped"

    history = reg.alias_history("census", "production")
    assert [(e.action, e.from_version, e.to_version) for e in history] == [
        (AuditAction.ROLLBACK, 2, 1),
        (AuditAction.ROLLBACK, 3, 2),
        (AuditAction.PROMOTE, 2, 3),
        (AuditAction.PROMOTE, 1, 2),
        (AuditAction.PROMOTE, None, 1),
    ]
    with pytest.raises(NotFoundError, match="has no alias 'canary'"):
        reg.previous_holder("census", "canary")


def test_removed_alias_starts_a_fresh_history(reg: RegistryStore, store: MetadataStore) -> None:
    _registered(reg, store, 2)
    reg.set_alias("census", "production", 1, actor="ci", reason="a")
    reg.remove_alias("census", "production", actor="ci", reason="retire")
    reg.set_alias("census", "production", 2, actor="ci", reason="b")
    assert reg.previous_holder("census", "production") is None


# -- archive and audit --------------------------------------------------------------------
def test_archive_hides_a_version_and_refuses_alias_holders(
    reg: RegistryStore, store: MetadataStore
) -> None:
    _registered(reg, store, 3)
    reg.set_alias("census", "production", 3, actor="ci", reason="go")
    _refused(
        reg,
        lambda: reg.archive("census", 3, actor="ci", reason="old"),
        RegistryStoreError,
        r"version 3 holds alias 'production'; move or remove the alias",
    )
    entry = reg.archive("census", 2, actor="alice", reason="data leak")
    assert (entry.action, entry.to_version, entry.actor, entry.reason) == (
        AuditAction.ARCHIVE,
        2,
        "alice",
        "data leak",
    )
    _refused(
        reg,
        lambda: reg.archive("census", 2, actor="ci", reason="again"),
        RegistryStoreError,
        "already archived",
    )
    assert [v.version for v in reg.list_versions("census")] == [1, 3]
    archived = reg.list_versions("census", include_archived=True)
    assert [(v.version, v.status) for v in archived] == [
        (1, VersionStatus.ACTIVE),
        (2, VersionStatus.ARCHIVED),
        (3, VersionStatus.ACTIVE),
    ]
    assert reg.get_version("census", 2).status == VersionStatus.ARCHIVED
    reg.remove_alias("census", "production", actor="ci", reason="retire")
    reg.archive("census", 3, actor="ci", reason="old")
    assert reg.resolve("census", "latest").version == 1, "latest skips archived versions"
    assert reg.list_models()[0].latest_version == 1
    reg.unarchive("census", 2, actor="ci", reason="false alarm")
    assert reg.resolve("census", "latest").version == 2
    assert reg.list_models()[0].active_versions == 2


def test_latest_of_a_fully_archived_model(reg: RegistryStore, store: MetadataStore) -> None:
    _registered(reg, store, 1)
    reg.archive("census", 1, actor="ci", reason="gone")
    with pytest.raises(NotFoundError, match="no active version"):
        reg.resolve("census", "latest")
    assert [(m.name, m.latest_version, m.active_versions) for m in reg.list_models()] == [
        ("census", None, 0)
    ]


def test_audit_is_newest_first_and_limited(reg: RegistryStore, store: MetadataStore) -> None:
    _registered(reg, store, 2)
    _registered(reg, store, 1, name="churn")
    reg.set_alias("census", "production", 2, actor="ci", reason="go")
    everything = reg.audit()
    assert [(e.name, e.action) for e in everything] == [
        ("census", AuditAction.SET_ALIAS),
        ("churn", AuditAction.REGISTER),
        ("census", AuditAction.REGISTER),
        ("census", AuditAction.REGISTER),
    ]
    assert [e.id for e in reg.audit(limit=2)] == [e.id for e in everything[:2]]
    assert {e.name for e in reg.audit("churn")} == {"churn"}
    assert all(e.at.utcoffset() == timedelta(0) for e in everything)


def test_revision_moves_with_every_change_and_only_then(
    reg: RegistryStore, store: MetadataStore
) -> None:
    assert reg.revision() == 0
    seen = [reg.revision()]

    def changed() -> None:
        now = reg.revision()
        assert now not in seen, "a change must give a new revision"
        seen.append(now)

    _registered(reg, store, 2)
    changed()
    reg.set_alias("census", "production", 1, actor="ci", reason="go")
    changed()
    reg.set_alias("census", "production", 1, actor="ci", reason="no-op")
    assert reg.revision() == seen[-1], "a no-op is not a change"
    reg.set_traffic("census", "production", {"1": 90, "2": 10}, actor="ci")
    changed()
    reg.clear_traffic("census", "production", actor="ci")
    changed()
    reg.archive("census", 2, actor="ci", reason="old")
    changed()
    reg.remove_alias("census", "production", actor="ci", reason="retired")
    changed()
    reg.list_models(), reg.aliases("census"), reg.audit(), reg.resolve_routes("census")
    assert reg.revision() == seen[-1], "reads are not changes"


def test_in_memory_store_has_a_registry() -> None:
    with MetadataStore.open("sqlite:///:memory:") as store:
        assert store.registry.list_models() == []
        _registered(store.registry, store, 2)
        assert [v.version for v in store.registry.list_versions()] == [1, 2]


# -- concurrency --------------------------------------------------------------------------
_WORKER = """
import sys, time
from pathlib import Path
from conveyor.store.metadata import MetadataStore

url, index, artifact, per = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sync = Path(sys.argv[5])
store = MetadataStore.open(url)
(sync / f"ready-{index}").touch()
while not (sync / "go").exists():
    time.sleep(0.002)
for _ in range(per):
    made = store.registry.create_version("census", artifact, actor=f"worker-{index}")
    print(made.version)
store.close()
"""


def test_concurrent_registrations_get_distinct_gap_free_versions(
    store: MetadataStore, metadata_url: str, tmp_path: Path
) -> None:
    workers, per = 8, 3
    _, _, (artifact,) = _lineage(store, 1)
    sync = tmp_path / "sync"
    sync.mkdir()
    src = Path(metadata_package.__file__).parents[3]
    path = os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    args = [metadata_url, str(artifact), str(per), str(sync)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, args[0], str(i), *args[1:]],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(workers)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(sync.glob("ready-*"))) < workers and time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.01)
        (sync / "go").touch()
        outcomes = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [err for p, (_, err) in zip(procs, outcomes, strict=True) if p.returncode] == []
    got = sorted(int(line) for out, _ in outcomes for line in out.split())
    assert got == list(range(1, workers * per + 1)), "no gaps, no duplicates"
    versions = store.registry.list_versions("census")
    assert [v.version for v in versions] == list(range(1, workers * per + 1))
    assert len({v.created_by for v in versions}) == workers
    registers = store.registry.audit("census", limit=1000)
    assert sorted(e.to_version or 0 for e in registers) == list(range(1, workers * per + 1))
