"""Fixtures for the store tests: scratch databases and fault proxies in front of the servers."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import trio
from psycopg.conninfo import conninfo_to_dict

from store.redis import RedisStore
from tests.support.faultproxy import FaultProxy
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


@pytest.fixture
async def pg_proxy(nursery: trio.Nursery, pg_url: str) -> FaultProxy:
    """A fault proxy in front of the test Postgres server (stopped with the test's nursery)."""
    params = conninfo_to_dict(pg_url)
    host = str(params.get("host") or "127.0.0.1")
    proxy = FaultProxy(host, int(str(params.get("port") or 5432)))
    await nursery.start(proxy.run)
    return proxy


@pytest.fixture
async def redis_proxy(nursery: trio.Nursery, redis_store: RedisStore) -> FaultProxy:
    """A fault proxy in front of the test Redis server (stopped with the test's nursery)."""
    url = urlsplit(redis_store.settings.url)
    proxy = FaultProxy(url.hostname or "127.0.0.1", url.port or 6379)
    await nursery.start(proxy.run)
    return proxy
