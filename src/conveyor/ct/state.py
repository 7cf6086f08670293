"""What triggers remember between polls, and where it is kept.

:class:`TriggerState` is immutable: each update returns a new state, so the controller can
persist exactly what it acted on. It holds, per trigger, when it was last evaluated and last
fired and (``new_data``) the newest span it has seen, plus the manual requests still waiting.
:func:`save_state` writes it as JSON to ``<home>/ct/state.json`` atomically (a temporary file
in the same folder, fsynced, then renamed over the old one), so a crash leaves either the old
state or the new one, never half of each.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from conveyor.ct.errors import TriggerError
from conveyor.ct.watch import SeenSpan

__all__ = [
    "ManualRequest",
    "TriggerState",
    "ct_dir",
    "load_state",
    "save_state",
    "write_json_atomic",
]

STATE_FILE = "state.json"


def ct_dir(home: Path) -> Path:
    """``<home>/ct``: the folder of the controller's state and manual requests."""
    return Path(home) / "ct"


def _time(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class ManualRequest:
    """A request to run a pipeline now (``conveyor trigger PIPELINE``).

    Attributes:
        id: Unique and time-ordered (``20240101T101500123456Z-1a2b3c4d``).
        pipeline: The ``[pipelines]`` key to run.
        params: Parameters for the run, over the trigger's (values from the command line are
            strings; the pipeline coerces them when it is built).
        requested_at: When it was asked for (UTC).
        requested_by: Who asked (``CONVEYOR_ACTOR``, else the OS user).
        path: The queue file holding it, when it was read from one.
    """

    id: str
    pipeline: str
    params: Mapping[str, Any]
    requested_at: dt.datetime
    requested_by: str
    path: Path | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The JSON form stored in the queue and in the state."""
        return {
            "id": self.id,
            "pipeline": self.pipeline,
            "params": dict(self.params),
            "requested_at": self.requested_at.isoformat(),
            "requested_by": self.requested_by,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], path: Path | None = None) -> ManualRequest:
        """The inverse of :meth:`to_json`."""
        return cls(
            id=str(data["id"]),
            pipeline=str(data["pipeline"]),
            params=dict(data.get("params") or {}),
            requested_at=_time(str(data["requested_at"])),
            requested_by=str(data.get("requested_by", "")),
            path=path,
        )


@dataclass(frozen=True)
class TriggerState:
    """What the triggers remember; every update returns a new state.

    Attributes:
        last_evaluated: Per trigger name, the last poll that evaluated it.
        last_fired: Per trigger name, the last time it fired (and was acted on).
        last_span: Per ``new_data`` trigger name, the newest span already handled.
        pending_manual: Manual requests not yet run, oldest first.

    Example:
        >>> now = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
        >>> TriggerState().fired("nightly", now).last_fired["nightly"] == now
        True
    """

    last_evaluated: Mapping[str, dt.datetime] = field(default_factory=dict)
    last_fired: Mapping[str, dt.datetime] = field(default_factory=dict)
    last_span: Mapping[str, SeenSpan] = field(default_factory=dict)
    pending_manual: tuple[ManualRequest, ...] = ()

    def evaluated(self, trigger: str, now: dt.datetime) -> TriggerState:
        """This state with ``trigger`` evaluated at ``now``."""
        return replace(self, last_evaluated={**self.last_evaluated, trigger: now})

    def fired(self, trigger: str, now: dt.datetime) -> TriggerState:
        """This state with ``trigger`` fired (and evaluated) at ``now``."""
        return replace(
            self,
            last_fired={**self.last_fired, trigger: now},
            last_evaluated={**self.last_evaluated, trigger: now},
        )

    def saw_span(self, trigger: str, span: SeenSpan) -> TriggerState:
        """This state with ``span`` as the newest span ``trigger`` has handled."""
        return replace(self, last_span={**self.last_span, trigger: span})

    def with_requests(self, requests: Iterable[ManualRequest]) -> TriggerState:
        """This state with ``requests`` added to the pending ones (known ids are skipped)."""
        known = {r.id for r in self.pending_manual}
        added = [r for r in requests if r.id not in known]
        merged = sorted([*self.pending_manual, *added], key=lambda r: (r.requested_at, r.id))
        return replace(self, pending_manual=tuple(merged))

    def without_request(self, request_id: str) -> TriggerState:
        """This state with the request ``request_id`` removed (it was run)."""
        kept = tuple(r for r in self.pending_manual if r.id != request_id)
        return replace(self, pending_manual=kept)

    def to_json(self) -> dict[str, Any]:
        """The JSON form written by :func:`save_state`."""
        return {
            "version": 1,
            "last_evaluated": {k: v.isoformat() for k, v in sorted(self.last_evaluated.items())},
            "last_fired": {k: v.isoformat() for k, v in sorted(self.last_fired.items())},
            "last_span": {k: v.to_json() for k, v in sorted(self.last_span.items())},
            "pending_manual": [r.to_json() for r in self.pending_manual],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TriggerState:
        """The inverse of :meth:`to_json`."""
        return cls(
            last_evaluated={k: _time(v) for k, v in data.get("last_evaluated", {}).items()},
            last_fired={k: _time(v) for k, v in data.get("last_fired", {}).items()},
            last_span={k: SeenSpan.from_json(v) for k, v in data.get("last_span", {}).items()},
            pending_manual=tuple(
                ManualRequest.from_json(r) for r in data.get("pending_manual", [])
            ),
        )


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` so readers see the old file or the new one, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself must survive a power cut
    finally:
        os.close(folder)


def load_state(home: Path) -> TriggerState:
    """The state saved under ``home``, or an empty one when there is none.

    Raises:
        TriggerError: the state file exists but cannot be read.
    """
    path = ct_dir(home) / STATE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return TriggerState()
    except OSError as exc:
        raise TriggerError(f"cannot read the trigger state {path}: {exc.strerror}") from exc
    try:
        return TriggerState.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TriggerError(
            f"the trigger state {path} is corrupt ({exc}); move it away to start afresh"
        ) from exc


def save_state(home: Path, state: TriggerState) -> Path:
    """Write ``state`` to ``<home>/ct/state.json`` atomically and return the path."""
    path = ct_dir(home) / STATE_FILE
    write_json_atomic(path, state.to_json())
    return path
