"""Contract tests of the continuous-training activity (ActivityStore), on SQLite and PostgreSQL.

Events, dedupe under racing writers, leases (expiry, takeover, racing processes), state in the
same transaction as events, the restart protocol after ``kill -9``, the v3 -> v4 migration
and run labels. PostgreSQL tests need ``CONVEYOR_TEST_POSTGRES_URL`` (see tests/conftest.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect

import conveyor
import conveyor.store.metadata as metadata_package
from conveyor.config import load_settings
from conveyor.core.loader import load_pipeline
from conveyor.exceptions import NotFoundError, ParameterError
from conveyor.store.metadata import (
    ACTIVITY_KINDS,
    ActivityEvent,
    ActivityStore,
    ActivityStoreError,
    LeaseLostError,
    MetadataStore,
    NewActivityEvent,
    migrations,
    tables,
)
from conveyor.store.metadata.records import RunStatus
from conveyor.store.workspace import Workspace
from pipeline_sources import SLOW, diamond_source

CT_TABLES = {"ct_events", "ct_leases", "ct_state"}


@pytest.fixture
def activity(store: MetadataStore) -> ActivityStore:
    return store.activity


def _run(store: MetadataStore, labels: dict[str, str] | None = None) -> int:
    pipeline = store.register_pipeline("census", {}, "h")
    options: dict[str, Any] = {"labels": labels} if labels else {}
    return store.create_run(pipeline, {}, options, "host", os.getpid()).id


def _everything(activity: ActivityStore) -> tuple[Any, ...]:
    return activity.events(), activity.get_states(), activity.lease("controller")


# -- events -------------------------------------------------------------------------------
def test_add_event_stores_every_field_and_reads_back(
    store: MetadataStore, activity: ActivityStore
) -> None:
    run_id = _run(store)
    before = datetime.now(UTC)
    event = activity.add_event(
        "trigger",
        reason="alert age-drift fired: drift of age was 0.31 > 0.1 for 2 windows",
        pipeline="census",
        model="census",
        version=3,
        run_id=run_id,
        subject="retrain-on-drift",
        details={"feature": "age", "value": 0.31, "window": ["t0", "t1"]},
    )
    assert (event.kind, event.source, event.model_ref, event.dedupe_key) == (
        "trigger",
        "controller",
        "census:3",
        None,
    )
    assert before - timedelta(seconds=5) <= event.time <= datetime.now(UTC)
    assert event.time.utcoffset() == timedelta(0)
    assert activity.event(event.id) == event
    as_dict = event.to_dict()
    assert as_dict["time"] == event.time.isoformat()
    assert as_dict["details"] == {"feature": "age", "value": 0.31, "window": ["t0", "t1"]}
    assert set(as_dict) == {
        "id",
        "time",
        "kind",
        "source",
        "pipeline",
        "model",
        "version",
        "run_id",
        "subject",
        "reason",
        "details",
        "dedupe_key",
    }
    chosen = datetime(2024, 3, 1, 12, tzinfo=UTC)
    plain = activity.add_event("controller_started", reason="watching", source="cli", time=chosen)
    assert (plain.time, plain.source, plain.details, plain.model_ref) == (chosen, "cli", {}, None)
    with pytest.raises(NotFoundError, match="activity event 4242 not found"):
        activity.event(4242)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda a: a.add_event("trigerr", reason="x"),
            ActivityStoreError,
            r"unknown activity event kind 'trigerr' \(did you mean 'trigger'\?\)",
        ),
        (lambda a: a.add_event("alert", reason="  "), ActivityStoreError, "non-empty reason"),
        (lambda a: a.add_event("alert", reason="x", version=0), ActivityStoreError, "version"),
        (
            lambda a: a.add_event("alert", reason="x", details={"v": float("nan")}),
            ActivityStoreError,
            "details must be JSON data",
        ),
        (
            lambda a: a.add_event("alert", reason="x", time=datetime(2024, 1, 1)),
            ActivityStoreError,
            "has no time zone",
        ),
        (lambda a: a.add_event("alert", reason="x", run_id=4242), NotFoundError, "run 4242"),
        (lambda a: a.add_event("alert", reason="x", source=""), ActivityStoreError, "source"),
    ],
)
def test_bad_events_are_refused_and_write_nothing(
    activity: ActivityStore, call: Any, error: type[Exception], match: str
) -> None:
    activity.add_event("alert", reason="first")
    before = _everything(activity)
    with pytest.raises(error, match=match):
        call(activity)
    assert _everything(activity) == before


def test_events_filter_page_and_order(store: MetadataStore, activity: ActivityStore) -> None:
    run_id = _run(store)
    old = datetime.now(UTC) - timedelta(hours=2)
    made = [
        activity.add_event("alert", reason="a", model="census", subject="age-drift", time=old),
        activity.add_event("trigger", reason="b", pipeline="census", subject="retrain"),
        activity.add_event("run_started", reason="c", pipeline="census", run_id=run_id),
        activity.add_event("alert", reason="d", model="churn", subject="age-drift"),
        activity.add_event("promoted", reason="e", model="census", version=2),
    ]
    ids = [e.id for e in made]
    assert [e.id for e in activity.events()] == ids
    assert [e.id for e in activity.events(newest_first=True)] == ids[::-1]
    assert [e.id for e in activity.events(model="census")] == [ids[0], ids[4]]
    assert [e.id for e in activity.events(pipeline="census")] == ids[1:3]
    assert [e.id for e in activity.events(kinds=["alert", "promoted"])] == [ids[0], *ids[3:]]
    assert [e.id for e in activity.events(kinds="alert")] == [ids[0], ids[3]]
    assert [e.id for e in activity.events(subject="age-drift", model="churn")] == [ids[3]]
    assert [e.id for e in activity.events(run_id=run_id)] == [ids[2]]
    assert [e.id for e in activity.events(since=old + timedelta(minutes=1))] == ids[1:]
    assert [e.id for e in activity.events(after_id=ids[1], limit=2)] == ids[2:4]
    assert [e.id for e in activity.events(limit=2, newest_first=True)] == [ids[4], ids[3]]
    with pytest.raises(ActivityStoreError, match=r"'promote' \(did you mean 'promoted'\?\)"):
        activity.events(kinds=["alert", "promote"])
    with pytest.raises(ActivityStoreError, match="limit must be a number from 1"):
        activity.events(limit=0)
    with pytest.raises(ActivityStoreError, match="no time zone"):
        activity.events(since=datetime(2024, 1, 1))


def test_every_documented_kind_is_accepted(activity: ActivityStore) -> None:
    for kind in ACTIVITY_KINDS:
        activity.add_event(kind, reason=f"a {kind} happened")
    assert [e.kind for e in activity.events()] == list(ACTIVITY_KINDS)
    assert len(ACTIVITY_KINDS) == 15


# -- dedupe -------------------------------------------------------------------------------
def test_a_dedupe_key_is_recorded_once_and_returns_the_first_event(
    activity: ActivityStore,
) -> None:
    key = "alert:age-drift:2024-03-01T12:00:00+00:00"
    first = activity.add_event("alert", reason="first writer", dedupe_key=key)
    again = activity.add_event("alert", reason="second writer", dedupe_key=key, source="monitor")
    assert again == first
    assert activity.event_by_key(key) == first
    assert activity.event_by_key("nope") is None
    assert [e.reason for e in activity.events()] == ["first writer"]


def test_threads_racing_on_one_dedupe_key_store_one_event(activity: ActivityStore) -> None:
    def add(i: int) -> ActivityEvent:
        return activity.add_event("alert", reason=f"thread {i}", dedupe_key="alert:rule:w1")

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(add, range(16)))
    assert len({e.id for e in got}) == 1
    assert len(activity.events()) == 1


_MODES = ("lease", "alert", "record")
_WORKER = """
import sys, time
from pathlib import Path
from conveyor.store.metadata import MetadataStore, NewActivityEvent

