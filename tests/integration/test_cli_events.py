"""``conveyor events`` and the trigger labels in ``conveyor runs list|show``, on a real home."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cli_support import invoke, json_output, words
from conveyor.cli.app import app
from conveyor.store.metadata import ACTIVITY_KINDS, MetadataStore


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run 1 started by trigger retrain-on-drift (event 2), run 2 by hand, and their events."""
    for name in ("CONVEYOR_HOME", "CONVEYOR_METADATA_URL", "CONVEYOR_ARTIFACT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "home"
    with MetadataStore.open(f"sqlite:///{path / 'metadata.db'}") as store:
        activity = store.activity
        pipeline = store.register_pipeline("census", {}, "h")
        activity.add_event(
            "alert",
            reason="drift of age was 0.31, above 0.1, in 2 windows in a row",
            model="census",
            version=1,
            subject="age-drift",
            details={"feature": "age", "value": 0.31},
            time=datetime.now(UTC) - timedelta(hours=3),
        )
        trigger = activity.add_event(
            "trigger",
            reason="alert age-drift fired",
            pipeline="census",
            subject="retrain-on-drift",
        )
        labels = {"trigger": "retrain-on-drift", "trigger_event": str(trigger.id)}
        run = store.create_run(pipeline, {}, {"labels": labels}, "host", 1)
        store.create_run(pipeline, {}, {}, "host", 1)
        activity.link_run(trigger.id, run.id)
        activity.add_event("run_started", reason="run 1 started", pipeline="census", run_id=run.id)
        activity.add_event("run_finished", reason="run 1 succeeded", run_id=run.id)
        activity.add_event("promoted", reason="canary beat production", model="census", version=2)
        activity.add_event("alert", reason="churn is fine", model="churn", subject="other")
    return path


def cli(home: Path, *args: str) -> tuple[int, str, str]:
    return invoke(app, "--home", str(home), *args)


def cli_json(home: Path, *args: str) -> Any:
    return json_output(cli(home, *args, "--json"))


def _kinds(home: Path, *args: str) -> list[str]:
    return [event["kind"] for event in cli_json(home, "events", *args)]


def test_events_table_shows_every_column_newest_last(home: Path) -> None:
    code, out, err = cli(home, "events")
    assert code == 0, err
    for header in ("time", "kind", "model", "run", "subject", "reason"):
        assert header in out
    rows = [line for line in out.splitlines() if line.startswith("│")]  # the header has ┃
    kinds = [row.split("│")[2].strip() for row in rows]
    assert kinds == ["alert", "trigger", "run_started", "run_finished", "promoted", "alert"]
    trigger_row = rows[1]
    assert "r1" in trigger_row and "retrain-on-drift" in trigger_row
    assert "census:1" in rows[0] and "census:2" in rows[4]
    assert "alert age-drift fired" in out


def test_events_json_is_a_list_of_whole_events(home: Path) -> None:
    events = cli_json(home, "events")
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    first = events[0]
    assert first["kind"] == "alert" and first["details"] == {"feature": "age", "value": 0.31}
    assert (first["model"], first["version"], first["subject"]) == ("census", 1, "age-drift")
    assert datetime.fromisoformat(first["time"]).utcoffset() == timedelta(0)
    assert events[1]["run_id"] == 1 and events[1]["reason"] == "alert age-drift fired"


def test_events_filters(home: Path) -> None:
    assert _kinds(home, "--model", "census") == ["alert", "promoted"]
    assert _kinds(home, "--pipeline", "census") == ["trigger", "run_started"]
    assert _kinds(home, "--kind", "alert", "--kind", "promoted") == ["alert", "promoted", "alert"]
    assert _kinds(home, "--since", "1h")[0] == "trigger", "the 3-hour-old alert is left out"
    assert _kinds(home, "--limit", "2") == ["promoted", "alert"], "the latest two, newest last"
    assert _kinds(home, "--run", "r1") == ["trigger", "run_started", "run_finished"]
    assert _kinds(home, "--model", "nobody") == []


def test_bad_kind_or_duration_exits_2_and_says_what_is_valid(home: Path) -> None:
    code, _, err = cli(home, "events", "--kind", "promote")
    assert code == 2
    assert "unknown activity event kind 'promote' (did you mean 'promoted'?)" in words(err)
    code, _, err = cli(home, "events", "--kind", "zzz")
    assert code == 2
    assert all(kind in err for kind in ACTIVITY_KINDS)
    code, _, err = cli(home, "events", "--since", "yesterday")
    assert code == 2 and "is not a duration" in words(err)
    code, _, err = cli(home, "events", "--run", "a3")
    assert code == 2 and "is not a run id" in words(err)


def test_events_in_a_fresh_folder_print_a_hint_and_create_nothing(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    code, out, _ = cli(fresh, "events")
    assert code == 0 and "no events" in out
    assert cli_json(fresh, "events") == []
    assert not fresh.exists()


def test_runs_list_shows_the_trigger_column_only_when_a_run_has_one(home: Path) -> None:
    code, out, err = cli(home, "runs", "list")
    assert code == 0, err
    header = next(line for line in out.splitlines() if "pipeline" in line)
    assert "trigger" in header
    rows = [line for line in out.splitlines() if line.startswith("│")]  # the header has ┃
    assert rows[0].split("│")[-2].strip() == "-"
    assert rows[1].split("│")[-2].strip() == "retrain-on-drift"
    runs = cli_json(home, "runs", "list")
    assert [r["labels"] for r in runs] == [
        {},
        {"trigger": "retrain-on-drift", "trigger_event": "2"},
    ]
    code, out, _ = cli(home, "runs", "list", "--limit", "1")
    assert code == 0 and "trigger" not in out, "the newest run alone has no trigger"


def test_runs_show_prints_labels_and_the_runs_events(home: Path) -> None:
    code, out, err = cli(home, "runs", "show", "1")
    assert code == 0, err
    assert "labels    trigger=retrain-on-drift trigger_event=2" in out
    events_part = out.split("events", 1)[1]
    for text in ("alert age-drift fired", "run 1 started", "run 1 succeeded"):
        assert text in events_part
    assert "churn is fine" not in out
    shown = cli_json(home, "runs", "show", "1")
    assert shown["labels"] == {"trigger": "retrain-on-drift", "trigger_event": "2"}
    assert [e["kind"] for e in shown["events"]] == ["trigger", "run_started", "run_finished"]
    code, out, _ = cli(home, "runs", "show", "2")
    assert code == 0 and "labels" not in out and "events" not in out
    assert cli_json(home, "runs", "show", "2")["events"] == []
