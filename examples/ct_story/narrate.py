"""The story in words: each controller event told as a sentence, and the closing tables.

Everything told here is read from what the controller recorded -- the activity events that
``conveyor events`` lists (their kind, reason and details) -- so the words say what the
system did and why, not what the story hoped it would do.
"""

from __future__ import annotations

import collections
import datetime as dt
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from conveyor.store.metadata import ActivityEvent

__all__ = ["Narrator", "Segment", "tell"]

QUIET = frozenset({"controller_started", "controller_stopped", "skipped"})
"""Kinds left out of the narration and the summary (``conveyor events`` shows them)."""
IN_SUMMARY = frozenset(
    {
        "alert",
        "trigger",
        "run_finished",
        "run_failed",
        "registered",
        "not_blessed",
        "canary_started",
        "promoted",
        "rolled_back",
    }
)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _alert(event: ActivityEvent) -> tuple[str, str]:
    alert: Mapping[str, Any] = event.details.get("alert") or {}
    windows = (alert.get("details") or {}).get("windows") or [{}]
    index = ", ".join(str(w.get("index")) for w in windows)
    ref = f"{alert.get('model')}:{alert.get('version')}"
    value, threshold = float(alert.get("value", 0.0)), float(alert.get("threshold", 0.0))
    if alert.get("metric") == "drift":
        # the retraining pipeline's schema compares every input with psi
        why = (
            f"PSI {value:.2f} > {threshold:g} in window {index} of {ref}'s answers: the people "
            "asking no longer look like those it was trained on"
        )
        return f"alert {event.subject}: the {alert.get('feature')!r} input drifted", why
    why = (
        f"{alert.get('metric')} {_pct(value)} < {_pct(threshold)} in windows {index} of "
        f"{ref}'s answers, once their ground truth was in"
    )
    return f"alert {event.subject}: {ref} is right less often", why


def _trigger(event: ActivityEvent) -> tuple[str, str]:
    params = event.details.get("params") or {}
    bug = " with the label bug" if str(params.get("label_bug")).lower() == "true" else ""
    decisions = event.details.get("decisions") or [{}]
    alerts = (decisions[0].get("details") or {}).get("alerts") or []
    if alerts:
        why = "alert " + ", ".join(str(a.get("rule")) for a in alerts) + " fired"
    elif decisions[0].get("kind") == "manual":
        request = (decisions[0].get("details") or {}).get("request") or {}
        why = f"a manual request by {request.get('requested_by', 'someone')}"
    else:
        why = event.reason
    return f"trigger {event.subject} starts a retrain{bug}", why


def _registered(event: ActivityEvent) -> tuple[str, str]:
    blessing = event.details.get("blessing") or {}
    reasons = [r for r in blessing.get("reasons") or () if r.get("metric") == "accuracy"]
    accuracy = (event.details.get("metrics") or {}).get("accuracy")
    verdict = "blessed" if blessing.get("blessed") else "not blessed"
    if reasons and reasons[0].get("baseline_value") is not None:
        r = reasons[0]
        why = (
            f"offline accuracy {_pct(r['candidate_value'])} vs production's "
            f"{_pct(r['baseline_value'])} on the same evaluation rows: {verdict}"
        )
    elif accuracy is not None:
        why = f"offline accuracy {_pct(accuracy)}, nothing to compare with yet: {verdict}"
    else:
        why = verdict
    return f"run {event.run_id} registered {event.model_ref}", why


def _rollout(event: ActivityEvent) -> tuple[str, str]:
    d = event.details
    canary, production = d.get("canary_mean"), d.get("production_mean")
    if event.kind == "promoted" and canary is None:
        return f"{event.model_ref} goes straight to production", event.reason
    figures = ""
    if canary is not None and production is not None:
        n = len(d.get("canary_windows") or ())
        figures = (
            f"online accuracy {_pct(canary)} over its {n} canary window(s) vs production's "
            f"{_pct(production)} over the same period"
        )
    if event.kind == "promoted":
        return f"{event.model_ref} is promoted to production", f"{figures}: not worse"
    kept = d.get("production_before")
    return (
        f"canary {event.model_ref} is rolled back (production stays version {kept})",
        f"{figures}: worse by {float(d.get('worse_by') or 0):.3f} > tolerance",
    )


