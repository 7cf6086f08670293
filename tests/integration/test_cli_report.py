"""``conveyor report MODEL`` over a really trained, served and retrained model.

One training pipeline runs for the module; version 2 is registered from the same bundle (so
both versions reach their training data through lineage). Version 1 answers production
traffic whose ``age`` shifts halfway, version 2 canary traffic after it; ground truth for
three rows in five arrives ten minutes later. The controller's events are written to the
activity store, and the registry is changed for real (traffic split, promotion, rollback).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cli_support import invoke
from conveyor.cli.app import app
from conveyor.ct import load_policy
from conveyor.ct.report import build_timeline, policy_monitor
from conveyor.ct.report_model import MARK_KINDS, Timeline
from conveyor.data.report_html import num
from conveyor.registry import ModelRegistry
from monitoring_support import MODEL, Trained, census_rows, train_census, write_feedback, write_log

pytestmark = pytest.mark.slow

POLICY = """\
[monitoring]
window = 500
label_delay = "0s"
min_feedback_coverage = 0.5

[pipelines.census]
file = "training.py"
function = "training"
model = "census"

[[alerts]]
name = "age-drift"
model = "census"
metric = "drift"
feature = "age"
threshold = 0.3

[[alerts]]
name = "accuracy-drop"
model = "census"
metric = "accuracy"
threshold = 0.7

[controller]
metric = "accuracy"
"""

# The controller's side of the story: (minutes after the first prediction, kind, fields).
EVENTS: list[tuple[int, str, dict[str, Any]]] = [
    (36, "alert", {"model": MODEL, "version": 1, "subject": "age-drift"}),
    (37, "trigger", {"pipeline": "census", "subject": "retrain-on-drift"}),  # no model: policy
    (38, "run_started", {"pipeline": "census", "model": MODEL, "run_id": 1}),
    (45, "run_failed", {"pipeline": "census", "model": MODEL, "run_id": 1}),
    (46, "run_interrupted", {"pipeline": "census", "model": MODEL, "run_id": 1}),
    (48, "run_started", {"pipeline": "census", "model": MODEL, "run_id": 1}),
    (60, "run_finished", {"pipeline": "census", "model": MODEL, "run_id": 1}),
    (61, "not_blessed", {"pipeline": "census", "model": MODEL, "run_id": 1}),
    (62, "registered", {"model": MODEL, "version": 2, "run_id": 1}),
    (69, "canary_started", {"model": MODEL, "version": 2}),
    (90, "canary_window", {"model": MODEL, "version": 2}),
    (91, "skipped", {"pipeline": "census", "subject": "nightly"}),
]


@dataclass
class Served:
    trained: Trained
    root: Path
    policy: Path
    start: dt.datetime


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with pytest.MonkeyPatch.context() as patch:
        for name in ("CONVEYOR_HOME", "CONVEYOR_METADATA_URL", "CONVEYOR_ARTIFACT_URL"):
            patch.delenv(name, raising=False)
        patch.setenv("CONVEYOR_ACTOR", "tester")
        root = tmp_path_factory.mktemp("report")
        patch.chdir(root)
        trained = train_census(root)
        start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
        _serve(trained, start)
        _act(trained, start)
        policy = root / "policy.toml"
        policy.write_text(POLICY)
        yield Served(trained, root, policy, start)
    trained.workspace.close()


def _serve(trained: Trained, start: dt.datetime) -> None:
    """v1: 2,000 rows, age +15 from row 1,000; v2: 1,000 canary rows from minute 70."""
    ws, log = trained.workspace, trained.workspace.settings.artifact_url
    registry = ModelRegistry(ws)
    v1 = registry.get(MODEL, 1)
    registry.register(MODEL, v1.artifact_id, require_blessing=False, alias="canary")
    registry.register("census-b", v1.artifact_id, require_blessing=False)
    before, truth_before = census_rows(1000, seed=21)
    after, truth_after = census_rows(1000, seed=22, age_shift=15.0)
    canary, truth_canary = census_rows(1000, seed=23)
    step = dt.timedelta(seconds=2)
    ids = write_log(log, trained.bundle, pd.concat([before, after], ignore_index=True),
                    start=start, step=step)  # fmt: skip
    later = start + dt.timedelta(minutes=70)
    ids += write_log(log, trained.bundle, canary, start=later, step=step, version="2",
                     route="canary", prefix="c")  # fmt: skip
    truth = np.concatenate([truth_before, truth_after, truth_canary])
    times = [start + i * step for i in range(2000)] + [later + i * step for i in range(1000)]
    labelled = [i for i in range(len(ids)) if i % 5 < 3]
    write_feedback(
        log,
        [ids[i] for i in labelled],
        [int(truth[i]) for i in labelled],
        times=[times[i] + dt.timedelta(minutes=10) for i in labelled],
    )


def _act(trained: Trained, start: dt.datetime) -> None:
    activity, registry = trained.workspace.metadata.activity, ModelRegistry(trained.workspace)
    for minute, kind, fields in EVENTS:
        when = start + dt.timedelta(minutes=minute)
        activity.add_event(kind, reason=f"the {kind} reason <b>", time=when, **fields)
    registry.set_traffic(MODEL, {"production": 90, "canary": 10}, reason="canary for v2")
    registry.promote(MODEL, 2, reason="the canary did as well as production")
    activity.add_event("promoted", reason="v2 beat v1 for 3 windows", model=MODEL, version=2)
    registry.rollback(MODEL, reason="p99 latency doubled")
    activity.add_event("rolled_back", reason="latency doubled on v2", model=MODEL, version=2)


def cli(home: Path, *args: str) -> tuple[int, str, str]:
    return invoke(app, "--home", str(home), "report", *args)


class Page(HTMLParser):
    """Checks that elements close in order; collects ids, links, sources and text."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "col", "wbr", "source"})

    def __init__(self, text: str) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: dict[str, dict[str, str | None]] = {}
        self.links: list[str] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids[str(found["id"])] = found
        self.links += [str(v) for k, v in attrs if k in ("href", "src") and v is not None]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [str(v) for k, v in attrs if k in ("href", "src") and v is not None]

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def words(self) -> str:
        return " ".join(" ".join(self.text).split())


