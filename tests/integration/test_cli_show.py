"""``conveyor show ID`` against a hand-populated home: reports rendered, written, opened."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner, Result

from conveyor.cli.app import ConveyorGroup
from conveyor.cli.show import show_command
from conveyor.cli.state import CliState
from conveyor.config import load_settings
from conveyor.data.statistics_model import (
    DatasetStatistics,
    FeatureStatistics,
    Histogram,
    NumericStatistics,
    SplitStatistics,
    StringStatistics,
    ValueCount,
)
from conveyor.data.validation_model import Anomaly, ValidationReport, ValidationReportMaterializer
from conveyor.store.metadata.records import NewArtifact, RunStatus
from conveyor.store.workspace import Workspace

# The lead registers ``show`` on the real app; here it sits on a root of its own.
app = typer.Typer(cls=ConveyorGroup, no_args_is_help=True)


@app.callback()
def _root(ctx: typer.Context, home: Annotated[Path, typer.Option("--home")]) -> None:
    ctx.obj = CliState(home=home)


app.command("show")(show_command)


def stats(span: int, mean: float) -> DatasetStatistics:
    age = FeatureStatistics(
        name="age",
        type="int",
        kind="numeric",
        count=100,
        missing=0,
        numeric=NumericStatistics(
            mean=mean,
            std=10.0,
            min=mean - 20,
            max=mean + 20,
            zeros=0,
            histogram=Histogram(edges=[mean - 20, mean, mean + 20], counts=[40, 60]),
        ),
    )
    sex = FeatureStatistics(
        name="sex",
        type="string",
        kind="categorical",
        count=100,
        missing=0,
        categorical=StringStatistics(
            distinct=2,
            top=[ValueCount(value="Male", count=67), ValueCount(value="Female", count=33)],
        ),
    )
    train = SplitStatistics(split="train", num_rows=100, features={"age": age, "sex": sex})
    return DatasetStatistics(dataset="census", span=span, splits={"train": train})


@dataclass
class Home:
    path: Path
    ids: dict[str, int]


def _publish(workspace: Workspace, type_name: str, files: dict[str, str]) -> NewArtifact:
    with workspace.artifacts.staging() as folder:
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
        stored = workspace.artifacts.publish(folder, type_name)
    return NewArtifact(type_name, stored.uri, stored.sha256, stored.size)


def _publish_report(workspace: Workspace, report: ValidationReport) -> NewArtifact:
    with workspace.artifacts.staging() as folder:
        properties = ValidationReportMaterializer().save(report, folder)
        stored = workspace.artifacts.publish(folder, "ValidationReport")
    return NewArtifact("ValidationReport", stored.uri, stored.sha256, stored.size, properties)


def _report() -> ValidationReport:
    column = {
        "column": "age",
        "kind": "numeric",
        "method": "psi",
        "score": 0.4,
        "threshold": 0.2,
        "drifted": True,
        "higher_is_drift": True,
        "reference_count": 100,
        "current_count": 100,
    }
    anomaly = Anomaly(
        kind="drift", feature="age", severity="error", message="psi 0.4 > threshold 0.2"
    )
    return ValidationReport(
        dataset="census", split="train", anomalies=[anomaly], drift={"columns": {"age": column}}
    )


def _populate(path: Path) -> Home:
    """Two spans: statistics of each, and a validation of span 3 against span 2."""
    workspace = Workspace.open(load_settings(home=path))
    store = workspace.metadata
    made = {
        "data2": _publish(workspace, "Dataset", {"data.csv": "age\n30\n"}),
        "data3": _publish(workspace, "Dataset", {"data.csv": "age\n50\n"}),
        "stats2": _publish(
            workspace, "Statistics", {"statistics.json": stats(2, 40).model_dump_json()}
        ),
        "stats3": _publish(
            workspace, "Statistics", {"statistics.json": stats(3, 50).model_dump_json()}
        ),
        "report": _publish_report(workspace, _report()),
        "notes": _publish(workspace, "JSON", {"data.json": '{"hello": 1}'}),
        "stored": _publish(
            workspace,
            "Statistics",
            {
                "statistics.json": stats(4, 45).model_dump_json(),
                "report.html": "<p>stored page</p>",
            },
        ),
    }
    pipeline = store.register_pipeline("census", {"steps": []}, "hash")
    run = store.create_run(pipeline, {}, {}, "host", 1)
    steps = [
        ("ingest", {}, {"data2": "data2", "data3": "data3", "notes": "notes"}),
        ("statistics_2", {"data": "data2"}, {"output": "stats2"}),
        ("statistics_3", {"data": "data3"}, {"output": "stats3", "other": "stored"}),
        (
            "validate",
            {"statistics": "stats3", "data": "data3", "previous": "data2"},
            {"output": "report"},
        ),
    ]
    executions = store.create_executions(run.id, [(name, name, {}) for name, _, _ in steps])
    ids: dict[str, int] = {}
    for name, inputs, outputs in steps:
        store.start_execution(executions[name], None, None, None, 1, None)
        records = store.succeed_execution(
            executions[name],
            {port: ids[key] for port, key in inputs.items()},
            {port: made[key] for port, key in outputs.items()},
        )
        ids |= {key: records[port].id for port, key in outputs.items()}
    store.finish_run(run.id, RunStatus.SUCCEEDED)
    workspace.close()
    return Home(path, ids)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    for name in ("CONVEYOR_HOME", "CONVEYOR_METADATA_URL", "CONVEYOR_ARTIFACT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return _populate(tmp_path / "home")


def show(home: Home, *args: str) -> Result:
    return CliRunner().invoke(app, ["--home", str(home.path), "show", *args])


def test_statistics_artifact_becomes_a_report_with_the_previous_span(home: Home) -> None:
    artifact = home.ids["stats3"]
    result = show(home, f"artifact:{artifact}")
    assert result.exit_code == 0, result.output
    path = home.path / "reports" / f"a{artifact}-statistics.html"
    assert f"report: {path}" in result.output
    assert "census span 3" in result.output and "train" in result.output
    page = path.read_text(encoding="utf-8")
    assert "<svg" in page and "http" not in page and "<script" not in page
    assert "age" in page and "sex" in page
    assert "span 2 · train" in page  # found through lineage: validate's previous Dataset
    assert f"artifact a{artifact} (Statistics" in page
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_validation_report_with_statistics_from_lineage(home: Home) -> None:
    artifact = home.ids["report"]
    result = show(home, f"a{artifact}")
    assert result.exit_code == 0, result.output
    assert "FAILED" in result.output and "drift: 1 of 1 features drifted: age" in result.output
    page = (home.path / "reports" / f"a{artifact}-validationreport.html").read_text("utf-8")
    assert "FAILED" in page and "psi 0.4 &gt; threshold 0.2" in page
    assert "Distributions" in page and "span 2 · train" in page


def test_a_stored_page_is_used_as_is(home: Home) -> None:
    artifact = home.ids["stored"]
    assert show(home, str(artifact)).exit_code == 0
    page = home.path / "reports" / f"a{artifact}-statistics.html"
    assert page.read_text(encoding="utf-8") == "<p>stored page</p>"


def test_json_output_and_open(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    artifact = home.ids["report"]
    result = show(home, f"a{artifact}", "--json", "--open")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] is False and data["errors"] == 1 and data["type"] == "ValidationReport"
    assert opened == [Path(data["report"]).as_uri()]


def test_other_artifacts_are_shown_as_text(home: Home) -> None:
    result = show(home, f"a{home.ids['notes']}")
    assert result.exit_code == 0, result.output
    assert "type        JSON" in result.output and "produced by" in result.output
    assert not (home.path / "reports").exists()


def test_unknown_and_malformed_ids(home: Home) -> None:
    missing = show(home, "a999")
    assert missing.exit_code == 2 and "999" in missing.output
    malformed = show(home, "run:3")
    assert malformed.exit_code == 2 and "not an artifact id" in malformed.output
