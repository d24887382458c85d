"""The health monitor: probes Postgres and Redis on an interval and records what it saw.

Readiness (``/readyz``), the ``postgres_up``/``redis_up`` gauges and ``/v1/status`` all read
the :class:`HealthState` this monitor writes, so a request never waits on a probe. The probes
themselves are bounded by the store's own timeouts, so a hung dependency delays only the
monitor, never a request.

The Postgres probe (``Database.probe``) also sets the store's "known down" switch: while it
fails, database calls fail at once. So the monitor probes Postgres more often while it is
down (recovery shows within :data:`DOWN_INTERVAL`), and at once when a call could not get an
answer (``Availability.suspect``), at most every :data:`SUSPECT_GAP`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import psycopg
import trio

from store.migrations import Migration, MigrationError, migration_status
from store.postgres import Database, DatabaseUnavailable
from store.redis import RedisStore, RedisUnavailable

__all__ = ["DOWN_INTERVAL", "SUSPECT_GAP", "HealthMonitor", "HealthState"]

# Why 0.5 s: while Postgres is down every request fails until a probe succeeds, so this is
# the longest recovery goes unnoticed; clients are told to retry after 2 s, and a probe of a
# dead server costs a refused connection (or nothing, while the previous probe still waits).
DOWN_INTERVAL = 0.5
# Why 0.25 s: a failing call asks for a probe at once, so a dead server is noticed in
# milliseconds instead of at the next scheduled probe; under a stream of failures (a slow
# or saturated database the probe finds healthy) that would mean probing nonstop, so at most
# four probes a second come from requests.
SUSPECT_GAP = 0.25


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
    """Probes the dependencies; ``smartpip/runtime/tree.py`` runs :meth:`probe` periodically."""

    db: Database
    redis: RedisStore
    migrations: Sequence[Migration]
    state: HealthState = attrs.field(factory=HealthState)

    async def probe(self) -> HealthState:
        """Probe both dependencies once and update :attr:`state`."""
        state = self.state
        try:
            pending = await self.db.probe(_pending, self.migrations)
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

    def pace(self, interval: float) -> Callable[[], float]:
        """The delay before the next probe: ``interval``, or :data:`DOWN_INTERVAL` at most while
        Postgres is down (so that recovery is noticed quickly)."""

        def delay() -> float:
            return interval if self.state.postgres else min(interval, DOWN_INTERVAL)

        return delay

    async def suspected(self) -> None:
        """Return when a database call suspects Postgres is down (probe early then); at most
        every :data:`SUSPECT_GAP` seconds."""
        await trio.sleep(SUSPECT_GAP)
        await self.db.availability.wait_suspected()
