"""The composition root: opens every long-lived resource once and passes it in.

Nothing in the service reaches for a module-level pool, client or registry; each consumer
receives what it needs from :class:`Resources`, which :func:`open_resources` builds and closes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import httpx

from smartpip.config import Config
from smartpip.metrics import Metrics
from store.migrations import load_migrations
from store.postgres import Database, PostgresSettings, open_database
from store.redis import RedisSettings, RedisStore, open_redis
from supervisors import StatusRegistry
from tasks.health import HealthMonitor

__all__ = ["Resources", "open_resources"]


@attrs.frozen
class Resources:
    """Everything built at startup, shared by the HTTP app and the supervised tasks."""

    config: Config
    db: Database
    redis: RedisStore
    http: httpx.AsyncClient
    metrics: Metrics
    supervision: StatusRegistry
    health: HealthMonitor


def postgres_settings(config: Config) -> PostgresSettings:
    """The store's Postgres settings derived from the service configuration."""
    return PostgresSettings(
        url=config.database_url,
        max_size=config.db_pool_size,
        acquire_timeout=config.db_acquire_timeout,
        statement_timeout_ms=config.db_statement_timeout_ms,
        # A query may run for its statement timeout; past that plus a margin, stop waiting.
        query_timeout=config.db_statement_timeout_ms / 1000 + 1.0,
    )


@asynccontextmanager
async def open_resources(config: Config) -> AsyncIterator[Resources]:
    """Open the Postgres pool, the Redis client, the outbound HTTP client and the metrics."""
    metrics = Metrics()
    redis_settings = RedisSettings(
        url=config.redis_url,
        prefix=config.redis_prefix,
        connect_timeout=config.redis_connect_timeout,
        command_timeout=config.redis_command_timeout,
    )
    timeout = httpx.Timeout(config.http_timeout, connect=min(2.0, config.http_timeout))
    async with (
        open_database(postgres_settings(config)) as db,
        open_redis(redis_settings) as redis,
        httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http,
    ):
        health = HealthMonitor(db, redis, load_migrations())
        metrics.watch(db.stats, health.state.up)
        yield Resources(
            config=config,
            db=db,
            redis=redis,
            http=http,
            metrics=metrics,
            supervision=StatusRegistry(),
            health=health,
        )
