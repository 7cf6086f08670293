"""``conveyor data stats FILE`` on plain Parquet/CSV files, through CliRunner.

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

from conveyor.cli.data_stats import stats_command
from conveyor.data.statistics_model import SplitStatistics

app = typer.Typer()
app.command("stats")(stats_command)
app.command("other")(lambda: None)  # two commands, so "stats" is a sub-command as in the CLI


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["stats", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def data(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 500
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "income": np.where(rng.random(n) < 0.1, np.nan, rng.lognormal(10, 1, n)),
            "city": rng.choice(["paris", "lyon", "nice"], n, p=[0.6, 0.3, 0.1]),
            "code": rng.integers(0, 4, n),
            "joined": pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, n), "D"),
            "churn": rng.random(n) < 0.2,
        }
    )
    path = tmp_path / "customers.parquet"
    frame.to_parquet(path)
    return path


def test_tables_for_numeric_and_categorical_features_and_the_label(data: Path) -> None:
    code, out, _ = run(data, "--label", "churn", "--categorical", "code")
    assert code == 0
    assert f"{data}: 500 rows, 6 features" in out
    assert "numeric features" in out and "categorical features" in out
    for header in ("missing", "mean", "std", "median", "zeros", "distinct", "top values"):
        assert header in out
    assert "10.0%" in out or "%" in out  # missing share of income
    assert "paris (" in out
    assert "label 'churn'" in out and "imbalance ratio" in out
    assert "2024-" in out  # datetimes shown as dates


def test_json_is_the_split_statistics(data: Path) -> None:
    code, out, _ = run(data, "--json", "--top-k", "2", "--bins", "4", "--label", "churn")
    assert code == 0
    stats = SplitStatistics.model_validate(json.loads(out))
    assert stats.num_rows == 500 and stats.label is not None
    city = stats.features["city"].categorical
    assert city is not None and len(city.top) == 2
    income = stats.features["income"].numeric
    assert income is not None and income.histogram is not None
    assert len(income.histogram.counts) == 4


def test_csv_files_work_too(tmp_path: Path) -> None:
    path = tmp_path / "small.csv"
    path.write_text("x,y\n1,a\n2,b\n3,a\n")
    code, out, _ = run(path, "--json")
    assert code == 0
    assert json.loads(out)["features"]["x"]["numeric"]["mean"] == 2.0


def test_unreadable_file_exits_2_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 definitely not parquet PAR1")
    code, _, err = run(path)
    assert code == 2
    assert "broken.parquet" in err


def test_unknown_label_exits_2_with_a_hint(data: Path) -> None:
    code, _, err = run(data, "--label", "chrun")
    assert code == 2
    assert "label column 'chrun'" in err and "did you mean 'churn'" in err
