"""Running pipelines from Python: ``conveyor.run(my_pipeline, n=3)``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conveyor.config import load_settings
from conveyor.core.pipeline import Pipeline
from conveyor.runners.local import LocalRunner
from conveyor.runners.runner import RunObserver, RunResult
from conveyor.store.workspace import Workspace

__all__ = ["run"]


def run(
    pipeline: Pipeline,
    /,
    *,
    home: str | Path | None = None,
    no_cache: bool = False,
    max_workers: int | None = None,
    observer: RunObserver | None = None,
    run_labels: Mapping[str, str] | None = None,
    **params: Any,
) -> RunResult:
    """Build ``pipeline`` with ``params`` and run it on this machine.

    Settings follow the usual order (argument > ``CONVEYOR_*`` > conveyor.toml > defaults).
    ``run_labels`` (text keys and values) are stored with the run, in its
    ``options["labels"]``; the continuous-training controller labels the runs it starts with
    ``{"trigger": NAME, "trigger_event": EVENT_ID}``. The keyword arguments of this function
    are not pipeline parameters, so a pipeline cannot be run this way with a parameter named
    ``home``, ``no_cache``, ``max_workers``, ``observer`` or ``run_labels``.

    Example:
        >>> result = conveyor.run(training, home="/tmp/demo", epochs=3)  # doctest: +SKIP
        >>> result.ok
        True
    """
    ir = pipeline.build(params)
    settings = load_settings(home=home, max_workers=max_workers)
    workspace = Workspace.open(settings)
    try:
        return LocalRunner(workspace, settings.max_workers).run(
            ir, no_cache=no_cache, observer=observer, labels=run_labels
        )
    finally:
        workspace.close()
