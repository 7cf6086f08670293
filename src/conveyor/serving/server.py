"""Running the serving app with uvicorn: in the foreground (``conveyor serve``) or a thread.

- :func:`parse_size` reads a memory budget such as ``"2GB"`` or ``"512MiB"``;
- :func:`serve` blocks, serving until interrupted (uvicorn handles SIGINT/SIGTERM and runs the
  app's shutdown, which flushes the prediction log);
- :class:`BackgroundServer` starts a real server on a thread and stops it through
  ``should_exit`` (tests, canary checks);

Several worker processes (``conveyor serve --workers N``) are :mod:`conveyor.serving.workers`.
"""

from __future__ import annotations

import re
import threading
import time
from types import TracebackType

import uvicorn
from starlette.applications import Starlette

__all__ = ["BackgroundServer", "parse_size", "serve"]

_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_size(text: str) -> int:
    """Bytes in ``text``: ``"2GB"`` (10^9), ``"512MiB"`` (2^20), ``"1000"`` (bytes).

    Raises:
        ValueError: Not a positive size with a known unit.
    """
    match = _SIZE_RE.match(text)
    unit = match.group(2).upper() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size such as 2GB, 512MiB or 1000000")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise ValueError(f"{text!r} must be more than 0 bytes")
    return size


def _config(app: Starlette, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, lifespan="on", log_level="warning")


def serve(app: Starlette, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve ``app`` until interrupted; shutdown flushes the prediction log."""
    uvicorn.Server(_config(app, host, port)).run()


class BackgroundServer:
    """A real uvicorn server on a thread: ``with BackgroundServer(app, port=p) as server:``.

    Entering waits until the server accepts connections (startup, including preloading, done);
    leaving sets ``should_exit`` and waits for the graceful shutdown.
    """

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.host, self.port = host, port
        self.server = uvicorn.Server(_config(app, host, port))
        self._thread = threading.Thread(target=self._run, name="conveyor-serve", daemon=True)
        self.exit_code: int | None = None
        """uvicorn's exit code when it gave up (e.g. the app's startup failed), else None."""

    def _run(self) -> None:
        try:
            self.server.run()
        except SystemExit as exc:  # uvicorn exits when the app's startup fails
            self.exit_code = exc.code if isinstance(exc.code, int) else 1

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8080``."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start the thread and wait for the server to be up.

        Raises:
            RuntimeError: The server stopped (e.g. the port is taken) or did not start in time.
        """
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the server on {self.url} stopped during startup")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server on {self.url} did not start in {timeout} s")
            time.sleep(0.02)

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the server to exit and wait for its graceful shutdown."""
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
