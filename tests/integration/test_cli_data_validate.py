"""``conveyor data validate FILE --schema S``: exit 0 valid, 1 invalid data, 2 bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner, Result

from conveyor.cli.app import ConveyorGroup, root
from conveyor.cli.data_validate import validate_command
from conveyor.data.schema import Comparator, infer_schema, save_schema
from conveyor.data.statistics import compute_statistics


def cli() -> typer.Typer:
    """The root command with the data group, as the lead registers it in cli/app.py."""
    app = typer.Typer(cls=ConveyorGroup, no_args_is_help=True)
    app.callback()(root)
    group = typer.Typer(no_args_is_help=True)
    group.command("validate")(validate_command)
    app.add_typer(group, name="data")
    return app


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli(), ["data", "validate", *args])


def census(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(17, 80, n) + int(shift),
            "hours": rng.normal(40 + shift, 8, n).round(1),
            "workclass": rng.choice(["Private", "State-gov", "Self-emp"], n, p=[0.6, 0.2, 0.2]),
            "income": rng.choice(["<=50K", ">50K"], n, p=[0.75, 0.25]),
        }
    )


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """span1 (reference, its schema), span2 (same distribution), span3 (shifted, bad)."""
    paths = {name: tmp_path / f"{name}.csv" for name in ("span1", "span2", "span3")}
    census(2000, 1).to_csv(paths["span1"], index=False)
    census(2000, 2).to_parquet(paths["span2"].with_suffix(".parquet"))
    paths["span2"] = paths["span2"].with_suffix(".parquet")
    bad = census(2000, 3, shift=25)
    bad.loc[:99, "workclass"] = "Never-worked"
    bad["country"] = "US"
    bad.to_csv(paths["span3"], index=False)
    stats = compute_statistics(paths["span1"], label="income", top_k=100)
    schema = infer_schema(stats, drift=Comparator(method="psi", threshold=0.25))
    paths["schema"] = save_schema(schema, tmp_path / "schema.yaml")
    return paths


def test_valid_file_exits_0(files: dict[str, Path]) -> None:
    result = invoke(str(files["span2"]), "--schema", str(files["schema"]))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("valid")
    assert "no anomalies" in result.output


def test_invalid_file_exits_1_with_a_table_of_anomalies(files: dict[str, Path]) -> None:
    result = invoke(
        str(files["span3"]), "--schema", str(files["schema"]), "--previous", str(files["span1"])
    )
    assert result.exit_code == 1, result.output
    assert result.output.startswith("INVALID")
    for text in (
        "out_of_range",
        "unseen_categories",
        "Never-worked",
        "unexpected_column",
        "country",
        "drift",
        "psi",
    ):
        assert text in result.output
    assert "drift vs previous:" in result.output


def test_json_output_and_serving_without_label(files: dict[str, Path], tmp_path: Path) -> None:
    serving = tmp_path / "serving.csv"
    census(500, 4).drop(columns=["income"]).to_csv(serving, index=False)
    result = invoke(
        str(serving),
        "--schema",
        str(files["schema"]),
        "--no-label",
        "--serving",
        str(files["span1"]),
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] is True and data["anomalies"] == []
    assert "income" not in data["skew"]["columns"] and "age" in data["skew"]["columns"]
    without_flag = invoke(str(serving), "--schema", str(files["schema"]), "--json")
    assert without_flag.exit_code == 1
    kinds = [a["kind"] for a in json.loads(without_flag.output)["anomalies"]]
    assert kinds == ["label_missing"]


def test_html_report(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = invoke(str(files["span3"]), "--schema", str(files["schema"]), "--html", str(out))
    assert result.exit_code == 1
    assert f"report: {out}" in result.output
    page = out.read_text()
    assert page.lstrip().lower().startswith("<!doctype html") and "Never-worked" in page


def test_bad_input_exits_2_naming_the_file(files: dict[str, Path], tmp_path: Path) -> None:
    result = invoke(str(tmp_path / "nope.csv"), "--schema", str(files["schema"]))
    assert result.exit_code == 2 and "nope.csv: no such file" in result.output
    broken = tmp_path / "broken.csv"
    broken.write_text("age,hours,workclass,income\n30,40,Private,<=50K\n31,41\n")
    result = invoke(str(broken), "--schema", str(files["schema"]))
    assert result.exit_code == 2 and "broken.csv" in result.output
    bad_schema = tmp_path / "bad.yaml"
    bad_schema.write_text(files["schema"].read_text().replace("type: int", "type: integer"))
    result = invoke(str(files["span2"]), "--schema", str(bad_schema))
    assert result.exit_code == 2
    assert "bad.yaml:" in result.output and "feature 'age', field 'type'" in result.output
