"""The story's chapters: what each one does, and what it tells a newcomer.

Each chapter drives the :class:`~.stage.Stage` (land a span, serve requests, poll the
controller) and checks that the controller did what the policy says -- otherwise the story
stops with a :class:`~.stage.StoryError` naming what did not happen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from conveyor.store.metadata import ActivityEvent

from .stage import Stage, StoryError, StoryResult
from .world import MODEL, RETRAIN

__all__ = ["CHAPTERS", "epilogue"]


def _one(events: Sequence[ActivityEvent], kind: str) -> ActivityEvent:
    found = [e for e in events if e.kind == kind]
    if not found:
        kinds = ", ".join(e.kind for e in events) or "nothing"
        raise StoryError(f"the story expected a {kind} event, but the controller recorded {kinds}")
    return found[-1]


def _accuracy(stage: Stage) -> str:
    segment = stage.segment
    if segment is None or not segment.rows:
        return "-"
    return f"{100 * segment.right / segment.rows:.1f}%"


def first_deployment(stage: Stage) -> None:
    """Span 1 -> a manual run -> the first version goes straight to production."""
    n = stage.narrator
    n.heading("", "continuous training: the whole story, told by the controller")
    n.say(
        f"A model called {MODEL!r} predicts whether a person earns more than 50K a year. Its "
        f"project is {stage.folder}: conveyor.toml holds the policy (what to watch, when to "
        "retrain, how to roll out), data/ receives the labelled census data one span at a "
        f"time. Span 1 has landed ({stage.size.rows_per_span} rows). The controller may run "
        f"one pipeline, 'retrain' ({RETRAIN.name}): newest span -> statistics -> schema -> "
        "validate -> transform -> train -> evaluate against production -> register, without "
        "ever touching production itself."
    )
    n.heading("1", "the first model: a run asked for by hand, deployed by the controller")
    n.say("We ask for a run, as `conveyor trigger retrain` would; the controller picks it up.")
    events = stage.manual_run()
    promoted = _one(events, "promoted")
    n.say(
        f"There was no production model yet, so the controller made version {promoted.version} "
        "production at once. Every later model has to earn it: a canary first, judged on "
        "real traffic and real ground truth."
    )


def ordinary_days(stage: Stage) -> None:
    """Span 2's requests: the server answers, labels follow, nothing to do."""
    n, size = stage.narrator, stage.size
    stage.open_serving()
    n.heading("2", "ordinary days: requests flow through the server, the truth follows later")
    n.say(
        f"The server (the app behind `conveyor serve`) listens on {stage.server_url}. A client "
        f"sends span 2's requests over HTTP, {size.rows_per_request} rows per request, each "
        "request from its own caller. The true incomes arrive later: the labels of one batch "
        f"are posted after the next batch was answered. After every {size.window} predictions "
        "(one monitoring window) the controller polls: for each window it measures the drift "
        "of every input against the model's training data and, once the labels are in, the "
        "accuracy; then it checks its alert rules."
    )
    stage.land(2)
    stage.begin("ordinary", "ordinary days (span 2)")
    events = stage.serve(stage.pool(2), size.ordinary_windows)
    if any(e.kind == "alert" for e in events):
        raise StoryError("an alert fired on ordinary days: " + _one(events, "alert").reason)
    n.say(
        f"{size.ordinary_windows} windows, no alert: the callers got {_accuracy(stage)} right "
        "answers, and the inputs look like the training data."
    )


def _roll_out(stage: Stage, span: int, mark: str, after: str) -> None:
    """Serve until the canary is decided; it must be promoted; then measure production."""
    event = stage.serve_until(stage.pool(span), {"promoted", "rolled_back"})
    if event.kind != "promoted" or event.version is None:
        raise StoryError(f"the retrained model was rolled back: {event.reason}")
    stage.align(stage.pool(span), event.version)
    rows = stage.size.measure_windows * stage.size.window
    stage.narrator.say(
        f"Version {event.version} now answers every caller. To measure it, the story asks a "
        f"fixed panel of {rows} people ({stage.size.measure_windows} windows); the same panel "
        "is asked after every retrain, each time with the ground truth of its day, so that "
        "accuracies before and after are compared on the very same people."
    )
    stage.begin(mark, after)
    stage.serve(stage.panel(span), stage.size.measure_windows)
    stage.narrator.say(f"Version {event.version} got {_accuracy(stage)} of the panel right.")


def _first_window(stage: Stage, alert: ActivityEvent, span: int) -> None:
    """Say which windows the alert came from, counted from the start of the span's traffic."""
    windows = (alert.details.get("alert") or {}).get("details", {}).get("windows") or []
    first = stage.first_window.get(span)
    indices = [int(w["index"]) for w in windows if w.get("index") is not None]
    if not indices or first is None:
        return
    nth = [i - first + 1 for i in indices]
    ordinal = {1: "first", 2: "second", 3: "third"}
    which = " and ".join(ordinal.get(i, f"{i}th") for i in nth)
    numbers = " and ".join(str(i) for i in indices)
    plural = "s" if len(indices) > 1 else ""
    stage.narrator.say(
        f"The alert came from the {which} full window{plural} of span {span}'s requests "
        f"(window{plural} {numbers} of version {alert.version}'s answers, counted from 0)."
    )


