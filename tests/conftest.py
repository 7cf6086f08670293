"""Shared fixtures. Each block is self-contained; add new ones as separate blocks."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

# The store contract tests' backend fixtures (``metadata_url``, ``store``) live in a module of
# their own; a test module that defines a fixture of the same name overrides them.
pytest_plugins = ["store_support"]

# -- PostgreSQL: a fresh schema per test -------------------------------------------------
POSTGRES_URL_ENV = "CONVEYOR_TEST_POSTGRES_URL"


def _postgres_admin_url(raw: str) -> str:
    """``raw`` with the psycopg (v3) driver, as SQLAlchemy wants it."""
    url = make_url(raw)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose ``search_path`` is a fresh, empty schema, dropped afterwards.

    Skips the test when ``CONVEYOR_TEST_POSTGRES_URL`` is not set, e.g.
    ``CONVEYOR_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test``.
    """
    raw = os.environ.get(POSTGRES_URL_ENV)
    if not raw:
        pytest.skip(f"{POSTGRES_URL_ENV} is not set")
    admin = _postgres_admin_url(raw)
    schema = f"conveyor_t_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(admin)
    options = url.query.get("options")
    search_path = f"-csearch_path={schema}"
    if isinstance(options, str) and options:
        search_path = f"{options} {search_path}"
    url = url.update_query_dict({"options": search_path})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()
