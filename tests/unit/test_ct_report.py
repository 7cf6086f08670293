"""The timeline report: what is drawn, how events and registry changes merge, and the page.

The page is rendered from records made by hand (no monitoring needed), then parsed with
``html.parser``; ``build_timeline`` runs against a real workspace whose registry holds a
model that has no traffic yet (the integration test covers a served model).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conveyor.config import load_settings
from conveyor.ct.policy_model import ControllerPolicy, MonitoringPolicy, Policy
from conveyor.ct.report import (
    ReportError,
    audit_kind,
    build_timeline,
    drift_lines,
    merge_marks,
    online_metrics,
    policy_monitor,
    policy_thresholds,
    render_timeline_html,
)
from conveyor.ct.report_model import (
    MARK_KINDS,
    DriftLine,
    RouteShare,
    Threshold,
    Timeline,
    TimelineMark,
    WindowPoint,
)
from conveyor.exceptions import NotFoundError
from conveyor.monitoring import AlertRule, DriftVerdict, WindowResult
from conveyor.registry import AuditAction, AuditRecord, ModelRegistry
from conveyor.store.metadata import ActivityEvent, MetadataStore, NewArtifact
from conveyor.store.workspace import Workspace

T0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr", "source"}
# SVG elements matplotlib writes self-closed
SELF_CLOSED = {"path", "use", "rect", "line", "circle", "stop", "polyline", "polygon", "ellipse"}


def minutes(n: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=n)


class Page(HTMLParser):
    """Parses a page, checks that every element is closed in order, and collects what the
    tests look at: ids, classes, links, sources, table rows and text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: dict[str, dict[str, str | None]] = {}
        self.hrefs: list[str] = []
        self.sources: list[str] = []
        self.tags: set[str] = set()
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        found = dict(attrs)
        if found.get("id"):
            self.ids[str(found["id"])] = found
        if found.get("href") is not None:
            self.hrefs.append(str(found["href"]))
        if found.get("src") is not None:
            self.sources.append(str(found["src"]))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        found = dict(attrs)
        if found.get("href") is not None:
            self.hrefs.append(str(found["href"]))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def words(self) -> str:
        return " ".join(" ".join(self.text).split())


def _kinds() -> list[str]:
    """Every marked kind and a few table-only ones, in a plausible order."""
    return [*MARK_KINDS, "canary_window", "skipped", "controller_started"]


def sample_timeline(**changes: object) -> Timeline:
    """Two versions (v2 also in shadow), a drift shift at window 6, one event of each kind."""
    windows = []
    for i in range(10):
        drift = 0.05 + (0.5 if i >= 6 else 0.0)
        values = {
            "accuracy": 0.9 - (0.125 if i >= 6 else 0.0),
            "feedback_coverage": 0.625,
            "prediction_drift": 0.015 * i,
            "drift:age": drift,
            "drift:hours": 0.03125,
        }
        drifted = ("drift:age",) if drift > 0.25 else ()
        windows.append(
            WindowPoint(
                1, "served", i, minutes(10 * i), minutes(10 * i + 10), True, 500, values, drifted
            )
        )
    for i in range(3):
        values = {"accuracy": 0.8125, "feedback_coverage": 0.5, "drift:age": 0.0625}
        windows.append(
            WindowPoint(
                2, "served", i, minutes(100 + 10 * i), minutes(110 + 10 * i), True, 50, values
            )
        )
    windows.append(
        WindowPoint(2, "shadow", 0, minutes(100), minutes(110), True, 500, {"accuracy": 0.796875})
    )
    windows.append(WindowPoint(2, "served", 3, minutes(130), minutes(133), False, 12))
    marks = [
        TimelineMark(
            time=minutes(4 + 9 * i),
            kind=kind,
            source="controller",
            reason=f"because <{kind}> & more",
            version=2 if "canary" in kind else None,
            run_id=7 if kind.startswith("run_") else None,
            subject="retrain-on-drift",
            change="production: 1 -> 2 by alice" if kind == "promoted" else None,
            event_id=i + 1,
        )
        for i, kind in enumerate(_kinds())
    ]
    base: dict[str, object] = {
        "model": "census",
        "now": minutes(140),
        "window": "500 predictions",
        "metrics": ("accuracy",),
        "drift": (
            DriftLine("drift:age", 0.25, True, "wasserstein"),
            DriftLine("prediction_drift", 0.1, True, "psi"),
            DriftLine("drift:hours", 0.05, False, "ks"),
        ),
        "windows": tuple(windows),
        "marks": tuple(marks),
        "aliases": {"production": 1, "canary": 2},
        "routes": (
            RouteShare("canary", {2: 100.0}),
            RouteShare(
                "production", {1: 90.0, 2: 10.0}, {"production": 90.0, "canary": 10.0}, (2,)
            ),
        ),
        "thresholds": (Threshold("accuracy", 0.8, "accuracy-drop"),),
        "notes": ("a note with <markup>",),
    }
    base.update(changes)
    return Timeline(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def rendered() -> tuple[str, Page]:
    html = render_timeline_html(sample_timeline())
    return html, Page(html)


# -- the page --------------------------------------------------------------------------------
def test_the_page_is_well_formed_and_self_contained(rendered: tuple[str, Page]) -> None:
    html, page = rendered
    assert html.startswith("<!DOCTYPE html>")
    assert page.errors == [] and page.stack == []
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    assert page.sources == []  # charts are inline SVG, not images to fetch
    assert not [h for h in page.hrefs if not h.startswith("#")]
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)
    assert "@import" not in html
    assert {ref[0] for ref in re.findall(r"url\(([^)]*)\)", html)} == {"#"}  # clip paths
    assert html.count("<svg") >= 2


