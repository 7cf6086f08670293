"""The metadata store fixtures every store contract test runs on: SQLite and PostgreSQL alike.

``tests/conftest.py`` loads this module as a plugin, so any test may ask for ``metadata_url``
or ``store`` by name; a test module that defines its own ``store`` overrides this one. The
PostgreSQL variant takes its URL from the ``postgres_url`` fixture in ``tests/conftest.py`` (a
fresh schema per test, dropped afterwards) and is skipped when ``CONVEYOR_TEST_POSTGRES_URL`` is
not set.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.store.metadata import MetadataStore


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def metadata_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty metadata database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/metadata.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(metadata_url: str) -> Iterator[MetadataStore]:
    """A :class:`MetadataStore` opened on ``metadata_url``, closed after the test."""
    opened = MetadataStore.open(metadata_url)
    yield opened
    opened.close()
