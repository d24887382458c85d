"""Fixtures for the quota tests: a second replica's store, a store behind a fault proxy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from store.redis import RedisSettings, RedisStore, open_redis
from tests.support.faultproxy import FaultProxy


@pytest.fixture
async def replica_store(redis_store: RedisStore) -> AsyncIterator[RedisStore]:
    """Another connection to the same Redis and prefix, as a second replica would have."""
    settings = RedisSettings(url=redis_store.settings.url, prefix=redis_store.prefix)
    async with open_redis(settings) as store:
        yield store


@pytest.fixture
async def proxied_store(
    redis_store: RedisStore, redis_proxy: FaultProxy
) -> AsyncIterator[RedisStore]:
    """A store on the same prefix that reaches Redis through ``redis_proxy``."""
    parts = urlsplit(redis_store.settings.url)
    url = urlunsplit(parts._replace(netloc=f"127.0.0.1:{redis_proxy.port}"))
    async with open_redis(RedisSettings(url=url, prefix=redis_store.prefix)) as store:
        yield store
