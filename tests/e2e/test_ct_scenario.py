"""Acceptance: the continuous-training loop closes by itself, end to end, on small data.

The story of ``make demo`` (``examples/ct_story``) is played once at its small size -- a real
controller polling between batches of real HTTP requests to a real server, real pipeline runs
in worker processes, ground truth posted one batch late -- and each acceptance condition of
the continuous-training issue is checked against what the stores recorded, not against what
the story printed:

1. drift is detected on the shifted feature in the first full window after the shift;
2. the retrain it caused started with the trigger's reason recorded and linked both ways;
3. the retrained model was blessed, canaried and promoted;
4. online accuracy after the promotion is back within 0.02 of its level before the drift;
5. a deliberately bad candidate was rolled back automatically, production unchanged.

Nothing here depends on timing: the story is seeded, routes each request by its own sticky
key, and polls the controller at fixed points of the traffic, so the same windows hold the
same predictions on every machine.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from conveyor.cli.app import app as cli_app
from conveyor.config import load_settings
from conveyor.monitoring import Monitor, WindowSpec
from conveyor.monitoring.results import WindowResult
from conveyor.registry import ModelRegistry
from conveyor.store.metadata.activity_records import ActivityEvent, run_labels
from conveyor.store.metadata.records import RunStatus
from conveyor.store.metadata.registry_records import ALIAS_MOVES, AuditAction
from conveyor.store.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # the story: ~1 min, 3 at most

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MODEL = "income"
CONTROLLER = "conveyor-controller"
Played = tuple[Any, Workspace]  # ct_story's StoryResult (examples are not importable statically)


def _ct_story() -> Any:
    """The ``ct_story`` package of the examples folder."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import ct_story
    finally:
        sys.path.remove(str(EXAMPLES))
    return ct_story


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Played]:
    """The story, played once for every test of this module, and its workspace."""
    ct_story = _ct_story()
    root = tmp_path_factory.mktemp("ct-scenario")
    output = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        for name in ("CONVEYOR_HOME", "CONVEYOR_METADATA_URL", "CONVEYOR_ARTIFACT_URL"):
            patch.delenv(name, raising=False)
        patch.chdir(root)
        try:
            result = ct_story.run_story(
                root / "story", size=ct_story.SMALL, console=Console(file=output)
            )
        except Exception:
            print(output.getvalue())  # the narration says how far it got
            raise
        workspace = Workspace.open(load_settings(home=result.folder))
        try:
            yield result, workspace
        finally:
            workspace.close()


def _events(ws: Workspace, kind: str, **where: object) -> list[ActivityEvent]:
    found = ws.metadata.activity.events(kinds=[kind])
    return [e for e in found if all(getattr(e, k) == v for k, v in where.items())]


def _one(ws: Workspace, kind: str, **where: object) -> ActivityEvent:
    found = _events(ws, kind, **where)
    assert len(found) == 1, f"expected one {kind} event with {where}, found {found}"
    return found[0]


def _windows(ws: Workspace, window: int) -> list[WindowResult]:
    """Every window of the model, cut as the story's policy cuts them, all labels in."""
    monitor = Monitor(ws, WindowSpec(size=window), dt.timedelta(0), [], min_coverage=1.0)
    return monitor.results(MODEL)


def _served(windows: list[WindowResult], version: int) -> list[WindowResult]:
    found = [w for w in windows if w.version == version and w.route_kind == "served"]
    return sorted((w for w in found if w.complete), key=lambda w: w.index)


def test_drift_is_detected_on_the_shifted_feature_in_the_first_full_window(story: Played) -> None:
    result, ws = story
    shift = result.marks["shift"]
    alert = _one(ws, "alert", subject="age-drift")
    data = alert.details["alert"]
    assert (alert.model, alert.version, data["metric"], data["feature"]) == (
        MODEL,
        result.versions["first"],
        "drift",
        "age",
    )
    assert data["value"] > data["threshold"] == 0.25  # the schema's psi threshold
    v1 = _served(_windows(ws, result.size.window), result.versions["first"])
    after = [w for w in v1 if w.start >= shift]
    before = [w for w in v1 if w.start < shift]
    first_full = after[0]
    assert before and before[-1].end < shift  # the shift began on a window boundary
    # the alert's run of breaking windows is exactly that first full window of shifted rows
    assert [w["index"] for w in data["details"]["windows"]] == [first_full.index]
    assert dt.datetime.fromisoformat(data["window_start"]) == first_full.start
    assert dt.datetime.fromisoformat(data["window_end"]) == first_full.end
    assert first_full.metrics["drift:age"] == pytest.approx(data["value"])
    # ... and it was raised before the next window of that version was complete
    assert alert.time < after[1].end
    # no window before the shift broke the rule: the ordinary days raised no alert at all
    assert all(not w.drift["drift:age"].drifted for w in before)
    assert not [e for e in ws.metadata.activity.events(kinds=["alert"]) if e.time < shift]


