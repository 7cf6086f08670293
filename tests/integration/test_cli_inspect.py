"""The read-only commands (runs, artifacts, lineage) against a hand-populated home."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli_support import invoke, json_output
from conveyor.cli import app
from conveyor.store.metadata.records import NewArtifact, RunStatus
from conveyor.store.metadata.store import MetadataStore

STEPS = [("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"])]
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "pipeline.py", line 12, in fragile\n'
    '    raise ValueError("fragile step was told to fail")\n'
    "ValueError: fragile step was told to fail\n"
)


@dataclass
class Home:
    """A populated home: a computed diamond run, a cached one and a failed one."""

    path: Path
    computed: dict[str, int]  # step -> execution id (run 1)
    cached: dict[str, int]  # step -> execution id (run 2)
    outputs: dict[str, int]  # step -> artifact id
    runs: dict[str, int]  # "computed" / "cached" / "failed" -> run id
    failed_step: int


def _populate(store: MetadataStore, home: Path) -> Home:
    pipeline_id = store.register_pipeline("diamond", {"steps": []}, "hash")
    first = store.create_run(pipeline_id, {"n": 3}, {}, "host", 1)
    computed = store.create_executions(first.id, [(s, s, {}) for s, _ in STEPS])
    outputs: dict[str, int] = {}
    for step, ups in STEPS:
        store.start_execution(
            computed[step], f"k-{step}", {"code": step}, "miss: new step", 1, None
        )
        new = NewArtifact("JSON", f"{home}/artifacts/{step}", f"{step * 8}{'0' * 56}", 1536)
        inputs = {f"in_{u}": outputs[u] for u in ups}
        made = store.succeed_execution(computed[step], inputs, {"output": new})
        outputs[step] = made["output"].id
    store.finish_run(first.id, RunStatus.SUCCEEDED)

    second = store.create_run(pipeline_id, {"n": 3}, {}, "host", 1)
    cached = store.create_executions(second.id, [(s, s, {}) for s, _ in STEPS])
    for step, ups in STEPS:
        store.cache_execution(
            cached[step],
            f"k-{step}",
            {"code": step},
            "hit",
            computed[step],
            {f"in_{u}": outputs[u] for u in ups},
            {"output": outputs[step]},
        )
    store.finish_run(second.id, RunStatus.SUCCEEDED)

    other = store.register_pipeline("failing", {"steps": []}, "hash2")
    third = store.create_run(other, {}, {}, "host", 1)
    failing = store.create_executions(
        third.id, [("fragile", "fragile", {}), ("after", "after", {})]
    )
    log = str(home / "logs" / "fragile.log")
    store.start_execution(failing["fragile"], "k-f", {"code": "f"}, "miss: code changed", 2, log)
    store.fail_execution(
        failing["fragile"], "ValueError: fragile step was told to fail", TRACEBACK, 2
    )
    store.skip_execution(failing["after"], "upstream step 'fragile' failed")
    store.finish_run(third.id, RunStatus.FAILED, "step 'fragile' failed")
    return Home(
        home,
        computed,
        cached,
        outputs,
        {"computed": first.id, "cached": second.id, "failed": third.id},
        failing["fragile"],
    )


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("CONVEYOR_HOME", "CONVEYOR_METADATA_URL", "CONVEYOR_ARTIFACT_URL"):
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


@pytest.fixture
def home(clean_env: Path) -> Home:
    path = clean_env / "home"
    path.mkdir()
    store = MetadataStore.open(f"sqlite:///{path / 'metadata.db'}")
    try:
        return _populate(store, path)
    finally:
        store.close()


def cli(home: Home | Path, *args: str) -> tuple[int, str, str]:
    """Run ``conveyor --home HOME ARGS`` in-process; return (exit code, stdout, stderr)."""
    path = home.path if isinstance(home, Home) else home
    return invoke(app, "--home", str(path), *args)


def cli_json(home: Home | Path, *args: str) -> Any:
    return json_output(cli(home, *args, "--json"))


# -- runs -------------------------------------------------------------------------------


def test_runs_list_json_is_newest_first_with_step_summaries(home: Home) -> None:
    runs = cli_json(home, "runs", "list")
    assert isinstance(runs, list)
    assert [r["id"] for r in runs] == [
        home.runs["failed"],
        home.runs["cached"],
        home.runs["computed"],
    ]
    by_id = {r["id"]: r for r in runs}
    assert by_id[home.runs["computed"]]["steps_summary"] == "4 ok"
    assert by_id[home.runs["cached"]]["steps_summary"] == "4 cached"
    assert by_id[home.runs["failed"]]["steps_summary"] == "1 failed, 1 skipped"
    first = by_id[home.runs["computed"]]
    assert first["pipeline"] == "diamond" and first["status"] == "succeeded"
    assert first["params"] == {"n": 3}
    assert "T" in first["created_at"] and first["duration_s"] >= 0


def test_runs_list_filters_by_status_pipeline_and_limit(home: Home) -> None:
    failed = cli_json(home, "runs", "list", "--status", "failed")
    assert [r["id"] for r in failed] == [home.runs["failed"]]
    diamond = cli_json(home, "runs", "list", "--pipeline", "diamond", "--limit", "1")
    assert [r["id"] for r in diamond] == [home.runs["cached"]]


def test_runs_list_rejects_an_unknown_status(home: Home) -> None:
    code, _, err = cli(home, "runs", "list", "--status", "exploded")
    assert code == 2
    assert "exploded" in err and "succeeded" in err


def test_runs_list_table_for_people(home: Home) -> None:
    code, out, _ = cli(home, "runs", "list")
    assert code == 0
    assert "diamond" in out and "failing" in out
    assert "4 cached" in out and "1 failed, 1 skipped" in out


def test_runs_show_json_explains_cache_hits_and_misses(home: Home) -> None:
    shown = cli_json(home, "runs", "show", str(home.runs["cached"]))
    assert isinstance(shown, dict)
    assert shown["id"] == home.runs["cached"] and shown["status"] == "succeeded"
    steps = {s["step"]: s for s in shown["steps"]}
    assert steps["d"]["status"] == "cached"
    expected = f"hit from execution {home.computed['d']} of run {home.runs['computed']}"
    assert steps["d"]["cache"] == expected
    assert steps["d"]["outputs"]["output"]["id"] == home.outputs["d"]
    first = cli_json(home, "runs", "show", f"run:{home.runs['computed']}")
    assert {s["cache"] for s in first["steps"]} == {"miss: new step"}


def test_runs_show_prints_error_traceback_and_log_of_failed_steps(home: Home) -> None:
    code, out, _ = cli(home, "runs", "show", f"r{home.runs['failed']}")
    assert code == 0
    assert "fragile step was told to fail" in out
    assert 'raise ValueError("fragile step was told to fail")' in out  # the traceback
    assert str(home.path / "logs" / "fragile.log") in out
    assert "miss: code changed" in out
    assert "step 'fragile' failed" in out  # the run's error in the header


@pytest.mark.parametrize(
    ("run_id", "message"), [("999", "999"), ("e3", "not a run id"), ("zz", "not a run")]
)
def test_runs_show_unknown_or_malformed_id_exits_2(home: Home, run_id: str, message: str) -> None:
    code, out, err = cli(home, "runs", "show", run_id)
    assert code == 2
    assert message in err
    assert "Traceback" not in out + err


# -- artifacts ----------------------------------------------------------------------------


def test_artifacts_list_json_and_type_filter(home: Home) -> None:
    listed = cli_json(home, "artifacts", "list")
    assert isinstance(listed, list)
    assert {a["id"] for a in listed} == set(home.outputs.values())
    assert set(listed[0]) >= {"id", "type", "uri", "sha256", "size", "properties", "created_at"}
    assert cli_json(home, "artifacts", "list", "--type", "Model") == []


def test_artifacts_show_names_producer_cached_reuse_and_consumers(home: Home) -> None:
    shown = cli_json(home, "artifacts", "show", f"a{home.outputs['a']}")
    assert isinstance(shown, dict)
    assert shown["size"] == 1536 and shown["type"] == "JSON"
    producers = {(p["execution_id"], p["cached"]) for p in shown["producers"]}
    assert producers == {(home.computed["a"], False), (home.cached["a"], True)}
    consumers = {c["execution_id"] for c in shown["consumers"]}
    assert {home.computed["b"], home.computed["c"], home.cached["b"]} <= consumers


def test_artifacts_show_for_people_has_human_size(home: Home) -> None:
    code, out, _ = cli(home, "artifacts", "show", str(home.outputs["d"]))
    assert code == 0
    assert "1.5 KiB" in out and "reused from the cache" in out


def test_artifacts_show_unknown_id_exits_2(home: Home) -> None:
    code, _, err = cli(home, "artifacts", "show", "artifact:999")
    assert code == 2 and "999" in err


# -- lineage ------------------------------------------------------------------------------


def test_lineage_json_upstream_from_final_output(home: Home) -> None:
    graph = cli_json(home, "lineage", f"artifact:{home.outputs['d']}")
    assert isinstance(graph, dict)
    nodes = {n["id"] for n in graph["nodes"]}
    assert {f"execution:{i}" for i in home.computed.values()} <= nodes
    assert {f"artifact:{i}" for i in home.outputs.values()} <= nodes
    assert len(graph["edges"]) == 8
    assert graph["direction"] == "upstream"


def test_lineage_json_downstream_from_first_output(home: Home) -> None:
    graph = cli_json(home, "lineage", f"a{home.outputs['a']}", "--downstream")
    nodes = {n["id"] for n in graph["nodes"]}
    assert f"execution:{home.computed['d']}" in nodes
    assert f"artifact:{home.outputs['d']}" in nodes


def test_lineage_tree_of_a_run(home: Home) -> None:
    code, out, _ = cli(home, "lineage", str(home.runs["cached"]))
    assert code == 0
    assert f"run {home.runs['cached']}" in out
    for step in "abcd":
        assert f"step {step}" in out
    assert f"reused execution {home.computed['d']}" in out
    assert "shown above" in out  # a feeds both b and c


def test_lineage_rejects_both_directions_and_bad_ids(home: Home) -> None:
    code, _, _ = cli(home, "lineage", "a1", "--upstream", "--downstream")
    assert code == 2
    code, _, err = cli(home, "lineage", "model:3")
    assert code == 2 and "artifact:56" in err
    code, _, err = cli(home, "lineage", "e999")
    assert code == 2 and "999" in err


def test_lineage_help_documents_id_forms(home: Home) -> None:
    code, out, _ = cli(home, "lineage", "--help")
    assert code == 0
    for form in ("run:12", "r12", "e34", "a56"):
        assert form in out


# -- homes ----------------------------------------------------------------------------------


def test_read_commands_on_a_missing_home_write_nothing(clean_env: Path) -> None:
    missing = clean_env / "nowhere" / "home"
    assert cli_json(missing, "runs", "list") == []
    assert cli_json(missing, "artifacts", "list") == []
    code, _, err = cli(missing, "runs", "show", "1")
    assert code == 2 and "1" in err
    assert not (clean_env / "nowhere").exists()


def test_home_from_environment(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_HOME", str(home.path))
    result = CliRunner().invoke(app, ["runs", "list", "--json"])
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)) == 3


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_runs_list_marks_runs_of_dead_runners_interrupted(home: Home) -> None:
    store = MetadataStore.open(f"sqlite:///{home.path / 'metadata.db'}")
    try:
        pipeline_id = store.register_pipeline("diamond", {"steps": []}, "hash")
        run = store.create_run(pipeline_id, {}, {}, socket.gethostname(), _dead_pid())
    finally:
        store.close()
    runs = cli_json(home, "runs", "list", "--limit", "1")
    assert runs[0]["id"] == run.id and runs[0]["status"] == "interrupted"
    assert os.path.exists(home.path / "metadata.db")
