"""What the controller writes: activity events and its own state, one transaction per step.

:class:`Ledger` is the controller's view of the activity store
(:attr:`MetadataStore.activity <conveyor.store.metadata.MetadataStore.activity>`). Each
:meth:`Ledger.record` writes events and state changes together, fenced by the controller's
lease, so a crash leaves either the whole of a step or none of it, and a controller that lost
its lease writes nothing. Events recorded from run threads and from the poll loop are
collected until :meth:`Ledger.drain`, which is how ``Controller.step`` returns what happened.

State keys (JSON values in ``ct_state``)::

    controller/triggers             the TriggerState (last evaluations, fires, spans, requests)
    controller/pending/PIPELINE     fires held back for a pipeline (debounce, busy, rate limit)
    controller/inflight/PIPELINE    the run in progress: its trigger event and run id
    controller/last_run/PIPELINE    when the pipeline's last run started
    controller/alerts               per alert rule, when it last fired
    controller/rollout/MODEL        the canary roll-out in progress
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from conveyor.ct.lease import LEASE_NAME
from conveyor.store.metadata.activity import ActivityStore, StateChanges
from conveyor.store.metadata.activity_records import ActivityEvent, NewActivityEvent, Recorded

__all__ = ["SOURCE", "Ledger", "key"]

SOURCE = "controller"
_PREFIX = "controller/"


def key(*parts: str) -> str:
    """The state key of ``parts``: ``key("pending", "census")`` -> ``controller/pending/census``."""
    return _PREFIX + "/".join(parts)


class Ledger:
    """Events and state of one controller, fenced by its lease.

    Args:
        activity: The workspace's activity store.
        owner: The lease holder writes are fenced by (None: unfenced, for tools and tests).
        clock: The controller's clock; events without a time get its reading.
    """

    def __init__(
        self,
        activity: ActivityStore,
        owner: str | None,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.activity = activity
        self.owner = owner
        self.clock = clock
        self._recorded: list[ActivityEvent] = []
        self._lock = threading.Lock()

    def event(
        self,
        kind: str,
        reason: str,
        *,
        time: dt.datetime | None = None,
        source: str = SOURCE,
        **fields: Any,
    ) -> NewActivityEvent:
        """A new event (``time`` defaults to the controller's clock now)."""
        return NewActivityEvent(
            kind, reason=reason, source=source, time=time or self.clock(), **fields
        )

    def record(
        self,
        events: Sequence[NewActivityEvent] = (),
        *,
        state: StateChanges | None = None,
        link: Mapping[int, int] | None = None,
    ) -> Recorded:
        """Write ``events`` and ``state`` in one transaction fenced by the lease.

        Raises:
            LeaseLostError: another controller holds the lease; nothing was written.
        """
        fence: dict[str, Any] = {}
        if self.owner is not None:
            fence = {"lease": LEASE_NAME, "owner": self.owner}
        done = self.activity.record(events, state=state, link=link, **fence)
        if done.written:
            with self._lock:
                self._recorded.extend(done.events)
        return done

    def add(self, kind: str, reason: str, **fields: Any) -> ActivityEvent | None:
        """Record one event; None when its ``dedupe_key`` was recorded before."""
        done = self.record([self.event(kind, reason, **fields)])
        return done.events[0] if done.written else None

    def get(self, name: str, default: Any = None) -> Any:
        """The state value under ``name`` (a full key, see :func:`key`)."""
        return self.activity.get_state(name, default)

    def all(self, *parts: str) -> dict[str, Any]:
        """Every state value under ``key(*parts)/``, by the key's last part."""
        prefix = key(*parts) + "/"
        return {k[len(prefix) :]: v for k, v in self.activity.get_states(prefix).items()}

    def drain(self) -> list[ActivityEvent]:
        """The events recorded since the last drain, in the order they were written."""
        with self._lock:
            events, self._recorded = self._recorded, []
        return sorted(events, key=lambda e: e.id)
