"""The local runner against real SQLite, real files and real worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conveyor.config import load_settings
from conveyor.core.loader import load_pipeline
from conveyor.runners.local import LocalRunner
from conveyor.store.lineage import downstream, upstream
from conveyor.store.metadata.records import ExecutionStatus, RunStatus
from conveyor.store.workspace import Workspace
from pipeline_sources import FAILING, SLOW, diamond_source

pytestmark = pytest.mark.slow


@pytest.fixture
def workspace(tmp_path: Path):
    ws = Workspace.open(load_settings(home=tmp_path / "home", max_workers=2))
    yield ws
    ws.close()


def _write(path: Path, source: str) -> str:
    path.write_text(source)
    return str(path)


def _run(ws: Workspace, spec: str, params: dict | None = None, **kwargs):
    ir = load_pipeline(spec, reload=True).build(params or {})
    return LocalRunner(ws, max_workers=2).run(ir, **kwargs)


def _statuses(ws: Workspace, run_id: int) -> dict[str, ExecutionStatus]:
    return {e.step_name: e.status for e in ws.metadata.list_executions(run_id)}


def test_diamond_runs_concurrently_then_caches_and_reruns_what_changed(workspace, tmp_path):
    spec = _write(tmp_path / "diamond.py", diamond_source(sleep=1.5))
    first = _run(workspace, spec)
    assert first.status == RunStatus.SUCCEEDED, first.error
    execs = {e.step_name: e for e in workspace.metadata.list_executions(first.run_id)}
    b, c = execs["b"], execs["c"]
    assert b.started_at < c.ended_at and c.started_at < b.ended_at, "B and C did not overlap"

    second = _run(workspace, spec)
    assert set(_statuses(workspace, second.run_id).values()) == {ExecutionStatus.CACHED}

    _write(tmp_path / "diamond.py", diamond_source(sleep=0.0, c_body="[v + 200 for v in values]"))
    third = _run(workspace, spec)
    assert _statuses(workspace, third.run_id) == {
        "a": ExecutionStatus.CACHED,
        "b": ExecutionStatus.CACHED,
        "c": ExecutionStatus.SUCCEEDED,
        "d": ExecutionStatus.SUCCEEDED,
    }
    c_exec = next(e for e in workspace.metadata.list_executions(third.run_id) if e.step_name == "c")
    assert c_exec.cache_explanation == "miss: code changed"

    fourth = _run(workspace, spec, {"factor": 5})
    statuses = _statuses(workspace, fourth.run_id)
    assert statuses == {
        "a": ExecutionStatus.CACHED,
        "b": ExecutionStatus.SUCCEEDED,
        "c": ExecutionStatus.CACHED,
        "d": ExecutionStatus.SUCCEEDED,
    }
    b_exec = next(
        e for e in workspace.metadata.list_executions(fourth.run_id) if e.step_name == "b"
    )
    assert "parameter 'factor' changed (2 -> 5)" in (b_exec.cache_explanation or "")


def test_lineage_reaches_every_upstream_and_downstream_node(workspace, tmp_path):
    spec = _write(tmp_path / "diamond.py", diamond_source())
    result = _run(workspace, spec)
    execs = {e.step_name: e for e in workspace.metadata.list_executions(result.run_id)}
    d_out = workspace.metadata.execution_outputs(execs["d"].id)["output"]
    a_out = workspace.metadata.execution_outputs(execs["a"].id)["output"]

    up = upstream(workspace.metadata, f"artifact:{d_out.id}")
    assert {f"execution:{e.id}" for e in execs.values()} <= set(up.nodes)
    for step in ("a", "b", "c"):
        out = workspace.metadata.execution_outputs(execs[step].id)["output"]
        assert f"artifact:{out.id}" in up.nodes

    down = downstream(workspace.metadata, f"artifact:{a_out.id}")
    assert f"execution:{execs['d'].id}" in down.nodes
    assert f"artifact:{d_out.id}" in down.nodes


def test_no_cache_reruns_everything_and_says_why(workspace, tmp_path):
    spec = _write(tmp_path / "diamond.py", diamond_source())
    _run(workspace, spec)
    again = _run(workspace, spec, no_cache=True)
    execs = workspace.metadata.list_executions(again.run_id)
    assert {e.status for e in execs} == {ExecutionStatus.SUCCEEDED}
    assert {e.cache_explanation for e in execs} == {"cache disabled for this run (--no-cache)"}


def test_failing_step_stops_dependents_only_and_rerun_reuses_upstream(
    workspace, tmp_path, monkeypatch
):
    flag = tmp_path / "fail.flag"
    flag.write_text("fail")
    monkeypatch.setenv("FAIL_FLAG", str(flag))
    spec = _write(tmp_path / "failing.py", FAILING)
    failed = _run(workspace, spec)
    assert failed.status == RunStatus.FAILED
    assert "fragile step was told to fail" in (failed.error or "")
    execs = {e.step_name: e for e in workspace.metadata.list_executions(failed.run_id)}
    assert execs["fragile"].status == ExecutionStatus.FAILED
    assert "raise ValueError" in (execs["fragile"].traceback or "")
    assert execs["after"].status == ExecutionStatus.SKIPPED
    assert execs["independent"].status == ExecutionStatus.SUCCEEDED
    assert workspace.metadata.execution_outputs(execs["fragile"].id) == {}
    assert Path(execs["fragile"].log_uri or "").read_text().count("ValueError") >= 1

    flag.unlink()
    fixed = _run(workspace, spec)
    assert fixed.status == RunStatus.SUCCEEDED
    assert _statuses(workspace, fixed.run_id) == {
        "source": ExecutionStatus.CACHED,
        "fragile": ExecutionStatus.SUCCEEDED,
        "after": ExecutionStatus.SUCCEEDED,
        "independent": ExecutionStatus.CACHED,
    }


RETRYING = """
import os
from pathlib import Path
from conveyor import component, pipeline

