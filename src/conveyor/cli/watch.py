"""``conveyor watch``: run the continuous-training controller until stopped.

The policy (``--policy FILE`` or the nearest conveyor.toml) is loaded and checked first: a bad
policy exits 2 with every problem, one ``FILE:LINE`` each, before the workspace is even opened,
so nothing is written. Then the controller takes the lease (a second ``conveyor watch`` on the
same metadata database exits 2), settles what a crashed predecessor left, and polls. Each
event is printed as one line as it happens (``--json``: one JSON object per line).

Stopping: the first Ctrl-C (or SIGTERM) stops polling and waits for the runs in progress to
end, concluding them; a second one marks them interrupted and exits at once.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.markup import escape

from conveyor.cli.events import KIND_STYLES
from conveyor.cli.render import out_console
from conveyor.cli.state import settings_from
from conveyor.ct.errors import display_path
from conveyor.ct.policy import load_policy
from conveyor.store.metadata.activity_records import ActivityEvent
from conveyor.store.workspace import Workspace

__all__ = ["watch_command"]


def _print_events(events: Sequence[ActivityEvent], json_lines: bool) -> None:
    console = out_console()
    for event in events:
        if json_lines:
            print(json.dumps(event.to_dict(), default=str), flush=True)
            continue
        what = " ".join(
            part
            for part in (
                event.model_ref or "",
                f"r{event.run_id}" if event.run_id is not None else "",
                f"{event.subject}:" if event.subject else "",
            )
            if part
        )
        style = KIND_STYLES.get(event.kind, "")
        kind = f"[{style}]{event.kind}[/]" if style else event.kind
        console.print(
            f"{event.time:%H:%M:%S} {kind} {escape(what)}{' ' if what else ''}"
            f"{escape(event.reason)}",
            soft_wrap=True,
            highlight=False,
        )


@contextmanager
def _signals(stop: threading.Event, abandon: threading.Event) -> Iterator[None]:
    """First SIGINT/SIGTERM: stop polling; second: abandon the runs in progress."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            abandon.set()
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def watch_command(
    ctx: typer.Context,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy", help="Policy file (default: the nearest conveyor.toml).", show_default=False
        ),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="One poll, then wait for the runs it started and stop.")
    ] = False,
    max_polls: Annotated[
        int | None,
        typer.Option("--max-polls", min=1, help="Stop after N polls.", show_default=False),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Worker processes per run.", show_default=False),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON event per line.")] = False,
) -> None:
    """Run the controller: triggers start runs; blessed models are canaried, then promoted or
    rolled back. Everything it does is in `conveyor events`."""
    loaded = load_policy(policy if policy is not None else settings_from(ctx))
    from conveyor.ct.controller import Controller  # monitoring and the runner: on first use

    settings = settings_from(ctx, max_workers=workers)
    stop, abandon = threading.Event(), threading.Event()
    workspace = Workspace.open(settings)
    try:
        controller = Controller(workspace, loaded, max_workers=workers)
        _print_events(controller.start(), json_out)
        if not json_out:
            source = display_path(loaded.source) if loaded.source else "the policy"
            out_console().print(
                f"[dim]watching {escape(source)}; Ctrl-C: stop after the running runs "
                "(twice: now)[/]",
                highlight=False,
            )
        reason = "stopped"
        with _signals(stop, abandon):
            try:
                polls = controller.run_forever(
                    stop,
                    max_polls=1 if once else max_polls,
                    on_events=lambda events: _print_events(events, json_out),
                )
                reason = f"stopped after {polls} poll(s)"
            except BaseException as exc:
                abandon.set()
                reason = f"stopped by an error: {exc}"
                raise
            finally:
                _print_events(controller.stop(reason=reason, abandon=abandon), json_out)
    finally:
        workspace.close()
