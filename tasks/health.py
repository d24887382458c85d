"""The health monitor: probes Postgres and Redis on an interval and records what it saw.

Readiness (``/readyz``), the ``postgres_up``/``redis_up`` gauges and ``/v1/status`` all read
the :class:`HealthState` this monitor writes, so a request never waits on a probe. The probes
themselves are bounded by the store's own timeouts, so a hung dependency delays only the
monitor, never a request.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import attrs
import psycopg

from store.migrations import Migration, MigrationError, migration_status
from store.postgres import Database, DatabaseUnavailable
from store.redis import RedisStore, RedisUnavailable
from supervisors import ChildSpec, StatusRegistry, periodic_child

__all__ = ["HealthMonitor", "HealthState"]


@attrs.define
class HealthState:
    """What the last probe found. Written only by the monitor; read by anyone (one thread)."""

    postgres: bool = False
    migrations: bool = False
    redis: bool = False
    checked_at: float | None = None
    postgres_error: str | None = None
    redis_error: str | None = None

    @property
    def ready(self) -> bool:
        """Postgres answers and every migration is applied (Redis is optional)."""
        return self.postgres and self.migrations

    def up(self) -> dict[str, bool]:
        """Per-dependency up flags, for the gauges."""
        return {"postgres": self.postgres, "redis": self.redis}


def _pending(conn: psycopg.Connection[Any], migrations: Sequence[Migration]) -> int:
    return len(migration_status(conn, migrations))


@attrs.define
class HealthMonitor:
    """Probes the dependencies; :meth:`child` makes it a supervised periodic job."""

    db: Database
    redis: RedisStore
    migrations: Sequence[Migration]
    state: HealthState = attrs.field(factory=HealthState)

    async def probe(self) -> HealthState:
        """Probe both dependencies once and update :attr:`state`."""
        state = self.state
        try:
            pending = await self.db.run(_pending, self.migrations)
        except DatabaseUnavailable as error:
            state.postgres, state.migrations = False, False
            state.postgres_error = str(error) or type(error).__name__
        except MigrationError as error:
            state.postgres, state.migrations = True, False
            state.postgres_error = str(error)
        else:
            state.postgres, state.migrations = True, pending == 0
            state.postgres_error = None if pending == 0 else f"{pending} migrations pending"
        try:
            await self.redis.ping()
        except RedisUnavailable as error:
            state.redis, state.redis_error = False, str(error) or type(error).__name__
        else:
            state.redis, state.redis_error = True, None
        state.checked_at = time.time()
        return state

    def child(self, registry: StatusRegistry, interval: float) -> ChildSpec:
        """A supervised child that probes every ``interval`` seconds."""
        return periodic_child("health-monitor", self.probe, interval=interval, registry=registry)
