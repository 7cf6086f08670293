"""The story's serving side: a real server, a real HTTP client, ground truth that comes later.

:class:`StoryServer` runs the serving app (:func:`conveyor.serving.app.create_app`) on a free
port of 127.0.0.1 in a thread of the story's process, over its own workspace, as
``conveyor serve`` would. Its watcher re-reads the registry every half second, so the
controller's canary split and promotions reach it live; the story also applies them at once
(:meth:`StoryServer.sync`) and writes the prediction log out (:meth:`StoryServer.flush`) before
each poll of the controller, so that the same requests go to the same versions and every poll
sees the same predictions on every machine, however loaded.

:class:`Traffic` sends the rows of a period with ``httpx`` over the Open Inference Protocol,
``rows_per_request`` rows per request, each request with its own caller (the sticky routing
key ``X-Sticky-Key``: a canary at 10 % answers about one caller in ten). Ground truth is
*delayed*: the labels of one batch are posted to ``POST /v1/feedback`` only after the next
batch was answered.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

import httpx
import pandas as pd

from conveyor.config import Settings
from conveyor.serving.app import ServingState, create_app
from conveyor.serving.server import BackgroundServer
from conveyor.serving.server_process import free_port
from conveyor.store.workspace import Workspace

__all__ = ["Batch", "StoryServer", "Traffic"]

MEMORY_BUDGET = 1 << 30
RELOAD_INTERVAL_S = 0.5


class StoryServer:
    """The serving app on a thread, over its own workspace (see the module docstring).

    Args:
        settings: Where the registry, artifacts and prediction log are.
        model: The model it serves (it must have an alias already).
    """

    def __init__(self, settings: Settings, model: str) -> None:
        self.workspace = Workspace.open(settings)
        self.app = create_app(
            self.workspace,
            models=[model],
            memory_budget_bytes=MEMORY_BUDGET,
            reload_interval_s=RELOAD_INTERVAL_S,
        )
        self.server = BackgroundServer(self.app, port=free_port())

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8123``."""
        return self.server.url

    @property
    def state(self) -> ServingState:
        """The app's serving state (router, prediction log)."""
        state: ServingState = self.app.state.serving
        return state

    def start(self) -> None:
        """Start serving; returns once the server accepts connections."""
        self.server.start(timeout=60)

    def sync(self) -> None:
        """Apply the registry's aliases and traffic split now (what the watcher does soon)."""
        self.state.models.refresh()

    def flush(self) -> None:
        """Write the buffered predictions to the log now (the app does it every second)."""
        self.state.log.flush()

    def stop(self) -> None:
        """Stop serving (the shutdown flushes the log) and close the workspace; idempotent."""
        try:
            self.server.stop()
        finally:
            self.workspace.close()


@dataclass
class Batch:
    """What one batch of requests got back.

    Attributes:
        rows: Rows answered.
        right: Rows whose answer matched the ground truth.
        by_version: Rows answered per model version.
    """

    rows: int = 0
    right: int = 0
    by_version: collections.Counter[int] = field(default_factory=collections.Counter)

    def add(self, other: Batch) -> None:
        """Count ``other`` in this one."""
        self.rows += other.rows
        self.right += other.right
        self.by_version.update(other.by_version)


class Traffic:
    """Sends rows to the server and posts their ground truth one batch later.

    Args:
        client: An ``httpx.Client`` with the server's base URL.
        model: The model to ask.
        label: The ground-truth column of the rows.
        rows_per_request: Rows per request.
    """

    def __init__(self, client: httpx.Client, model: str, label: str, rows_per_request: int) -> None:
        self.client = client
        self.model = model
        self.label = label
        self.rows_per_request = rows_per_request
        self.requests = 0
        self._held: list[dict[str, Any]] = []

    def serve(self, frame: pd.DataFrame, tag: str) -> Batch:
        """Answer every row of ``frame``; post the previous batch's labels; hold these."""
        batch, labels = Batch(), []
        for start in range(0, len(frame), self.rows_per_request):
            rows = frame.iloc[start : start + self.rows_per_request]
            request_id = f"{tag}-{self.requests:05d}"
            answered = self._ask(rows, request_id, caller=f"caller-{self.requests}")
            self.requests += 1
            truth = rows[self.label].tolist()
            batch.add(answered.scored(truth))
            labels.append({"request_id": request_id, "label": truth})
        self.deliver()
        self._held = labels
        return batch

    def deliver(self) -> int:
        """Post the labels held back so far; return how many requests they cover."""
        held, self._held = self._held, []
        if held:
            reply = self.client.post("/v1/feedback", json={"feedback": held})
            reply.raise_for_status()
        return len(held)

    def _ask(self, rows: pd.DataFrame, request_id: str, caller: str) -> _Answer:
        features = rows.drop(columns=[self.label])
        inputs = [
            {
                "name": name,
                "datatype": "INT64" if pd.api.types.is_integer_dtype(column) else "BYTES",
                "shape": [len(column)],
                "data": column.tolist(),
            }
            for name, column in features.items()
        ]
        reply = self.client.post(
            f"/v2/models/{self.model}/infer",
            json={"id": request_id, "inputs": inputs},
            headers={"X-Request-Id": request_id, "X-Sticky-Key": caller},
        )
        reply.raise_for_status()
        outputs = {o["name"]: o["data"] for o in reply.json()["outputs"]}
        return _Answer(int(reply.headers["X-Model-Version"]), list(outputs["label"]))


@dataclass(frozen=True)
class _Answer:
    version: int
    labels: list[Any]

    def scored(self, truth: list[Any]) -> Batch:
        right = sum(a == b for a, b in zip(self.labels, truth, strict=True))
        return Batch(len(truth), right, collections.Counter({self.version: len(truth)}))