def test_every_event_has_a_numbered_row_and_every_marked_kind_a_marker(
    rendered: tuple[str, Page],
) -> None:
    html, page = rendered
    kinds = _kinds()
    for number, kind in enumerate(kinds, start=1):
        row = page.ids[f"event-{number}"]
        assert row["class"] == f"mark-{kind}"
        marker_links = html.count(f'href="#event-{number}"')
        if kind in MARK_KINDS:
            # one vertical line on each of the 2 + 3 panels, and its number on the top ones
            assert marker_links >= 5, kind
            assert re.search(rf"<text[^>]*>{kind}</text>", html), kind  # the charts' legend
            assert f"</span>{kind}</span>" in html, kind  # the page's legend
        else:
            assert marker_links == 0, kind
            assert not re.search(rf"<text[^>]*>{kind}</text>", html), kind
    assert "because &lt;promoted&gt; &amp; more" in html  # reasons escaped, not markup
    assert "because <promoted>" not in html
    assert "production: 1 -&gt; 2 by alice" in html


def test_the_header_says_what_serves_now_and_the_tables_hold_the_values(
    rendered: tuple[str, Page],
) -> None:
    html, page = rendered
    words = page.words
    assert "production v1" in words and "canary v2" in words
    assert "v1 90% , v2 10%" in words or "v1 90%, v2 10%" in words
    assert "production=90%, canary=10%" in words
    assert "windows of 500 predictions" in words
    assert "note: a note with <markup>" in words
    # the windows table: every window with its values
    assert page.ids["windows"] is not None
    for value in ("0.9", "0.775", "0.625", "0.8125", "0.7969", "0.135"):
        assert f">{value}<" in html, value
    assert "v2 shadow" in words and "3 (open)" in words
    # the series summary: v1 had 4 drifted windows, v2 has an open window
    assert re.search(r"v1</td><td class='n'>10</td>.*?<td class='n'>4</td>", html)
    assert "3 + 1 open" in html


def test_the_charts_draw_thresholds_and_the_drift_verdicts(rendered: tuple[str, Page]) -> None:
    html, _ = rendered
    assert "threshold 0.25 (wasserstein; higher is drift)" in html
    assert "threshold 0.05 (ks; lower is drift)" in html
    assert "alert accuracy-drop: 0.8" in html
    for label in ("online accuracy", "feedback coverage", "drift of age", "drift of predictions"):
        assert label in html


def test_the_page_is_the_same_for_the_same_timeline() -> None:
    assert render_timeline_html(sample_timeline()) == render_timeline_html(sample_timeline())


def test_a_model_without_traffic_gets_a_page_saying_so() -> None:
    mark = TimelineMark(minutes(1), "registered", "registry", "first version", version=1)
    html = render_timeline_html(sample_timeline(windows=(), marks=(mark,), drift=()))
    page = Page(html)
    assert page.errors == [] and page.stack == []
    assert "No traffic yet." in page.words
    assert "<svg" not in html
    assert page.ids["event-1"]["class"] == "mark-registered"
    empty = Page(render_timeline_html(sample_timeline(windows=(), marks=(), aliases={})))
    assert "no events in this period" in empty.words
    assert "no production version" in empty.words


