"""In-memory stand-ins for what warming uses: the suggest service and the day's counters.

:class:`World` is the shared state (the Pacific day's search counter, warming's ledger, the
cache's freshness per query, the popularity order) on a wall clock that follows trio's
MockClock; :class:`FakeSuggest` and :class:`FakeLedger` implement the protocols of
``tasks.warm`` over it, and :meth:`World.request` is a request that searches on a miss, so
that requests and warming compete for the same budget as they do in the service.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

import attrs
import trio
import trio.lowlevel

from tasks.warm import RefreshOutcome, pacific_day

__all__ = ["FakeLedger", "FakeSuggest", "Search", "World"]

# A search's round trip: the refreshes of a run take time on the mock clock too.
SEARCH_SECONDS = 0.3
# Asks a day of a popular query unless the test says otherwise: ~14 within a 20-minute freshness.
BUSY = 1000.0


@attrs.frozen
class Search:
    """One search: when, of what, by whom, and how many searches the day had left before it."""

    at: dt.datetime
    query: str
    by: str
    remaining_before: int


@attrs.define
class World:
    """The shared state; ``clock`` is the wall clock (aware UTC)."""

    clock: Callable[[], dt.datetime]
    budget: int = 100
    ttl: int = 1200
    popular: list[str] = attrs.field(factory=list)
    asks: dict[str, float] = attrs.field(factory=dict)
    fresh_until: dict[str, dt.datetime] = attrs.field(factory=dict)
    used: dict[str, int] = attrs.field(factory=dict)
    warm: dict[str, int] = attrs.field(factory=dict)
    searches: list[Search] = attrs.field(factory=list)
    refusing: bool = False

    def day(self) -> str:
        return pacific_day(self.clock())

    def remaining(self) -> int:
        return self.budget - self.used.get(self.day(), 0)

    async def search(self, query: str, by: str) -> bool:
        """Reserve a search from the day's budget and make it; False when refused."""
        day = self.day()
        if self.refusing or self.used.get(day, 0) >= self.budget:
            return False
        self.searches.append(Search(self.clock(), query, by, self.remaining()))
        self.used[day] = self.used.get(day, 0) + 1
        await trio.sleep(SEARCH_SECONDS)
        self.fresh_until[query] = self.clock() + dt.timedelta(seconds=self.ttl)
        return True

    def is_fresh(self, query: str, for_seconds: float = 0.0) -> bool:
        until = self.fresh_until.get(query)
        return until is not None and (until - self.clock()).total_seconds() > for_seconds

    async def request(self, query: str) -> str:
        """A request: ``HIT`` when fresh, else a search (``MISS``) or ``STALE``/``503``."""
        if self.is_fresh(query):
            return "HIT"
        if await self.search(query, "request"):
            return "MISS"
        return "STALE" if query in self.fresh_until else "503"

    def searches_by(self, by: str) -> list[Search]:
        return [s for s in self.searches if s.by == by]


class FakeSuggest:
    """``tasks.warm.WarmSuggest`` over a :class:`World`."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.refreshes: list[tuple[str, float]] = []

    @property
    def ttl_seconds(self) -> int:
        return self.world.ttl

    async def popular(self, limit: int) -> Sequence[tuple[str, float]]:
        await trio.lowlevel.checkpoint()
        return [(q, self.world.asks.get(q, BUSY)) for q in self.world.popular[:limit]]

    async def refresh(self, query: str, *, min_fresh_seconds: float) -> RefreshOutcome:
        assert 0 <= min_fresh_seconds < self.world.ttl
        self.refreshes.append((query, min_fresh_seconds))
        if self.world.is_fresh(query, min_fresh_seconds):
            return RefreshOutcome.FRESH
        if await self.world.search(query, "warm"):
            return RefreshOutcome.REFRESHED
        return RefreshOutcome.REFUSED


class FakeLedger:
    """``tasks.warm.WarmLedger`` over a :class:`World`."""

    def __init__(self, world: World) -> None:
        self.world = world

    async def searches_used(self, day: str) -> int:
        await trio.lowlevel.checkpoint()
        return self.world.used.get(day, 0)

    async def warm_spent(self, day: str) -> int:
        await trio.lowlevel.checkpoint()
        return self.world.warm.get(day, 0)

    async def take(self, day: str, cap: int) -> bool:
        await trio.lowlevel.checkpoint()
        if self.world.warm.get(day, 0) >= cap:
            return False
        self.world.warm[day] = self.world.warm.get(day, 0) + 1
        return True

    async def give_back(self, day: str) -> None:
        await trio.lowlevel.checkpoint()
        self.world.warm[day] = max(0, self.world.warm.get(day, 0) - 1)
