"""A background thread that tells the metadata store a run's runner is still alive."""

from __future__ import annotations

import logging
import threading

from conveyor.store.metadata.store import MetadataStore

__all__ = ["Heartbeat"]

log = logging.getLogger(__name__)


class Heartbeat:
    """Calls ``store.heartbeat(run_id)`` every ``interval_s`` until stopped."""

    def __init__(self, store: MetadataStore, run_id: int, interval_s: float) -> None:
        self._store = store
        self._run_id = run_id
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"heartbeat-run-{run_id}", daemon=True
        )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval_s + 5)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._store.heartbeat(self._run_id)
            except Exception:  # a missed beat must not kill the run
                log.warning("heartbeat for run %s failed", self._run_id, exc_info=True)
