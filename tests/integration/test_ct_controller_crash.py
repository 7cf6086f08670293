"""``kill -9`` of ``conveyor watch`` in the middle of a run, then a restart.

Everything runs as a user would run it, in subprocesses: ``conveyor trigger`` queues manual
requests, ``conveyor watch`` runs the controller, ``conveyor events --json`` and ``conveyor runs
list --json`` read back what happened. The run's step writes its pid and sleeps; the controller
is killed while it sleeps. After the restart: the run is marked interrupted (its step process
died with the controller), exactly one run exists for that trigger, nothing is started again,
and the next manual trigger runs to the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import conveyor
from conveyor.config import load_settings
from conveyor.ct import load_policy
from conveyor.ct.controller import Controller
from conveyor.ct.ledger import key
from conveyor.store.metadata.activity_records import ActivityEvent
from conveyor.store.metadata.store import MetadataStore
from conveyor.store.workspace import Workspace, pid_alive
from ct_controller_support import write_project

TIMEOUT = 90.0


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("CONVEYOR_HOME", "CONVEYOR_METADATA_URL", "CONVEYOR_ARTIFACT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


class Project:
    """A project folder, its home, and the ``conveyor`` command run against them."""

    def __init__(self, root: Path) -> None:
        self.policy = write_project(root / "project")
        self.home = root / "home"
        self.logs = root

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "conveyor", "--home", str(self.home), *args]

    def cli(self, *args: str) -> Any:
        done = subprocess.run(self.command(*args), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout) if "--json" in args else done.stdout

    def trigger(self, pipeline: str, **params: str) -> None:
        assignments = [arg for k, v in params.items() for arg in ("-p", f"{k}={v}")]
        self.cli("trigger", pipeline, "--policy", str(self.policy), *assignments)

    def watch(self, name: str) -> subprocess.Popen[bytes]:
        output = (self.logs / f"{name}.log").open("wb")
        command = self.command("watch", "--policy", str(self.policy))
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)

    def events(self) -> list[ActivityEvent]:
        with MetadataStore.open(f"sqlite:///{self.home / 'metadata.db'}") as store:
            return store.activity.events()

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    yield Project(tmp_path)


def _wait(what: str, check: Callable[[], bool], process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if check():
            return
        assert process.poll() is None, f"the controller exited while waiting for {what}"
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_9_mid_run_then_restart_marks_it_interrupted_and_never_runs_it_twice(
    project: Project, tmp_path: Path
) -> None:
    pid_file = tmp_path / "step.pid"
    project.trigger("slow", seconds="120", pid_file=str(pid_file))
    first = project.watch("first")
    try:
        _wait("the slow step to start", pid_file.exists, first)
        _wait("run_started", lambda: "run_started" in [e.kind for e in project.events()], first)
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=30) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
    step_pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while pid_alive(step_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(step_pid), "the step outlived its controller"

    project.trigger("slow", seconds="0")  # the next trigger of the same pipeline
    second = project.watch("second")
    try:
        _wait(
            "the second run to finish",
            lambda: "run_finished" in [e.kind for e in project.events()],
            second,
        )
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0, project.log("second")
    finally:
        if second.poll() is None:
            second.kill()

    events = project.events()
    triggers = [e for e in events if e.kind == "trigger"]
    assert len(triggers) == 2
    interrupted = [e for e in events if e.kind == "run_interrupted"]
    assert len(interrupted) == 1
    assert interrupted[0].run_id == triggers[0].run_id
    assert "not started again" in interrupted[0].reason
    assert [e.kind for e in events if e.run_id == triggers[1].run_id] == [
        "trigger",
        "run_started",
        "run_finished",
    ]
    started = [e for e in events if e.kind == "controller_started"]
    assert len(started) == 2 and "took over from" in started[1].reason

    runs = project.cli("runs", "list", "--pipeline", "slow", "--json")
    by_trigger = {r["labels"]["trigger_event"]: r for r in runs}
    assert len(runs) == 2 and set(by_trigger) == {str(t.id) for t in triggers}
    assert by_trigger[str(triggers[0].id)]["status"] == "interrupted"
    assert by_trigger[str(triggers[1].id)]["status"] == "succeeded"
    listed = project.cli("events", "--json", "--kind", "run_interrupted")
    assert [e["run_id"] for e in listed] == [triggers[0].run_id]
    assert "run_interrupted" in project.log("second")
    assert os.path.exists(project.home / "metadata.db")


def test_a_second_sigterm_abandons_the_run_in_progress_and_marks_it(
    project: Project, tmp_path: Path
) -> None:
    pid_file = tmp_path / "step.pid"
    project.trigger("slow", seconds="120", pid_file=str(pid_file))
    watch = project.watch("watch")
    try:
        _wait("the slow step to start", pid_file.exists, watch)
        watch.send_signal(signal.SIGTERM)  # stop polling, wait for the run...
        time.sleep(1.0)
        assert watch.poll() is None, "the first SIGTERM must wait for the run"
        watch.send_signal(signal.SIGTERM)  # ...no: abandon it
        assert watch.wait(timeout=30) == 0, project.log("watch")
    finally:
        if watch.poll() is None:
            watch.kill()
    kinds = [e.kind for e in project.events()]
    assert kinds[-2:] == ["run_interrupted", "controller_stopped"]
    runs = project.cli("runs", "list", "--json")
    assert [r["status"] for r in runs] == ["interrupted"]
    step_pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while pid_alive(step_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(step_pid), "the step outlived its controller"


def test_restart_settles_each_inflight_entry_by_the_run_its_label_names(tmp_path: Path) -> None:
    """The other two crash points, set up by hand: before the run was created, and after it
    ended but before its end was recorded."""
    policy = load_policy(write_project(tmp_path / "project"))
    ws = Workspace.open(load_settings(home=tmp_path / "home"))
    try:
        activity = ws.metadata.activity
        never = activity.add_event("trigger", reason="nightly fired", pipeline="chores")
        ended = activity.add_event("trigger", reason="new span", pipeline="slow")
        activity.put_state(key("inflight", "chores"), {"event": never.id, "trigger": "nightly"})
        activity.put_state(key("inflight", "slow"), {"event": ended.id, "trigger": "new-span"})
        labels = {"trigger": "new-span", "trigger_event": str(ended.id)}
        slow = policy.pipelines["slow"].load()
        done = conveyor.run(slow, home=ws.settings.home, run_labels=labels, seconds=0)
        assert done.ok

        controller = Controller(ws, policy)
        events = controller.start()
        kinds = {e.kind: e for e in events}
        assert list(kinds) == ["controller_started", "run_interrupted", "run_finished"]
        lost = kinds["run_interrupted"]
        assert (lost.pipeline, lost.run_id, lost.subject) == ("chores", None, "nightly")
        assert "before the run of chores was created; it is not started again" in lost.reason
        late = kinds["run_finished"]
        assert late.run_id == done.run_id
        assert "recorded after a controller restart" in late.reason
        assert activity.get_states(key("inflight")) == {}
        assert controller.step() == []  # nothing is started again
        assert len(ws.metadata.list_runs()) == 1
        controller.stop()
    finally:
        ws.close()
