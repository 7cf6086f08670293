"""The whole continuous-training story, told by a real controller, server and pipeline.

:func:`run_story` plays it in a folder of its own -- a conveyor project: ``conveyor.toml``
with the policy, ``data/`` with the spans, and the workspace -- in one process:

1. **First deployment.** Span 1 lands; a manual request runs the lean retraining pipeline
   (``examples/census/retrain.py``) through the controller; with no production yet, the
   blessed version goes straight to production.
2. **Ordinary days.** The server answers span 2's requests (a real HTTP client, one caller
   per request); their ground truth comes one batch later. The controller polls after each
   window's worth of requests: nothing to do.
3. **A covariate shift.** Span 3's people are older: the first full window of their requests
   breaks the ``age-drift`` alert, its trigger retrains on span 3, the blessed candidate gets
   a canary share of the callers, is judged on its windows' ground truth against production
   over the same period, and is promoted.
4. **A concept drift.** Span 4's people are the same, but what decides income changes: the
   accuracy falls, ``accuracy-drop`` fires once two windows' ground truth shows it, and the
   same loop runs again. Accuracy comes back.
5. **A bad candidate.** Someone retrains by hand with a bug that inverts the labels: offline
   it looks excellent (its evaluation data has the same bug), so it is blessed; online the
   canary is wrong most of the time and is rolled back. Production never changes.

It ends with what happened, when and why (read from the recorded events), the accuracy the
callers got in each stretch of traffic, and the path of the timeline report.

Run it alone with ``python examples/ct_story/run.py [FOLDER] [--small]``.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from .chapters import CHAPTERS, epilogue
from .stage import Stage, StoryError, StoryResult, StorySize

__all__ = ["DEMO", "SMALL", "StoryError", "StoryResult", "StorySize", "run_story"]

DEMO = StorySize()
"""``make demo``'s size: windows of 400 predictions, a 20 % canary."""
SMALL = StorySize(canary_percent=25.0)
"""The acceptance test's size: a larger canary share, so fewer requests."""


def run_story(
    folder: str | Path,
    *,
    size: StorySize = DEMO,
    console: Console | None = None,
    part: str | None = None,
) -> StoryResult:
    """Play the continuous-training story in ``folder`` (replaced if it holds a story).

    Args:
        folder: The story's folder: its conveyor home, data and policy.
        size: How big it is (:data:`DEMO`, :data:`SMALL`).
        console: Where the narration goes (default: the terminal).
        part: Its part number in a longer demo, for the headings (``"13"`` -> ``13.2 ...``).

    Returns:
        What happened: marks, versions, events, the report's path.

    Raises:
        StoryError: Something did not happen as the policy says it should; the folder keeps
            everything recorded so far.

    Example:
        >>> result = run_story(".conveyor/ct-story")  # doctest: +SKIP
        >>> result.report  # doctest: +SKIP
        PosixPath('.../ct-story/reports/income-timeline.html')
    """
    stage = Stage(Path(folder), size, console or Console(), part)
    try:
        stage.prepare()
        for chapter in CHAPTERS:
            chapter(stage)
        result = stage.finish()
    finally:
        stage.close()
    epilogue(stage, result)
    return result
