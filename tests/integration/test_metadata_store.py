"""Contract tests of the metadata store, run against SQLite and PostgreSQL alike.

PostgreSQL tests need ``CONVEYOR_TEST_POSTGRES_URL`` (see the ``postgres_url`` fixture in
``tests/conftest.py``) and are skipped without it.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, inspect, make_url, text

import conveyor.store.metadata as metadata_package
from conveyor.exceptions import MetadataStoreError, NotFoundError
from conveyor.store.metadata import (
    EventKind,
    ExecutionStatus,
    MetadataStore,
    NewArtifact,
    RunStatus,
    migrations,
    open_metadata_store,
)

HOST = "test-host"
DEAD_PID = 999_999_999


def _artifact(uri: str, type_name: str = "Dataset", **properties: object) -> NewArtifact:
    return NewArtifact(type_name, uri, "ab" * 32, 123, dict(properties))


def _run_with_steps(
    store: MetadataStore, steps: list[str], pipeline: str = "demo", ir_hash: str = "h1"
) -> tuple[int, dict[str, int]]:
    pipeline_id = store.register_pipeline(pipeline, {"steps": steps}, ir_hash)
    run = store.create_run(pipeline_id, {}, {}, HOST, os.getpid())
    return run.id, store.create_executions(run.id, [(s, s.upper(), {}) for s in steps])


def _produce(store: MetadataStore, execution_id: int, key: str, uri: str, **inputs: int) -> int:
    store.start_execution(execution_id, key, {"code": key}, "miss: new", 1, None)
    made = store.succeed_execution(execution_id, inputs, {"out": _artifact(uri)})
    return made["out"].id


def _aware_utc(value: datetime | None) -> bool:
    return value is not None and value.utcoffset() == timedelta(0)


# -- pipelines and runs -------------------------------------------------------------------
def test_register_pipeline_is_idempotent_per_name_and_hash(store: MetadataStore) -> None:
    first = store.register_pipeline("demo", {"steps": ["a"]}, "h1")
    assert store.register_pipeline("demo", {"steps": ["a"]}, "h1") == first
    assert store.register_pipeline("demo", {"steps": ["b"]}, "h2") != first
    record = store.get_pipeline(first)
    assert (record.name, record.ir_hash, record.ir) == ("demo", "h1", {"steps": ["a"]})
    assert _aware_utc(record.created_at)
    with pytest.raises(NotFoundError, match="pipeline 4242"):
        store.get_pipeline(4242)


def test_create_run_records_a_running_run(store: MetadataStore) -> None:
    pipeline_id = store.register_pipeline("demo", {}, "h1")
    before = datetime.now(UTC)
    run = store.create_run(pipeline_id, {"lr": 0.1, "tags": ["x"]}, {"workers": 2}, HOST, 77)
    assert run.status is RunStatus.RUNNING
    assert (run.pipeline_id, run.pipeline_name, run.host, run.pid) == (
        pipeline_id,
        "demo",
        HOST,
        77,
    )
    assert (run.params, run.options, run.ended_at, run.error) == (
        {"lr": 0.1, "tags": ["x"]},
        {"workers": 2},
        None,
        None,
    )
    assert _aware_utc(run.created_at) and _aware_utc(run.heartbeat_at)
    assert before - timedelta(seconds=5) <= run.created_at <= datetime.now(UTC)
    assert store.get_run(run.id) == run
    with pytest.raises(NotFoundError, match="run 42"):
        store.get_run(42)
    with pytest.raises(NotFoundError, match="pipeline 4242"):
        store.create_run(4242, {}, {}, HOST, 1)


def test_heartbeat_and_finish_run(store: MetadataStore) -> None:
    run_id, _ = _run_with_steps(store, ["a"])
    first_beat = store.get_run(run_id).heartbeat_at
    assert first_beat is not None
    time.sleep(0.01)
    store.heartbeat(run_id)
    beat = store.get_run(run_id).heartbeat_at
    assert beat is not None and beat > first_beat
    store.finish_run(run_id, RunStatus.FAILED, "step a failed")
    run = store.get_run(run_id)
    assert (run.status, run.error) == (RunStatus.FAILED, "step a failed")
    assert _aware_utc(run.ended_at)
    with pytest.raises(NotFoundError, match="run 42"):
        store.heartbeat(42)
    with pytest.raises(NotFoundError, match="run 42"):
        store.finish_run(42, RunStatus.SUCCEEDED)


def test_list_runs_newest_first_with_filters(store: MetadataStore) -> None:
    a1, _ = _run_with_steps(store, ["a"], pipeline="alpha")
    b1, _ = _run_with_steps(store, ["a"], pipeline="beta")
    a2, _ = _run_with_steps(store, ["a"], pipeline="alpha", ir_hash="h2")
    store.finish_run(a1, RunStatus.SUCCEEDED)
    assert [r.id for r in store.list_runs()] == [a2, b1, a1]
    assert [r.id for r in store.list_runs(limit=2)] == [a2, b1]
    assert [r.id for r in store.list_runs(pipeline_name="alpha")] == [a2, a1]
    assert [r.id for r in store.list_runs(status=RunStatus.RUNNING)] == [a2, b1]
    assert store.list_runs(pipeline_name="alpha", status=RunStatus.FAILED) == []


# -- executions ---------------------------------------------------------------------------
def test_execution_lifecycle(store: MetadataStore) -> None:
    run_id, ids = _run_with_steps(store, ["c", "a", "b"])
    listed = store.list_executions(run_id)
    assert [e.step_name for e in listed] == ["c", "a", "b"]
    assert [e.id for e in listed] == [ids["c"], ids["a"], ids["b"]]
    assert all(e.status is ExecutionStatus.PENDING and e.attempts == 0 for e in listed)

    store.start_execution(ids["a"], "key-a", {"code": "1"}, "miss: new", 1, "file:///a.log")
    started = store.get_execution(ids["a"])
    assert (started.status, started.attempts, started.cache_key) == (
        ExecutionStatus.RUNNING,
        1,
        "key-a",
    )
    assert (started.cache_key_parts, started.log_uri) == ({"code": "1"}, "file:///a.log")
    assert _aware_utc(started.started_at) and started.ended_at is None

    store.fail_execution(ids["a"], "ValueError: boom", "Traceback ...", attempts=1)
    failed = store.get_execution(ids["a"])
    assert (failed.status, failed.error, failed.traceback) == (
        ExecutionStatus.FAILED,
        "ValueError: boom",
        "Traceback ...",
    )
    store.start_execution(ids["a"], "key-a", {"code": "1"}, "miss: new", 2, None)
    retried = store.get_execution(ids["a"])
    assert (retried.status, retried.attempts, retried.error) == (ExecutionStatus.RUNNING, 2, None)

    store.skip_execution(ids["b"], "upstream step a failed")
    skipped = store.get_execution(ids["b"])
    assert (skipped.status, skipped.error) == (ExecutionStatus.SKIPPED, "upstream step a failed")

    with pytest.raises(NotFoundError, match="execution 4242"):
        store.get_execution(4242)
    with pytest.raises(NotFoundError, match="execution 4242"):
        store.start_execution(4242, None, None, None, 1, None)
    with pytest.raises(NotFoundError, match="run 42"):
        store.list_executions(42)
    with pytest.raises(NotFoundError, match="run 42"):
        store.create_executions(42, [("a", "A", {})])
    with pytest.raises(MetadataStoreError, match="refused a change"):
        store.create_executions(run_id, [("a", "A", {})])  # step names are unique in a run


def test_succeed_execution_records_artifacts_and_lineage_both_ways(store: MetadataStore) -> None:
    _, ids = _run_with_steps(store, ["ingest", "train"])
    data = _produce(store, ids["ingest"], "k-ingest", "file:///data")
    store.start_execution(ids["train"], "k-train", {"code": "t"}, "miss: new", 1, None)
    made = store.succeed_execution(
        ids["train"],
        {"data": data},
        {"model": _artifact("file:///model", "Model", accuracy=0.9), "report": _artifact("r")},
    )
    model = made["model"]
    assert (model.type_name, model.uri, model.properties) == (
        "Model",
        "file:///model",
        {"accuracy": 0.9},
    )
    assert store.get_artifact(model.id) == model
    assert store.get_execution(ids["train"]).status is ExecutionStatus.SUCCEEDED

    assert {n: a.id for n, a in store.execution_inputs(ids["train"]).items()} == {"data": data}
    assert store.execution_outputs(ids["train"]) == made
    assert store.execution_inputs(ids["ingest"]) == {}
    # Downstream: who consumed the dataset? Upstream: who produced it?
    data_events = store.events_for_artifact(data)
    assert [(e.execution_id, e.kind, e.name) for e in data_events] == [
        (ids["ingest"], EventKind.OUTPUT, "out"),
        (ids["train"], EventKind.INPUT, "data"),
    ]
    assert all(_aware_utc(e.created_at) for e in data_events)
    train_events = store.events_for_execution(ids["train"])
    assert [(e.kind, e.name) for e in train_events] == [
        (EventKind.INPUT, "data"),
        (EventKind.OUTPUT, "model"),
        (EventKind.OUTPUT, "report"),
    ]

    assert [a.id for a in store.list_artifacts()] == [made["report"].id, model.id, data]
    assert [a.id for a in store.list_artifacts(type_name="Model")] == [model.id]
    assert len(store.list_artifacts(limit=1)) == 1
    for call in (store.get_artifact, store.events_for_artifact):
        with pytest.raises(NotFoundError, match="artifact 4242"):
            call(4242)
    for call in (store.execution_inputs, store.execution_outputs, store.events_for_execution):
        with pytest.raises(NotFoundError, match="execution 4242"):
            call(4242)


def test_succeed_execution_is_all_or_nothing(store: MetadataStore) -> None:
    _, ids = _run_with_steps(store, ["a"])
    store.start_execution(ids["a"], "k", {}, "miss", 1, None)
    with pytest.raises(NotFoundError, match="artifact 4242"):
        store.succeed_execution(ids["a"], {"data": 4242}, {"out": _artifact("file:///x")})
    assert store.get_execution(ids["a"]).status is ExecutionStatus.RUNNING
    assert store.list_artifacts() == []
    with pytest.raises(NotFoundError, match="execution 4242"):
        store.succeed_execution(4242, {}, {"out": _artifact("file:///x")})
    assert store.list_artifacts() == []


def test_find_cached_and_cached_executions_reuse_artifacts(store: MetadataStore) -> None:
    assert store.find_cached("k-train") is None
    _, first = _run_with_steps(store, ["ingest", "train"])
    data = _produce(store, first["ingest"], "k-ingest", "file:///data")
    model = _produce(store, first["train"], "k-train", "file:///model", data=data)

    hit = store.find_cached("k-train")
    assert hit is not None
    origin, outputs = hit
    assert origin.id == first["train"] and {n: a.id for n, a in outputs.items()} == {"out": model}

    _, second = _run_with_steps(store, ["ingest", "train"])
    store.cache_execution(
        second["train"],
        "k-train",
        {"code": "k-train"},
        "hit",
        origin.id,
        {"data": data},
        {"out": model},
    )
    cached = store.get_execution(second["train"])
    assert (cached.status, cached.cached_from, cached.cache_key) == (
        ExecutionStatus.CACHED,
        first["train"],
        "k-train",
    )
    assert (cached.cache_explanation, cached.cache_key_parts) == ("hit", {"code": "k-train"})
    assert _aware_utc(cached.started_at) and _aware_utc(cached.ended_at)
    assert {n: a.id for n, a in store.execution_outputs(second["train"]).items()} == {"out": model}
    assert {n: a.id for n, a in store.execution_inputs(second["train"]).items()} == {"data": data}
    assert [e.execution_id for e in store.events_for_artifact(model)] == [
        first["train"],
        second["train"],
    ]
    # Cached executions are never cache sources; the latest succeeded one is.
    hit = store.find_cached("k-train")
    assert hit is not None and hit[0].id == first["train"]
    _, third = _run_with_steps(store, ["train"])
    newer = _produce(store, third["train"], "k-train", "file:///model2")
    hit = store.find_cached("k-train")
    assert hit is not None and hit[0].id == third["train"] and hit[1]["out"].id == newer

    with pytest.raises(NotFoundError, match="artifact 4242"):
        store.cache_execution(third["train"], "k", {}, "hit", first["train"], {}, {"out": 4242})
    with pytest.raises(NotFoundError, match="execution 4242"):
        store.cache_execution(4242, "k", {}, "hit", first["train"], {}, {"out": model})


def test_previous_execution_looks_at_earlier_runs_of_the_same_pipeline_name(
    store: MetadataStore,
) -> None:
    old_run, old = _run_with_steps(store, ["a", "b"], ir_hash="h1")
    store.start_execution(old["a"], "k1", {"code": "1"}, "miss", 1, None)
    store.start_execution(old["b"], None, None, None, 1, None)  # cache disabled: no parts
    other_run, other = _run_with_steps(store, ["a"], pipeline="other")
    store.start_execution(other["a"], "k9", {"code": "9"}, "miss", 1, None)
    mid_run, mid = _run_with_steps(store, ["a", "b"], ir_hash="h2")  # same name, new IR
    store.start_execution(mid["a"], "k2", {"code": "2"}, "miss", 1, None)
    now_run, now = _run_with_steps(store, ["a", "b"], ir_hash="h2")
    store.start_execution(now["a"], "k3", {"code": "3"}, "miss", 1, None)

    previous = store.previous_execution("demo", "a", now_run)
    assert previous is not None and previous.id == mid["a"]
    previous = store.previous_execution("demo", "a", mid_run)
    assert previous is not None and previous.id == old["a"]
    assert store.previous_execution("demo", "a", old_run) is None
    assert store.previous_execution("demo", "b", now_run) is None
    assert store.previous_execution("nope", "a", now_run) is None
    assert other_run < mid_run


# -- recovery -----------------------------------------------------------------------------
def test_recover_interrupted_marks_only_runs_whose_runner_is_gone(store: MetadataStore) -> None:
    pipeline_id = store.register_pipeline("demo", {}, "h1")

    def run(host: str, pid: int) -> tuple[int, dict[str, int]]:
        run_id = store.create_run(pipeline_id, {}, {}, host, pid).id
        steps = [("done", "D", {}), ("busy", "B", {}), ("todo", "T", {})]
        return run_id, store.create_executions(run_id, steps)

    stale_run, _ = run("other-host", os.getpid())  # its heartbeat will be old
    time.sleep(0.6)
    dead_run, dead = run(HOST, DEAD_PID)
    _produce(store, dead["done"], "k", "file:///done")
    store.start_execution(dead["busy"], "k2", {}, "miss", 1, None)
    alive_run, _ = run(HOST, os.getpid())
    remote_dead_run, _ = run("other-host", DEAD_PID)  # pid means nothing on another host
    finished_run, _ = run(HOST, DEAD_PID)
    store.finish_run(finished_run, RunStatus.SUCCEEDED)

    recovered = store.recover_interrupted(HOST, lambda pid: pid != DEAD_PID, stale_after_s=0.5)
    assert recovered == [stale_run, dead_run]
    statuses = {r.id: r.status for r in store.list_runs()}
    assert statuses == {
        stale_run: RunStatus.INTERRUPTED,
        dead_run: RunStatus.INTERRUPTED,
        alive_run: RunStatus.RUNNING,
        remote_dead_run: RunStatus.RUNNING,
        finished_run: RunStatus.SUCCEEDED,
    }
    interrupted = store.get_run(dead_run)
    assert _aware_utc(interrupted.ended_at) and "gone" in (interrupted.error or "")
    assert "heartbeat" in (store.get_run(stale_run).error or "")
    assert {e.step_name: e.status for e in store.list_executions(dead_run)} == {
        "done": ExecutionStatus.SUCCEEDED,
        "busy": ExecutionStatus.INTERRUPTED,
        "todo": ExecutionStatus.INTERRUPTED,
    }
    assert all(e.status is ExecutionStatus.PENDING for e in store.list_executions(finished_run)), (
        "a finished run is never touched"
    )
    assert store.recover_interrupted(HOST, lambda pid: pid != DEAD_PID, 0.5) == []


def test_concurrent_recoveries_mark_each_run_once(store: MetadataStore) -> None:
    pipeline_id = store.register_pipeline("demo", {}, "h1")
    dead = [store.create_run(pipeline_id, {}, {}, HOST, DEAD_PID).id for _ in range(10)]
    results: list[list[int]] = []

    def recover() -> None:
        results.append(store.recover_interrupted(HOST, lambda pid: False, 3600))

    threads = [threading.Thread(target=recover) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    marked = [run_id for result in results for run_id in result]
    assert sorted(marked) == dead


# -- contexts -----------------------------------------------------------------------------
def test_contexts_group_executions_and_artifacts(store: MetadataStore) -> None:
    _, ids = _run_with_steps(store, ["a", "b"])
    art = _produce(store, ids["a"], "k", "file:///a")
    exp = store.put_context("experiment", "churn", {"owner": "ana"})
    assert store.put_context("experiment", "churn", {"owner": "bob"}) == exp
    other = store.put_context("experiment", "fraud", {})
    tag = store.put_context("tag", "churn", {})
    assert len({exp, other, tag}) == 3

    for _ in range(2):  # associating again is a no-op
        store.associate(exp, ids["b"])
        store.associate(exp, ids["a"])
        store.attribute(exp, art)
    assert [e.id for e in store.context_executions(exp)] == [ids["a"], ids["b"]]
    assert [a.id for a in store.context_artifacts(exp)] == [art]
    assert store.context_executions(other) == [] and store.context_artifacts(other) == []

    listed = store.list_contexts(type_name="experiment")
    assert [(c.id, c.name, c.properties) for c in listed] == [
        (exp, "churn", {"owner": "ana"}),
        (other, "fraud", {}),
    ]
    assert [c.id for c in store.list_contexts()] == [exp, other, tag]
    assert _aware_utc(listed[0].created_at)
    with pytest.raises(NotFoundError, match="context 4242"):
        store.associate(4242, ids["a"])
    with pytest.raises(NotFoundError, match="execution 4242"):
        store.associate(exp, 4242)
    with pytest.raises(NotFoundError, match="artifact 4242"):
        store.attribute(exp, 4242)
    with pytest.raises(NotFoundError, match="context 4242"):
        store.context_executions(4242)
    with pytest.raises(NotFoundError, match="context 4242"):
        store.context_artifacts(4242)


# -- opening, schema versions -------------------------------------------------------------
def _set_version(url: str, version: int) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE schema_version SET version = :v"), {"v": version})
    engine.dispose()


def test_schema_newer_than_the_code_is_refused(metadata_url: str) -> None:
    open_metadata_store(metadata_url).close()
    known = len(migrations.MIGRATIONS)
    _set_version(metadata_url, known + 1)
    expected = (
        f"schema version {known + 1} is newer than this conveyor supports \\({known}\\); "
        "upgrade conveyor"
    )
    with pytest.raises(MetadataStoreError, match=expected):
        MetadataStore.open(metadata_url)


def test_old_schema_is_upgraded_in_place(
    metadata_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1 = migrations.MIGRATIONS[0]
    calls: list[str] = []

    def v2(conn: Connection) -> None:
        calls.append("v2")
        conn.execute(text("ALTER TABLE runs ADD COLUMN note TEXT"))

    monkeypatch.setattr(migrations, "MIGRATIONS", [v1])
    with MetadataStore.open(metadata_url) as old:
        run_id, _ = _run_with_steps(old, ["a"])

    monkeypatch.setattr(migrations, "MIGRATIONS", [v1, v2])
    with MetadataStore.open(metadata_url) as upgraded:
        assert upgraded.get_run(run_id).pipeline_name == "demo"  # data survived
    MetadataStore.open(metadata_url).close()
    assert calls == ["v2"], "each migration runs once"
    engine = create_engine(metadata_url)
    with engine.connect() as conn:
        assert migrations.current_version(conn) == 2
        assert "note" in {c["name"] for c in inspect(conn).get_columns("runs")}
    engine.dispose()


def test_unreachable_postgres_fails_fast_and_masks_the_password() -> None:
    started = time.monotonic()
    with pytest.raises(MetadataStoreError) as caught:
        MetadataStore.open("postgresql+psycopg://postgres:s3cret@127.0.0.1:1/test")
    assert time.monotonic() - started < 10
    message = str(caught.value)
    masked = "postgresql+psycopg://postgres:***@127.0.0.1:1/test"
    assert message.startswith(f"cannot connect to the metadata database {masked}: ")
    assert "s3cret" not in message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://root@localhost/db", "unsupported metadata database URL mysql://"),
        ("definitely not a url", "invalid metadata database URL"),
    ],
)
def test_unsupported_urls_are_refused(url: str, expected: str) -> None:
    with pytest.raises(MetadataStoreError, match=expected):
        MetadataStore.open(url)


@pytest.mark.postgres
def test_plain_postgresql_url_uses_psycopg3(postgres_url: str) -> None:
    plain = make_url(postgres_url).set(drivername="postgresql")
    with MetadataStore.open(plain.render_as_string(hide_password=False)) as store:
        assert store.url.startswith("postgresql+psycopg://")
        assert store.register_pipeline("demo", {}, "h") == 1


def test_sqlite_creates_its_folder_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "metadata.db"
    with open_metadata_store(f"sqlite:///{path}") as store:
        store.register_pipeline("demo", {}, "h")
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_in_memory_sqlite_works_from_several_threads() -> None:
    with MetadataStore.open("sqlite:///:memory:") as store:
        _hammer_from_threads(store)


def test_closed_store_refuses_work(store: MetadataStore) -> None:
    store.close()
    with pytest.raises(MetadataStoreError, match="is closed"):
        store.list_runs()


# -- concurrency ----------------------------------------------------------------------------
def _hammer_from_threads(store: MetadataStore, threads: int = 4, steps: int = 10) -> None:
    run_id, ids = _run_with_steps(store, [f"s{i}" for i in range(threads * steps)])
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(offset, offset + steps):
                store.heartbeat(run_id)
                _produce(store, ids[f"s{i}"], f"k{i}", f"file:///{i}")
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(t * steps,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert errors == []
    statuses = {e.status for e in store.list_executions(run_id)}
    assert statuses == {ExecutionStatus.SUCCEEDED}
    assert len(store.list_artifacts(limit=1000)) == threads * steps


def test_threads_share_one_store(store: MetadataStore) -> None:
    _hammer_from_threads(store)


_WORKER = """
import os, socket, sys, time
from pathlib import Path
from conveyor.store.metadata import MetadataStore, NewArtifact, RunStatus

