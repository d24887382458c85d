"""A Redis key prefix of its own for each run, deleted afterwards.

The services under test get ``SMARTPIP_REDIS_PREFIX=smartpipbench:<tag>:<random>:`` so a run
starts with no rate-limit buckets, suggest cache entries, leases or quota counters left by an
earlier run (or by a development server on the same Redis), and leaves none behind.
"""

from __future__ import annotations

import uuid

import trio

from store.redis import RedisSettings, RedisUnavailable, open_redis

__all__ = ["delete_prefix", "fresh_prefix"]

# Why 2 s: the sweep is a handful of SCAN/UNLINK round trips after the load has stopped; the
# service's own 0.25 s reply timeout is tuned for the request path, not for this.
_COMMAND_TIMEOUT_S = 2.0


def fresh_prefix(tag: str) -> str:
    """``smartpipbench:<tag>:<12 hex>:``, unique to this run."""
    return f"smartpipbench:{tag}:{uuid.uuid4().hex[:12]}:"


def delete_prefix(url: str, prefix: str) -> str:
    """Delete every key under ``prefix``; returns a line for the progress output (never raises
    for Redis being away: the keys then expire by themselves or stay under a unique prefix)."""

    async def sweep() -> int:
        settings = RedisSettings(url=url, prefix=prefix, command_timeout=_COMMAND_TIMEOUT_S)
        async with open_redis(settings) as store:
            return await store.delete_prefixed()

    try:
        deleted = trio.run(sweep)
    except (RedisUnavailable, OSError) as exc:
        return f"could not delete the Redis keys under {prefix!r}: {exc}"
    return f"deleted {deleted} Redis keys under {prefix!r}"
