"""``conveyor data list`` over a home filled by real runs of the ingest component."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer

import conveyor
from cli_support import invoke
from conveyor.cli.app import ConveyorGroup
from conveyor.cli.data_list import list_command
from conveyor.cli.state import CliState
from conveyor.core.loader import load_pipeline

PIPELINE = """
from conveyor import Dataset, component, pipeline
from conveyor.components import ingest


@component
def count(data: Dataset) -> int:
    return len(data.to_pandas())


@pipeline
def daily(source: str = "") -> None:
    count(ingest(source=source, name="events", key="id", span_window=0))
"""

# The command as the lead registers it (``conveyor data list``), on a bare group with --home.
data_app = typer.Typer(cls=ConveyorGroup)


@data_app.callback()
def _root(ctx: typer.Context, home: Annotated[Path | None, typer.Option("--home")] = None) -> None:
    ctx.obj = CliState(home=home)


data_app.command("list")(list_command)


def _span(root: Path, number: int, ids: range) -> None:
    (root / f"span={number}").mkdir(parents=True)
    rows = "".join(f"{i},{i * 10}\n" for i in ids)
    (root / f"span={number}" / "data.csv").write_text("id,value\n" + rows)


def cli(home: Path, *args: str) -> tuple[int, str, str]:
    return invoke(data_app, "--home", str(home), "list", *args)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Runs 1 and 2 ingest the same two spans (one version); run 3 sees a third span."""
    tmp = tmp_path_factory.mktemp("data-list")
    (tmp / "pipeline.py").write_text(PIPELINE)
    landing = tmp / "landing"
    _span(landing, 1, range(0, 30))
    _span(landing, 2, range(30, 50))
    daily = load_pipeline(f"{tmp / 'pipeline.py'}:daily", reload=True)
    runs = []
    for add_span in (False, False, True):
        if add_span:
            _span(landing, 3, range(50, 60))
        result = conveyor.run(daily, home=tmp / "home", max_workers=1, source=str(landing))
        assert result.ok, result.error
        runs.append(result.run_id)
    return {"path": tmp / "home", "runs": runs}


@pytest.mark.slow
def test_json_lists_versions_by_content_with_spans_rows_and_runs(home: dict[str, Any]) -> None:
    code, out, err = cli(home["path"], "--json")
    assert code == 0, err
    (dataset,) = json.loads(out)
    assert dataset["dataset"] == "events"
    newest, oldest = dataset["versions"]
    first, second, third = home["runs"]
    assert len(oldest["artifact_ids"]) == 2  # ingested twice, stored once
    assert oldest["produced_by_runs"] == [first, second]
    assert oldest["used_by_runs"] == [first, second]
    assert [s["label"] for s in oldest["spans"]] == ["span=1", "span=2"]
    assert oldest["num_rows"] == 50 and sum(oldest["rows"].values()) == 50
    assert newest["used_by_runs"] == [third] and newest["num_rows"] == 60
    assert [s["label"] for s in newest["spans"]] == ["span=1", "span=2", "span=3"]
    assert newest["sha256"] != oldest["sha256"]
    assert newest["created_at"].startswith("20")


@pytest.mark.slow
def test_table_shows_each_version(home: dict[str, Any]) -> None:
    code, out, _ = cli(home["path"], "--name", "events")
    assert code == 0
    assert "events" in out and "span=1, span=2, span=3" in out
    assert out.count("train ") == 2 and "r1, r2" in out


@pytest.mark.slow
def test_unknown_dataset_exits_2_with_a_hint(home: dict[str, Any]) -> None:
    code, _, err = cli(home["path"], "--name", "event")
    assert code == 2
    assert "no dataset named 'event' (did you mean 'events'?)" in err


def test_empty_home_lists_nothing_and_creates_nothing(tmp_path: Path) -> None:
    code, out, _ = cli(tmp_path / "home", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = cli(tmp_path / "home")
    assert code == 0 and "no datasets" in out
    assert not (tmp_path / "home").exists()
