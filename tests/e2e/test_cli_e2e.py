"""The installed ``conveyor`` console script, run as a real subprocess.

Covers the user's first minutes (``init`` then ``run``, a second run fully cached) and the
bad-input contract: exit code 2, a clear message on stderr, no traceback, nothing written
(the home folder does not exist afterwards).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

UNREACHABLE_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:1/test"

PIPELINE = """
from conveyor import component, pipeline


@component
def numbers(n: int) -> list[int]:
    return list(range(n))


@component
def total(values: list[int]) -> int:
    return sum(values)


@pipeline
def sums(n: int = 3) -> None:
    total(numbers(n))
"""


def _conveyor_script() -> str:
    found = shutil.which("conveyor", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("the conveyor console script is not installed (pip install -e .)")
    return found


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


def conveyor(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``conveyor ARGS`` in ``project`` with a clean CONVEYOR_* environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    return subprocess.run(
        [_conveyor_script(), *args],
        cwd=project,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_init_then_run_then_everything_is_cached(project: Path) -> None:
    init = conveyor(project, "init")
    assert init.returncode == 0, init.stderr
    assert (project / "conveyor.toml").is_file() and (project / "pipeline.py").is_file()

    first = conveyor(project, "run")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "succeeded" in first.stdout
    assert str(project / ".conveyor") in first.stdout

    second = conveyor(project, "run", "--json")
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert summary["status"] == "succeeded"
    assert {s["status"] for s in summary["steps"]} == {"cached"}

    runs = json.loads(conveyor(project, "runs", "list", "--json").stdout)
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    lineage = conveyor(project, "lineage", str(summary["run_id"]), "--json")
    assert lineage.returncode == 0
    assert len(json.loads(lineage.stdout)["nodes"]) == 6  # 3 executions, 3 artifacts


def test_home_from_environment_variable(project: Path) -> None:
    (project / "pipeline.py").write_text(PIPELINE)
    home = project / "elsewhere"
    result = conveyor(project, "run", "-p", "n=5", env={"CONVEYOR_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    assert (home / "metadata.db").is_file()
    assert not (project / ".conveyor").exists()


BAD_INPUT: dict[str, tuple[str | None, list[str], dict[str, str], str]] = {
    # case: (pipeline.py content, arguments after `run`, environment, expected in stderr)
    "missing pipeline file": (None, [], {}, "pipeline.py"),
    "syntax error": (PIPELINE + "\ndef broken(:\n", [], {}, "syntax error"),
    "unknown pipeline name": (PIPELINE, ["pipeline.py:summs"], {}, "did you mean 'sums'"),
    "parameter of the wrong type": (PIPELINE, ["-p", "n=three"], {}, "'n'"),
    "unknown parameter": (PIPELINE, ["-p", "m=3"], {}, "no parameter 'm'"),
    "unreachable postgresql": (
        PIPELINE,
        [],
        {"CONVEYOR_METADATA_URL": UNREACHABLE_POSTGRES},
        "127.0.0.1:1",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_exits_2_with_a_clear_message_and_writes_nothing(
    project: Path, case: str
) -> None:
    content, args, env, message = BAD_INPUT[case]
    if content is not None:
        (project / "pipeline.py").write_text(content)
    result = conveyor(project, "run", *args, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (project / ".conveyor").exists()


def test_syntax_error_message_names_file_and_line(project: Path) -> None:
    (project / "pipeline.py").write_text("x = 1\ndef broken(:\n")
    result = conveyor(project, "run")
    assert result.returncode == 2
    assert "pipeline.py:2" in result.stderr


def test_usage_errors_exit_2(project: Path) -> None:
    assert conveyor(project, "run", "--no-such-flag").returncode == 2
    assert conveyor(project, "runs", "show").returncode == 2
    assert not (project / ".conveyor").exists()


def test_unknown_run_id_exits_2(project: Path) -> None:
    result = conveyor(project, "runs", "show", "42")
    assert result.returncode == 2
    assert "42" in result.stderr
    assert not (project / ".conveyor").exists()


FAILING = """
from conveyor import component, pipeline


@component
def source() -> list[int]:
    return [1, 2, 3]


@component
def explode(values: list[int]) -> int:
    raise RuntimeError("boom in explode")


@pipeline
def failing() -> None:
    explode(source())
"""


def test_failing_pipeline_exits_1_and_runs_show_has_the_traceback(project: Path) -> None:
    (project / "pipeline.py").write_text(FAILING)
    result = conveyor(project, "run")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "boom in explode" in result.stdout
    shown = conveyor(project, "runs", "show", "1")
    assert shown.returncode == 0
    assert "Traceback" in shown.stdout and 'raise RuntimeError("boom in explode")' in shown.stdout
