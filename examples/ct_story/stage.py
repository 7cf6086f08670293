"""The story's moving parts: its folder, the controller, the server, the requests, the polls.

:class:`Stage` owns them; the chapters (:mod:`.chapters`) call it. Its rule is the story's
determinism: the data is seeded, each request has its own sticky caller key, and before each
poll of the controller the server's prediction log is written out; after it, registry changes
are applied to the server at once and a run the poll started is waited for (the requests
pause meanwhile). So on any machine, however loaded, the same requests reach the same versions
and the controller sees the same windows; only the times differ.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import shutil
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
from rich.console import Console

from conveyor.config import load_settings
from conveyor.ct import load_policy, request_manual_run
from conveyor.ct.controller import Controller
from conveyor.ct.report import build_timeline, render_timeline_html
from conveyor.exceptions import ConveyorError
from conveyor.registry import ModelRegistry
from conveyor.store.metadata import ActivityEvent
from conveyor.store.workspace import Workspace

from .narrate import Narrator, Segment
from .traffic import StoryServer, Traffic
from .world import (
    LABEL,
    MODEL,
    PERIODS,
    Period,
    StoryPolicy,
    best_accuracy,
    panel_rows,
    policy_text,
    traffic_rows,
    write_span,
)

__all__ = ["Pool", "Stage", "StoryError", "StoryResult", "StorySize"]

MARKER = ".ct-story"
RUN_TIMEOUT_S = 600.0
PIPELINE = "retrain"


class StoryError(ConveyorError):
    """The story could not be told: a step did not happen as the policy says it should."""


@dataclass(frozen=True)
class StorySize:
    """How big the story is.

    Attributes:
        rows_per_span: Labelled rows that land per span (a retrain's data).
        window: Predictions per monitoring window.
        rows_per_request: Rows per request.
        canary_percent: The canary's share of the callers.
        promote_after: Canary windows before the verdict.
        tolerance: How much lower the canary's accuracy may be than production's.
        ordinary_windows: Windows of ordinary requests before the shift.
        measure_windows: Windows served after each promotion, to measure the new production.
        max_windows: Windows a stage may take before the story gives up.
        seed: Seed of the data and the models.
    """

    rows_per_span: int = 4000
    window: int = 400
    rows_per_request: int = 50
    canary_percent: float = 20.0
    promote_after: int = 2
    tolerance: float = 0.03
    ordinary_windows: int = 2
    measure_windows: int = 5
    max_windows: int = 40
    seed: int = 0

    def __post_init__(self) -> None:
        if self.window % self.rows_per_request:
            raise StoryError(
                f"window ({self.window}) must be a multiple of rows_per_request "
                f"({self.rows_per_request}): windows are lined up with whole requests"
            )

    def policy(self) -> StoryPolicy:
        """The policy's numbers."""
        return StoryPolicy(
            self.window, self.canary_percent, self.promote_after, self.tolerance, seed=self.seed
        )


@dataclass
class StoryResult:
    """What the story did, for the demo's last lines and the acceptance test.

    Attributes:
        folder: The story's folder (its conveyor home; ``conveyor.toml`` is its policy).
        report: The timeline report (HTML).
        marks: When each stretch of traffic began (UTC, before its first request):
            ``ordinary``, ``shift``, ``after_shift`` (the panel, after the promotion),
            ``concept``, ``after_concept`` (the panel again), ``bad_candidate``; and ``end``.
        versions: The versions registered: ``first``, ``shift``, ``concept``, ``bad``.
        segments: Per stretch of traffic (by its mark), what the callers got.
        size: The story's size.
        elapsed_s: How long it took.
        events: Every activity event the controller recorded, oldest first.
    """

    folder: Path
    report: Path
    marks: dict[str, dt.datetime]
    versions: dict[str, int]
    segments: dict[str, Segment]
    size: StorySize
    elapsed_s: float
    events: list[ActivityEvent]

    @property
    def policy_file(self) -> Path:
        """The story's ``conveyor.toml``."""
        return self.folder / "conveyor.toml"


@dataclass
class Pool:
    """The rows of one period, handed out in order."""

    period: Period
    frame: pd.DataFrame
    taken: int = 0

    def take(self, rows: int) -> pd.DataFrame:
        """The next ``rows`` rows.

        Raises:
            StoryError: The period has no more rows: the controller did not act in time.
        """
        if self.taken + rows > len(self.frame):
            raise StoryError(
                f"span {self.period.span}'s requests ran out after {self.taken} rows: the "
                "controller did not act within the story's max_windows"
            )
        part = self.frame.iloc[self.taken : self.taken + rows]
        self.taken += rows
        return part


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Stage:
    """The story's moving parts (see the module docstring)."""

    def __init__(
        self, folder: Path, size: StorySize, console: Console, part: str | None = None
    ) -> None:
        self.folder = folder.resolve()
        self.size = size
        self.began = _now()
        self.clock = time.monotonic()
        self.narrator = Narrator(console, self.began, part)
        self.marks: dict[str, dt.datetime] = {}
        self.versions: dict[str, int] = {}
        self.segments: dict[str, Segment] = {}
        self.segment: Segment | None = None
        self.pools: dict[int, Pool] = {}
        self.answered: collections.Counter[int] = collections.Counter()  # rows per version
        self.first_window: dict[int, int] = {}  # span -> production's window index at its start
        self.recorded: list[ActivityEvent] = []  # every event of every poll, in order
        self.server: StoryServer | None = None
        self.traffic: Traffic | None = None
        self.cleanup = contextlib.ExitStack()  # what close() releases, newest first

    # -- setting up ----------------------------------------------------------------------
    def prepare(self) -> None:
        """A fresh folder, span 1, the policy, the workspace and a started controller."""
        if self.folder.exists():
            if not (self.folder / MARKER).exists():
                raise StoryError(
                    f"{self.folder} exists and is not a story folder; pick another folder"
                )
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        (self.folder / MARKER).write_text("made by examples/ct_story; removed on the next run\n")
        self.data = self.folder / "data"
        self.land(1)
        (self.folder / "conveyor.toml").write_text(policy_text(self.size.policy(), self.data))
        self.policy = load_policy(self.folder / "conveyor.toml")
        self.settings = load_settings(home=self.folder)
        self.workspace = Workspace.open(self.settings)
        self.cleanup.callback(self.workspace.close)
        self.registry = ModelRegistry(self.workspace)
        # one worker process: the steps run one after the other anyway, and one process
        # imports scikit-learn once per run instead of once per worker
        self.controller = Controller(self.workspace, self.policy, max_workers=1)
        self.controller.start()
        abandon = threading.Event()
        abandon.set()  # a story that ends early does not wait for a run in progress
        self.cleanup.callback(
            self.controller.stop, reason="stopped: the story ended early", abandon=abandon
        )

    # -- the controller's polls ------------------------------------------------------------
    def poll(self) -> list[ActivityEvent]:
        """One poll of the controller over everything served so far; runs are waited for."""
        if self.server is not None:
            self.server.flush()
        events = self.controller.step()
        if self.controller.runs.launcher.running():
            self.narrator.events(events)
            self.narrator.say(
                "(requests pause while the run trains, so that the story goes the same way on "
                "every machine; in production they would go on)"
            )
            if not self.controller.runs.launcher.wait(timeout=RUN_TIMEOUT_S):
                raise StoryError(f"a run of {PIPELINE} took more than {RUN_TIMEOUT_S:g} s")
            later = self.controller.step()
            events, shown = events + later, later
        else:
            shown = events
        if self.server is not None:
            self.server.sync()
        self.narrator.events(shown)
        self.recorded += events
        self._check(events)
        return events

    def _check(self, events: list[ActivityEvent]) -> None:
        for event in events:
            if event.kind in ("run_failed", "not_blessed"):
                raise StoryError(f"the story expected a blessed model, but: {event.reason}")
            if event.kind == "registered" and event.version is not None:
                self.versions.setdefault(self._role(), event.version)

    def _role(self) -> str:
        return {0: "first", 1: "shift", 2: "concept"}.get(len(self.versions), "bad")

    def manual_run(self, params: dict[str, str] | None = None) -> list[ActivityEvent]:
        """Queue a manual request (as ``conveyor trigger retrain`` does) and poll."""
        request_manual_run(
            self.settings.home, self.policy, PIPELINE, params or {}, requested_by="the story"
        )
        return self.poll()

    # -- traffic ------------------------------------------------------------------------------
    def open_serving(self) -> None:
        """Start the server and the client."""
        self.server = server = StoryServer(self.settings, MODEL)
        server.start()
        self.cleanup.callback(server.stop)
        client = self.cleanup.enter_context(httpx.Client(base_url=server.url, timeout=60))
        self.traffic = Traffic(client, MODEL, LABEL, self.size.rows_per_request)

    def land(self, span: int) -> Path:
        """Span ``span``'s labelled rows land in the data folder (a retrain's data)."""
        return write_span(self.data, PERIODS[span], self.size.rows_per_span, self.size.seed)

    @property
    def server_url(self) -> str:
        """The server's base URL (once serving)."""
        return self.server.url if self.server is not None else ""

    def pool(self, span: int) -> Pool:
        """The requests of a span's period (the same pool on every call)."""
        if span not in self.pools:
            period = PERIODS[span]
            rows = self.size.max_windows * self.size.window
            self.pools[span] = Pool(period, traffic_rows(period, rows, self.size.seed))
        return self.pools[span]

    def panel(self, span: int) -> Pool:
        """The measuring panel, labelled by the rules of ``span``'s period (a new pool)."""
        period = PERIODS[span]
        rows = self.size.measure_windows * self.size.window
        return Pool(period, panel_rows(period, rows, self.size.seed))

    def begin(self, mark: str, name: str, span: int | None = None) -> None:
        """Start a stretch of traffic: its mark (time) and its accuracy tally; with ``span``,
        remember production's window number at the start of that span's requests."""
        if span is not None:
            production = self.registry.aliases(MODEL)["production"]
            self.first_window[span] = self.answered[production] // self.size.window
        self.marks[mark] = _now()
        self.segment = self.segments[mark] = Segment(name)

    def serve(self, pool: Pool, windows: int = 1, rows: int | None = None) -> list[ActivityEvent]:
        """Serve ``windows`` windows' worth of requests (or ``rows``), polling after each."""
        events: list[ActivityEvent] = []
        for _ in range(windows):
            self._answer(pool.take(rows or self.size.window), pool.period)
            events += self.poll()
        return events

    def _answer(self, rows: pd.DataFrame, period: Period) -> None:
        assert self.traffic is not None and self.segment is not None
        batch = self.traffic.serve(rows, tag=f"span{period.span}")
        self.segment.add(batch.rows, batch.right, best_accuracy(rows, period))
        self.segment.versions.update(batch.by_version)
        self.answered.update(batch.by_version)

    def align(self, pool: Pool, version: int) -> list[ActivityEvent]:
        """Serve just enough of ``pool`` to complete ``version``'s current window.

        Call it when ``version`` answers every caller: what is served next then starts a
        window of its own, so that a measurement or a change of data lines up with windows.
        """
        rest = -self.answered[version] % self.size.window
        return self.serve(pool, rows=rest) if rest else []

    def serve_until(self, pool: Pool, kinds: Collection[str]) -> ActivityEvent:
        """Serve window after window until the controller records one of ``kinds``."""
        for _ in range(self.size.max_windows):
            found = [e for e in self.serve(pool) if e.kind in kinds]
            if found:
                return found[0]
        raise StoryError(
            f"after {self.size.max_windows} windows of span {pool.period.span} the controller "
            f"recorded none of {', '.join(sorted(kinds))}"
        )

    # -- ending ---------------------------------------------------------------------------
    def finish(self) -> StoryResult:
        """Deliver the last labels, stop serving and the controller, write the report."""
        assert self.traffic is not None and self.server is not None
        self.marks["end"] = _now()
        self.traffic.deliver()
        self.server.stop()
        self.server = None
        self.controller.stop(reason="stopped at the end of the story")
        events = self.workspace.metadata.activity.events()
        report = self.folder / "reports" / f"{MODEL}-timeline.html"
        report.parent.mkdir(parents=True, exist_ok=True)
        timeline = build_timeline(self.workspace, MODEL, policy=self.policy)
        report.write_text(render_timeline_html(timeline), encoding="utf-8")
        elapsed = time.monotonic() - self.clock
        return StoryResult(
            self.folder,
            report,
            self.marks,
            self.versions,
            self.segments,
            self.size,
            elapsed,
            events,
        )

    def close(self) -> None:
        """Release what is still open, newest first (after an error too)."""
        self.cleanup.close()