@pytest.fixture(scope="module")
def timeline(served: Served) -> Timeline:
    return build_timeline(served.trained.workspace, MODEL, policy=load_policy(served.policy))


def test_the_timeline_holds_the_monitors_values_per_version(
    served: Served, timeline: Timeline
) -> None:
    policy = load_policy(served.policy)
    monitor = policy_monitor(served.trained.workspace, policy.monitoring)
    results = monitor.results(MODEL, now=timeline.now)
    assert len(timeline.windows) == len(results)
    series = timeline.series()
    assert list(series) == [(1, "served"), (2, "served")]
    assert [w.complete for w in series[(1, "served")]] == [True] * 4
    assert [w.complete for w in series[(2, "served")]] == [True] * 2
    for point, result in zip(timeline.windows, results, strict=True):
        assert (point.version, point.index) == (result.version, result.index)
        for key in ("accuracy", "feedback_coverage", "drift:age", "prediction_drift"):
            assert point.values[key] == result.metrics[key], key
        assert 0.6 < (point.values["accuracy"] or 0) <= 1.0
        assert point.values["feedback_coverage"] == pytest.approx(0.6)
    assert [("drift:age" in w.drifted) for w in series[(1, "served")]] == [False, False, True, True]
    assert timeline.metrics == ("accuracy",)
    assert timeline.drift[0].key in ("drift:age", "prediction_drift")
    assert {t.rule for t in timeline.thresholds} == {"age-drift", "accuracy-drop"}


def test_the_timeline_marks_every_event_and_registry_change(timeline: Timeline) -> None:
    # the events were back-dated into the traffic; the registry changes happened at setup
    assert [(m.kind, m.source) for m in timeline.marks] == [
        *((kind, "controller") for _, kind, _ in EVENTS),
        ("registered", "registry"),  # census:1, by the training run
        ("promoted", "registry"),  # ... to production
        ("registered", "registry"),  # census:2
        ("alias_set", "registry"),  # ... as canary: not a promotion
        ("traffic", "registry"),
        ("promoted", "controller"),  # the event and the production move, as one mark
        ("rolled_back", "controller"),
    ]
    assert timeline.marks[1].subject == "retrain-on-drift"  # a pipeline event, via the policy
    canary, _, promoted, rolled_back = timeline.marks[-4:]
    assert canary.change is not None and canary.change.startswith("canary: - -> 2 by tester")
    assert promoted.reason == "v2 beat v1 for 3 windows" and promoted.audit_id is not None
    assert promoted.change == ("production: 1 -> 2 by tester: the canary did as well as production")
    assert rolled_back.reason == "latency doubled on v2"
    assert rolled_back.change == "production: 2 -> 1 by tester: p99 latency doubled"
    assert timeline.aliases == {"production": 1, "canary": 2}
    production = next(r for r in timeline.routes if r.route == "production")
    assert production.versions == {1: 90.0, 2: 10.0}


