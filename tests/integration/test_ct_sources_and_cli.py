"""Triggers on real things: span folders, SQLite and PostgreSQL tables, request queue, CLI."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

from conveyor.cli import app
from conveyor.ct import (
    Policy,
    SeenSpan,
    TriggerDecision,
    TriggerError,
    TriggerState,
    Watch,
    advance_state,
    build_context,
    explain_all,
    load_policy,
    load_state,
    observe_spans,
    read_requests,
    remove_request,
    request_manual_run,
    requests_dir,
)
from conveyor.exceptions import ParameterError
from ct_support import add_span, make_project, policy_text

NOW = dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _in_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONVEYOR_ACTOR", "ana")


def _poll(
    policy: Policy, state: TriggerState, now: dt.datetime
) -> tuple[dict[str, TriggerDecision], TriggerState]:
    """One controller poll: look, decide, act on everything, remember."""
    decisions = explain_all(policy, state, now, build_context(policy.all_triggers()))
    return {d.trigger: d for d in decisions}, advance_state(policy, state, decisions, now)


# -- new data in folders ------------------------------------------------------------------------
def test_a_new_span_folder_fires_once_with_its_number_and_source(tmp_path: Path) -> None:
    policy = load_policy(make_project(tmp_path))
    landing = tmp_path / "data" / "census"
    first, state = _poll(policy, TriggerState(), NOW)
    assert not first["new-data"].fire
    assert first["new-data"].reason.endswith("span=1 is taken as already handled")
    add_span(landing, 2)
    add_span(landing, 3)
    (landing / "_staging").mkdir()  # ignored, as ingest ignores it
    second, state = _poll(policy, state, NOW + dt.timedelta(minutes=1))
    fired = second["new-data"]
    assert fired.fire
    assert fired.reason == (
        f"new span span=3 in {landing} after span=1 (1 more new span(s) before it)"
    )
    assert fired.params == {"n_trials": 2, "until_span": 3, "source": str(landing)}
    third, state = _poll(policy, state, NOW + dt.timedelta(minutes=2))
    assert not third["new-data"].fire
    assert third["new-data"].reason == "no new span since span=3"
    assert state.last_span["new-data"].label == "span=3"


def test_date_folders_and_one_file_per_span(tmp_path: Path) -> None:
    days = tmp_path / "days"
    add_span(days, 0, folder="date=2024-02-28")
    logs = tmp_path / "logs"
    logs.mkdir()
    for name in ("day-1.csv", "day-2.csv"):
        (logs / name).write_text("a\n1\n")
    by_date = observe_spans(Watch(str(days)))
    assert [(s.number, s.label) for s in by_date] == [(20240228, "date=2024-02-28")]
    add_span(days, 0, folder="date=2024-03-01")
    assert observe_spans(Watch(str(days)))[-1].number == 20240301
    (logs / "day-10.csv").write_text("a\n3\n")  # natural order: after day-2
    by_file = observe_spans(Watch(str(logs), layout="file"))
    assert [(s.number, s.label) for s in by_file][-1] == (3, "day-10.csv")


def test_an_unreadable_watch_is_explained_and_the_others_still_decide(tmp_path: Path) -> None:
    policy = load_policy(make_project(tmp_path))
    shutil.rmtree(tmp_path / "data" / "census")
    decisions, _ = _poll(policy, TriggerState(), NOW)
    assert not decisions["new-data"].fire
    assert decisions["new-data"].reason.startswith(f"cannot look at {tmp_path / 'data/census'}: ")
    assert decisions["retrain-on-drift"].reason == "alerts age-drift, accuracy-drop not active"


def test_the_census_example_fits_the_schema(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "census" / "training.py"
    changes = {8: f'file = "{example}"', 11: "params = { n_trials = 2, seed = 1 }"}
    policy = load_policy(make_project(tmp_path, policy_text(changes)))
    add_span(tmp_path / "data" / "census", 2)
    state = TriggerState().saw_span("new-data", SeenSpan(1, "span=1"))
    decisions, _ = _poll(policy, state, NOW)
    assert decisions["new-data"].params == {
        "n_trials": 2,
        "seed": 1,
        "until_span": 2,
        "source": str(tmp_path / "data" / "census"),
    }
    # the run's parameters are ones the real pipeline accepts
    policy.pipelines["census"].load().resolve_params(decisions["new-data"].params)


# -- new data in tables -------------------------------------------------------------------------
def _sqlite_policy(tmp_path: Path, column: str = "day") -> Policy:
    changes = {44: f'watch = "sqlite:///{tmp_path}/shop.db"\ntable = "orders"',
               45: f'span_column = "{column}"\nspan_param = "until_span"', 46: ""}  # fmt: skip
    return load_policy(make_project(tmp_path, policy_text(changes)))


def test_a_new_value_in_a_sqlite_span_column_fires(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "shop.db") as db:
        db.execute("CREATE TABLE orders (id INTEGER, day INTEGER)")
        db.executemany("INSERT INTO orders VALUES (?, ?)", [(1, 1), (2, 1), (3, 2)])
    policy = _sqlite_policy(tmp_path)
    first, state = _poll(policy, TriggerState(), NOW)
    assert first["new-data"].reason.endswith(": day=2 is taken as already handled")
    with sqlite3.connect(tmp_path / "shop.db") as db:
        db.execute("INSERT INTO orders VALUES (4, 3)")
    second, state = _poll(policy, state, NOW + dt.timedelta(minutes=1))
    assert second["new-data"].fire
    assert second["new-data"].reason == (
        f"new span day=3 in orders.day at sqlite:///{tmp_path}/shop.db after day=2"
    )
    assert second["new-data"].params["until_span"] == 3


def test_sqlite_dates_and_bad_span_values(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "shop.db") as db:
        db.execute("CREATE TABLE orders (id INTEGER, day TEXT, note TEXT)")
        db.executemany(
            "INSERT INTO orders VALUES (?, ?, ?)",
            [(1, "2024-02-29", "x"), (2, "2024-03-01", "y"), (3, None, "z")],
        )
    url = f"sqlite:///{tmp_path}/shop.db"
    spans = observe_spans(Watch(url, table="orders", span_column="day"))
    assert [(s.number, s.label) for s in spans] == [
        (20240229, "day=2024-02-29"),
        (20240301, "day=2024-03-01"),
    ]
    with pytest.raises(TriggerError, match=r"span column 'note' holds 'x', neither an integer"):
        observe_spans(Watch(url, table="orders", span_column="note"))
    policy = _sqlite_policy(tmp_path, column="missing")
    decisions, _ = _poll(policy, TriggerState(), NOW)
    assert "cannot look at orders.missing at sqlite:///" in decisions["new-data"].reason
    assert "query failed" in decisions["new-data"].reason


def test_a_postgres_date_column(postgres_url: str) -> None:
    engine = create_engine(postgres_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE events (id int, day date)"))
        conn.execute(text("INSERT INTO events VALUES (1, '2024-02-29'), (2, '2024-03-01')"))
    engine.dispose()
    spans = observe_spans(Watch(postgres_url, table="events", span_column="day"))
    assert [(s.number, s.label) for s in spans] == [
        (20240229, "day=2024-02-29"),
        (20240301, "day=2024-03-01"),
    ]


# -- the manual request queue -------------------------------------------------------------------
def test_request_manual_run_writes_one_json_file_per_request(tmp_path: Path) -> None:
    policy = load_policy(make_project(tmp_path))
    home = tmp_path / "home"
    request = request_manual_run(home, policy, "census", {"until_span": "3"}, now=NOW)
    assert request.path == requests_dir(home) / f"{request.id}.json"
    assert request.id.startswith("20240301T120000000000Z-")
    assert json.loads(request.path.read_text()) == {
        "id": request.id,
        "pipeline": "census",
        "params": {"until_span": "3"},
        "requested_at": "2024-03-01T12:00:00+00:00",
        "requested_by": "ana",
    }
    later = request_manual_run(home, policy, "census", now=NOW + dt.timedelta(seconds=1))
    (requests_dir(home) / ".tmp-1-abc.json").write_text("{half")  # a writer mid-way
    assert [r.id for r in read_requests(home)] == [request.id, later.id]
    remove_request(home, request)
    assert [r.id for r in read_requests(home)] == [later.id]


def test_a_request_is_checked_before_anything_is_written(tmp_path: Path) -> None:
    policy = load_policy(make_project(tmp_path))
    home = tmp_path / "home"
    with pytest.raises(TriggerError, match=r"pipeline 'censsu' is not declared in .*conveyor.toml "
                       r"as \[pipelines.censsu\] \(did you mean 'census'\?\)"):  # fmt: skip
        request_manual_run(home, policy, "censsu")
    with pytest.raises(ParameterError, match=r"has no parameter 'until' \(did you mean 'until_s"):
        request_manual_run(home, policy, "census", {"until": "3"})
    with pytest.raises(ParameterError, match=r"parameter 'n_trials' expects int, got 'many'"):
        request_manual_run(home, policy, "census", {"n_trials": "many"})
    with pytest.raises(TriggerError, match=r"has no time zone"):
        request_manual_run(home, policy, "census", now=NOW.replace(tzinfo=None))
    assert not home.exists()


def test_queued_requests_reach_the_manual_trigger_and_are_run_once(tmp_path: Path) -> None:
    policy = load_policy(make_project(tmp_path))
    home = tmp_path / "home"
    request_manual_run(home, policy, "census", {"seed": "5"}, now=NOW)
    # What the controller does: queue -> state, save, then delete the files.
    state = load_state(home).with_requests(read_requests(home))
    state = state.with_requests(read_requests(home))  # a crash before the delete: no duplicate
    decisions, state = _poll(policy, state, NOW + dt.timedelta(seconds=5))
    manual = decisions["manual:census"]
    assert manual.fire and manual.params == {"n_trials": 2, "seed": "5"}
    assert manual.reason.startswith("manual request 20240301T120000000000Z-")
    assert state.pending_manual == ()


def test_a_corrupt_queue_file_is_named(tmp_path: Path) -> None:
    home = tmp_path / "home"
    requests_dir(home).mkdir(parents=True)
    (requests_dir(home) / "junk.json").write_text("[]")
    with pytest.raises(TriggerError, match=r"junk.json is not a manual request .*; move it out"):
        read_requests(home)


# -- the CLI ------------------------------------------------------------------------------------
def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--home", "home", *args])
    return result.exit_code, result.output


def test_policy_check_prints_a_summary(tmp_path: Path) -> None:
    make_project(tmp_path)
    code, output = _cli("policy", "check")
    assert code == 0, output
    summary = "policy OK — 1 pipeline(s), 2 alert rule(s), 3 trigger(s) (+1 implicit manual)"
    assert f"conveyor.toml: {summary}" in output
    assert "cron '*/15 * * * *' (Every 15th minute of every hour)" in output
    code, output = _cli("policy", "check", "--json")
    assert code == 0
    data = json.loads(output)
    assert [t["name"] for t in data["triggers"]] == [
        "retrain-on-drift",
        "nightly",
        "new-data",
        "manual:census",
    ]
    assert data["alerts"][0]["cooldown"] == "30m" and data["alerts"][0]["line"] == 13
    assert not (tmp_path / "home").exists()


def test_policy_check_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    make_project(tmp_path, policy_text({16: 'metric = "acuracy"', 52: "canary_percent = 150"}))
    code, output = _cli("policy", "check")
    assert code == 2
    assert "conveyor.toml has 2 problems" in output
    assert (
        "conveyor.toml:16: [[alerts]] #1 \"age-drift\": metric 'acuracy' is not a metric" in output
    )
    assert "conveyor.toml:52: [controller]: canary_percent must be a number in (0, 100)" in output


def test_policy_check_of_a_separate_file(tmp_path: Path) -> None:
    make_project(tmp_path, name="policy.toml")
    code, output = _cli("policy", "check")
    assert code == 2 and "no conveyor.toml in the current folder" in output
    code, output = _cli("policy", "check", "--policy", "policy.toml")
    assert code == 0 and "policy.toml: policy OK" in output


def test_trigger_dry_run_explains_every_trigger_and_queues_nothing(tmp_path: Path) -> None:
    make_project(tmp_path)
    code, output = _cli("trigger", "census", "-p", "until_span=1", "--dry-run")
    assert code == 0, output
    assert "alerts age-drift, accuracy-drop not active" in output
    assert "cron '*/15 * * * *' starts at this first evaluation; next due at" in output
    assert "first look at" in output
    assert "manual request dry-run by ana" in output
    assert "would start: census; nothing was queued" in output
    assert not (tmp_path / "home").exists()
    code, output = _cli("trigger", "census", "--dry-run", "--json")
    decisions = json.loads(output)
    assert [(d["trigger"], d["fire"]) for d in decisions] == [
        ("retrain-on-drift", False),
        ("nightly", False),
        ("new-data", False),
        ("manual:census", True),
    ]


def test_trigger_queues_a_request(tmp_path: Path) -> None:
    make_project(tmp_path)
    code, output = _cli("trigger", "census", "--param", "until_span=2")
    assert code == 0, output
    assert "queued manual request" in output and "(until_span=2)" in output
    (request,) = read_requests(tmp_path / "home")
    assert (request.pipeline, dict(request.params), request.requested_by) == (
        "census",
        {"until_span": "2"},
        "ana",
    )
    code, output = _cli("trigger", "census", "--dry-run")
    assert f"manual request {request.id} by ana" in output  # the queued one goes first


def test_trigger_refuses_bad_input_with_exit_2(tmp_path: Path) -> None:
    make_project(tmp_path)
    code, output = _cli("trigger", "cenus")
    assert code == 2 and "pipeline 'cenus' is not declared" in output and "'census'" in output
    code, output = _cli("trigger", "census", "-p", "n_trials=many")
    assert code == 2 and "parameter 'n_trials' expects int" in output
    code, output = _cli("trigger", "census", "-p", "oops")
    assert code == 2 and "is not of the form key=value" in output
    make_project(tmp_path, policy_text({38: 'cron = "0 0 31 2 *"'}))
    code, output = _cli("trigger", "census", "--dry-run")
    assert code == 2 and "conveyor.toml:38:" in output and "bad day-of-month" in output
    assert not (tmp_path / "home").exists()