url, index, steps, sync = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
(sync / f"ready-{index}").touch()
while not (sync / "go").exists():
    time.sleep(0.002)
store = MetadataStore.open(url)  # all at once, on a fresh database: migrations race too
pipeline = store.register_pipeline("concurrent", {"steps": steps}, "hash")
run = store.create_run(pipeline, {"worker": index}, {}, socket.gethostname(), os.getpid())
ids = store.create_executions(run.id, [(f"s{i}", "C", {"i": i}) for i in range(steps)])
context = store.put_context("experiment", "concurrency", {})
store.recover_interrupted(socket.gethostname(), lambda pid: True, 3600)
previous = None
for i in range(steps):
    store.start_execution(ids[f"s{i}"], f"k{index}-{i}", {"i": i}, "miss", 1, None)
    new = {"data": NewArtifact("Dataset", f"mem://{index}/{i}", "0" * 64, i)}
    inputs = {"data": previous} if previous is not None else {}
    previous = store.succeed_execution(ids[f"s{i}"], inputs, new)["data"].id
store.associate(context, ids["s0"])
store.heartbeat(run.id)
store.finish_run(run.id, RunStatus.SUCCEEDED)
store.close()
"""


def test_many_processes_write_at_once(metadata_url: str, tmp_path: Path) -> None:
    workers, steps = 8, 12  # 7 + 2 * steps = 31 write transactions per process
    sync = tmp_path / "sync"
    sync.mkdir()
    src = Path(metadata_package.__file__).parents[3]
    path = os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, metadata_url, str(i), str(steps), str(sync)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(workers)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(sync.glob("ready-*"))) < workers and time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.01)
        (sync / "go").touch()
        outcomes = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    failures = [err for p, (_, err) in zip(procs, outcomes, strict=True) if p.returncode != 0]
    assert failures == []

    with MetadataStore.open(metadata_url) as store:
        runs = store.list_runs(limit=100)
        assert len(runs) == workers
        assert {r.status for r in runs} == {RunStatus.SUCCEEDED}
        assert len({r.pipeline_id for r in runs}) == 1
        executions = [e for r in runs for e in store.list_executions(r.id)]
        assert len(executions) == workers * steps
        assert {e.status for e in executions} == {ExecutionStatus.SUCCEEDED}
        assert len(store.list_artifacts(limit=10_000)) == workers * steps
        events = [ev for e in executions for ev in store.events_for_execution(e.id)]
        assert sum(ev.kind is EventKind.OUTPUT for ev in events) == workers * steps
        assert sum(ev.kind is EventKind.INPUT for ev in events) == workers * (steps - 1)
        (context,) = store.list_contexts()
        assert len(store.context_executions(context.id)) == workers
