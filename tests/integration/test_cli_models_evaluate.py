"""``conveyor models evaluate``: any registered version, on any data, with today's configuration."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import typer
from sklearn.tree import DecisionTreeClassifier

from cli_support import invoke, json_output
from conveyor.cli import models
from conveyor.cli.app import ConveyorGroup, root
from conveyor.cli.models_evaluate import (
    evaluate_command,
    parse_slice_option,
    parse_threshold_option,
)
from conveyor.config import load_settings
from conveyor.modeling.bundle import save_bundle
from conveyor.registry import ModelRegistry
from conveyor.store.metadata import NewArtifact
from conveyor.store.workspace import Workspace

FEATURES = ["x1", "x2", "group"]


def _app() -> typer.Typer:
    """The root app with ``models evaluate`` mounted the way the lead mounts it."""
    sub = typer.Typer(no_args_is_help=True)
    sub.command("list")(models.list_command)
    sub.command("evaluate")(evaluate_command)
    app = typer.Typer(cls=ConveyorGroup, no_args_is_help=True, add_completion=False)
    app.callback()(root)
    app.add_typer(sub, name="models")
    return app


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {"x1": rng.normal(size=n), "x2": rng.normal(size=n), "group": rng.random(n) < 0.3}
    )
    frame["group"] = np.where(frame["group"], "b", "a")
    label = np.where(frame["group"] == "b", frame["x2"] > 0, frame["x1"] > 0)
    frame["y"] = label.astype(int)
    return frame


def _bundle(tmp: Path, name: str, depth: int, train: pd.DataFrame) -> Path:
    features = train[["x1", "x2"]].assign(group=(train["group"] == "b").astype(int))
    model = DecisionTreeClassifier(max_depth=depth, random_state=0).fit(features, train["y"])
    folder = tmp / name
    lineage = {"params": {"label": "y"}}
    save_bundle(folder, model, signature=features, task="binary", lineage=lineage)
    return folder


def _publish(ws: Workspace, folder: Path, type_name: str) -> NewArtifact:
    with ws.artifacts.staging() as staging:
        shutil.copytree(folder, staging, dirs_exist_ok=True)
        stored = ws.artifacts.publish(staging, type_name)
    return NewArtifact(type_name, stored.uri, stored.sha256, stored.size)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """census:1 (depth 4, production) and census:2 (a stump); Dataset artifact a3 (2 splits)."""
    tmp = tmp_path_factory.mktemp("cli-evaluate")
    train = _frame(600, 0)
    data = tmp / "data"
    for split, part in (("train", train), ("eval", _frame(300, 1))):
        (data / f"split={split}").mkdir(parents=True)
        part.assign(group=(part["group"] == "b").astype(int)).to_parquet(
            data / f"split={split}" / "part-0.parquet", index=False
        )
    _frame(200, 2).assign(group=lambda f: (f["group"] == "b").astype(int)).to_csv(
        tmp / "fresh.csv", index=False
    )
    ws = Workspace.open(load_settings(home=tmp / "home"))
    try:
        meta = ws.metadata
        run = meta.create_run(meta.register_pipeline("train", {}, "h"), {}, {}, "host", 1)
        execution = meta.create_executions(run.id, [("train", "train", {})])["train"]
        outputs = {
            "good": _publish(ws, _bundle(tmp, "good", 4, train), "ModelBundle"),
            "stump": _publish(ws, _bundle(tmp, "stump", 1, train), "ModelBundle"),
            "data": _publish(ws, data, "Dataset"),
        }
        made = meta.succeed_execution(execution, {}, outputs)
        registry = ModelRegistry(ws)
        for key in ("good", "stump"):
            registry.register("census", made[key].id, require_blessing=False)
        registry.promote("census", 1, reason="first")
        assert made["data"].id == 3
    finally:
        ws.close()
    yield tmp


def cli(home: Path, *args: str) -> tuple[int, str, str]:
    return invoke(_app(), "--home", str(home / "home"), "models", "evaluate", *args)


def cli_json(home: Path, *args: str) -> Any:
    return json_output(cli(home, *args, "--json"))


def test_a_version_on_a_dataset_artifact_against_production(home: Path) -> None:
    found = cli_json(
        home,
        "census:2",
        "--data",
        "a3",
        "--slice",
        "group",
        "--threshold",
        "accuracy:max_drop=0.05:slices",
        "--baseline",
        "production",
    )
    assert found["candidate"]["model_version"] == "census:2"
    assert found["baseline"]["model_version"] == "census:1"
    assert (found["split"], found["candidate"]["count"], found["label"]) == ("eval", 300, "y")
    assert set(found["candidate"]["slices"]) == {"group=0", "group=1"}
    assert found["blessing"]["blessed"] is False
    failed = [r["slice"] for r in found["blessing"]["reasons"] if not r["passed"]]
    assert "group=1" in failed
    assert found["comparison"]["overall"]["accuracy"]["better"] is False


def test_today_s_metrics_on_a_csv_file_with_an_html_report(home: Path) -> None:
    out = home / "reports" / "census-1.html"
    code, stdout, stderr = cli(
        home,
        "census:production",
        "--data",
        str(home / "fresh.csv"),
        "--metric",
        "accuracy",
        "--metric",
        "roc_auc",
        "--slice",
        "x1:-10,0,10",
        "--slice",
        "group*x1:-10,0,10",
        "--threshold",
        "roc_auc>=0.8",
        "--sensitive",
        "group",
        "--html",
        str(out),
    )
    assert code == 0, stderr
    assert "census:1 · all rows · 200 rows" in stdout
    assert "x1=[-10, 0)" in stdout and "group=1 & x1=[0, 10]" in stdout
    assert "verdict: blessed" in stdout
    assert "demographic_parity_difference" in stdout
    assert "log_loss" not in stdout, "only the metrics asked for"
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "Blessed" in page and "<svg" in page
    assert f"report: {out}" in stdout


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["census:7", "--data", "a3"], "has no version 7"),
        (["census", "--data", "a3", "--metric", "rmse"], "'rmse' is for regression"),
        (["census", "--data", "a3", "--slice", "sexe"], "column 'sexe' is not in the data"),
        (["census", "--data", "a3", "--threshold", "r2>=0.1"], "binary task has no 'r2'"),
        (["census", "--data", "a1"], "a1 is a ModelBundle artifact, not a Dataset"),
        (["census", "--data", "nope.csv"], "no such file or folder"),
        (["census", "--data", "a3", "--split", "test"], "has no split 'test'"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(home: Path, args: list[str], match: str) -> None:
    code, _, stderr = cli(home, *args)
    assert code == 2
    assert match in " ".join(stderr.split())


def test_option_parsing() -> None:
    assert parse_slice_option("sex") == "sex"
    assert parse_slice_option("age:q4") == {"feature": "age", "quantiles": 4}
    assert parse_slice_option("age:0,30.5,120") == {"feature": "age", "buckets": [0, 30.5, 120]}
    assert parse_slice_option('["a", "b"]') == ["a", "b"]
    assert parse_threshold_option("log_loss<=0.35") == {"metric": "log_loss", "max": 0.35}
    assert parse_threshold_option('{"metric": "f1", "min": 0.5}') == {"metric": "f1", "min": 0.5}
    with pytest.raises(typer.BadParameter, match="'drop=1' is not one of"):
        parse_threshold_option("accuracy:drop=1")