def _retrain_of(ws: Workspace, trigger_name: str, rule: str) -> int:
    """The run started by ``trigger_name``, its trigger event checked: reason and links."""
    trigger = _one(ws, "trigger", subject=trigger_name)
    assert trigger.pipeline == "retrain" and trigger.model == MODEL
    assert trigger.reason.startswith(f"alert {rule}: ")  # why, in words
    (decision,) = trigger.details["decisions"]
    assert decision["kind"] == "alert" and decision["fire"]
    assert [a["rule"] for a in decision["details"]["alerts"]] == [rule]
    alert = _one(ws, "alert", subject=rule)
    assert decision["details"]["alerts"][0]["window_end"] == alert.details["alert"]["window_end"]
    run_id = trigger.run_id
    assert run_id is not None  # the trigger links to its run ...
    run = ws.metadata.get_run(run_id)
    assert run.status == RunStatus.SUCCEEDED
    # ... and the run back to the trigger
    assert run_labels(run) == {"trigger": trigger_name, "trigger_event": str(trigger.id)}
    started = _one(ws, "run_started", run_id=run_id)
    assert started.details["trigger_event"] == trigger.id
    assert [e.kind for e in ws.metadata.activity.run_events(run_id)][:2] == [
        "trigger",
        "run_started",
    ]
    return run_id


def test_each_retrain_started_with_its_reason_recorded_and_linked(story: Played) -> None:
    result, ws = story
    registry = ModelRegistry(ws)
    for trigger_name, rule, role in (
        ("retrain-on-drift", "age-drift", "shift"),
        ("retrain-on-accuracy-drop", "accuracy-drop", "concept"),
    ):
        run_id = _retrain_of(ws, trigger_name, rule)
        # lineage from the model version back to the reason it was trained
        version = registry.get(MODEL, result.versions[role])
        assert version.run_id == run_id
        assert _one(ws, "registered", version=version.version).run_id == run_id
    shift_trigger = _one(ws, "trigger", subject="retrain-on-drift")
    assert shift_trigger.time >= _one(ws, "alert", subject="age-drift").time
    # the same link as a user sees it: `conveyor models show income:N` says why it was trained
    ref = f"{MODEL}:{result.versions['shift']}"
    done = CliRunner().invoke(cli_app, ["--home", str(result.folder), "models", "show", ref])
    assert done.exit_code == 0, done.output
    assert "trained   because alert age-drift" in " ".join(done.output.split("\n"))
    shown = CliRunner().invoke(
        cli_app, ["--home", str(result.folder), "models", "show", ref, "--json"]
    )
    assert json.loads(shown.output)["trigger"]["id"] == shift_trigger.id


def test_the_retrained_models_are_blessed_canaried_and_promoted(story: Played) -> None:
    result, ws = story
    registry = ModelRegistry(ws)
    audit = registry.history(MODEL)
    versions = result.versions
    for role, before in (("shift", versions["first"]), ("concept", versions["shift"])):
        version = versions[role]
        record = registry.get(MODEL, version)
        assert record.blessing is not None and record.blessing["blessed"] is True
        assert record.blessing["baseline_version"] == f"{MODEL}:{before}"
        canary = _one(ws, "canary_started", version=version)
        assert canary.details == {"percent": result.size.canary_percent, "production": before}
        windows = _events(ws, "canary_window", version=version)
        assert len(windows) == result.size.promote_after
        promoted = _one(ws, "promoted", version=version)
        assert promoted.time >= max(w.time for w in windows) >= canary.time
        assert promoted.details["production_before"] == before
        assert promoted.details["worse_by"] <= result.size.tolerance
        # the registry moved through its audited API: canary alias, split, promotion, no split
        mine = sorted((a for a in audit if a.actor == CONTROLLER), key=lambda a: a.id)
        canary_set, promote = [a for a in mine if a.to_version == version]
        assert (canary_set.action, canary_set.alias) == (AuditAction.PROMOTE, "canary")
        assert (promote.action, promote.alias) == (AuditAction.PROMOTE, "production")
        assert (promote.from_version, promote.to_version) == (before, version)
        assert canary_set.at >= canary.time and promote.at >= promoted.time
        between = [a.action for a in mine if canary_set.id < a.id < promote.id]
        assert between == [AuditAction.TRAFFIC]  # the canary's split, nothing else
    assert registry.aliases(MODEL)["production"] == result.versions["concept"]