def test_conveyor_report_writes_a_self_contained_page(served: Served, timeline: Timeline) -> None:
    home = served.trained.home
    code, out, err = cli(home, MODEL, "--policy", str(served.policy))
    assert code == 0, err
    path = home / "reports" / "census-timeline.html"
    assert f"report: {path.resolve()}" in out
    assert "census: 6 complete windows in 2 series (versions v1, v2)" in out
    html = path.read_text(encoding="utf-8")
    page = Page(html)
    assert page.errors == [] and page.stack == [], page.errors[:3]
    assert [link for link in page.links if not link.startswith("#")] == []
    assert not re.search(r"https?://", " ".join(page.links))
    assert "<script" not in html and html.count("<svg") == 2
    assert {ref[0] for ref in re.findall(r"url\(([^)]*)\)", html)} == {"#"}
    rows = [page.ids[f"event-{n}"] for n in range(1, len(timeline.marks) + 1)]
    assert [row["class"] for row in rows] == [f"mark-{m.kind}" for m in timeline.marks]
    for number, mark in enumerate(timeline.marks, start=1):
        linked = f'href="#event-{number}"' in html
        assert linked == (mark.kind in MARK_KINDS), (number, mark.kind)
    assert "the trigger reason &lt;b&gt;" in html and "reason <b>" not in html
    assert "production: 2 -> 1 by tester: p99 latency doubled" in page.words
    first = timeline.series()[(1, "served")][0]
    assert f">{num(first.values['accuracy'])}<" in html
    assert f">{num(first.values['drift:age'])}<" in html
    assert "production v1" in page.words and "canary v2" in page.words


def test_conveyor_report_json_is_the_timeline(served: Served) -> None:
    out_path = served.root / "out" / "page.html"
    code, out, err = cli(
        served.trained.home, MODEL, "--policy", str(served.policy), "--json", "--out",
        str(out_path),
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["report"] == str(out_path.resolve()) and out_path.is_file()
    assert data["model"] == MODEL and data["window"] == "500 predictions"
    assert [w["version"] for w in data["windows"]] == [1] * 4 + [2] * 2
    assert {m["kind"] for m in data["marks"]} >= {"trigger", "promoted", "traffic", "alert"}


def test_an_out_path_that_cannot_be_written_is_named_with_the_fix(served: Served) -> None:
    blocker = served.root / "a-file"
    blocker.write_text("not a folder")
    code, _, err = cli(served.trained.home, MODEL, "--policy", str(served.policy),
                       "--out", str(blocker / "page.html"))  # fmt: skip
    assert code == 2  # bad input: the user's --out
    assert f"cannot write the report {blocker / 'page.html'}" in " ".join(err.split())
    assert "pick another --out" in err and not list(served.root.glob(".page.html*"))


def test_since_keeps_the_recent_part_and_says_when_there_is_no_traffic(served: Served) -> None:
    code, out, err = cli(served.trained.home, MODEL, "--policy", str(served.policy),
                         "--since", "30m", "--json")  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["windows"] == []
    assert [m["kind"] for m in data["marks"]][-3:] == ["traffic", "promoted", "rolled_back"]
    assert "alert" not in {m["kind"] for m in data["marks"]}
    page = Page(Path(data["report"]).read_text(encoding="utf-8"))
    assert "No traffic yet." in page.words and page.errors == []


def test_a_registered_model_without_traffic_gets_a_page(served: Served) -> None:
    code, out, err = cli(served.trained.home, "census-b")
    assert code == 0, err
    assert "census-b: no traffic yet; 1 events" in out
    page = Page((served.trained.home / "reports" / "census-b-timeline.html").read_text())
    assert "No traffic yet." in page.words
    assert page.ids["event-1"]["class"] == "mark-registered"


def test_unknown_models_and_bad_durations_exit_2(served: Served) -> None:
    home = served.trained.home
    code, _, err = cli(home, "censsu")
    assert code == 2
    assert "no model named 'censsu' in the registry (did you mean 'census'?)" in err
    assert not (home / "reports" / "censsu-timeline.html").exists()
    code, _, err = cli(home, MODEL, "--since", "10 minutes")
    assert code == 2 and "is not a duration" in err
    fresh = served.root / "no-home"
    code, _, err = cli(fresh, MODEL)
    assert code == 2 and "(there are none)" in err
    assert not fresh.exists()