COUNTER = Path(os.environ["COUNTER_FILE"])


@component(retries=2, retry_backoff_s=0.1)
def flaky() -> int:
    count = int(COUNTER.read_text()) if COUNTER.exists() else 0
    COUNTER.write_text(str(count + 1))
    if count < 2:
        raise RuntimeError(f"attempt {count + 1} fails")
    return count


@component(timeout_s=1.0)
def sleepy() -> int:
    import time
    time.sleep(30)
    return 1


@pipeline
def retrying(with_sleepy: bool = False) -> None:
    flaky()
    if with_sleepy:
        sleepy()
"""


def test_retries_with_backoff_and_timeout_kills_the_step(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("COUNTER_FILE", str(tmp_path / "counter"))
    spec = _write(tmp_path / "retrying.py", RETRYING)
    ok = _run(workspace, spec)
    assert ok.status == RunStatus.SUCCEEDED
    (flaky,) = workspace.metadata.list_executions(ok.run_id)
    assert flaky.attempts == 3

    started = time.monotonic()
    timed_out = _run(workspace, spec, {"with_sleepy": True})
    assert time.monotonic() - started < 20
    execs = {e.step_name: e for e in workspace.metadata.list_executions(timed_out.run_id)}
    assert execs["sleepy"].status == ExecutionStatus.FAILED
    assert "timeout of 1.0 s" in (execs["sleepy"].error or "")
    assert execs["flaky"].status == ExecutionStatus.CACHED


def test_kill_dash_nine_marks_run_interrupted_and_leaves_no_partial_artifact(tmp_path):
    home = tmp_path / "home"
    flag = tmp_path / "started.flag"
    spec = _write(tmp_path / "slow.py", SLOW)
    code = (
        "import conveyor\nfrom conveyor.core.loader import load_pipeline\n"
        f"conveyor.run(load_pipeline({spec!r}), home={str(home)!r}, max_workers=1)\n"
    )
    env = {**os.environ, "STARTED_FLAG": str(flag)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert time.monotonic() < deadline, "the slow step never started"
            assert proc.poll() is None, "the runner exited early"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    ws = Workspace.open(load_settings(home=home))
    try:
        (run,) = ws.metadata.list_runs()
        assert run.status == RunStatus.INTERRUPTED
        statuses = _statuses(ws, run.id)
        assert statuses["first"] == ExecutionStatus.SUCCEEDED
        assert statuses["slow"] == ExecutionStatus.INTERRUPTED
        objects = home / "artifacts" / "objects"
        for folder in (p for p in objects.glob("*/*") if p.is_dir()):
            assert (folder / "_conveyor.json").is_file(), f"partial artifact {folder}"
        staging = home / "artifacts" / ".tmp"
        assert not staging.exists() or not any(staging.iterdir())
    finally:
        ws.close()


def test_eight_runs_at_once_on_one_sqlite_home(tmp_path):
    _concurrent_runs(tmp_path, {})


def test_eight_runs_at_once_on_postgres(tmp_path, postgres_url):
    _concurrent_runs(tmp_path, {"CONVEYOR_METADATA_URL": postgres_url})


def _concurrent_runs(tmp_path: Path, extra_env: dict[str, str]) -> None:
    home = tmp_path / "home"
    spec = _write(tmp_path / "diamond.py", diamond_source())
    env = {**os.environ, **extra_env, "CONVEYOR_HOME": str(home)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import conveyor\nfrom conveyor.core.loader import load_pipeline\n"
                f"r = conveyor.run(load_pipeline({spec!r}), max_workers=1, n={i % 3 + 2})\n"
                "raise SystemExit(0 if r.ok else 1)\n",
            ],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    errors = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, errors
    assert not any("database is locked" in e for e in errors)
    settings = load_settings(home=home, metadata_url=extra_env.get("CONVEYOR_METADATA_URL"))
    ws = Workspace.open(settings)
    try:
        runs = ws.metadata.list_runs(limit=100)
        assert len(runs) == 8
        assert {r.status for r in runs} == {RunStatus.SUCCEEDED}
        for run in runs:
            execs = ws.metadata.list_executions(run.id)
            assert len(execs) == 4
            for e in execs:
                outputs = ws.metadata.execution_outputs(e.id)
                assert set(outputs) == {"output"}
                assert ws.artifacts.exists(outputs["output"].uri)
    finally:
        ws.close()


GATED = """
from conveyor import after, component, pipeline


@component
def check(fail: bool) -> int:
    if fail:
        raise ValueError("the gate is closed")
    return 1


@component
def work() -> int:
    return 2


@pipeline
def gated(fail: bool = False) -> None:
    with after(check(fail)):
        work()
"""


def test_a_step_after_a_failed_gate_is_skipped(workspace, tmp_path):
    spec = _write(tmp_path / "gated.py", GATED)
    closed = _run(workspace, spec, {"fail": True})
    assert _statuses(workspace, closed.run_id) == {
        "check": ExecutionStatus.FAILED,
        "work": ExecutionStatus.SKIPPED,
    }
    opened = _run(workspace, spec)
    assert _statuses(workspace, opened.run_id)["work"] == ExecutionStatus.SUCCEEDED