def _mean_accuracy(windows: list[WindowResult]) -> float:
    values = [w.metrics["accuracy"] for w in windows]
    assert values and all(v is not None for v in values)
    return sum(values) / len(values)


def test_online_accuracy_after_promotion_is_back_within_0_02_of_its_pre_drift_level(
    story: Played,
) -> None:
    result, ws = story
    marks, size = result.marks, result.size
    windows = _windows(ws, size.window)
    # before the concept drift: the model promoted after the covariate shift, on the panel
    pre = [
        w
        for w in _served(windows, result.versions["shift"])
        if marks["after_shift"] <= w.start and w.end < marks["concept"]
    ]
    # during it, before the retrain: the same model on the drifted world
    dip = [
        w
        for w in _served(windows, result.versions["shift"])
        if marks["concept"] <= w.start and w.end < marks["after_concept"]
    ]
    # after the retrained model's promotion: the same panel of people, today's ground truth
    post = [
        w
        for w in _served(windows, result.versions["concept"])
        if marks["after_concept"] <= w.start and w.end < marks["bad_candidate"]
    ]
    assert len(pre) == len(post) == size.measure_windows
    assert [w.count for w in pre + post] == [size.window] * (2 * size.measure_windows)
    before, during, after = _mean_accuracy(pre), _mean_accuracy(dip), _mean_accuracy(post)
    assert during < before - 0.05  # the concept drift really hurt ...
    assert abs(after - before) <= 0.02  # ... and the promoted retrain won it back


def test_a_bad_candidate_is_rolled_back_automatically_with_production_unchanged(
    story: Played,
) -> None:
    result, ws = story
    registry = ModelRegistry(ws)
    bad, production = result.versions["bad"], result.versions["concept"]
    record = registry.get(MODEL, bad)
    assert record.blessing is not None and record.blessing["blessed"] is True  # fooled offline
    run = ws.metadata.get_run(record.run_id or 0)
    assert run.params["label_bug"] is True
    labels = run_labels(run)
    assert labels["trigger"] == "manual:retrain"  # asked for by hand, as `conveyor trigger`
    assert ws.metadata.activity.event(int(labels["trigger_event"])).run_id == run.id
    canary = _one(ws, "canary_started", version=bad)
    rolled = _one(ws, "rolled_back", version=bad)
    assert rolled.source == "controller"  # nobody acted by hand
    assert rolled.details["production_before"] == production
    assert rolled.details["worse_by"] > result.size.tolerance
    assert f"production unchanged (version {production})" in rolled.reason
    assert not _events(ws, "promoted", version=bad)
    assert registry.aliases(MODEL) == {"production": production}
    assert registry.traffic(MODEL) == {}
    during = [a for a in registry.history(MODEL) if a.at >= canary.time]
    moved = [a for a in during if a.alias == "production" and a.action in ALIAS_MOVES]
    assert moved == []  # production never moved (the split of its route did, twice)
    assert {(a.action, a.alias) for a in during} >= {
        (AuditAction.TRAFFIC, "production"),
        (AuditAction.REMOVE_ALIAS, "canary"),
    }


def test_the_story_never_replaces_a_folder_it_did_not_make(tmp_path: Path) -> None:
    ct_story = _ct_story()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ct_story.StoryError, match=r"mine exists and is not a story folder"):
        ct_story.run_story(mine, console=Console(file=io.StringIO()))
    assert (mine / "notes.txt").read_text() == "keep me"
    with pytest.raises(ct_story.StoryError, match=r"window \(450\) must be a multiple"):
        ct_story.StorySize(window=450, rows_per_request=100)