def test_drift_panels_are_capped_and_the_rest_listed() -> None:
    lines = tuple(DriftLine(f"drift:f{i:02d}", 0.1, True, "psi") for i in range(15))
    windows = tuple(
        WindowPoint(
            1,
            "served",
            i,
            minutes(i),
            minutes(i + 1),
            True,
            10,
            {line.key: 0.01 * i for line in lines},
        )
        for i in range(3)
    )
    html = render_timeline_html(sample_timeline(drift=lines, windows=windows, marks=()))
    assert "drift of f11" in html and "drift of f12" not in html
    assert "not drawn (less drifted): drift:f12, drift:f13, drift:f14" in html


def test_the_timeline_is_json_data() -> None:
    data = json.loads(json.dumps(sample_timeline().to_dict(), allow_nan=False))
    assert data["model"] == "census" and data["metrics"] == ["accuracy"]
    assert data["windows"][0]["values"]["accuracy"] == 0.9
    assert data["windows"][6]["drifted"] == ["drift:age"]
    assert data["routes"][1]["versions"] == {"1": 90.0, "2": 10.0}
    assert [m["kind"] for m in data["marks"]] == _kinds()
    assert data["marks"][0]["time"] == minutes(4).isoformat()
    nan = WindowPoint(1, "served", 0, T0, T0, True, 1, {"accuracy": float("nan")})
    assert nan.to_dict()["values"] == {"accuracy": None}


# -- what is drawn ---------------------------------------------------------------------------
def _result(index: int, metrics: dict[str, float | None], **verdicts: DriftVerdict) -> WindowResult:
    return WindowResult(
        model="census",
        version=1,
        route_kind="served",
        index=index,
        start=minutes(index),
        end=minutes(index + 1),
        complete=True,
        metrics=metrics,
        drift=dict(verdicts),
    )


def test_the_online_metric_is_the_controllers_then_the_alert_rules_else_a_fallback() -> None:
    classified = [_result(0, {"accuracy": 0.9, "f1": 0.5, "roc_auc": 0.8})]
    rules = (
        AlertRule("auc", "census", "roc_auc", threshold=0.7),
        AlertRule("other-model", "churn", "f1", threshold=0.7),
        AlertRule("drift", "census", "drift", feature="age"),
    )
    policy = Policy(alerts=rules, controller=ControllerPolicy(metric="accuracy"))
    assert online_metrics(policy, "census", classified) == ("accuracy", "roc_auc")
    regression = [_result(0, {"rmse": 1.5, "mae": 1.0, "r2": 0.4})]
    assert online_metrics(policy, "census", regression) == ("rmse",)
    assert online_metrics(policy, "census", []) == ("accuracy",)
    assert online_metrics(policy, "census", [_result(0, {"count": 5.0})]) == ()


def test_drift_lines_take_the_newest_threshold_and_put_the_most_drifted_first() -> None:
    def verdict(threshold: float, drifted: bool) -> DriftVerdict:
        return DriftVerdict("psi", threshold, True, drifted)

    results = [
        _result(
            1, {}, **{"drift:age": verdict(0.2, True), "prediction_drift": verdict(0.1, False)}
        ),
        _result(0, {}, **{"drift:age": verdict(0.1, True), "drift:city": verdict(0.1, False)}),
    ]
    lines = drift_lines(results)
    assert [line.key for line in lines] == ["drift:age", "prediction_drift", "drift:city"]
    assert lines[0].threshold == 0.2  # window 1 ends last


def test_policy_thresholds_keep_rules_that_name_one_key() -> None:
    rules = (
        AlertRule("acc", "census", "accuracy", threshold=0.8),
        AlertRule("acc-female", "census", "accuracy", feature="sex=Female", threshold=0.7),
        AlertRule("age", "census", "drift", feature="age", threshold=0.3),
        AlertRule("any", "census", "drift", feature="*", threshold=0.3),
        AlertRule("schema", "census", "drift", feature="hours"),
        AlertRule("churn", "churn", "accuracy", threshold=0.9),
    )
    found = policy_thresholds(Policy(alerts=rules), "census")
    assert found == (Threshold("accuracy", 0.8, "acc"), Threshold("drift:age", 0.3, "age"))


