"""In-memory quota counters and saves: the protocols of ``tasks.quota`` for MockClock tests.

They follow the real stores' rules (``store.quota.restore_usage``: max per counter, never
lower; ``store.quota_days.save_quota_day``: rows only grow) and yield to trio like I/O does.
"""

from __future__ import annotations

import attrs
import trio

from store.errors import DatabaseUnavailable
from store.quota import QuotaUsage

ZERO = QuotaUsage(searches=0, units=0)


def larger(a: QuotaUsage, b: QuotaUsage) -> QuotaUsage:
    return QuotaUsage(searches=max(a.searches, b.searches), units=max(a.units, b.units))


@attrs.define
class MemoryCounters:
    """Redis's day counters; :meth:`flush` is Redis losing them."""

    days: dict[str, QuotaUsage] = attrs.field(factory=dict)

    def spend(self, day: str, searches: int, units: int) -> None:
        now = self.days.get(day, ZERO)
        self.days[day] = QuotaUsage(now.searches + searches, now.units + units)

    def flush(self) -> None:
        self.days.clear()

    async def usage(self, day: str) -> QuotaUsage:
        await trio.lowlevel.checkpoint()
        return self.days.get(day, ZERO)

    async def restore(self, day: str, saved: QuotaUsage) -> QuotaUsage:
        await trio.lowlevel.checkpoint()
        self.days[day] = larger(self.days.get(day, ZERO), saved)
        return self.days[day]


@attrs.define
class MemorySaves:
    """Postgres's ``quota_days``; ``down`` makes every call fail as Postgres being away."""

    rows: dict[str, QuotaUsage] = attrs.field(factory=dict)
    down: bool = False
    writes: int = 0

    async def saved(self, day: str) -> QuotaUsage | None:
        await trio.lowlevel.checkpoint()
        if self.down:
            raise DatabaseUnavailable("postgres is down (test)")
        return self.rows.get(day)

    async def save(self, day: str, usage: QuotaUsage) -> bool:
        await trio.lowlevel.checkpoint()
        if self.down:
            raise DatabaseUnavailable("postgres is down (test)")
        old = self.rows.get(day)
        new = usage if old is None else larger(old, usage)
        if new == old:
            return False
        self.rows[day] = new
        self.writes += 1
        return True
