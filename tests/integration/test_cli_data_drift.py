"""``conveyor data drift REFERENCE CURRENT`` on plain CSV/Parquet files, through CliRunner.

The command is mounted on a small app here (the real ``conveyor data`` group registers the
same function), so the test exercises exactly what users run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from conveyor.cli.data_drift import drift_command

app = typer.Typer()
app.command("drift")(drift_command)
app.command("other")(lambda: None)  # two commands, so "drift" is a sub-command as in the CLI


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["drift", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


def frame(n: int, age_shift: float, city_fold: int) -> pd.DataFrame:
    i = np.arange(n)
    return pd.DataFrame(
        {
            "age": (i * 7919 % 60) + 18 + age_shift,
            "income": (i * 104729 % 1000) * 10.0,
            "city": np.array(list("abcdefg"))[i % 7 % city_fold],
        }
    )


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "reference": tmp_path / "reference.csv",
        "same": tmp_path / "same.parquet",
        "drifted": tmp_path / "drifted.parquet",
    }
    frame(2000, 0, 7).to_csv(paths["reference"], index=False)
    frame(1800, 0, 7).to_parquet(paths["same"], index=False)
    frame(1800, 25, 4).to_parquet(paths["drifted"], index=False)  # age moves; city loses e, f, g
    return paths


def test_table_and_summary(files: dict[str, Path]) -> None:
    code, out, err = run(files["reference"], files["drifted"])
    assert code == 0, err
    for word in ("column", "kind", "method", "score", "threshold", "drifted", "wasserstein"):
        assert word in out
    assert "2 of 3 columns drifted" in out
    assert "dataset drift: yes" in out


def test_no_drift_exits_zero(files: dict[str, Path]) -> None:
    code, out, _ = run(files["reference"], files["same"], "--fail-on-drift")
    assert code == 0
    assert "0 of 3 columns drifted" in out and "dataset drift: no" in out


def test_fail_on_drift_exits_one(files: dict[str, Path]) -> None:
    code, _, _ = run(files["reference"], files["drifted"], "--fail-on-drift")
    assert code == 1


def test_json(files: dict[str, Path]) -> None:
    code, out, err = run(files["reference"], files["drifted"], "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["reference"] == str(files["reference"])
    assert data["dataset_drifted"] is True
    assert data["drifted_columns"] == ["age", "city"]
    assert data["columns"]["income"]["method"] == "wasserstein"
    assert data["columns"]["city"]["kind"] == "categorical"


def test_method_columns_threshold_and_categorical(files: dict[str, Path]) -> None:
    code, out, err = run(
        files["reference"],
        files["drifted"],
        "--json",
        "--method",
        "psi,city=linf",
        "--columns",
        "age,city",
        "--threshold",
        "0.2",
        "--categorical",
        "age",
    )
    assert code == 0, err
    columns = json.loads(out)["columns"]
    assert list(columns) == ["age", "city"]
    assert [c["method"] for c in columns.values()] == ["psi", "linf"]
    assert [c["threshold"] for c in columns.values()] == [0.2, 0.2]
    assert columns["age"]["kind"] == "categorical"


def test_missing_file_exits_two_naming_it(files: dict[str, Path], tmp_path: Path) -> None:
    code, _, err = run(files["reference"], tmp_path / "nope.parquet")
    assert code == 2
    assert "nope.parquet: no such file" in err


def test_malformed_csv_names_file_and_line(files: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("age,income,city\n1,2,a\n3,4,b,extra\n")
    code, _, err = run(bad, files["same"])
    assert code == 2
    assert "bad.csv: cannot read as CSV, line 3" in err


def test_missing_column_in_current_is_named(files: dict[str, Path], tmp_path: Path) -> None:
    current = tmp_path / "narrow.csv"
    frame(100, 0, 7).drop(columns="city").to_csv(current, index=False)
    code, _, err = run(files["reference"], current)
    assert code == 2
    assert "column 'city' is not in" in err and "narrow.csv" in err


def test_unknown_method_suggests(files: dict[str, Path]) -> None:
    code, _, err = run(files["reference"], files["same"], "--method", "wasserstien")
    assert code == 2
    assert "did you mean 'wasserstein'" in err


def test_method_kind_mismatch_is_explained(files: dict[str, Path]) -> None:
    code, _, err = run(files["reference"], files["same"], "--method", "ks")
    assert code == 2
    assert "column 'city' is categorical" in err


def test_bad_method_syntax_is_a_usage_error(files: dict[str, Path]) -> None:
    code, _, err = run(files["reference"], files["same"], "--method", "age=")
    assert code == 2
    assert "COLUMN=METHOD" in err
