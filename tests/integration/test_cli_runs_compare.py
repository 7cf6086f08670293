"""``conveyor runs compare`` against a home with recorded runs, steps and their outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer

from cli_support import invoke
from conveyor.cli.app import ConveyorGroup, root
from conveyor.cli.runs_compare import compare_command
from conveyor.store.metadata import MetadataStore, NewArtifact
from conveyor.store.metadata.records import RunStatus

SPACE_A = {"model": {"flavour": "xgboost", "params": {"max_depth": {"int": [2, 8]}}}}
SPACE_B = {"model": {"flavour": "xgboost", "params": {"max_depth": {"int": [2, 12]}}}}


def _app() -> typer.Typer:
    """The root app with ``runs compare`` mounted as ``cli/app.py`` is to mount it."""
    app = typer.Typer(cls=ConveyorGroup, no_args_is_help=True, add_completion=False)
    app.callback()(root)
    runs = typer.Typer(no_args_is_help=True)
    runs.command("compare")(compare_command)
    app.add_typer(runs, name="runs")
    return app


def _record_run(store: MetadataStore, space: dict[str, Any], auc: float, logloss: float) -> int:
    pipeline = store.register_pipeline("census", {}, "h")
    run = store.create_run(pipeline, {"space": space, "seed": 1}, {}, "host", 1)
    steps = [
        ("tune", "tune", {"space": space, "n_trials": 20, "metric": "auto"}),
        ("train", "train", {"label": "y", "seed": 1}),
        ("evaluate", "evaluate", {"label": "y"}),
    ]
    ids = store.create_executions(run.id, steps)
    tuned = {
        "metric": "roc_auc",
        "direction": "maximize",
        "best_value": auc,
        "n_trials": 20,
        "n_complete": 15,
        "n_pruned": 5,
        "n_failed": 0,
        "best_params": {"model.max_depth": 4},
    }
    sha = f"{run.id:064d}"
    store.succeed_execution(
        ids["tune"], {}, {"output": NewArtifact("TuningResult", "/t", sha, 1, tuned)}
    )
    bundle = {"flavour": "xgboost", "metrics": {"eval_logloss": logloss, "best_iteration": 12}}
    store.succeed_execution(
        ids["train"], {}, {"output": NewArtifact("ModelBundle", "/b", sha, 1, bundle)}
    )
    metrics = {"accuracy": auc - 0.1, "log_loss": logloss}
    store.succeed_execution(
        ids["evaluate"], {}, {"scores": NewArtifact("Metrics", "/m", sha, 1, metrics)}
    )
    store.finish_run(run.id, RunStatus.SUCCEEDED)
    return run.id


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("CONVEYOR_HOME", "CONVEYOR_METADATA_URL", "CONVEYOR_ARTIFACT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "home"
    with MetadataStore.open(f"sqlite:///{path / 'metadata.db'}") as store:
        assert _record_run(store, SPACE_A, auc=0.90, logloss=0.35) == 1
        assert _record_run(store, SPACE_B, auc=0.93, logloss=0.31) == 2
        assert _record_run(store, SPACE_B, auc=0.93, logloss=0.33) == 3
    return path


def cli(home: Path, *args: str) -> tuple[int, str, str]:
    return invoke(_app(), "--home", str(home), "runs", "compare", *args)


def _rows(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in rows}


def test_json_has_every_parameter_and_metric_with_differences_and_best(home: Path) -> None:
    code, out, err = cli(home, "1", "r2", "run:3", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert [run["id"] for run in data["runs"]] == [1, 2, 3]
    params = _rows(data["params"])
    depth = "model.params.max_depth.int"
    assert params[f"param.space.{depth}"] == {
        "name": f"param.space.{depth}",
        "values": [[2, 8], [2, 12], [2, 12]],
        "differs": True,
    }
    assert params[f"tune.space.{depth}"]["differs"] is True
    assert params["tune.n_trials"]["differs"] is False and params["train.seed"]["values"] == [
        1,
        1,
        1,
    ]
    metrics = _rows(data["metrics"])
    best_auc = metrics["tune.best_roc_auc"]
    assert best_auc["values"] == [0.90, 0.93, 0.93] and best_auc["direction"] == "max"
    assert best_auc["best"] == [2, 3]
    assert metrics["train.eval_logloss"]["direction"] == "min"
    assert metrics["train.eval_logloss"]["best"] == [2]
    assert metrics["evaluate.scores.log_loss"]["best"] == [2]  # a Metrics output, not "output"
    assert metrics["evaluate.scores.accuracy"]["direction"] == "max"
    assert metrics["train.best_iteration"]["direction"] is None
    assert metrics["tune.n_pruned"] == {
        "name": "tune.n_pruned",
        "values": [5.0, 5.0, 5.0],
        "differs": False,
        "direction": None,
        "best": [],
    }


def test_the_table_shows_differing_parameters_and_metrics_side_by_side(home: Path) -> None:
    code, out, err = cli(home, "1", "2")
    assert code == 0, err
    assert "comparing run 1 (census) succeeded  run 2 (census) succeeded" in out
    assert "parameters that differ" in out
    assert "param.space.model.params.max_depth.int" in out and "[2, 12]" in out
    assert "train.seed" not in out  # equal parameters are left out of the table
    assert "tune.best_roc_auc" in out and "0.93" in out and "0.9 " in out
    lines = [line for line in out.splitlines() if "train.eval_logloss" in line]
    assert lines and "*" in lines[0]


def test_fewer_than_two_runs_or_an_unknown_run_is_bad_input(home: Path) -> None:
    code, _, err = cli(home, "1")
    assert code == 2 and "give at least two runs to compare" in err
    code, _, err = cli(home, "1", "99")
    assert code == 2 and "99" in err
    code, _, err = cli(home, "1", "model:3")
    assert code == 2 and "'model:3' is not a run" in err
