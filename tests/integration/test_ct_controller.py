"""The controller on a real workspace: triggers -> runs -> registry, canaries, the lease.

Pipelines really run (worker processes, the registry written by the ``register`` step) and
serving traffic is simulated by logging the real bundles' answers and their ground truth
through PredictionLog/FeedbackStore, so the canary is judged by the real Monitor. The clock
is the test's: polls happen at chosen times, runs take their real time.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conveyor.cli import app
from conveyor.config import load_settings
from conveyor.ct import request_manual_run
from conveyor.ct.controller import Controller
from conveyor.ct.controller_errors import ControllerBusyError
from conveyor.ct.policy_model import Policy
from conveyor.modeling.bundle import load_bundle
from conveyor.monitoring.alert_model import Alert
from conveyor.registry import ModelRegistry
from conveyor.store.metadata.activity_records import ActivityEvent, run_labels
from conveyor.store.metadata.records import RunStatus
from conveyor.store.workspace import Workspace
from ct_controller_support import policy_text, project_policy, serve_traffic, write_project
from monitoring_support import write_feedback, write_log
from serving_support import register_production

T0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
ACTOR = "conveyor-controller"


class Clock:
    """The controller's clock: moves only when the test says so."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONVEYOR_HOME", "CONVEYOR_METADATA_URL", "CONVEYOR_ARTIFACT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONVEYOR_ACTOR", "ana")
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    ws = Workspace.open(load_settings(home=tmp_path / "home"))
    yield ws
    ws.close()


def _controller(ws: Workspace, policy: Policy, clock: Clock) -> Controller:
    controller = Controller(ws, policy, clock=clock, max_workers=2)
    controller.start()
    return controller


def _kinds(events: list[ActivityEvent]) -> list[str]:
    return [e.kind for e in events]


def _one(events: list[ActivityEvent], kind: str) -> ActivityEvent:
    found = [e for e in events if e.kind == kind]
    assert len(found) == 1, f"expected one {kind} in {_kinds(events)}"
    return found[0]


def _manual_run(
    controller: Controller, ws: Workspace, clock: Clock, pipeline: str, **params: str
) -> list[ActivityEvent]:
    """Queue a manual request, poll (the run starts), wait for the run, poll (it is concluded)."""
    request_manual_run(ws.settings.home, controller.policy, pipeline, params)
    events = controller.step(clock.advance(seconds=10))
    assert controller.runs.launcher.wait(timeout=120)
    return events + controller.step(clock.advance(seconds=10))


