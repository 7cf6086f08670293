"""``conveyor serve`` in a child process: started on a free port, awaited, stopped by its pid.

The ``infra_validate`` step serves a candidate model this way before it may be registered,
and ``make demo`` serves the registered model this way. The child runs the real command line
(``python -m conveyor serve --host 127.0.0.1 --port P``) against the stores of the given
:class:`~conveyor.config.Settings`, so what is exercised is what a deployment runs: the CLI,
the app, the verified bundle loading and the protocols.

- :meth:`ServerProcess.start` waits (bounded) until ``GET /v2/health/ready`` answers 200. The
  server binds its port only after it has loaded every served model, so a 503 from a server
  that answers means a model failed to load: that, or the child exiting first, raises
  :class:`ServerStartError` with the tail of the child's output, which names the cause.
- :meth:`ServerProcess.stop` sends SIGTERM (uvicorn then shuts down gracefully, which flushes
  the prediction log) and SIGKILL after a grace period.
- On Linux the child asks the kernel for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``),
  so a step killed on timeout leaves no server behind.

Example:
    >>> with ServerProcess(load_settings(), models=["census"]) as server:
    ...     httpx.post(f"{server.url}/v2/models/census/infer", json=request)
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType, TracebackType
from typing import IO, TYPE_CHECKING, NoReturn

from conveyor.config import Settings
from conveyor.exceptions import ConveyorError

if TYPE_CHECKING:
    import httpx

__all__ = ["ServerProcess", "ServerStartError", "free_port", "import_httpx", "quiet_http_logs"]

HOST = "127.0.0.1"
_PORT_TAKEN = ("address already in use", "errno 98", "errno 48")
_PORT_ATTEMPTS = 3

# The child's entry point: ``python -m conveyor`` plus the parent-death signal. The parent's
# pid is checked after the prctl call, which closes the race of a parent dying before it.
_BOOTSTRAP = """\
import os, signal, sys
if sys.platform == "linux":
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != int(os.environ.pop("CONVEYOR_SERVE_PARENT", os.getppid())):
        sys.exit("conveyor serve: the parent process is gone")
