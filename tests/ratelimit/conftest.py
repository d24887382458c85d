"""Fixtures for the rate-limit tests: a fault proxy in front of Redis, an injectable clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import trio

from store.redis import RedisSettings, RedisStore, open_redis
from tests.support.faultproxy import FaultProxy


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A fake monotonic clock."""
    return FakeClock()


@pytest.fixture
async def redis_proxy(nursery: trio.Nursery, redis_store: RedisStore) -> FaultProxy:
    """A fault proxy in front of the test Redis server (stopped with the test's nursery)."""
    url = urlsplit(redis_store.settings.url)
    proxy = FaultProxy(url.hostname or "127.0.0.1", url.port or 6379)
    await nursery.start(proxy.run)
    return proxy


@pytest.fixture
async def proxied_store(
    redis_store: RedisStore, redis_proxy: FaultProxy
) -> AsyncIterator[RedisStore]:
    """A second store on the same prefix, reaching Redis through ``redis_proxy``."""
    parts = urlsplit(redis_store.settings.url)
    url = urlunsplit(parts._replace(netloc=f"127.0.0.1:{redis_proxy.port}"))
    async with open_redis(RedisSettings(url=url, prefix=redis_store.prefix)) as store:
        yield store


@pytest.fixture
async def replica_store(redis_store: RedisStore) -> AsyncIterator[RedisStore]:
    """Another connection to the same Redis and prefix, as a second replica would have."""
    settings = RedisSettings(url=redis_store.settings.url, prefix=redis_store.prefix)
    async with open_redis(settings) as store:
        yield store
