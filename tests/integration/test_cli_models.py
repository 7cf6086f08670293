"""``conveyor models ...`` against a home with a populated registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer

from cli_support import invoke, json_output
from conveyor.cli import models
from conveyor.cli.app import ConveyorGroup, root
from conveyor.registry import ModelRegistry
from conveyor.store.metadata import MetadataStore, NewArtifact

BLESSED = {"blessed": True, "reasons": []}


def _app() -> typer.Typer:
    """The root app with the models sub-app mounted the way ``cli/app.py`` mounts it."""
    app = typer.Typer(cls=ConveyorGroup, no_args_is_help=True, add_completion=False)
    app.callback()(root)
    app.add_typer(models.app, name="models")
    return app


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("CONVEYOR_HOME", "CONVEYOR_METADATA_URL", "CONVEYOR_ARTIFACT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONVEYOR_ACTOR", "cli-tester")
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "home"
    with MetadataStore.open(f"sqlite:///{path / 'metadata.db'}") as store:
        run = store.create_run(store.register_pipeline("train", {}, "h"), {}, {}, "host", 1)
        execution = store.create_executions(run.id, [("train", "train", {})])["train"]
        outputs = {f"m{i}": NewArtifact("Model", f"/bundles/{i}", f"{i:064d}", 1) for i in range(3)}
        made = store.succeed_execution(execution, {}, outputs)
        registry = ModelRegistry(store)
        for i in range(3):
            metrics = {"auc": 0.8 + i / 100, "slices": {"sex=F": {"auc": 0.7 + i / 10}}}
            registry.register(
                "census",
                made[f"m{i}"].id,
                blessing=BLESSED,
                metrics=metrics,
                params={"C": i},
                run_id=run.id,
                execution_id=execution,
            )
        registry.register("churn", made["m0"].id, require_blessing=False)
        registry.promote("census", 1, reason="first")
        registry.promote("census", 2, reason="better")
        registry.promote("census", 3, "staging", reason="try")
    return path


def cli(home: Path, *args: str) -> tuple[int, str, str]:
    return invoke(_app(), "--home", str(home), "models", *args)


def cli_json(home: Path, *args: str) -> Any:
    return json_output(cli(home, *args, "--json"))


def _registry_state(home: Path) -> tuple[Any, ...]:
    with MetadataStore.open(f"sqlite:///{home / 'metadata.db'}") as store:
        reg = store.registry
        return reg.list_models(), reg.list_versions(include_archived=True), reg.audit(limit=999)


def test_list(home: Path) -> None:
    listed = cli_json(home, "list")
    assert listed == [
        {
            "name": "census",
            "latest_version": 3,
            "active_versions": 3,
            "aliases": {"production": 2, "staging": 3},
        },
        {"name": "churn", "latest_version": 1, "active_versions": 1, "aliases": {}},
    ]
    code, out, _ = cli(home, "list")
    assert code == 0
    assert "census" in out and "production -> 2, staging -> 3" in out


def test_show_a_model_and_one_version(home: Path) -> None:
    shown = cli_json(home, "show", "census")
    assert shown["aliases"] == {"production": 2, "staging": 3}
    assert [v["version"] for v in shown["versions"]] == [1, 2, 3]
    version = cli_json(home, "show", "census:production")
    assert version["version"] == 2 and version["aliases"] == ["production"]
    assert version["blessed"] is True and version["artifact_uri"] == "/bundles/1"
    assert version["run_id"] == 1 and version["execution_id"] == 1
    assert version["created_by"] == "cli-tester" and "T" in version["created_at"]
    assert cli_json(home, "show", "census:1")["aliases"] == []
    assert cli_json(home, "show", "census:latest")["version"] == 3
    code, out, _ = cli(home, "show", "census")
    assert code == 0 and "auc=0.81" in out and "production" in out
    code, out, _ = cli(home, "show", "census:2")
    assert code == 0 and "census:2" in out and "/bundles/1" in out and "auc" in out


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("census:9", "model 'census' has no version 9 (versions: 1-3)"),
        ("census:canary", "model 'census' has no alias 'canary' (aliases: production, staging)"),
        ("censu", "no model named 'censu' in the registry (did you mean 'census'?)"),
        ("census:", "give a version or alias after ':'"),
    ],
)
def test_show_unknown_refs_exit_2(home: Path, ref: str, message: str) -> None:
    code, out, err = cli(home, "show", ref)
    assert code == 2
    assert message in " ".join(err.split())
    assert "Traceback" not in out + err


def test_promote_rollback_and_history(home: Path) -> None:
    promoted = cli_json(home, "promote", "census", "staging", "--reason", "staging is good")
    assert promoted["changed"] is True
    assert {k: promoted["audit"][k] for k in ("action", "alias", "from_version", "to_version")} == {
        "action": "promote",
        "alias": "production",
        "from_version": 2,
        "to_version": 3,
    }
    assert promoted["audit"]["actor"] == "cli-tester"
    again = cli_json(home, "promote", "census", "3", "--reason", "again")
    assert again == {"changed": False, "audit": None}
    code, out, _ = cli(home, "promote", "census", "3", "--reason", "again")
    assert code == 0 and "already points at version 3" in out

    code, out, _ = cli(home, "rollback", "census", "--reason", "p99 latency", "--actor", "oncall")
    assert code == 0
    assert "census: rollback production: 3 -> 2 (by oncall: p99 latency)" in out
    history = cli_json(home, "history", "census", "--alias", "production")
    assert [(h["action"], h["from_version"], h["to_version"]) for h in history] == [
        ("rollback", 3, 2),
        ("promote", 2, 3),
        ("promote", 1, 2),
        ("promote", None, 1),
    ]
    assert history[0]["actor"] == "oncall" and history[0]["reason"] == "p99 latency"
    everything = cli_json(home, "history", "census", "--limit", "2")
    assert [h["action"] for h in everything] == ["rollback", "promote"]
    code, out, _ = cli(home, "history", "census")
    assert code == 0 and "p99 latency" in out and "production: 3 -> 2" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("promote", "census", "9", "--reason", "x"), "has no version 9"),
        (("promote", "census", "1", "--alias", "v2", "--reason", "x"), "invalid alias 'v2'"),
        (("promote", "census", "1", "--reason", " "), "a non-empty reason is required"),
        (("promote", "census", "1"), "Missing option '--reason'"),
        (("rollback", "census", "--alias", "staging", "--reason", "x"), "no previous holder"),
        (("rollback", "nope", "--reason", "x"), "no model named 'nope'"),
        (("archive", "census", "2", "--reason", "x"), "holds alias 'production'"),
        (("archive", "census", "7", "--reason", "x"), "has no version 7"),
    ],
)
def test_refused_changes_exit_2_and_change_nothing(
    home: Path, args: tuple[str, ...], message: str
) -> None:
    before = _registry_state(home)
    code, out, err = cli(home, *args)
    assert code == 2
    assert message in " ".join((out + err).split())
    assert _registry_state(home) == before


def test_archive_and_unarchive(home: Path) -> None:
    archived = cli_json(home, "archive", "census", "1", "--reason", "leaky features")
    assert archived["audit"]["action"] == "archive" and archived["audit"]["to_version"] == 1
    assert [v["version"] for v in cli_json(home, "show", "census")["versions"]] == [2, 3]
    everything = cli_json(home, "show", "census", "--archived")["versions"]
    assert [(v["version"], v["status"]) for v in everything] == [
        (1, "archived"),
        (2, "active"),
        (3, "active"),
    ]
    code, _, err = cli(home, "promote", "census", "1", "--reason", "x")
    assert code == 2 and "archived" in err
    code, out, _ = cli(home, "unarchive", "census", "1", "--reason", "false alarm")
    assert code == 0 and "unarchive version 1" in out


def test_diff(home: Path) -> None:
    diff = cli_json(home, "diff", "census", "1", "staging")
    assert diff["a"]["version"] == 1 and diff["b"]["version"] == 3
    assert diff["metrics"]["auc"]["delta"] == pytest.approx(0.02)
    assert diff["slices"]["sex=F"]["auc"]["delta"] == pytest.approx(0.2)
    assert diff["params"] == {"C": {"a": 0, "b": 2}}
    code, out, _ = cli(home, "diff", "census", "production", "3")
    assert code == 0
    assert "version 2 (A) vs 3 (B)" in out
    assert "+0.01" in out and "sex=F" in out and "+0.1" in out
    assert "param C: 1 -> 2" in out


def test_commands_in_a_fresh_folder_create_nothing(tmp_path: Path) -> None:
    home = tmp_path / "empty"
    assert cli_json(home, "list") == []
    code, out, _ = cli(home, "list")
    assert code == 0 and "no models registered yet" in out
    code, _, err = cli(home, "promote", "census", "1", "--reason", "x")
    assert code == 2 and "no model named 'census'" in err
    assert not home.exists()
