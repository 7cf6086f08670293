"""What every command shares: the resolved settings and access to the stores.

The root callback stores the global options in a :class:`CliState` on the click context;
commands ask it for settings (resolved by :func:`conveyor.config.load_settings`, never
here) and for the stores. Read-only commands never create a home: when the embedded
SQLite database does not exist yet they read an empty in-memory store instead, so
``conveyor runs list`` in a fresh folder writes nothing and shows nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from conveyor.config import Settings, load_settings
from conveyor.store.metadata.store import MetadataStore
from conveyor.store.workspace import Workspace

__all__ = [
    "CliState",
    "read_store",
    "safe_url",
    "settings_from",
    "state",
]


@dataclass
class CliState:
    """Global options given before the command name."""

    home: Path | None = None


def state(ctx: typer.Context) -> CliState:
    """The CliState of this invocation (a default one when the callback did not run)."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def settings_from(ctx: typer.Context, max_workers: int | None = None) -> Settings:
    """Resolve settings: flags here, then environment, conveyor.toml and defaults."""
    return load_settings(home=state(ctx).home, max_workers=max_workers)


def _embedded_db_missing(url: str) -> bool:
    """True for a SQLite file URL whose database file does not exist yet."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return False
    if not parsed.drivername.startswith("sqlite"):
        return False
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return False
    return not Path(database).exists()


@contextmanager
def read_store(ctx: typer.Context) -> Iterator[MetadataStore]:
    """The metadata store for read-only commands; never creates the home.

    Opening the workspace also marks runs of dead runners ``interrupted``, so listings
    show the truth after a crash.
    """
    settings = settings_from(ctx)
    if _embedded_db_missing(settings.metadata_url):
        store = MetadataStore.open("sqlite:///:memory:")
        try:
            yield store
        finally:
            store.close()
        return
    workspace = Workspace.open(settings)
    try:
        yield workspace.metadata
    finally:
        workspace.close()


def safe_url(url: str) -> str:
    """``url`` with any password masked, for printing."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url