sys.argv[0] = "conveyor"
from conveyor.cli import main
main()
"""


class ServerStartError(ConveyorError):
    """``conveyor serve`` exited, or could not load a model, or was not ready in time.

    Attributes:
        output: the tail of the server's output (stderr and stdout).
    """

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def import_httpx() -> ModuleType:
    """The httpx module, or ServerStartError naming the extra that brings it."""
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - the serving extra brings it
        raise ServerStartError(
            f"talking to a server needs httpx: pip install 'conveyor-ml[serving]' ({exc})"
        ) from exc
    return httpx


@contextlib.contextmanager
def quiet_http_logs() -> Iterator[None]:
    """Keep httpx's one INFO line per request out of the logs (a step's log, say)."""
    loggers = [logging.getLogger(name) for name in ("httpx", "httpcore")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class ServerProcess:
    """``conveyor serve`` as a child process on 127.0.0.1.

    Args:
        settings: the workspace to serve (its metadata database and artifact store are passed
            to the child through ``CONVEYOR_*`` variables, so it opens the same stores).
        port: the TCP port; None picks a free one (and another one if it is taken meanwhile).
        models: serve only these models (``--models``); also the models whose readiness is
            checked while starting.
        memory_budget: ``--memory-budget`` of the server.
        access_log: keep the server's JSON access log (in the output file).
        log_path: where the child's stdout and stderr go (default
            ``<home>/logs/serve-<port>.log``).
        extra_args: more ``conveyor serve`` options.

    Example:
        >>> server = ServerProcess(settings, models=["census"])
        >>> server.start(timeout_s=60)
        >>> server.url
        'http://127.0.0.1:41234'
        >>> server.stop()
        0
    """

    def __init__(
        self,
        settings: Settings,
        *,
        port: int | None = None,
        models: Sequence[str] | None = None,
        memory_budget: str = "2GB",
        access_log: bool = False,
        log_path: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.settings = settings
        self._fixed_port = port
        self.port = port or 0
        self.models = list(models) if models is not None else None
        self.memory_budget = memory_budget
        self.access_log = access_log
        self._log_path = log_path
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None
        self.killed = False
        """Whether the last :meth:`stop` had to SIGKILL the child (no graceful shutdown)."""
        self._output: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The child's process id (None before :meth:`start`)."""
        return self.process.pid if self.process is not None else None

    @property
    def log_path(self) -> Path:
        """The file holding the child's stdout and stderr."""
        return self._log_path or self.settings.home / "logs" / f"serve-{self.port}.log"

    def command(self) -> list[str]:
        """The child's command line (with the port chosen)."""
        args = ["serve", "--host", HOST, "--port", str(self.port)]
        args += ["--memory-budget", self.memory_budget]
        if self.models is not None:
            args += ["--models", ",".join(self.models)]
        args.append("--access-log" if self.access_log else "--no-access-log")
        return [sys.executable, "-c", _BOOTSTRAP, *args, *self.extra_args]

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            CONVEYOR_HOME=str(self.settings.home),
            CONVEYOR_METADATA_URL=self.settings.metadata_url,
            CONVEYOR_ARTIFACT_URL=self.settings.artifact_url,
            CONVEYOR_SERVE_PARENT=str(os.getpid()),
        )
        return env

    def _spawn(self) -> None:
        self.port = self._fixed_port or free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._output = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            env=self._environment(),
            cwd=self.settings.home,
        )

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the child and wait until it is ready to answer.

        Raises:
            ServerStartError: the child exited (a port that was free is taken meanwhile: up
                to three ports are tried), a model could not be loaded, or the server was not
                ready within ``timeout_s``; the message ends with the server's last output.
        """
        if self.process is not None:
            raise ServerStartError(f"the server on {self.url} was started already")
        self.settings.home.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout_s
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            self._spawn()
            try:
                self._wait_ready(deadline, timeout_s)
                return
            except ServerStartError as exc:
                self.stop()
                taken = any(marker in exc.output.lower() for marker in _PORT_TAKEN)
                if self._fixed_port or not taken or attempt == _PORT_ATTEMPTS:
                    raise

    def _wait_ready(self, deadline: float, timeout_s: float) -> None:
        client_module = import_httpx()
        assert self.process is not None
        with client_module.Client(base_url=self.url, timeout=5.0) as client:
            while True:
                code = self.process.poll()
                if code is not None:
                    self._fail(f"`conveyor serve` exited with code {code} before it was ready")
                try:
                    answer = client.get("/v2/health/ready")
                except client_module.TransportError:
                    answer = None
                if answer is not None and answer.status_code == 200:
                    return
                if answer is not None:
                    self._check_models(client)
                if time.monotonic() > deadline:
                    self._fail(f"the server on {self.url} was not ready within {timeout_s:g} s")
                time.sleep(0.05)

    def _check_models(self, client: httpx.Client) -> None:
        """The server answers but is not ready: name the model that failed to load."""
        for name in self.models or ():
            answer = client.get(f"/v2/models/{name}/ready")
            if answer.status_code != 200:
                self._fail(f"the server on {self.url} could not load model {name!r}")

    def _fail(self, message: str) -> NoReturn:
        tail = self.output_tail()
        raise ServerStartError(f"{message}; its last output:\n{tail}" if tail else message, tail)

    def output_tail(self, lines: int = 20, max_chars: int = 4000) -> str:
        """The last ``lines`` lines of the child's output (at most ``max_chars``)."""
        try:
            text = self.log_path.read_bytes()[-64_000:].decode("utf-8", errors="replace")
        except OSError:
            return ""
        tail = "\n".join(text.strip().splitlines()[-lines:])
        return tail[-max_chars:]

    def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM the child (a graceful shutdown), SIGKILL it after ``grace_s``.

        Returns:
            The child's exit code (None when it was never started). After a graceful
            shutdown it is ``-SIGTERM``: uvicorn re-raises the signal it handled.
        """
        process, self.process = self.process, None
        code: int | None = None
        self.killed = False
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(grace_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                    self.killed = True
            code = process.returncode
        if self._output is not None:
            self._output.close()
            self._output = None
        return code

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