url, me, count, sync = sys.argv[1:5]
count, sync = int(count), Path(sync)
store = MetadataStore.open(url)
activity = store.activity
activity.lease("warm-up")
for mode in ("lease", "alert", "record"):
    (sync / f"ready-{mode}-{me}").touch()
    while not (sync / f"go-{mode}").exists():
        time.sleep(0.002)
    for k in range(count):
        if mode == "lease":
            print(mode, k, activity.acquire_lease(f"lease-{k}", me, 60))
        elif mode == "alert":
            print(mode, k, activity.add_event("alert", reason=me, dedupe_key=f"alert:{k}").id)
        else:
            done = activity.record(
                [NewActivityEvent("trigger", reason=me, dedupe_key=f"trigger:{k}")],
                state={f"done:{k}": me},
            )
            print(mode, k, done.written, done.events[0].id)
store.close()
"""


def _race(url: str, tmp_path: Path, workers: int, count: int) -> list[list[str]]:
    """Start ``workers`` processes; for each mode, release them at the same moment to make
    ``count`` calls (lease: acquire_lease; alert: add_event; record: record with state)."""
    sync = tmp_path / "sync"
    sync.mkdir()
    src = Path(metadata_package.__file__).parents[3]
    path = os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, url, f"w{i}", str(count), str(sync)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(workers)
    ]
    try:
        deadline = time.monotonic() + 60
        for mode in _MODES:
            while len(list(sync.glob(f"ready-{mode}-*"))) < workers:
                if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                    break
                time.sleep(0.005)
            (sync / f"go-{mode}").touch()
        outcomes = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [err for p, (_, err) in zip(procs, outcomes, strict=True) if p.returncode] == []
    return [
        [f"w{i}", *line.split()]
        for i, (out, _) in enumerate(outcomes)
        for line in out.splitlines()
        if line
    ]


@pytest.mark.slow
def test_processes_racing_take_a_lease_once_and_record_each_dedupe_key_once(
    activity: ActivityStore, metadata_url: str, tmp_path: Path
) -> None:
    lines = _race(metadata_url, tmp_path, workers=4, count=5)
    for k in range(5):
        key = str(k)
        winners = [who for who, mode, n, won in _rows(lines, "lease") if n == key and won == "True"]
        assert len(winners) == 1, f"lease-{k} went to {winners}"
        held = activity.lease(f"lease-{k}")
        assert held is not None and held.owner == winners[0]

        ids = {event_id for _, _, n, event_id in _rows(lines, "alert") if n == key}
        assert len(ids) == 1, f"alert {k} was stored {len(ids)} times"

        units = [
            (who, written, event_id)
            for who, _, n, written, event_id in _rows(lines, "record")
            if n == key
        ]
        writers = [who for who, written, _ in units if written == "True"]
        assert len(writers) == 1, f"unit {k} was written by {writers}"
        assert len({event_id for _, _, event_id in units}) == 1, "losers get the winner's event"
        assert activity.get_state(f"done:{k}") == writers[0], "state came with the winning event"
    assert len(activity.events(kinds=["alert"])) == len(activity.events(kinds=["trigger"])) == 5


def _rows(lines: list[list[str]], mode: str) -> list[list[str]]:
    return [line for line in lines if line[1] == mode]


# -- record: events, state and links in one transaction -----------------------------------
def test_record_writes_events_state_and_links_together(
    store: MetadataStore, activity: ActivityStore
) -> None:
    assert activity.acquire_lease("controller", "host:1", 30)
    trigger = NewActivityEvent(
        "trigger",
        reason="new span=4 in data/census",
        subject="new-span",
        pipeline="census",
        dedupe_key="trigger:new-span:4",
    )
    done = activity.record(
        [trigger],
        state=lambda made: {"inflight:census": {"trigger_event": made[0].id}, "spans": [4]},
        lease="controller",
        owner="host:1",
    )
    assert done.written
    (event,) = done.events
    assert activity.get_states() == {
        "inflight:census": {"trigger_event": event.id},
        "spans": [4],
    }
    run_id = _run(store, {"trigger": "new-span", "trigger_event": str(event.id)})
    started = NewActivityEvent("run_started", reason="run started", run_id=run_id)
    second = activity.record([started], link={event.id: run_id}, lease="controller", owner="host:1")
    assert activity.event(event.id).run_id == run_id
    assert second.events[0].id > event.id
    assert activity.link_run(event.id, run_id).run_id == run_id, "linking again is a no-op"
    finished = NewActivityEvent("run_finished", reason="ok", run_id=run_id)
    activity.record([finished], state={"inflight:census": None})
    assert activity.get_states() == {"spans": [4]}
    assert [e.kind for e in activity.run_events(run_id)] == [
        "trigger",
        "run_started",
        "run_finished",
    ]


def test_record_is_all_or_nothing(store: MetadataStore, activity: ActivityStore) -> None:
    activity.put_state("cursor", 1)
    taken = activity.add_event("trigger", reason="done before", dedupe_key="trigger:x:1")
    again = activity.record(
        [
            NewActivityEvent("run_started", reason="would be new"),
            NewActivityEvent("trigger", reason="repeat", dedupe_key="trigger:x:1"),
        ],
        state={"cursor": 2},
    )
    assert (again.written, again.events) == (False, (taken,))
    assert activity.get_state("cursor") == 1
    assert [e.id for e in activity.events()] == [taken.id]
    assert activity.add_event("run_started", reason="ids go on").id > taken.id

    run_id, other = _run(store), _run(store)
    activity.link_run(taken.id, run_id)
    unlinked = activity.add_event("trigger", reason="not linked yet")
    before = _everything(activity)
    refusals: list[tuple[Any, type[Exception], str]] = [
        (
            lambda: activity.record(
                [NewActivityEvent("alert", reason="x")], link={taken.id: other}
            ),
            ActivityStoreError,
            f"already linked to run {run_id}, not run {other}",
        ),
        (lambda: activity.link_run(4242, run_id), NotFoundError, "activity event 4242"),
        (lambda: activity.link_run(unlinked.id, 4242), NotFoundError, "run 4242"),
        (
            lambda: activity.record(
                [
                    NewActivityEvent("alert", reason="a", dedupe_key="k"),
                    NewActivityEvent("alert", reason="b", dedupe_key="k"),
                ]
            ),
            ActivityStoreError,
            "dedupe key 'k' is given to two events",
        ),
        (
            lambda: activity.record([NewActivityEvent("alert", reason="x")], state={"bad": {1, 2}}),
            ActivityStoreError,
            "state 'bad' must be JSON data",
        ),
        (
            lambda: activity.record(
                [NewActivityEvent("alert", reason="x")], state=lambda made: {"": 1}
            ),
            ActivityStoreError,
            "non-empty state key",
        ),
        (lambda: activity.record(lease="controller"), ActivityStoreError, "both lease and owner"),
    ]
    for call, error, match in refusals:
        with pytest.raises(error, match=match):
            call()
        assert _everything(activity) == before, match


def test_a_fenced_record_writes_only_under_a_held_lease(activity: ActivityStore) -> None:
    event = NewActivityEvent("trigger", reason="nightly was due")
    with pytest.raises(LeaseLostError, match="lease 'controller' is not held by 'a' \\(nobody"):
        activity.record([event], lease="controller", owner="a")
    assert activity.acquire_lease("controller", "a", 0.3)
    assert activity.record([event], lease="controller", owner="a").written
    time.sleep(0.4)
    with pytest.raises(LeaseLostError, match="it expired at"):
        activity.record([event], state={"k": 1}, lease="controller", owner="a")
    assert activity.acquire_lease("controller", "b", 30), "an expired lease is free"
    with pytest.raises(LeaseLostError, match="'b' holds it since"):
        activity.record([event], lease="controller", owner="a")
    assert len(activity.events()) == 1
    assert activity.get_state("k") is None


# -- leases -------------------------------------------------------------------------------
def test_lease_acquire_renew_release_and_expiry(activity: ActivityStore) -> None:
    assert activity.lease("controller") is None
    assert activity.acquire_lease("controller", "host:1", 30)
    first = activity.lease("controller")
    assert first is not None and first.owner == "host:1"
    assert first.expires_at - first.acquired_at == timedelta(seconds=30)
    assert not first.expired(datetime.now(UTC))
    assert not activity.acquire_lease("controller", "host:2", 30), "held by another"
    assert not activity.renew_lease("controller", "host:2", 30)
    assert not activity.release_lease("controller", "host:2")
    time.sleep(0.01)
    assert activity.acquire_lease("controller", "host:1", timedelta(seconds=60)), "ours again"
    again = activity.lease("controller")
    assert again is not None and again.acquired_at == first.acquired_at
    assert again.heartbeat_at > first.heartbeat_at and again.expires_at > first.expires_at
    assert activity.renew_lease("controller", "host:1", 0.2)
    time.sleep(0.3)
    expired = activity.lease("controller")
    assert expired is not None and expired.expired(datetime.now(UTC))
    assert activity.acquire_lease("controller", "host:2", 30), "an expired lease is taken over"
    taken = activity.lease("controller")
    assert taken is not None and taken.owner == "host:2" and taken.acquired_at > first.acquired_at
    assert not activity.renew_lease("controller", "host:1", 30), "the old owner lost it"
    assert activity.release_lease("controller", "host:2")
    assert activity.lease("controller") is None
    assert activity.acquire_lease("controller", "host:1", 30), "a released lease is free"
    assert taken.to_dict()["owner"] == "host:2"
    for ttl, match in [(0, "positive"), (-1, "positive"), ("5", "seconds or a timedelta")]:
        with pytest.raises(ActivityStoreError, match=match):
            activity.acquire_lease("controller", "host:1", ttl)  # type: ignore[arg-type]
    with pytest.raises(ActivityStoreError, match="non-empty lease owner"):
        activity.acquire_lease("controller", " ", 30)


# -- state --------------------------------------------------------------------------------
def test_state_put_get_delete_and_prefix(activity: ActivityStore) -> None:
    assert activity.get_state("triggers") is None
    assert activity.get_state("triggers", {}) == {}
    activity.put_state("triggers", {"nightly": {"last_fired": "2024-03-01T03:00:00+00:00"}})
    activity.put_state("inflight:census", {"trigger_event": 7})
    activity.put_state("inflight_x", 1)
    activity.put_state("inflight%", 2)
    activity.put_state("triggers", {"nightly": {}})
    assert activity.get_state("triggers") == {"nightly": {}}
    assert activity.get_states("inflight:") == {"inflight:census": {"trigger_event": 7}}
    assert activity.get_states("inflight%") == {"inflight%": 2}
    assert set(activity.get_states()) == {"triggers", "inflight:census", "inflight_x", "inflight%"}
    activity.put_state("inflight:census", None)
    activity.put_state("never-there", None)
    assert "inflight:census" not in activity.get_states()
    with pytest.raises(ActivityStoreError, match="state 'x' must be JSON data"):
        activity.put_state("x", float("inf"))


# -- run labels and the restart protocol --------------------------------------------------
def test_runs_with_label_and_run_events(store: MetadataStore, activity: ActivityStore) -> None:
    trigger = activity.add_event("trigger", reason="nightly was due", subject="nightly")
    labelled = _run(store, {"trigger": "nightly", "trigger_event": str(trigger.id)})
    _run(store, {"trigger": "other", "trigger_event": "999"})
    plain = _run(store)
    found = activity.runs_with_label("trigger_event", str(trigger.id))
    assert [r.id for r in found] == [labelled]
    assert found[0].pipeline_name == "census"
    assert [r.id for r in activity.runs_with_label("trigger", "other")] == [labelled + 1]
    assert activity.runs_with_label("trigger", "nobody") == []
    assert [e.id for e in activity.run_events(labelled)] == [trigger.id], "found by its label"
    assert activity.run_events(plain) == []
    with pytest.raises(NotFoundError, match="run 4242"):
        activity.run_events(4242)


@pytest.mark.slow
def test_conveyor_run_stores_run_labels(tmp_path: Path) -> None:
    spec = tmp_path / "diamond.py"
    spec.write_text(diamond_source())
    pipeline = load_pipeline(f"{spec}:diamond")
    home = tmp_path / "home"
    labels = {"trigger": "nightly", "trigger_event": "12"}
    result = conveyor.run(pipeline, home=home, max_workers=1, run_labels=labels, n=2)
    assert result.ok
    with pytest.raises(ParameterError, match="run label '1bad'"):
        conveyor.run(pipeline, home=home, run_labels={"1bad": "x"})
    with pytest.raises(ParameterError, match="run label 'trigger': the value must be text"):
        conveyor.run(pipeline, home=home, run_labels={"trigger": 3})  # type: ignore[dict-item]
    ws = Workspace.open(load_settings(home=home))
    try:
        (run,) = ws.metadata.list_runs()
        assert run.options["labels"] == labels and run.params == {"n": 2, "factor": 2}
        assert [r.id for r in ws.metadata.activity.runs_with_label("trigger_event", "12")] == [
            run.id
        ]
    finally:
        ws.close()


_CONTROLLER = """
import os, sys
import conveyor
from conveyor.core.loader import load_pipeline
from conveyor.store.metadata import MetadataStore, NewActivityEvent