# -- the whole roll-out story ---------------------------------------------------------------
def test_first_deployment_canary_promotion_rollback_and_unblessed(
    tmp_path: Path, workspace: Workspace
) -> None:
    policy = project_policy(
        tmp_path / "project", policy_text(window=50, promote_after=3, tolerance=0.05)
    )
    clock = Clock(T0)
    controller = _controller(workspace, policy, clock)
    registry = ModelRegistry(workspace)
    meta = workspace.metadata

    # 1. No production yet: the first blessed version is promoted at once.
    events = _manual_run(controller, workspace, clock, "census", seed="1")
    assert _kinds(events) == ["trigger", "run_started", "run_finished", "registered", "promoted"]
    trigger, started = events[0], events[1]
    run = meta.get_run(started.run_id)
    assert run.status == RunStatus.SUCCEEDED
    assert run_labels(run) == {"trigger": "manual:census", "trigger_event": str(trigger.id)}
    assert meta.activity.event(trigger.id).run_id == run.id  # the trigger links to its run
    assert "first deployment" in events[-1].reason
    assert registry.aliases("census") == {"production": 1}

    # 2. A good candidate: canary at 10 %, promoted after 3 windows as good as production's.
    events = _manual_run(controller, workspace, clock, "census", seed="2")
    assert _kinds(events) == [
        "trigger",
        "run_started",
        "run_finished",
        "registered",
        "canary_started",
    ]
    assert registry.aliases("census") == {"canary": 2, "production": 1}
    split = registry.traffic("census")["production"]
    assert split.weights == {"canary": 10.0, "production": 90.0}
    # A crash after the roll-out was recorded but before the split was set: a restarted
    # controller makes the registry match the recorded roll-out again.
    controller.stop()
    registry.clear_traffic("census", reason="as if the controller died before setting it")
    controller = _controller(workspace, policy, clock)
    assert registry.traffic("census")["production"].weights == split.weights
    start = clock.now
    good = serve_traffic(workspace, 2, rows=150, start=start, seed=22, prefix="b", step=_s(3))
    prod = serve_traffic(workspace, 1, rows=450, start=start, seed=21, prefix="a")
    assert abs(good - prod) < 0.05
    events = controller.step(clock.advance(hours=1))
    assert _kinds(events) == ["canary_window"] * 3 + ["promoted"]
    promoted = events[-1]
    assert promoted.version == 2 and "not worse" in promoted.reason
    assert promoted.details["canary_mean"] == pytest.approx(good, abs=1e-9)
    assert registry.aliases("census") == {"production": 2}
    assert registry.traffic("census") == {}
    mine = [(str(a.action), a.alias, a.to_version) for a in registry.history("census")]
    assert ("promote", "production", 2) in mine
    assert {a.actor for a in registry.history("census")[:4]} == {ACTOR}

    # 3. A bad candidate (trained on inverted labels, blessed anyway): rolled back.
    events = _manual_run(controller, workspace, clock, "census", seed="3", flip="true")
    assert _one(events, "canary_started").version == 3
    start = clock.now
    bad = serve_traffic(workspace, 3, rows=150, start=start, seed=32, prefix="d", step=_s(3))
    prod = serve_traffic(workspace, 2, rows=450, start=start, seed=31, prefix="c")
    assert prod - bad > 0.3
    events = controller.step(clock.advance(hours=1))
    assert _kinds(events) == ["canary_window"] * 3 + ["rolled_back"]
    rolled = events[-1]
    assert rolled.version == 3 and "production unchanged (version 2)" in rolled.reason
    assert rolled.details["canary_mean"] == pytest.approx(bad, abs=1e-9)  # 3 windows of 50
    assert rolled.details["production_mean"] == pytest.approx(prod, abs=0.05)
    assert rolled.details["worse_by"] > 0.3 and rolled.details["production_windows"] == 8
    assert registry.aliases("census") == {"production": 2}
    assert registry.traffic("census") == {}
    audit = [(str(a.action), a.alias, a.to_version) for a in registry.history("census")]
    assert ("remove_alias", "canary", None) in audit
    assert ("promote", "production", 3) not in audit

    # 4. A canary that gets no traffic has no verdict by canary_timeout (1 day): rolled back.
    events = _manual_run(controller, workspace, clock, "census", seed="6")
    assert "rolled back otherwise (or without a verdict by" in _one(events, "canary_started").reason
    assert controller.step(clock.advance(hours=23)) == []  # still waiting
    events = controller.step(clock.advance(hours=2))
    assert _kinds(events) == ["rolled_back"]
    assert events[0].version == 4 and "canary_timeout 1d" in events[0].reason
    assert registry.aliases("census") == {"production": 2}
    assert registry.traffic("census") == {}

    # 5. An unblessed run registers nothing and never touches production.
    before = registry.history("census")
    events = _manual_run(controller, workspace, clock, "census", seed="4", blessed="false")
    assert _kinds(events) == ["trigger", "run_started", "run_finished", "not_blessed"]
    assert "accuracy 0.61 < production 0.83" in events[-1].reason
    assert [v.version for v in registry.list("census")] == [1, 2, 3, 4]
    assert registry.aliases("census") == {"production": 2}
    assert registry.history("census") == before

    # 6. A pipeline that moves production itself is recorded loudly, and not canaried.
    events = _manual_run(controller, workspace, clock, "census", seed="5", alias="production")
    bypass = events[-1]
    assert (bypass.kind, bypass.source, bypass.version) == ("promoted", "pipeline", 5)
    assert "bypassing the canary" in bypass.reason
    assert registry.aliases("census") == {"production": 5}
    assert controller.deployer.rollouts() == {}
    controller.stop()


def _s(seconds: float) -> dt.timedelta:
    return dt.timedelta(seconds=seconds)


