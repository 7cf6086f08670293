"""A pool of worker processes for steps, built on pebble.

pebble (rather than ``concurrent.futures``) because it can time out a single task by killing
its worker and replacing it, which is what a per-step timeout needs. Workers are spawned (not
forked: the runner has threads and open database connections) and ask Linux to kill them
when the runner dies (``PR_SET_PDEATHSIG``), so a ``kill -9`` of the runner leaves no orphan
still writing artifacts.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import signal
import sys
from typing import Any

import pebble

__all__ = ["WorkerPool"]


def _worker_init() -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def _warm_up() -> None:
    import conveyor.runners.step  # noqa: F401 - the import is the warm-up


class WorkerPool:
    """Starts its processes on first use; ``submit`` returns a concurrent Future."""

    def __init__(self, max_workers: int) -> None:
        self.max_workers = max_workers
        self._pool: pebble.ProcessPool | None = None

    def _started(self) -> pebble.ProcessPool:
        if self._pool is None:
            self._pool = pebble.ProcessPool(
                max_workers=self.max_workers,
                initializer=_worker_init,
                context=multiprocessing.get_context("spawn"),
            )
        return self._pool

    def submit(self, fn: Any, arg: Any, timeout_s: float | None) -> Any:
        return self._started().schedule(fn, args=(arg,), timeout=timeout_s)

    def warm(self) -> None:
        """Start every worker and import the step executor in it, then return."""
        pool = self._started()
        futures = [pool.schedule(_warm_up) for _ in range(self.max_workers)]
        for future in futures:
            future.result()

    def close(self, cancel: bool = False) -> None:
        if self._pool is None:
            return
        if cancel:
            self._pool.stop()
        else:
            self._pool.close()
        self._pool.join()
        self._pool = None