def tell(event: ActivityEvent) -> tuple[str, str]:
    """What an event says happened, and why, in a newcomer's words."""
    if event.kind == "alert":
        return _alert(event)
    if event.kind == "trigger":
        return _trigger(event)
    if event.kind == "registered":
        return _registered(event)
    if event.kind in ("promoted", "rolled_back"):
        return _rollout(event)
    if event.kind == "canary_started":
        share = f"{float(event.details.get('percent', 0)):g}%"
        return (
            f"{event.model_ref} answers {share} of the callers as a canary",
            f"production (version {event.details.get('production')}) answers the others; "
            "both are judged on the same period's ground truth",
        )
    if event.kind == "canary_window":
        production = event.details.get("production_mean")
        versus = f"; production {_pct(production)} so far" if production is not None else ""
        return (
            f"canary window of {event.model_ref}",
            f"accuracy {_pct(float(event.details.get('value', 0)))} over "
            f"{event.details.get('count')} answers{versus}",
        )
    if event.kind == "run_started":
        return f"run {event.run_id} of {event.pipeline} starts", f"for trigger {event.subject}"
    if event.kind == "run_finished":
        return f"run {event.run_id} of {event.pipeline} succeeded", "its steps all passed"
    return event.kind.replace("_", " "), event.reason


@dataclass
class Segment:
    """One stretch of the story's traffic, for the closing accuracy table.

    Attributes:
        name: What was going on.
        rows: Answers given.
        right: Answers that matched the ground truth.
        best: Sum, over the rows, of the best accuracy any model could reach on them.
        versions: Rows answered per version.
    """

    name: str
    rows: int = 0
    right: int = 0
    best: float = 0.0
    versions: collections.Counter[int] = field(default_factory=collections.Counter)

    def add(self, rows: int, right: int, best: float) -> None:
        """Count ``rows`` answers, ``right`` of them right, ``best`` the best accuracy on them."""
        self.rows += rows
        self.right += right
        self.best += best * rows


class Narrator:
    """Prints the story: headings, plain sentences, each event as it happens, the summary.

    Args:
        console: Where to print (a ``rich`` console).
        started: When the story started (times are shown relative to it).
        part: The number of the story's part in a longer demo: headings become ``13.2 ...``
            (None: ``2. ...``).
    """

    def __init__(self, console: Console, started: dt.datetime, part: str | None = None) -> None:
        self.console = console
        self.started = started
        self.part = part

    def heading(self, number: str, title: str) -> None:
        """A heading: ``number`` within the part ("" for the part's own heading)."""
        parts = [p for p in (self.part, number) if p]
        label = ".".join(parts) + ("." if len(parts) == 1 else "")
        heading = f"{label} {title}" if label else title
        self.console.print(f"\n[bold]=== {heading} ===[/bold]", highlight=False)

    def say(self, text: str) -> None:
        """A paragraph, wrapped to the console's width."""
        width = max(60, min(self.console.width, 110))
        self.console.print(
            textwrap.fill(" ".join(text.split()), width, break_on_hyphens=False), highlight=False
        )

    def events(self, events: Iterable[ActivityEvent]) -> None:
        """Tell each event as it happens (quiet kinds left out)."""
        for event in events:
            if event.kind in QUIET:
                continue
            what, why = tell(event)
            self.console.print(
                f"  {self._clock(event.time)}  {what}: {why}", highlight=False, soft_wrap=True
            )

    def _clock(self, when: dt.datetime) -> str:
        seconds = max(0, int((when - self.started).total_seconds()))
        return f"+{seconds // 60}:{seconds % 60:02d}"

    def summary(self, events: Sequence[ActivityEvent]) -> None:
        """The closing table: what happened, when and why, from the recorded events."""
        table = Table(title="what the controller did, and why", title_justify="left")
        for column in ("#", "when", "what happened", "why"):
            table.add_column(column, overflow="fold")
        shown = [e for e in events if e.kind in IN_SUMMARY]
        for number, event in enumerate(shown, start=1):
            what, why = tell(event)
            table.add_row(str(number), self._clock(event.time), what, why)
        self.console.print(table)

    def accuracy(self, segments: Sequence[Segment]) -> None:
        """The closing table of online accuracy per stretch of traffic."""
        table = Table(title="what the callers got", title_justify="left")
        for column in ("traffic", "answered by", "answers", "accuracy", "best possible"):
            table.add_column(column, justify="left" if column in ("traffic",) else "right")
        for s in segments:
            if not s.rows:
                continue
            versions = ", ".join(f"v{v} {_pct(n / s.rows)}" for v, n in sorted(s.versions.items()))
            table.add_row(
                s.name, versions, str(s.rows), _pct(s.right / s.rows), _pct(s.best / s.rows)
            )
        self.console.print(table)
