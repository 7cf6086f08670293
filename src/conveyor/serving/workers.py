"""Several uvicorn worker processes behind one port (``conveyor serve --workers N``).

uvicorn's multi-process mode spawns N fresh interpreters that share the listening socket; each
imports an app *factory* by name, so the settings cannot travel as Python objects. The parent
writes them as JSON into the environment variable :data:`CONFIG_ENV` (inherited by the spawned
workers) and :func:`app_from_environment` reads them back in each worker. Secrets stay out of
it: the bearer token is read by each worker from the variable named by ``token_env``, as the
parent would.

Each worker is a whole server: it opens the workspace, has its own model cache (every
deployed version loaded once per worker), its own prediction-log writer (file names carry the
writer's pid, so workers never collide) and its own hot-reload watcher. ``/metrics`` sums the
counters of all workers through prometheus_client's multi-process files
(:mod:`conveyor.serving.metrics_multiprocess`). SIGTERM or SIGINT to the parent makes uvicorn
send SIGTERM to every worker; each finishes its requests and its queued shadow calls, and
flushes its log, before it exits.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette

from conveyor.exceptions import ConfigError

__all__ = ["CONFIG_ENV", "WorkerConfig", "app_from_environment", "serve_workers"]

CONFIG_ENV = "CONVEYOR_SERVE_CONFIG"
"""The environment variable holding a worker's :class:`WorkerConfig` as JSON."""

FACTORY = "conveyor.serving.workers:app_from_environment"


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker needs to build its app: resolved settings and ``create_app`` options.

    Attributes:
        home: The conveyor home.
        metadata_url: The metadata database URL.
        artifact_url: The artifact store URL.
        memory_budget_bytes: Memory budget of each worker's model cache.
        models: Serve only these names (None: every model with an alias).
        token_env: The environment variable holding the bearer token, if any.
        sticky_header: The request header read as the sticky routing key.
        flush_interval_s: How often each worker flushes its prediction log.
        reload_interval_s: How often each worker re-reads the registry (None: never).
        access_log: Write the JSON access log to stderr.
        grpc_port: Each worker also serves gRPC on this port (the workers share it: gRPC
            binds with ``SO_REUSEPORT``, and the kernel spreads connections among them).
        grpc_host: The address gRPC listens on.
    """

    home: str
    metadata_url: str
    artifact_url: str
    memory_budget_bytes: int
    models: list[str] | None = None
    token_env: str | None = None
    sticky_header: str = "X-Sticky-Key"
    flush_interval_s: float = 1.0
    reload_interval_s: float | None = 2.0
    access_log: bool = True
    grpc_port: int | None = None
    grpc_host: str = "127.0.0.1"

    def to_json(self) -> str:
        """The JSON text a worker reads back with :meth:`from_json`."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerConfig:
        """Read :meth:`to_json`'s text.

        Raises:
            ConfigError: Not JSON, or fields are missing or unknown.
        """
        try:
            data: Any = json.loads(text)
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"${CONFIG_ENV} is not a serving worker configuration: {exc}"
            ) from exc


def _token(config: WorkerConfig) -> str | None:
    if config.token_env is None:
        return None
    token = os.environ.get(config.token_env, "").strip()
    if not token:
        raise ConfigError(f"the environment variable {config.token_env!r} is not set or empty")
    return token


def app_from_environment() -> Starlette:
    """The app factory every worker calls: settings from ``$CONVEYOR_SERVE_CONFIG``.

    The app owns the workspace it opens and closes it at shutdown, after the log is flushed.

    Raises:
        ConfigError: The variable is unset or invalid, or the token variable is empty.
        NotFoundError: A listed model is not registered or has no alias.
    """
    from conveyor.config import load_settings
    from conveyor.serving.access_log import log_access_to_stderr
    from conveyor.serving.app import create_app
    from conveyor.serving.metrics_multiprocess import MULTIPROC_ENV
    from conveyor.store.workspace import Workspace

    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise ConfigError(f"${CONFIG_ENV} is not set: start workers with `conveyor serve`")
    config = WorkerConfig.from_json(text)
    if config.access_log:
        log_access_to_stderr()
    settings = load_settings(
        home=config.home, metadata_url=config.metadata_url, artifact_url=config.artifact_url
    )
    workspace = Workspace.open(settings, recover=False)  # the parent recovered already
    try:
        return create_app(
            workspace,
            models=config.models,
            memory_budget_bytes=config.memory_budget_bytes,
            flush_interval_s=config.flush_interval_s,
            token=_token(config),
            reload_interval_s=config.reload_interval_s,
            sticky_header=config.sticky_header,
            close_workspace=True,
            metrics_dir=os.environ.get(MULTIPROC_ENV) or None,
            grpc_port=config.grpc_port,
            grpc_host=config.grpc_host,
            grpc_reuse_port=True,
        )
    except BaseException:
        workspace.close()
        raise


def serve_workers(config: WorkerConfig, *, host: str, port: int, workers: int) -> None:
    """Serve with ``workers`` processes until SIGINT/SIGTERM; each flushes its log on exit.

    ``/metrics`` sums every worker's counters through prometheus_client's multi-process
    files: in ``$PROMETHEUS_MULTIPROC_DIR`` when it is set (its old files are removed first,
    as prometheus_client requires), else in a temporary folder removed afterwards.

    Raises:
        ValueError: ``workers`` is less than 2 (serve one app in-process instead).
    """
    if workers < 2:
        raise ValueError(f"serve_workers needs at least 2 workers, got {workers}")
    from conveyor.serving.metrics_multiprocess import MULTIPROC_ENV

    given = os.environ.get(MULTIPROC_ENV) or None
    metrics_dir = Path(given) if given else Path(tempfile.mkdtemp(prefix="conveyor-metrics-"))
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):  # counts of an earlier run would be added in
        stale.unlink()
    saved = {name: os.environ.get(name) for name in (CONFIG_ENV, MULTIPROC_ENV)}
    os.environ[CONFIG_ENV] = config.to_json()
    os.environ[MULTIPROC_ENV] = str(metrics_dir)
    try:
        uvicorn.run(
            FACTORY,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            lifespan="on",
            log_level="warning",
        )
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if given is None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