def _drift_chapter(
    stage: Stage, span: int, key: str, label: str, heading: str, intro: str, judged: str
) -> None:
    """Land ``span`` -> alert -> retrain -> canary -> promotion, narrated with the given text."""
    n = stage.narrator
    n.heading(str(span), heading)
    n.say(intro)
    stage.land(span)
    stage.begin(key, f"{label}, before the retrain (span {span})", span=span)
    stage.serve_until(stage.pool(span), {"canary_started"})
    _first_window(stage, _one(stage.recorded, "alert"), span)
    n.say(judged)
    _roll_out(stage, span, f"after_{key}", f"{label}, after the retrain (span {span})")


def covariate_shift(stage: Stage) -> None:
    """Span 3: age drifts -> alert -> retrain -> canary -> promotion."""
    _drift_chapter(
        stage,
        3,
        "shift",
        "covariate shift",
        "a covariate shift: the people asking change",
        "Span 3 lands and its requests begin. Its people are older (6 years on average), work "
        "shorter weeks and hold more degrees; what decides their income has not changed. The "
        "policy's rule 'age-drift' fires when the age of the callers in a window drifts from "
        "the ages the model was trained on (PSI above the schema's threshold); its trigger, "
        "'retrain-on-drift', then retrains on the newest span.",
        "The canary's windows are judged once their ground truth is in, against production's "
        "windows of the same period.",
    )


def concept_drift(stage: Stage) -> None:
    """Span 4: accuracy drops -> alert -> retrain -> canary -> promotion -> accuracy back."""
    _drift_chapter(
        stage,
        4,
        "concept",
        "concept drift",
        "a concept drift: the same people, but the rules change",
        "Span 4 lands and its requests begin. The people look exactly like span 3's, so no "
        "input drifts; but what decides income changes: hours worked now count far more, "
        "degrees and marriage barely. Only the ground truth can show it. The rule "
        "'accuracy-drop' fires when two windows in a row, once labelled, are below its "
        "threshold; 'retrain-on-accuracy-drop' retrains on span 4.",
        "The drop had to wait for the ground truth: labels arrive one batch later, and a "
        "window is judged only once all of its labels are in.",
    )


def bad_candidate(stage: Stage) -> None:
    """A manual retrain with inverted labels: blessed offline, rolled back by the canary."""
    n = stage.narrator
    n.heading("5", "a bad candidate: the canary catches what offline evaluation cannot")
    n.say(
        "Now someone retrains by hand with a bug upstream of training: the label column "
        "arrives inverted (a broken join, say): `conveyor trigger retrain -p label_bug=true`. "
        "Every step after the bug sees the inverted labels, the evaluation rows too, so the "
        "candidate looks excellent offline and production looks terrible on the same rows: it "
        "is blessed. Only the real ground truth of its canary traffic can tell."
    )
    stage.begin("bad_candidate", "a bad candidate as canary (span 4)")
    _one(stage.manual_run({"label_bug": "true"}), "canary_started")
    event = stage.serve_until(stage.pool(4), {"promoted", "rolled_back"})
    if event.kind != "rolled_back":
        raise StoryError(f"the bad candidate was not rolled back: {event.reason}")
    n.say(
        f"No one had to act: version {event.version} is out of the traffic, production is "
        f"still version {event.details.get('production_before')}, and the registry's history "
        "records every change with its reason (`conveyor models history income`)."
    )


CHAPTERS: tuple[Callable[[Stage], None], ...] = (
    first_deployment,
    ordinary_days,
    covariate_shift,
    concept_drift,
    bad_candidate,
)
"""The chapters, in the order :func:`~.story.run_story` plays them."""


def epilogue(stage: Stage, result: StoryResult) -> None:
    """The closing tables, where to look further, and the timeline report's path."""
    n, home = stage.narrator, result.folder
    n.heading("6", "the story in two tables")
    n.summary(result.events)
    n.accuracy(list(result.segments.values()))
    n.say(
        "'best possible' is the accuracy of the true rule behind the synthetic data: no model "
        "can beat it. The covariate shift lowers it for every model (more people near the "
        "50K line)."
    )
    before, during = result.segments["after_shift"], result.segments["concept"]
    after = result.segments["after_concept"]
    if before.rows and during.rows and after.rows:
        pre, dip, post = (s.right / s.rows for s in (before, during, after))
        n.say(
            f"On the same panel of {before.rows} people, version {result.versions['shift']} "
            f"was right {100 * pre:.1f}% of the time before the concept drift. While the drift "
            f"went unanswered the callers got {100 * dip:.1f}% right; version "
            f"{result.versions['concept']}, retrained on span 4, is right {100 * post:.1f}% "
            f"of the time on the panel: {100 * abs(post - pre):.1f} points from before."
        )
    n.say(f"The story took {result.elapsed_s:.0f} s. Its project is a conveyor home of its own:")
    commands = [
        (f"events --model {MODEL}", "every event, with its reason"),
        ("runs list", "each run, with the trigger that started it"),
        (f"models history {MODEL}", "every registry change: who, when and why"),
        (f"report {MODEL} --policy {result.policy_file}", "the timeline report, again"),
    ]
    for command, what in commands:
        n.console.print(f"  conveyor --home {home} {command}   # {what}", highlight=False)
    stage.narrator.console.print(f"timeline report: {result.report}", highlight=False)
