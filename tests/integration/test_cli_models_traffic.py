"""``conveyor models traffic ...`` against a home with a populated registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cli_support import invoke, json_output, words
from conveyor.cli.app import app
from conveyor.cli.models_traffic import parse_assignments
from conveyor.registry import ModelRegistry
from conveyor.store.metadata import MetadataStore, NewArtifact


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """census 1-3 (production -> 1, canary -> 2, staging -> 3) and churn 1 (no alias)."""
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
            registry.register("census", made[f"m{i}"].id, require_blessing=False)
        registry.register("churn", made["m0"].id, require_blessing=False)
        for version, alias in ((1, "production"), (2, "canary"), (3, "staging")):
            registry.promote("census", version, alias, reason="setup")
    return path


def cli(home: Path, *args: str) -> tuple[int, str, str]:
    return invoke(app, "--home", str(home), "models", "traffic", *args)


def cli_json(home: Path, *args: str) -> Any:
    return json_output(cli(home, *args, "--json"))


def _state(home: Path) -> tuple[Any, ...]:
    with MetadataStore.open(f"sqlite:///{home / 'metadata.db'}") as store:
        reg = store.registry
        return reg.aliases("census"), reg.traffic("census"), reg.audit(limit=999)


def test_set_show_and_clear_a_split(home: Path) -> None:
    code, out, _ = cli(home, "census")
    assert code == 0
    assert "census has no traffic splits: each alias answers with its own version" in out
    assert cli_json(home, "census") == {
        "name": "census",
        "aliases": {"canary": 2, "production": 1, "staging": 3},
        "routes": {},
    }

    code, out, _ = cli(home, "census", "production=90", "canary=10", "--reason", "canary")
    assert code == 0
    assert "census: traffic production: - -> canary=10, production=90 (by cli-tester: canary)" in (
        words(out)
    )

    shown = cli_json(home, "census")["routes"]["production"]
    assert {k: shown[k] for k in ("route", "weights", "shadows", "versions", "updated_by")} == {
        "route": "production",
        "weights": {"canary": 10.0, "production": 90.0},
        "shadows": [],
        "versions": {"canary": 2, "production": 1},
        "updated_by": "cli-tester",
    }
    assert "T" in shown["updated_at"]
    code, out, _ = cli(home, "census")
    assert code == 0
    lines = [" ".join(line.replace("│", " ").split()) for line in out.splitlines()]
    assert any(line.startswith("production production 1 90% ") for line in lines), out
    assert "canary 2 10%" in lines, out

    code, out, _ = cli(home, "census", "canary=10", "production=90")
    assert code == 0 and "census: production already has this split; nothing changed" in out

    cleared = cli_json(home, "census", "--clear", "--actor", "oncall")
    assert cleared["changed"] is True
    audit = cleared["audit"]
    assert (audit["action"], audit["alias"], audit["actor"]) == ("traffic", "production", "oncall")
    assert audit["details"] == {
        "old": {"weights": {"canary": 10.0, "production": 90.0}, "shadows": []},
        "new": None,
    }
    assert audit["reason"] == ""
    assert cli_json(home, "census", "--clear") == {"changed": False, "audit": None}
    code, out, _ = cli(home, "census", "--clear")
    assert code == 0 and "census: production has no traffic split; nothing changed" in out


def test_another_route_with_versions_and_shadows(home: Path) -> None:
    made = cli_json(
        home, "census", "staging=50", "1=50", "--route", "staging", "--shadow", "canary"
    )
    assert made["changed"] is True
    assert made["audit"]["details"]["new"] == {
        "weights": {"staging": 50.0, "v1": 50.0},
        "shadows": ["canary"],
    }
    assert made["audit"]["reason"] == ""
    code, out, _ = cli(home, "census", "production=100", "--reason", "  ")
    assert code == 0 and "census: traffic production: - -> production=100 (by cli-tester)" in out
    code, out, _ = cli(home, "census")
    assert code == 0
    lines = [" ".join(line.replace("│", " ").split()) for line in out.splitlines()]
    assert any(line.startswith("staging staging 3 50% ") for line in lines), out
    assert "v1 1 50%" in lines and "canary 2 shadow" in lines, out

    # The audit trail shows the split in `models history`.
    result = CliRunner().invoke(app, ["--home", str(home), "models", "history", "census"])
    assert result.exit_code == 0
    assert "staging: - -> staging=50, v1=50; shadows canary" in words(result.stdout)


def test_a_missing_target_alias_shows_as_missing(home: Path) -> None:
    assert cli(home, "census", "production=90", "canary=10")[0] == 0
    with MetadataStore.open(f"sqlite:///{home / 'metadata.db'}") as store:
        store.registry.remove_alias("census", "canary", actor="ops", reason="gone")
    code, out, _ = cli(home, "census")
    assert code == 0
    lines = [" ".join(line.replace("│", " ").split()) for line in out.splitlines()]
    assert "canary missing 10%" in lines, out
    assert cli_json(home, "census")["routes"]["production"]["versions"]["canary"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("census", "canary=abc"), "'canary=abc': the percent 'abc' is not a finite number"),
        (("census", "canary=inf"), "'canary=inf': the percent 'inf' is not a finite number"),
        (("census", "canary"), "'canary' is not TARGET=PERCENT (e.g. canary=10)"),
        (("census", "=10"), "'=10' is not TARGET=PERCENT"),
        (("census", "canary=5", "canary=5"), "'canary=5': target 'canary' is given twice"),
        (
            ("census", "production=80", "canary=10"),
            "the percents must sum to 100, they sum to 90 (canary=10, production=80)",
        ),
        (("census", "production=90", "canry=10"), "traffic target 'canry' is not an alias"),
        (("census", "production=90", "v7=10"), "traffic target 'v7': no version 7"),
        (("census", "production=90", "canary=10", "--route", "beta"), "no alias 'beta' to split"),
        (("census", "--clear", "canary=100"), "--clear takes no TARGET=PERCENT and no --shadow"),
        (("census", "--shadow", "canary"), "--shadow needs the weighted targets too"),
        (("cenus", "production=100"), "no model named 'cenus' in the registry"),
        (("cenus",), "no model named 'cenus' in the registry"),
        (("churn", "production=100"), "model 'churn' has no alias 'production' to split"),
    ],
)
def test_bad_input_exits_2_and_changes_nothing(
    home: Path, args: tuple[str, ...], message: str
) -> None:
    before = _state(home)
    code, out, err = cli(home, *args)
    assert code == 2
    assert message in words(out + err)
    assert "Traceback" not in out + err
    assert _state(home) == before


def test_parse_assignments() -> None:
    assert parse_assignments(["production=90", " canary = 10.5 ", "v7=0"]) == {
        "production": 90.0,
        "canary": 10.5,
        "v7": 0.0,
    }
    assert parse_assignments([]) == {}
    with pytest.raises(typer.BadParameter, match="'canary=nan': the percent 'nan' is not"):
        parse_assignments(["canary=nan"])