# -- scheduling: debounce, busy, min_interval -----------------------------------------------
def test_fires_are_debounced_held_while_busy_and_rate_limited_never_lost(
    tmp_path: Path, workspace: Workspace
) -> None:
    policy = project_policy(tmp_path / "p", policy_text(debounce="5m", min_interval="1h"))
    clock = Clock(T0)
    controller = _controller(workspace, policy, clock)
    home = workspace.settings.home

    request_manual_run(home, policy, "chores", {"tag": "a", "seconds": "3"})
    first = controller.step(clock.now)
    request_manual_run(home, policy, "chores", {"tag": "b", "seconds": "3"})
    second = controller.step(clock.advance(minutes=1))
    assert _kinds(first) == _kinds(second) == ["skipped"]
    assert "debounce 5m" in first[0].reason and "stays pending" in first[0].reason

    started = controller.step(clock.advance(minutes=4))  # the debounce is over: one run
    trigger = _one(started, "trigger")
    assert len(trigger.details["decisions"]) == 2
    assert trigger.details["params"] == {"tag": "b", "seconds": "3"}  # the newer fire wins
    assert "merged with 1 later fire(s)" in trigger.reason

    request_manual_run(home, policy, "chores", {"tag": "c"})
    busy = controller.step(clock.advance(seconds=1))  # the first run is still sleeping
    held = _one(busy, "skipped")
    assert held.details["hold"] == "busy" and "one run at a time" in held.reason

    assert controller.runs.launcher.wait(timeout=60)
    later = controller.step(clock.advance(minutes=5))  # its own debounce is over too
    assert [k for k in _kinds(later) if k != "run_started"] == ["run_finished", "skipped"]
    assert later[-1].details["hold"] == "min_interval"
    assert "at most one run of chores every 1h" in later[-1].reason

    assert _kinds(controller.step(clock.advance(minutes=30))) == []  # still held, said once
    resumed = controller.step(clock.advance(minutes=30))
    assert [k for k in _kinds(resumed) if k != "run_started"] == ["trigger"]
    assert resumed[0].details["params"] == {"tag": "c"}
    assert controller.runs.launcher.wait(timeout=60)
    assert "run_finished" in _kinds(controller.step(clock.advance(seconds=5)))
    runs = workspace.metadata.list_runs(pipeline_name="chores")
    assert [(r.params["tag"], r.status) for r in reversed(runs)] == [
        ("b", RunStatus.SUCCEEDED),
        ("c", RunStatus.SUCCEEDED),
    ]
    assert controller.pending == {}
    controller.stop()


# -- alerts -> triggers ----------------------------------------------------------------------
ALERTS = """
[[alerts]]
name = "paris-accuracy"
model = "census"
metric = "accuracy"
feature = "city=Paris"
threshold = 0.9
windows = 2
cooldown = "1h"

[[triggers]]
name = "retrain-on-accuracy"
pipeline = "chores"
on = "alert"
alerts = ["paris-accuracy"]
params = { tag = "retrain" }
"""


def test_an_alert_is_recorded_once_and_its_trigger_starts_a_linked_run(
    tmp_path: Path, workspace: Workspace
) -> None:
    text = policy_text(window=50).replace("min_feedback_coverage = 0.5", 'slices = ["city"]')
    policy = project_policy(tmp_path / "p", text + ALERTS)
    bundle = load_bundle(register_production(workspace, tmp_path))
    frame = pd.DataFrame(
        {"x": np.linspace(-2, 2, 200), "n": np.arange(200) % 10, "city": ["Paris", "Nice"] * 100}
    )
    root = workspace.settings.artifact_url
    ids = write_log(root, bundle, frame, start=T0, version="1")
    wrong = [int(1 - p) for p in bundle.predict(frame)]  # every answer turns out wrong
    write_feedback(root, ids, wrong, times=[T0 + _s(i + 1) for i in range(200)])

    clock = Clock(T0 + dt.timedelta(hours=1))
    controller = _controller(workspace, policy, clock)
    events = controller.step(clock.now)
    alert, trigger = _one(events, "alert"), _one(events, "trigger")
    assert alert.subject == "paris-accuracy" and alert.version == 1
    assert "accuracy of 'city=Paris' of census version 1 was 0" in alert.reason
    assert trigger.subject == "retrain-on-accuracy"
    assert trigger.reason.startswith("alert paris-accuracy: accuracy of 'city=Paris'")
    assert trigger.details["params"] == {"tag": "retrain"}
    assert controller.runs.launcher.wait(timeout=60)
    again = controller.step(clock.advance(minutes=1))
    assert "alert" not in _kinds(again) and "trigger" not in _kinds(again)
    assert "run_finished" in _kinds(again)
    run_id = workspace.metadata.activity.event(trigger.id).run_id
    assert run_id is not None
    linked = workspace.metadata.activity.run_events(run_id)
    assert [e.kind for e in linked][:3] == ["trigger", "run_started", "run_finished"]
    controller.stop()


