"""The structured access log: one JSON line per HTTP request.

Lines go to one of two places:

- by default, the ``conveyor.serving.access`` logger at INFO (disabled unless a handler or a
  level asks for it), so an embedding application routes them like any other log;
- after :func:`log_access_to_stderr` (``conveyor serve`` without ``--no-access-log``), a
  :class:`BatchedLineWriter` on stderr instead: the event loop only appends a tuple to a list,
  and a background thread encodes and writes what gathered every 50 ms in one ``write``. The
  logging path costs about 80 µs per request on the event loop (a ``LogRecord``, the
  formatter, a queue) and its listener thread wrote one line per system call, taking the GIL
  from the loop hundreds of times a second; ``benchmarks/serving.py`` measured about 30 % more
  requests/s without it. A crash loses at most the last interval's lines; a clean exit and
  the server's shutdown flush everything.

:class:`AccessLine` is what a line holds; :meth:`AccessLine.to_json` is its text.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import sys
import threading
from collections.abc import Callable
from typing import IO, NamedTuple

from conveyor.serving.json_accel import orjson as _orjson

__all__ = [
    "ACCESS_LOGGER",
    "AccessLine",
    "BatchedLineWriter",
    "emit",
    "enabled",
    "flush",
    "log_access_to_stderr",
]

ACCESS_LOGGER = "conveyor.serving.access"
access_logger = logging.getLogger(ACCESS_LOGGER)


class AccessLine(NamedTuple):
    """One answered HTTP request, as the access log records it."""

    method: str
    path: str
    status: int
    seconds: float
    request_id: str | None
    model: str | None
    version: str | None
    route: str | None
    protocol: str

    def to_json(self) -> str:
        """The line's JSON text: the fields above, latency as ``latency_ms`` (3 decimals)."""
        fields = {
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "latency_ms": round(self.seconds * 1000.0, 3),
            "request_id": self.request_id,
            "model": self.model,
            "version": self.version,
            "route": self.route,
            "protocol": self.protocol,
        }
        if _orjson is not None:
            return str(_orjson.dumps(fields), "utf-8")
        return json.dumps(fields, separators=(",", ":"))


class BatchedLineWriter:
    """Gathers access lines and writes them from a daemon thread every ``interval_s``.

    ``stream`` is called at each write, so a caller that swaps ``sys.stderr`` (a test runner,
    an embedding app) gets the lines where it points now. Write errors (a closed stream) drop
    the batch silently: the access log must never take the server down.
    """

    def __init__(
        self, stream: Callable[[], IO[str]] = lambda: sys.stderr, interval_s: float = 0.05
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.interval_s = interval_s
        self._stream = stream
        self._lines: list[AccessLine] = []
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="access-log-writer", daemon=True)
        self._thread.start()

    def add(self, line: AccessLine) -> None:
        """Queue one line; O(1), no I/O (``list.append`` is atomic under the GIL)."""
        self._lines.append(line)

    def flush(self) -> None:
        """Write every queued line now, in the calling thread."""
        with self._write_lock:
            lines, self._lines = self._lines, []
            if not lines:
                return
            text = "\n".join(line.to_json() for line in lines) + "\n"
            with contextlib.suppress(OSError, ValueError):
                stream = self._stream()
                stream.write(text)
                stream.flush()

    def close(self) -> None:
        """Stop the thread and write what is left; idempotent."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()


_writer: BatchedLineWriter | None = None
_writer_lock = threading.Lock()


def log_access_to_stderr() -> None:
    """Write the access log to stderr (batched, off the event loop) in this process; once.

    From then on lines no longer go to the ``conveyor.serving.access`` logger.
    """
    global _writer
    with _writer_lock:
        if _writer is None:
            _writer = BatchedLineWriter()
            atexit.register(_writer.close)


def enabled() -> bool:
    """Whether a line would be written anywhere (the caller can skip building it)."""
    return _writer is not None or access_logger.isEnabledFor(logging.INFO)


def emit(line: AccessLine) -> None:
    """Write one line: to the stderr writer when installed, else to the logger at INFO."""
    writer = _writer
    if writer is not None:
        writer.add(line)
    elif access_logger.isEnabledFor(logging.INFO):
        access_logger.info(line.to_json())


def flush() -> None:
    """Write the stderr writer's queued lines now (the server's shutdown calls this)."""
    writer = _writer
    if writer is not None:
        writer.flush()
