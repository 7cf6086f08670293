"""``conveyor init``, ``compile`` and ``run`` in-process, against temporary homes.

Bad input must exit 2 with a clear message and write nothing: every such test asserts that
the home folder was never created.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli_support import invoke
from conveyor.cli import app
from pipeline_sources import FAILING, diamond_source

UNREACHABLE_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:1/test"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder as the working directory, with no CONVEYOR_* settings."""
    for name in ("CONVEYOR_HOME", "CONVEYOR_METADATA_URL", "CONVEYOR_ARTIFACT_URL"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def cli(*args: str) -> tuple[int, str, str]:
    """Run ``conveyor ARGS`` in-process; return (exit code, stdout, stderr)."""
    return invoke(app, *args)


def run_json(*args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = cli("run", *args, "--json")
    assert out, err
    return code, json.loads(out)


# -- init ------------------------------------------------------------------------------------


def test_init_scaffolds_and_refuses_to_overwrite(project: Path) -> None:
    code, out, _ = cli("init", "new")
    assert code == 0
    toml = (project / "new" / "conveyor.toml").read_text()
    assert "[conveyor]" in toml
    for key in ("home", "metadata_url", "artifact_url", "max_workers"):
        assert f"# {key} =" in toml
    assert "@pipeline" in (project / "new" / "pipeline.py").read_text()
    assert "cd new && conveyor run" in out

    (project / "new" / "pipeline.py").write_text("# mine\n")
    code, _, err = cli("init", "new")
    assert code == 2
    assert "pipeline.py" in err and "--force" in err
    assert (project / "new" / "pipeline.py").read_text() == "# mine\n"

    code, _, _ = cli("init", "new", "--force")
    assert code == 0
    assert "@pipeline" in (project / "new" / "pipeline.py").read_text()


def test_scaffolded_pipeline_runs_then_is_fully_cached(project: Path) -> None:
    assert cli("init")[0] == 0
    code, first = run_json()
    assert code == 0, first
    assert first["status"] == "succeeded"
    assert len(first["steps"]) == 3
    assert {s["status"] for s in first["steps"]} == {"succeeded"}
    assert Path(first["home"]) == project / ".conveyor"

    code, second = run_json()
    assert code == 0
    assert {s["status"] for s in second["steps"]} == {"cached"}
    assert all(s["cached"] for s in second["steps"])


# -- run -----------------------------------------------------------------------------------


def test_run_prints_step_lines_and_where_results_are(project: Path) -> None:
    (project / "diamond.py").write_text(diamond_source())
    code, out, _ = cli("--home", str(project / "h"), "run", "diamond.py", "-p", "n=4")
    assert code == 0
    assert "run 1" in out and "succeeded" in out
    for step in "abcd":
        assert f"  {step} succeeded" in out  # one line per state change when not a terminal
    assert f"results in {project / 'h'}" in out
    assert "conveyor runs show 1" in out


def test_failing_run_exits_1_and_runs_show_prints_the_traceback(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = project / "fail.flag"
    flag.write_text("fail")
    monkeypatch.setenv("FAIL_FLAG", str(flag))
    (project / "failing.py").write_text(FAILING)
    code, summary = run_json("failing.py")
    assert code == 1
    assert summary["status"] == "failed"
    steps = {s["name"]: s for s in summary["steps"]}
    assert steps["fragile"]["status"] == "failed"
    assert "fragile step was told to fail" in steps["fragile"]["error"]
    assert steps["after"]["status"] == "skipped"
    assert steps["independent"]["status"] == "succeeded"

    code, out, _ = cli("runs", "show", str(summary["run_id"]))
    assert code == 0
    assert "Traceback" in out and 'raise ValueError("fragile step was told to fail")' in out
    assert "log:" in out

    code, out, _ = cli("run", "failing.py")
    assert code == 1
    assert "step fragile failed" in out


def test_compile_then_run_the_ir_file(project: Path) -> None:
    (project / "diamond.py").write_text(diamond_source())
    code, _, err = cli("compile", "diamond.py:diamond", "-p", "factor=3", "-o", "ir.json")
    assert code == 0, err
    ir = json.loads((project / "ir.json").read_text())
    assert ir["name"] == "diamond" and ir["parameters"]["factor"] == 3
    assert not (project / ".conveyor").exists()  # compiling writes only the IR

    code, summary = run_json("ir.json")
    assert code == 0
    assert [s["name"] for s in summary["steps"]] == ["a", "b", "c", "d"]


def test_compile_to_stdout(project: Path) -> None:
    (project / "diamond.py").write_text(diamond_source())
    code, out, _ = cli("compile", "diamond.py")
    assert code == 0
    assert json.loads(out)["name"] == "diamond"


# -- bad input: exit 2, clear message, nothing written -----------------------------------------


def _ir_with(project: Path, edit: str) -> str:
    (project / "diamond.py").write_text(diamond_source())
    assert cli("compile", "diamond.py", "-o", "ir.json")[0] == 0
    ir = json.loads((project / "ir.json").read_text())
    steps = {s["name"]: s for s in ir["steps"]}
    if edit == "cycle":
        steps["a"]["inputs"]["values"] = {**steps["b"]["inputs"]["values"], "step": "d"}
    else:
        steps["d"]["inputs"]["left"]["output"] = "missing"
    (project / "bad.json").write_text(json.dumps(ir))
    return "bad.json"


BAD_PIPELINES: dict[str, tuple[str | None, list[str], str]] = {
    # case: (pipeline file content or None, extra args, expected message)
    "missing file": (None, ["nowhere.py"], "nowhere.py"),
    "syntax error": ("def broken(:\n", ["pipeline.py"], r"pipeline.py:1"),
    "unknown pipeline": (diamond_source(), ["pipeline.py:diamnod"], "did you mean 'diamond'"),
    "wrong type": (diamond_source(), ["pipeline.py", "-p", "n=many"], "'n'"),
    "unknown parameter": (diamond_source(), ["pipeline.py", "-p", "fctor=3"], "'factor'"),
    "malformed parameter": (diamond_source(), ["pipeline.py", "-p", "factor"], "key=value"),
}


@pytest.mark.parametrize("case", sorted(BAD_PIPELINES))
def test_bad_input_exits_2_and_writes_nothing(project: Path, case: str) -> None:
    content, args, message = BAD_PIPELINES[case]
    if content is not None:
        (project / "pipeline.py").write_text(content)
    home = project / "home"
    code, out, err = cli("--home", str(home), "run", *args)
    assert code == 2, out + err
    assert message in err
    assert "Traceback" not in out + err
    assert not home.exists()


@pytest.mark.parametrize(("edit", "message"), [("cycle", "cycle"), ("unknown", "missing")])
def test_invalid_ir_exits_2_and_writes_nothing(project: Path, edit: str, message: str) -> None:
    spec = _ir_with(project, edit)
    code, _, err = cli("--home", str(project / "home"), "run", spec)
    assert code == 2
    assert message in err
    assert not (project / "home").exists()


def test_parameters_cannot_be_given_to_a_compiled_ir(project: Path) -> None:
    (project / "diamond.py").write_text(diamond_source())
    assert cli("compile", "diamond.py", "-o", "ir.json")[0] == 0
    code, _, err = cli("--home", str(project / "home"), "run", "ir.json", "-p", "n=3")
    assert code == 2 and "compile again" in err
    assert not (project / "home").exists()


def test_unreachable_postgres_exits_2_and_writes_nothing(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "pipeline.py").write_text(diamond_source())
    monkeypatch.setenv("CONVEYOR_METADATA_URL", UNREACHABLE_POSTGRES)
    home = project / "deep" / "home"
    code, out, err = cli("--home", str(home), "run")
    assert code == 2, out + err
    assert "127.0.0.1:1" in err
    assert "Traceback" not in out + err
    assert not (project / "deep").exists()


def test_bad_max_workers_is_a_usage_error(project: Path) -> None:
    (project / "pipeline.py").write_text(diamond_source())
    code, _, _ = cli("--home", str(project / "home"), "run", "--max-workers", "0")
    assert code == 2
    assert not (project / "home").exists()


def test_version() -> None:
    code, out, _ = cli("--version")
    assert code == 0 and out.startswith("conveyor ")