# -- events and registry changes -------------------------------------------------------------
def _event(event_id: int, kind: str, at: dt.datetime, version: int | None = None) -> ActivityEvent:
    return ActivityEvent(
        id=event_id,
        time=at,
        kind=kind,
        source="controller",
        pipeline="census",
        model="census",
        version=version,
        run_id=None,
        subject=None,
        reason=f"{kind} reason",
        details={},
        dedupe_key=None,
    )


def _audit(
    audit_id: int,
    action: AuditAction,
    at: dt.datetime,
    to: int | None,
    old: int | None = None,
    alias: str | None = "production",
    details: dict[str, object] | None = None,
) -> AuditRecord:
    return AuditRecord(audit_id, "census", action, alias, old, to, "alice", "", at, details)


def test_a_registry_change_the_controller_reported_is_one_mark() -> None:
    events = [
        _event(1, "canary_started", minutes(0), version=2),
        _event(2, "promoted", minutes(30), version=2),
    ]
    split = {"old": None, "new": {"weights": {"production": 90, "canary": 10}, "shadows": []}}
    audit = [
        _audit(10, AuditAction.TRAFFIC, minutes(0.1), None, details=split),
        _audit(11, AuditAction.PROMOTE, minutes(30.2), 2, old=1),
        _audit(12, AuditAction.PROMOTE, minutes(50), 3, old=2),  # by hand: no event
        _audit(13, AuditAction.ROLLBACK, minutes(60), 2, old=3),
        _audit(14, AuditAction.REGISTER, minutes(-5), 3, alias=None),
    ]
    marks = merge_marks(events, audit)
    assert [(m.kind, m.source, m.event_id, m.audit_id) for m in marks] == [
        ("registered", "registry", None, 14),
        ("canary_started", "controller", 1, None),
        ("traffic", "registry", None, 10),
        ("promoted", "controller", 2, 11),
        ("promoted", "registry", None, 12),
        ("rolled_back", "registry", None, 13),
    ]
    assert marks[3].reason == "promoted reason"
    assert marks[3].change == "production: 1 -> 2 by alice"
    assert marks[2].change == "production: - -> production=90, canary=10 by alice"
    assert marks[0].change == "version 3 registered by alice"


def test_only_a_move_of_production_is_a_promotion() -> None:
    canary = _audit(1, AuditAction.PROMOTE, minutes(0.5), 2, alias="canary")
    by_hand = _audit(2, AuditAction.SET_ALIAS, minutes(0), 2)
    assert [audit_kind(a) for a in (canary, by_hand)] == ["alias_set", "promoted"]
    event = _event(1, "promoted", minutes(0), version=2)
    marks = merge_marks([event], [canary])  # a canary move is not the controller's promotion
    assert [(m.kind, m.audit_id) for m in marks] == [("promoted", None), ("alias_set", 1)]
    assert marks[1].change == "canary: - -> 2 by alice"


def test_a_change_far_from_the_event_or_of_another_version_stays_apart() -> None:
    events = [_event(1, "promoted", minutes(0), version=2)]
    late = [_audit(5, AuditAction.PROMOTE, minutes(6), 2, old=1)]
    assert [m.audit_id for m in merge_marks(events, late)] == [None, 5]
    other = [_audit(6, AuditAction.PROMOTE, minutes(1), 3, old=1)]
    assert [m.event_id for m in merge_marks(events, other)] == [1, None]


