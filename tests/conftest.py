"""Shared fixtures: a dedicated test database on the real Postgres, a private Redis namespace.

pytest-trio runs one ``trio.run`` per test, so the session-wide setup here is synchronous
(psycopg in plain sync mode); per-test Redis cleanup is an async fixture inside that run.

Environment knobs (tests only): ``SMARTPIP_TEST_PG_ADMIN_URL`` (a role that may create
databases, default ``postgresql://postgres@127.0.0.1:5432/postgres``), ``SMARTPIP_TEST_REDIS_URL``
(default ``redis://127.0.0.1:6379/0``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import psycopg
import pytest
import trio
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from store.migrations import apply_migrations, load_migrations
from store.redis import RedisSettings, RedisStore, open_redis
from tests.support.clock import FakeClock
from tests.support.faultproxy import FaultProxy

ADMIN_URL = os.environ.get(
    "SMARTPIP_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("SMARTPIP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TEST_DB = f"smartpip_test_{os.getpid()}"


def url_for(dbname: str) -> str:
    """The admin URL with its database name replaced."""
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + dbname


def _drop(dbname: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh, migrated database for this test session; dropped at the end."""
    _drop(TEST_DB)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEST_DB)))
    url = url_for(TEST_DB)
    with psycopg.connect(url) as conn:
        apply_migrations(conn, load_migrations())
    yield url
    _drop(TEST_DB)


TRUNCATE_ALL = """
SELECT string_agg(format('%I.%I', schemaname, tablename), ', ')
FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'
"""


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The test database URL, with every table but ``schema_migrations`` emptied first."""
    with psycopg.connect(pg_database, autocommit=True) as conn:
        row = conn.execute(TRUNCATE_ALL).fetchone()
        if row is not None and row[0]:
            conn.execute(f"TRUNCATE {row[0]} RESTART IDENTITY CASCADE")
    return pg_database


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix no other test (or the running service) shares."""
    return f"smartpiptest:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def redis_store(redis_prefix: str) -> AsyncIterator[RedisStore]:
    """A Redis store under a private prefix; every key under it is deleted afterwards."""
    async with open_redis(RedisSettings(url=REDIS_URL, prefix=redis_prefix)) as store:
        yield store
        await store.delete_prefixed()


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock starting now, moved by the test (for code doing real I/O)."""
    return FakeClock()


@pytest.fixture
async def redis_proxy(nursery: trio.Nursery, redis_store: RedisStore) -> FaultProxy:
    """A fault proxy in front of the test Redis server (stopped with the test's nursery)."""
    url = urlsplit(redis_store.settings.url)
    proxy = FaultProxy(url.hostname or "127.0.0.1", url.port or 6379)
    await nursery.start(proxy.run)
    return proxy


@pytest.fixture
async def pg_proxy(nursery: trio.Nursery, pg_url: str) -> FaultProxy:
    """A fault proxy in front of the test Postgres server (stopped with the test's nursery)."""
    params = conninfo_to_dict(pg_url)
    host = str(params.get("host") or "127.0.0.1")
    proxy = FaultProxy(host, int(str(params.get("port") or 5432)))
    await nursery.start(proxy.run)
    return proxy


@pytest.fixture
async def down_store(redis_proxy: FaultProxy) -> AsyncIterator[RedisStore]:
    """A Redis store whose server is down (its fault proxy resets every connection)."""
    redis_proxy.mode = "down"
    settings = RedisSettings(url=f"redis://127.0.0.1:{redis_proxy.port}/0", prefix="unused:")
    async with open_redis(settings) as store:
        yield store
