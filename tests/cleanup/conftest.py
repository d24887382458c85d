"""Fixtures for the cleanup tests: the migrated, emptied test database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from store.postgres import Database, PostgresSettings, open_database
from tests.app.conftest import app_factory as app_factory  # the fixture, shared


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[Database]:
    """The migrated, emptied test database."""
    async with open_database(PostgresSettings(url=pg_url, max_size=4)) as database:
        yield database