# -- build_timeline against a real workspace -------------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def workspace(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workspace]:
    """census v1 (production) and v2 registered with stand-in bundles; no traffic logged.
    On SQLite, and on PostgreSQL when ``CONVEYOR_TEST_POSTGRES_URL`` is set."""
    for name in ("CONVEYOR_HOME", "CONVEYOR_METADATA_URL", "CONVEYOR_ARTIFACT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'metadata.db'}"
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    with MetadataStore.open(url) as store:
        run = store.create_run(store.register_pipeline("train", {}, "h"), {}, {}, "host", 1)
        execution = store.create_executions(run.id, [("train", "train", {})])["train"]
        outputs = {f"m{i}": NewArtifact("Model", f"/bundles/{i}", f"{i:064d}", 1) for i in (1, 2)}
        made = store.succeed_execution(execution, {}, outputs)
        registry = ModelRegistry(store)
        registry.register("census", made["m1"].id, require_blessing=False, alias="production")
        registry.register("census", made["m2"].id, require_blessing=False, alias="canary")
        registry.set_traffic("census", {"production": 75, "canary": 25}, reason="canary v2")
        store.activity.add_event(
            "canary_started", reason="v2 gets 25% of the traffic", model="census", version=2
        )
        store.activity.add_event("trigger", reason="new span 4", pipeline="census")
        store.activity.add_event("trigger", reason="not ours", pipeline="churn")
    ws = Workspace.open(load_settings(home=home, metadata_url=url), recover=False)
    yield ws
    ws.close()


def test_build_timeline_of_a_model_without_traffic(workspace: Workspace) -> None:
    timeline = build_timeline(workspace, "census")
    assert not timeline.has_traffic and timeline.windows == ()
    assert timeline.notes[0].startswith("no prediction of census was logged before ")
    assert timeline.aliases == {"production": 1, "canary": 2}
    production = next(r for r in timeline.routes if r.route == "production")
    assert production.versions == {1: 75.0, 2: 25.0}
    assert production.targets == {"production": 75.0, "canary": 25.0}
    assert [(m.kind, m.source, m.version) for m in timeline.marks] == [
        ("registered", "registry", 1),
        ("promoted", "registry", 1),
        ("registered", "registry", 2),
        ("alias_set", "registry", 2),  # the canary alias: not a promotion
        ("traffic", "registry", None),
        ("canary_started", "controller", 2),
    ]
    assert timeline.marks[3].change is not None
    assert timeline.marks[3].change.startswith("canary: - -> 2 by ")
    page = Page(render_timeline_html(timeline))
    assert "No traffic yet." in page.words and page.errors == []


def test_build_timeline_takes_pipeline_events_through_the_policy(workspace: Workspace) -> None:
    from conveyor.ct.policy_model import PipelineTarget

    target = PipelineTarget("census", Path("train.py"), "training", model="census")
    policy = Policy(pipelines={"census": target})
    without = {m.reason for m in build_timeline(workspace, "census").marks}
    with_policy = {m.reason for m in build_timeline(workspace, "census", policy=policy).marks}
    assert with_policy - without == {"new span 4"}
    assert "not ours" not in with_policy


def test_build_timeline_filters_by_period(workspace: Workspace) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert (
        build_timeline(workspace, "census", since=later, now=later + dt.timedelta(hours=1)).marks
        == ()
    )
    earlier = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    assert build_timeline(workspace, "census", now=earlier).marks == ()
    cut = build_timeline(workspace, "census", max_events=2)
    assert len(cut.marks) == 2 and cut.marks[-1].kind == "canary_started"
    assert any("only the newest 2 events" in note for note in cut.notes)


def test_the_policy_cuts_the_windows(workspace: Workspace) -> None:
    hourly = MonitoringPolicy(
        window=dt.timedelta(hours=1), label_delay=dt.timedelta(days=1), min_feedback_coverage=0.25
    )
    monitor = policy_monitor(workspace, hourly)
    assert (monitor.window.duration, monitor.label_delay) == (
        dt.timedelta(hours=1),
        dt.timedelta(days=1),
    )
    assert monitor.min_coverage == 0.25
    assert policy_monitor(workspace, MonitoringPolicy(window=500)).window.size == 500
    timeline = build_timeline(workspace, "census", policy=Policy(monitoring=hourly))
    assert timeline.window == "1h" and timeline.label_delay == dt.timedelta(days=1)
    assert "windows of 1h; label delay 1d" in render_timeline_html(timeline)


def test_build_timeline_refuses_unknown_models_and_naive_times(workspace: Workspace) -> None:
    with pytest.raises(NotFoundError, match=r"no model named 'censsu'.*did you mean 'census'"):
        build_timeline(workspace, "censsu")
    with pytest.raises(ReportError, match=r"now=.*has no time zone; pass an aware datetime"):
        build_timeline(workspace, "census", now=dt.datetime(2026, 3, 2))
    with pytest.raises(ReportError, match=r"max_events must be a number from 1, got 0"):
        build_timeline(workspace, "census", max_events=0)
    with pytest.raises(ReportError, match=r"since \(.*\) must be before now"):
        build_timeline(workspace, "census", since=T0, now=T0)
