"""Fixtures for the rate-limit tests: a fault proxy in front of Redis, an injectable clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import attrs
import pytest

from store.redis import RedisSettings, RedisStore, open_redis
from tests.support.faultproxy import FaultProxy


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
async def patient_store(proxied_store: RedisStore) -> AsyncIterator[RedisStore]:
    """Like ``proxied_store``, with timeouts (3 s) that cannot end a wait before a reset does,
    even if the test process stalls: a test of a dead Redis then shows from the error that
    it was noticed from the reset, not by a timeout."""
    settings = attrs.evolve(proxied_store.settings, connect_timeout=3.0, command_timeout=3.0)
    async with open_redis(settings) as store:
        yield store


@pytest.fixture
async def replica_store(redis_store: RedisStore) -> AsyncIterator[RedisStore]:
    """Another connection to the same Redis and prefix, as a second replica would have."""
    settings = RedisSettings(url=redis_store.settings.url, prefix=redis_store.prefix)
    async with open_redis(settings) as store:
        yield store