def test_a_poll_reads_the_log_of_the_lookback_only(tmp_path: Path, workspace: Workspace) -> None:
    text = policy_text(window=50).replace("min_feedback_coverage = 0.5", 'slices = ["city"]')
    policy = project_policy(tmp_path / "p", text + ALERTS)
    assert policy.lookback() == dt.timedelta(days=1)  # count windows: label delay + 1 day
    bundle = load_bundle(register_production(workspace, tmp_path))
    frame = pd.DataFrame(
        {"x": np.linspace(-2, 2, 200), "n": np.arange(200) % 10, "city": ["Paris", "Nice"] * 100}
    )
    root = workspace.settings.artifact_url
    wrong = [int(1 - p) for p in bundle.predict(frame)]

    def bad_traffic(start: dt.datetime, prefix: str) -> None:
        ids = write_log(root, bundle, frame, start=start, version="1", prefix=prefix)
        write_feedback(root, ids, wrong, times=[start + _s(i + 1) for i in range(200)])

    bad_traffic(T0, "old")  # two days before the first poll: settled, never read again
    clock = Clock(T0 + dt.timedelta(days=2))
    controller = _controller(workspace, policy, clock)
    assert "alert" not in _kinds(controller.step(clock.now))
    bad_traffic(clock.now - dt.timedelta(hours=1), "new")
    alert = _one(controller.step(clock.advance(minutes=1)), "alert")
    fired = Alert.from_json(alert.details["alert"])
    assert fired.window_start >= clock.now - dt.timedelta(hours=2)  # the recent windows
    controller.stop()


def test_the_controller_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    settings = load_settings(home=tmp_path / "home", metadata_url=postgres_url)
    ws = Workspace.open(settings)
    try:
        policy = project_policy(tmp_path / "p")
        clock = Clock(T0)
        controller = _controller(ws, policy, clock)
        with pytest.raises(ControllerBusyError, match="holds the lease"):
            Controller(ws, policy).start()
        events = _manual_run(controller, ws, clock, "chores", tag="pg")
        assert [k for k in _kinds(events)] == ["trigger", "run_started", "run_finished"]
        run = ws.metadata.get_run(events[1].run_id)
        assert run_labels(run)["trigger_event"] == str(events[0].id)
        assert ws.metadata.activity.event(events[0].id).run_id == run.id
        controller.stop()
        assert ws.metadata.activity.lease("controller") is None
    finally:
        ws.close()


# -- the lease ------------------------------------------------------------------------------
def test_a_second_controller_is_refused_and_a_dead_ones_lease_is_taken_over(
    tmp_path: Path, workspace: Workspace
) -> None:
    policy = project_policy(tmp_path / "p")
    first = Controller(workspace, policy)
    first.start()
    second = Controller(workspace, policy)
    with pytest.raises(ControllerBusyError, match=r"another controller \(.*\) holds the lease"):
        second.start()
    first.stop()
    second.start()
    second.stop()

    gone = subprocess.Popen(["true"])
    gone.wait()
    host = os.uname().nodename
    activity = workspace.metadata.activity
    assert activity.acquire_lease("controller", f"{host}:{gone.pid}:dead", ttl=3600)
    third = Controller(workspace, policy)
    events = third.start()
    assert third.lease.took_over == f"{host}:{gone.pid}:dead"
    assert "took over from" in _one(events, "controller_started").reason
    third.stop()
    kinds = [e.kind for e in activity.events()]
    assert kinds.count("controller_started") == 3 and kinds.count("controller_stopped") == 3


# -- bad policies ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "offset", "message"),
    [
        ('[[alerts]]\nname = "a"\nmodel = "census"\nmetric = "acuracy"\nthreshold = 0.8', 3,
         r'\[\[alerts\]\] #1 "a": metric .acuracy. is not a metric \(did you mean .accuracy.\?\)'),
        ('[[triggers]]\nname = "n"\npipeline = "chores"\non = "cron"\ncron = "61 * * * *"', 4,
         r'\[\[triggers\]\] #1 "n": cron \'61 \* \* \* \*\' does not parse'),
        ('[[alerts]]\nname = "a"\nmodel = "census"\nmetric = "accuracy"\nthreshold = "0.8"', 4,
         r'\[\[alerts\]\] #1 "a": threshold must be a number, not a string'),
        ('[pipelines.gone]\nfile = "missing.py"', 1,
         r"\[pipelines.gone\]: pipeline file 'missing.py' does not exist"),
    ],
)  # fmt: skip
def test_a_bad_policy_is_refused_at_start_naming_the_line_and_nothing_is_written(
    tmp_path: Path, text: str, offset: int, message: str
) -> None:
    good = policy_text()
    line = len(good.splitlines()) + 2 + offset  # after the policy and an empty line
    policy = write_project(tmp_path / "p", good + "\n" + text + "\n")
    home = tmp_path / "home"
    result = CliRunner().invoke(app, ["--home", str(home), "watch", "--policy", str(policy)])
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())  # the console may wrap long lines
    assert "has 1 problem; fix it before the controller starts" in output
    assert re.search(rf"policy.toml:{line}: {message}", output), output
    assert not home.exists()  # not even the workspace was created
