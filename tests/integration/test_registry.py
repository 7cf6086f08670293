"""The ML-layer registry API (ModelRegistry) over a real workspace."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import conveyor.registry.registry as registry_module
import conveyor.store.metadata.registry_store as registry_store_module
from conveyor.config import load_settings
from conveyor.exceptions import NotFoundError
from conveyor.registry import (
    AuditAction,
    ModelRegistry,
    NotBlessedError,
    RegistryError,
    RegistryStoreError,
    blessing_verdict,
    default_actor,
)
from conveyor.store.metadata import NewArtifact
from conveyor.store.workspace import Workspace

BLESSED = {"blessed": True, "reasons": [], "metrics": {"auc": 0.9}}


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    monkeypatch.setenv("CONVEYOR_ACTOR", "tester")
    ws = Workspace.open(load_settings(home=tmp_path / "home"))
    yield ws
    ws.close()


@pytest.fixture
def registry(workspace: Workspace) -> ModelRegistry:
    return ModelRegistry(workspace)


def _artifacts(ws: Workspace, count: int, **properties: Any) -> tuple[int, int, list[int]]:
    meta = ws.metadata
    run = meta.create_run(meta.register_pipeline("train", {}, "h"), {}, {}, "host", 1)
    execution = meta.create_executions(run.id, [("train", "train", {})])["train"]
    outputs = {
        f"m{i}": NewArtifact("Model", f"/bundles/{i}", f"{i:064d}", 1, dict(properties))
        for i in range(count)
    }
    made = meta.succeed_execution(execution, {}, outputs)
    return run.id, execution, [made[f"m{i}"].id for i in range(count)]


def _models(registry: ModelRegistry, ws: Workspace, count: int) -> list[int]:
    _, _, ids = _artifacts(ws, count)
    for i, artifact_id in enumerate(ids):
        metrics = {
            "auc": 0.8 + i / 100,
            "slices": {"sex=F": {"auc": 0.7 + i / 10}, f"only-{i}": {"n": i}},
        }
        registry.register("census", artifact_id, blessing=BLESSED, metrics=metrics)
    return ids


def _state(registry: ModelRegistry) -> tuple[Any, ...]:
    store = registry.store
    return store.list_models(), store.list_versions(include_archived=True), store.audit(limit=999)


def _refused(
    registry: ModelRegistry, call: Callable[[], object], error: type[Exception], match: str
) -> None:
    before = _state(registry)
    with pytest.raises(error, match=match):
        call()
    assert _state(registry) == before, "a refused change must change nothing"


# -- register -----------------------------------------------------------------------------
def test_register_needs_a_blessing_and_names_its_reasons(
    registry: ModelRegistry, workspace: Workspace
) -> None:
    _, _, (artifact,) = _artifacts(workspace, 1)
    refused = {
        "blessed": False,
        "reasons": [
            {"metric": "auc", "passed": True, "message": "auc 0.91 >= 0.80"},
            {"metric": "f1", "passed": False, "message": "slice 'sex=F': f1 dropped 0.03"},
            "calibration error 0.2 > 0.1",
        ],
    }
    _refused(
        registry,
        lambda: registry.register("census", artifact, blessing=refused),
        NotBlessedError,
        r"model 'census' was not registered: it is not blessed \(slice 'sex=F': f1 dropped "
        r"0.03; calibration error 0.2 > 0.1\); pass require_blessing=False",
    )
    _refused(
        registry,
        lambda: registry.register("census", artifact),
        NotBlessedError,
        "no blessing was given",
    )
    _refused(
        registry,
        lambda: registry.register("census", artifact, blessing={"reasons": []}),
        NotBlessedError,
        "no true/false 'blessed' field",
    )
    forced = registry.register("census", artifact, blessing=refused, require_blessing=False)
    assert forced.version == 1 and forced.blessing == refused
    unblessed = registry.register("census", artifact, require_blessing=False)
    assert unblessed.version == 2 and unblessed.blessing is None


def test_many_reasons_are_bounded(registry: ModelRegistry, workspace: Workspace) -> None:
    _, _, (artifact,) = _artifacts(workspace, 1)
    blessing = {"blessed": False, "reasons": [f"check {i} failed" for i in range(9)]}
    with pytest.raises(NotBlessedError, match=r"check 4 failed; \.\.\. \(4 more\)"):
        registry.register("census", artifact, blessing=blessing)


def test_register_takes_metrics_params_and_lineage(
    registry: ModelRegistry, workspace: Workspace
) -> None:
    run_id, execution_id, (first, second, third) = _artifacts(
        workspace, 3, params={"C": 1.0}, metrics={"auc": 0.7, "nan": float("nan")}
    )
    record = registry.register(
        "census",
        first,
        blessing={**BLESSED, "note": "no baseline"},
        run_id=run_id,
        execution_id=execution_id,
        tags={"team": "risk"},
        description="first",
    )
    assert (record.run_id, record.execution_id, record.created_by) == (
        run_id,
        execution_id,
        "tester",
    )
    assert record.metrics == {"auc": 0.7, "nan": None}, "artifact metrics; NaN stored as null"
    assert record.params == {"C": 1.0} and record.tags == {"team": "risk"}
    explicit = registry.register("census", second, blessing=BLESSED, metrics={"f1": 0.5})
    assert explicit.metrics == {"f1": 0.5}
    _, _, (bare,) = _artifacts(workspace, 1)
    from_blessing = registry.register("census", bare, blessing=BLESSED)
    assert from_blessing.metrics == {"auc": 0.9} and from_blessing.params == {}
    with pytest.raises(NotFoundError, match="artifact 4242"):
        registry.register("census", 4242, blessing=BLESSED)
    assert third  # unused third artifact keeps ids distinct


def test_a_retried_step_gets_the_version_it_made(
    registry: ModelRegistry, workspace: Workspace
) -> None:
    run_id, execution_id, (artifact,) = _artifacts(workspace, 1)

    def again() -> int:
        record = registry.register(
            "census",
            artifact,
            blessing=BLESSED,
            run_id=run_id,
            execution_id=execution_id,
            alias="staging",
        )
        return record.version

    assert again() == again() == 1
    assert [e.action for e in registry.history("census")] == [
        AuditAction.PROMOTE,
        AuditAction.REGISTER,
    ]


def test_register_with_an_alias_promotes_and_checks_it_first(
    registry: ModelRegistry, workspace: Workspace
) -> None:
    _, _, (artifact,) = _artifacts(workspace, 1)
    _refused(
        registry,
        lambda: registry.register("census", artifact, blessing=BLESSED, alias="latest"),
        RegistryStoreError,
        "invalid alias 'latest'",
    )
    record = registry.register("census", artifact, blessing=BLESSED, alias="staging")
    assert record.aliases == ("staging",)
    (entry, _) = registry.history("census")
    assert (entry.action, entry.alias, entry.to_version, entry.reason) == (
        AuditAction.PROMOTE,
        "staging",
        1,
        "registered as version 1",
    )


def test_pydantic_blessings_are_accepted(registry: ModelRegistry, workspace: Workspace) -> None:
    class Blessing(BaseModel):
        blessed: bool
        reasons: list[dict[str, Any]]

    _, _, (artifact,) = _artifacts(workspace, 1)
    no = Blessing(blessed=False, reasons=[{"passed": False, "message": "auc too low"}])
    with pytest.raises(NotBlessedError, match="auc too low"):
        registry.register("census", artifact, blessing=no)
    record = registry.register("census", artifact, blessing=Blessing(blessed=True, reasons=[]))
    assert record.blessing == {"blessed": True, "reasons": []}
    with pytest.raises(RegistryError, match="a blessing must be a mapping, got a int"):
        registry.register("census", artifact, blessing=3)


def test_blessing_verdict() -> None:
    assert blessing_verdict({"blessed": True, "reasons": ["ok"]}) == (True, ["ok"])
    assert blessing_verdict({"blessed": False, "reasons": [], "note": "no data"}) == (
        False,
        ["no data"],
    )
    assert blessing_verdict(None) == (False, ["no blessing was given"])


# -- aliases ------------------------------------------------------------------------------
def test_promote_and_rollback_walk_the_alias_history(
    registry: ModelRegistry, workspace: Workspace
) -> None:
    _models(registry, workspace, 3)
    registry.promote("census", 1, reason="first")
    registry.promote("census", "2", reason="better")
    registry.promote("census", 3, "staging", reason="try")
    moved = registry.promote("census", "staging", reason="staging looks good", actor="alice")
    assert moved is not None
    assert (moved.action, moved.from_version, moved.to_version, moved.actor) == (
        AuditAction.PROMOTE,
        2,
        3,
        "alice",
    )
    assert registry.promote("census", 3, reason="again") is None
    assert registry.aliases("census") == {"production": 3, "staging": 3}

    back = registry.rollback("census", reason="latency regression")
    assert (back.action, back.from_version, back.to_version, back.actor, back.reason) == (
        AuditAction.ROLLBACK,
        3,
        2,
        "tester",
        "latency regression",
    )
    assert registry.rollback("census", reason="still bad").to_version == 1
    assert registry.get("census", "production").version == 1
    _refused(
        registry,
        lambda: registry.rollback("census", reason="more"),
        RegistryError,
        r"alias 'production' \(version 1\) has no previous holder to roll back to",
    )
    _refused(
        registry,
        lambda: registry.rollback("census", "canary", reason="x"),
        NotFoundError,
        r"model 'census' has no alias 'canary' \(aliases: production, staging\)",
    )
    _refused(
        registry,
        lambda: registry.rollback("nope", reason="x"),
        NotFoundError,
        "no model named 'nope'",
    )
    _refused(
        registry,
        lambda: registry.rollback("census", reason=" "),
        RegistryStoreError,
        "a non-empty reason is required",
    )
    history = registry.history("census", alias="production")
    assert [(e.action, e.to_version) for e in history][:2] == [
        (AuditAction.ROLLBACK, 1),
        (AuditAction.ROLLBACK, 2),
    ]


def test_promote_refuses_bad_input(registry: ModelRegistry, workspace: Workspace) -> None:
    _models(registry, workspace, 2)
    registry.promote("census", 1, reason="first")
    registry.archive("census", 2, reason="leak")
    cases: list[tuple[Callable[[], object], type[Exception], str]] = [
        (lambda: registry.promote("census", 7, reason="x"), NotFoundError, "no version 7"),
        (lambda: registry.promote("census", "canary", reason="x"), NotFoundError, "no alias"),
        (lambda: registry.promote("census", 2, reason="x"), RegistryStoreError, "archived"),
        (lambda: registry.promote("census", 1, reason=""), RegistryStoreError, "reason"),
        (lambda: registry.promote("census", 1, "9", reason="x"), RegistryStoreError, "alias"),
        (lambda: registry.archive("census", 1, reason="x"), RegistryStoreError, "holds alias"),
    ]
    for call, error, match in cases:
        _refused(registry, call, error, match)
    assert registry.get("census", "production").version == 1


def test_archive_and_unarchive(registry: ModelRegistry, workspace: Workspace) -> None:
    _models(registry, workspace, 2)
    entry = registry.archive("census", "2", reason="leak")
    assert (entry.action, entry.to_version) == (AuditAction.ARCHIVE, 2)
    assert [v.version for v in registry.list("census")] == [1]
    assert [v.version for v in registry.list("census", include_archived=True)] == [1, 2]
    assert registry.get("census").version == 1
    registry.unarchive("census", 2, reason="false alarm")
    assert registry.get("census").version == 2
    assert [(m.name, m.latest_version) for m in registry.models()] == [("census", 2)]


def test_only_alias_moves_write_the_alias_table() -> None:
    """Production safety: only set_alias points an alias at a version; remove_alias drops one."""
    tree = ast.parse(inspect.getsource(registry_store_module))
    (store_class,) = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    functions = [n for n in (*tree.body, *store_class.body) if isinstance(n, ast.FunctionDef)]
    writers = {
        function.name
        for function in functions
        for call in ast.walk(function)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Name)
        and call.func.id in ("insert", "update", "delete")
        and any(isinstance(a, ast.Name) and a.id == "model_aliases" for a in call.args)
    }
    assert writers == {"_move_alias", "remove_alias"}
    callers = {
        function.name
        for function in functions
        for node in ast.walk(function)
        if isinstance(node, ast.Attribute) and node.attr == "_move_alias"
    }
    assert callers == {"set_alias"}


def test_default_actor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_ACTOR", "  ci-bot ")
    assert default_actor() == "ci-bot"
    monkeypatch.delenv("CONVEYOR_ACTOR")
    monkeypatch.setattr(registry_module.getpass, "getuser", lambda: "os-user")
    assert default_actor() == "os-user"


# -- reading ------------------------------------------------------------------------------
def test_diff_puts_metrics_and_slices_side_by_side(
    registry: ModelRegistry, workspace: Workspace
) -> None:
    _, _, ids = _artifacts(workspace, 2)
    registry.register(
        "census", ids[0], blessing=BLESSED, metrics={"auc": 0.8, "note": "x"}, params={"C": 1}
    )
    registry.register(
        "census",
        ids[1],
        blessing={"blessed": False, "reasons": []},
        require_blessing=False,
        metrics={"auc": 0.85, "f1": 0.5, "slices": {"sex=F": {"auc": 0.7}}},
        params={"C": 2, "seed": 0},
    )
    registry.promote("census", 2, reason="go")
    diff = registry.diff("census", 1, "production")
    assert diff["a"]["version"] == 1 and diff["a"]["blessed"] is True
    assert diff["b"]["version"] == 2 and diff["b"]["blessed"] is False
    assert diff["b"]["aliases"] == ["production"]
    assert diff["metrics"]["auc"]["a"] == 0.8 and diff["metrics"]["auc"]["b"] == 0.85
    assert diff["metrics"]["auc"]["delta"] == pytest.approx(0.05)
    assert diff["metrics"]["f1"] == {"a": None, "b": 0.5, "delta": None}
    assert diff["metrics"]["note"] == {"a": "x", "b": None, "delta": None}
    assert diff["slices"] == {"sex=F": {"auc": {"a": None, "b": 0.7, "delta": None}}}
    assert diff["params"] == {"C": {"a": 1, "b": 2}, "seed": {"a": None, "b": 0}}
    with pytest.raises(NotFoundError, match="no version 5"):
        registry.diff("census", 1, 5)


def test_diff_per_slice_deltas(registry: ModelRegistry, workspace: Workspace) -> None:
    _models(registry, workspace, 2)
    diff = registry.diff("census", 1, 2)
    assert diff["slices"]["sex=F"]["auc"]["delta"] == pytest.approx(0.1)
    assert diff["slices"]["only-0"] == {"n": {"a": 0, "b": None, "delta": None}}
    assert diff["slices"]["only-1"] == {"n": {"a": None, "b": 1, "delta": None}}


def test_load_bundle_path_verifies_the_bundle_first(
    registry: ModelRegistry, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    _models(registry, workspace, 2)
    registry.promote("census", 2, reason="go")
    checked: list[str] = []
    monkeypatch.setattr(registry_module, "_bundle_verifier", lambda: checked.append)
    assert registry.load_bundle_path("census") == "/bundles/1"
    assert registry.load_bundle_path("census", 1) == "/bundles/0"
    assert checked == ["/bundles/1", "/bundles/0"]

    def tampered(path: str) -> None:
        raise RegistryError(f"bundle {path} was tampered with")

    monkeypatch.setattr(registry_module, "_bundle_verifier", lambda: tampered)
    with pytest.raises(RegistryError, match="bundle /bundles/1 was tampered with"):
        registry.load_bundle_path("census", "production")


def test_bundle_verifier_is_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "_BUNDLE_MODULE", "conveyor.no_such_module.bundle")
    assert registry_module._bundle_verifier() is None
    registry_module.verify_bundle("/anything")  # no verifier: nothing to check


def test_registry_on_its_own_connection(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    with ModelRegistry.open(url) as registry:
        assert registry.models() == []
    with pytest.raises(Exception, match="is closed"):
        registry.models()
