"""Fixtures for the store tests: scratch databases and fault proxies in front of the servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.pg import create_database, drop_database, unique_database_url


@pytest.fixture
def scratch_db(pg_database: str) -> Iterator[str]:
    """A new, empty database (no migrations) on the test server; dropped afterwards."""
    url = unique_database_url(pg_database)
    create_database(url)
    try:
        yield url
    finally:
        drop_database(url)
