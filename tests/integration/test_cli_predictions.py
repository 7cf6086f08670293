"""`conveyor predictions tail|export` over a real prediction log."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conveyor.cli import app
from conveyor.serving.prediction_log import PredictionLog, PredictionRecord


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    with PredictionLog(str(home / "artifacts" / "predictions"), flush_interval_s=60) as log:
        for i in range(5):
            log.record(
                PredictionRecord(
                    request_id=f"r{i}",
                    model="census" if i % 2 == 0 else "other",
                    version="1",
                    route="production",
                    inputs={"age": [30 + i]},
                    outputs={"label": ["<=50K"]},
                    latency_ms=1.5,
                    protocol="v2",
                )
            )
    return home


def test_tail_json_filters_by_model(home: Path) -> None:
    result = CliRunner().invoke(
        app, ["--home", str(home), "predictions", "tail", "--model", "census", "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["request_id"] for r in rows] == ["r0", "r2", "r4"]
    assert rows[0]["inputs"] == {"age": [30]}


def test_export_writes_the_chosen_format(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "all.parquet"
    result = CliRunner().invoke(app, ["--home", str(home), "predictions", "export", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 5 predictions" in result.output
    assert pq.read_table(out).num_rows == 5


def test_bad_input_exits_2(home: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    bad_suffix = runner.invoke(app, ["--home", str(home), "predictions", "export", "x.txt"])
    assert bad_suffix.exit_code == 2 and ".parquet, .csv or .jsonl" in bad_suffix.output
    bad_time = runner.invoke(
        app,
        ["--home", str(home), "predictions", "export", str(tmp_path / "a.csv"), "--since", "soon"],
    )
    assert bad_time.exit_code == 2 and "not an ISO 8601 time" in bad_time.output
    empty = runner.invoke(app, ["--home", str(tmp_path / "none"), "predictions", "tail"])
    assert empty.exit_code == 0 and "no predictions" in empty.output
