"""``conveyor schema show`` and ``conveyor schema diff``, on files and on stored artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

import conveyor
from conveyor.cli.app import ConveyorGroup, root
from conveyor.cli.schema import diff_command, show_command
from conveyor.core.loader import load_pipeline
from conveyor.data.schema import Comparator, FeatureSchema, Schema, save_schema

SCHEMA = Schema(
    dataset="census",
    label="income",
    features={
        "age": FeatureSchema(type="int", min=17, max=90, drift=Comparator(threshold=0.2)),
        "hours": FeatureSchema(type="float", max_missing_fraction=0.05),
        "workclass": FeatureSchema(type="string", domain=["Private", "State-gov"]),
        "income": FeatureSchema(type="string", domain=["<=50K", ">50K"]),
    },
)

PIPELINE = """
from conveyor import component, pipeline
from conveyor.data.schema import Schema, load_schema


@component
def make_schema(path: str) -> Schema:
    return load_schema(path)


@pipeline
def schemas(path: str) -> None:
    make_schema(path)
"""


def cli() -> typer.Typer:
    """The root command with the schema group, as the lead registers it in cli/app.py."""
    app = typer.Typer(cls=ConveyorGroup, no_args_is_help=True)
    app.callback()(root)
    group = typer.Typer(no_args_is_help=True)
    group.command("show")(show_command)
    group.command("diff")(diff_command)
    app.add_typer(group, name="schema")
    return app


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli(), list(args))


@pytest.fixture
def schema_file(tmp_path: Path) -> Path:
    return save_schema(SCHEMA, tmp_path / "schema.yaml")


def test_show_prints_one_row_per_feature(schema_file: Path) -> None:
    result = invoke("schema", "show", str(schema_file))
    assert result.exit_code == 0, result.output
    assert "4 features, label income" in result.output
    assert "[17, 90]" in result.output
    assert "2 values: Private, State-gov" in result.output
    assert "drift: auto 0.2" in result.output
    assert "<= 5.0% missing" in result.output


def test_show_yaml_and_json(schema_file: Path) -> None:
    result = invoke("schema", "show", str(schema_file), "--yaml")
    assert result.output == schema_file.read_text()
    result = invoke("schema", "show", str(schema_file), "--json")
    data = json.loads(result.output)
    assert data["label"] == "income" and data["features"]["age"]["max"] == 90


def test_show_bad_yaml_exits_2_naming_file_line_feature_field(tmp_path: Path) -> None:
    path = tmp_path / "curated.yaml"
    path.write_text("features:\n  age:\n    type: int\n    max_missing_fraction: 2\n")
    result = invoke("schema", "show", str(path))
    assert result.exit_code == 2
    assert "curated.yaml:4: feature 'age', field 'max_missing_fraction'" in result.output
    result = invoke("schema", "show", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2 and "no such schema file" in result.output


def test_diff_shows_changes_and_json(tmp_path: Path, schema_file: Path) -> None:
    changed = SCHEMA.model_copy(deep=True)
    changed.features["age"].max = 99
    changed.features["workclass"].domain = ["Private", "Self-emp"]
    del changed.features["hours"]
    other = save_schema(changed, tmp_path / "new.yaml")
    result = invoke("schema", "diff", str(schema_file), str(other))
    assert result.exit_code == 0, result.output
    assert "4 changes" in result.output
    for text in ("age", "max", "90", "99", "hours", "removed", "Self-emp", "State-gov"):
        assert text in result.output
    data = json.loads(invoke("schema", "diff", str(schema_file), str(other), "--json").output)
    assert {"feature": "age", "field": "max", "change": "changed", "old": 90, "new": 99} in (
        data["changes"]
    )
    same = invoke("schema", "diff", str(schema_file), str(schema_file))
    assert "no differences" in same.output


def test_show_and_diff_stored_schema_artifacts(tmp_path: Path, schema_file: Path) -> None:
    pipeline_file = tmp_path / "schemas.py"
    pipeline_file.write_text(PIPELINE)
    home = tmp_path / "home"
    result = conveyor.run(load_pipeline(str(pipeline_file)), home=home, path=str(schema_file))
    assert result.ok, result.error
    listing = CliRunner().invoke(
        cli(), ["--home", str(home), "schema", "show", "artifact:1", "--json"]
    )
    assert listing.exit_code == 0, listing.output
    assert Schema.model_validate(json.loads(listing.output)) == SCHEMA
    diff = CliRunner().invoke(
        cli(), ["--home", str(home), "schema", "diff", "a1", str(schema_file)]
    )
    assert diff.exit_code == 0 and "no differences" in diff.output
    missing = CliRunner().invoke(cli(), ["--home", str(home), "schema", "show", "a99"])
    assert missing.exit_code == 2