url, spec, home = sys.argv[1], sys.argv[2], sys.argv[3]
os.environ["CONVEYOR_METADATA_URL"] = url
activity = MetadataStore.open(url).activity
me = f"host:{os.getpid()}"
assert activity.acquire_lease("controller", me, 2)
trigger = NewActivityEvent(
    "trigger", reason="nightly was due", subject="nightly", pipeline="slow",
    dedupe_key="trigger:nightly:2024-03-01T03:00:00+00:00",
)
done = activity.record(
    [trigger], state=lambda made: {"inflight:slow": {"trigger_event": made[0].id}},
    lease="controller", owner=me,
)
event = done.events[0]

class Observer:
    def on_run_start(self, *, run_id, pipeline, steps):
        activity.record(
            [NewActivityEvent("run_started", reason="started", run_id=run_id, pipeline="slow")],
            link={event.id: run_id}, lease="controller", owner=me,
        )
    def on_step_update(self, *, update): pass
    def on_run_end(self, *, run_id, status, error): pass

labels = {"trigger": "nightly", "trigger_event": str(event.id)}
conveyor.run(load_pipeline(spec), home=home, max_workers=1, observer=Observer(), run_labels=labels)
"""


def _recover(activity: ActivityStore, me: str) -> list[int]:
    """The restart half of the protocol in docs/continuous-training.md; returns runs found."""
    found: list[int] = []
    for key, value in activity.get_states("inflight:").items():
        event = activity.event(value["trigger_event"])
        runs = activity.runs_with_label("trigger_event", str(event.id))
        assert len(runs) <= 1, "a trigger event never has two runs"
        if not runs:
            continue  # the crash came before the run existed: start it now (not a duplicate)
        (run,) = runs
        found.append(run.id)
        interrupted = NewActivityEvent(
            "run_interrupted", reason=run.error or "interrupted", run_id=run.id
        )
        activity.record(
            [interrupted], state={key: None}, link={event.id: run.id}, lease="controller", owner=me
        )
    return found


@pytest.mark.slow
def test_a_killed_controller_is_recovered_without_a_duplicate_run(
    metadata_url: str, tmp_path: Path
) -> None:
    spec = tmp_path / "slow.py"
    spec.write_text(SLOW)
    flag = tmp_path / "started.flag"
    home = tmp_path / "home"
    src = Path(metadata_package.__file__).parents[3]
    env = {
        **os.environ,
        "STARTED_FLAG": str(flag),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")])),
    }
    args = [sys.executable, "-c", _CONTROLLER, metadata_url, str(spec), str(home)]
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            if proc.poll() is not None:
                pytest.fail(f"the controller exited early: {proc.communicate()[1]}")
            assert time.monotonic() < deadline, "the slow step never started"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()

    settings = load_settings(home=home, metadata_url=metadata_url)
    ws = Workspace.open(settings)  # marks the run of the dead runner interrupted
    try:
        activity = ws.metadata.activity
        assert not activity.acquire_lease("controller", "restarted", 30), "not expired yet"
        deadline = time.monotonic() + 10
        while not activity.acquire_lease("controller", "restarted", 30):
            assert time.monotonic() < deadline, "the dead controller's lease never expired"
            time.sleep(0.1)
        (run,) = ws.metadata.list_runs()
        assert run.status == RunStatus.INTERRUPTED
        assert _recover(activity, "restarted") == [run.id]
        assert _recover(activity, "restarted") == [], "recovery is done once"
        kinds = [(e.kind, e.run_id) for e in activity.run_events(run.id)]
        assert kinds == [("trigger", run.id), ("run_started", run.id), ("run_interrupted", run.id)]
        assert activity.get_states() == {}
    finally:
        ws.close()


# -- schema -------------------------------------------------------------------------------
def _tables(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            found = inspect(conn)
            return {
                name: (
                    [(c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(name)],
                    sorted(tuple(u["column_names"]) for u in found.get_unique_constraints(name)),
                    sorted(tuple(i["column_names"]) for i in found.get_indexes(name)),
                )
                for name in found.get_table_names()
            }
    finally:
        engine.dispose()


def test_a_version_3_database_upgrades_to_version_4(
    metadata_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    MetadataStore.open(metadata_url).close()
    fresh = _tables(metadata_url)
    assert CT_TABLES <= set(fresh) == set(tables.metadata.tables)
    engine = create_engine(metadata_url)
    tables.metadata.drop_all(engine)
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:3])
        with MetadataStore.open(metadata_url) as old:
            run_id = _run(old)
    v3 = _tables(metadata_url)
    assert not CT_TABLES & set(v3), "version 3 must not create the activity tables"
    with engine.connect() as conn:
        assert migrations.current_version(conn) == 3
    with MetadataStore.open(metadata_url) as upgraded:
        assert upgraded.get_run(run_id).pipeline_name == "census"
        event = upgraded.activity.add_event(
            "run_started", reason="after the upgrade", run_id=run_id
        )
        assert upgraded.activity.run_events(run_id) == [event]
    with engine.connect() as conn:
        assert migrations.current_version(conn) == len(migrations.MIGRATIONS) == 4
    engine.dispose()
    upgraded_schema = _tables(metadata_url)
    assert upgraded_schema == fresh, "an upgraded database must equal a fresh one"
    assert {name: upgraded_schema[name] for name in v3} == v3, "v4 changed a v3 table"
    assert ("dedupe_key",) in fresh["ct_events"][1]
