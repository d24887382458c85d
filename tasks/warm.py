"""Cache warming: refresh the most asked suggest queries before their freshness ends.

The ``warm`` job (every 10 minutes by default, one replica per period) takes the most asked
normalized queries of the last day and refreshes, in popularity order, those whose cached copy
would go stale before the next run, through the suggest service's own refresh: warming shares
flights, leases and the quota gate with requests, and a query already fresh enough costs
nothing.

**Only queries that will be asked.** A warming search pays off only if requests use it
before it goes stale; otherwise it is a search taken from requests. During the day a query is
warmed only if, at the rate it was asked over the last day, at least ``min_asks`` (2) requests
are expected within one freshness (``asks * ttl / 1 day``): with the default TTL of 20 minutes,
144 asks a day. On a warm query warming then costs about what the requests would have spent
on it anyway (one search per freshness), and turns their ``MISS`` into ``HIT``.

What it may spend, checked before every search:

- **its share**: at most ``share`` of the day's budget (``SMARTPIP_WARM_SHARE``, 30 %), paced
  over the Pacific day (by the next run it may have spent the share times the part of the day
  gone by then), so it does not spend the whole share in the first minutes after midnight.
  Counted in a ledger per Pacific day in Redis (``store.warm``), shared by the replicas;
- **never what requests may need**: it stops while the day's searches left (all of suggest)
  are at most what it keeps for requests: the searches requests are projected to make until
  midnight, at the rate they made them so far today (``request searches * time left / time
  gone``), plus a fixed ``reserve`` (``SMARTPIP_WARM_RESERVE``, 10). So on a day whose
  requests would spend the whole budget warming spends next to nothing, and on a quiet day it
  spends what would be left over at midnight;
- **a bound per run** (``SMARTPIP_WARM_MAX_PER_RUN``), so one run is a short burst.

**The last hour, what would be lost.** Budget unspent at midnight Pacific is lost. A refresh
made in the last ``ttl`` seconds before midnight (20 minutes by default) is still fresh after
it, so those runs (the *leftover* runs) warm tomorrow's likely queries (the day's most asked)
with today's budget: they refresh the most asked queries (whatever their rate: these searches
cost nothing) that would go stale before the first run after midnight, the share no longer
applies, and the fixed reserve shrinks with the time left (the requests still to come
today can only need a part of it: ``reserve * time left / 1 h``; their projection shrinks
by itself).
Earlier runs of the last hour cannot reach tomorrow and follow the day's rules.

The projection assumes demand spread evenly over the day; a quiet night before a busy day
over-estimates what is left, which the paced share and the fixed reserve bound.

Concurrency: one run at a time across replicas (the job's claim); within a run the refreshes
are made one after the other, so warming holds at most one of suggest's search slots. The
ledger is taken before a search and given back when none was made, so concurrent runs (an
operator's ``smartpip jobs run`` beside the schedule) still never pass the share. The reserve
is checked before each refresh: requests searching between the check and the refresh's
reservation are what the reserve is for, and warming then stops at its next check.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Sequence
from typing import Protocol
from zoneinfo import ZoneInfo

import attrs

from store.quota import SEARCH_UNITS, quota_usage
from store.redis import RedisStore
from store.warm import give_back_warm_search, take_warm_search, warm_spent

__all__ = [
    "PACIFIC",
    "RedisWarmLedger",
    "RefreshOutcome",
    "WarmLedger",
    "WarmReport",
    "WarmSettings",
    "WarmSuggest",
    "next_pacific_midnight",
    "pacific_day",
    "warm",
]

# The zone of YouTube's quota day (also smartpip.suggest.quota's; tasks may not import it).
PACIFIC = ZoneInfo("America/Los_Angeles")
# Why 30 s: a run starts within seconds of its period. An entry refreshed by one run lapses
# exactly one TTL later, around the start of the run after next; refreshing it again one run
# early (because it lapses a few seconds before the next run) would double what a warm query
# costs. One that lapses in the last 30 s before the next run is left to that run: a gap of
# seconds, not minutes.
LAPSE_SLACK_SECONDS = 30.0
# Why an hour: the reserve is sized for the requests of the rest of the day; in the last hour
# the requests still to come need a share of it in proportion to the time left.
LAST_HOUR_SECONDS = 3600
# Why 50: popular queries looked at per run; far more than a run may refresh (most are
# skipped as fresh), few enough that a run is a handful of Redis reads.
CANDIDATES = 50
# The popularity window read: a day, as long as the counts are kept (``store.popularity``).
POPULARITY_WINDOW_SECONDS = 86_400
# Why 2: a query expected to be asked twice within a freshness is used by a request with a
# probability of about 86 % (Poisson), and costs about what on-demand searches would; at 1 the
# warming search goes unused 37 % of the time, taken from the requests' budget.
MIN_ASKS = 2.0


def pacific_day(now: dt.datetime) -> str:
    """The Pacific-time date of ``now`` (aware): the quota day, ``YYYY-MM-DD``."""
    return now.astimezone(PACIFIC).date().isoformat()


def _pacific_midnights(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The midnights Pacific that start and end ``now``'s quota day, in UTC."""
    local = now.astimezone(PACIFIC).date()
    start = dt.datetime.combine(local, dt.time(0), tzinfo=PACIFIC)
    end = dt.datetime.combine(local + dt.timedelta(days=1), dt.time(0), tzinfo=PACIFIC)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def next_pacific_midnight(now: dt.datetime) -> dt.datetime:
    """The next midnight Pacific after ``now`` (aware), in UTC: when the budget resets."""
    return _pacific_midnights(now)[1]


class RefreshOutcome(enum.Enum):
    """What refreshing one query did.

    ``refreshed``: a search was made (here or by another replica's flight) and cached;
    ``fresh``: the cached copy was fresh enough, nothing was spent; ``refused``: no search
    could be made now (budget, breaker, key, Redis): the run stops; ``failed``: a search was
    made and failed (its quota is spent).
    """

    REFRESHED = "refreshed"
    FRESH = "fresh"
    REFUSED = "refused"
    FAILED = "failed"


class WarmSuggest(Protocol):
    """What warming needs from the suggest service."""

    @property
    def ttl_seconds(self) -> int:
        """The freshness of a cached answer."""
        ...

    async def popular(self, limit: int) -> Sequence[tuple[str, float]]:
        """The ``limit`` most asked normalized queries of the last day (the
        ``POPULARITY_WINDOW_SECONDS``), most asked first, with how often each was asked."""
        ...

    async def refresh(self, query: str, *, min_fresh_seconds: float) -> RefreshOutcome:
        """Make sure ``query`` stays fresh for ``min_fresh_seconds`` (below the TTL)."""
        ...


class WarmLedger(Protocol):
    """The day's quota counter and warming's own ledger, shared by the replicas."""

    async def searches_used(self, day: str) -> int:
        """Searches counted on ``day`` by all of suggest (requests and warming)."""
        ...

    async def warm_spent(self, day: str) -> int:
        """Searches warming counted on ``day``."""
        ...

    async def take(self, day: str, cap: int) -> bool:
        """Count one warming search on ``day`` if fewer than ``cap`` were counted."""
        ...

    async def give_back(self, day: str) -> None:
        """Uncount one warming search on ``day`` (it was not made)."""
        ...


class RedisWarmLedger:
    """:class:`WarmLedger` over Redis: ``store.quota``'s day counter and ``store.warm``."""

    def __init__(self, store: RedisStore) -> None:
        self._store = store

    async def searches_used(self, day: str) -> int:
        # The budget is decided in units (store.quota): searches used is the units spent in
        # whole searches, rounded up, so that budget - used is the gate's searches left.
        units = (await quota_usage(self._store, day)).units
        return -(-units // SEARCH_UNITS)

    async def warm_spent(self, day: str) -> int:
        return await warm_spent(self._store, day)

    async def take(self, day: str, cap: int) -> bool:
        return await take_warm_search(self._store, day, cap=cap) is not None

    async def give_back(self, day: str) -> None:
        await give_back_warm_search(self._store, day)


@attrs.frozen
class WarmSettings:
    """How much warming may spend.

    Attributes:
        daily_budget: Searches a Pacific day, all of suggest (``SMARTPIP_SUGGEST_DAILY_BUDGET``).
        share: The most of it warming may spend in a day (``SMARTPIP_WARM_SHARE``), 0-1.
        reserve: Searches left to requests beyond their projected need: warming stops while
            no more remain (``SMARTPIP_WARM_RESERVE``).
        max_per_run: The most searches one run makes (``SMARTPIP_WARM_MAX_PER_RUN``).
        candidates: Popular queries looked at per run.
        min_asks: Requests a query must be expected to get within one freshness to be warmed
            during the day (not in the leftover runs).
    """

    daily_budget: int
    share: float = attrs.field(
        default=0.3, validator=[attrs.validators.ge(0), attrs.validators.le(1)]
    )
    reserve: int = attrs.field(default=10, validator=attrs.validators.ge(0))
    max_per_run: int = attrs.field(default=10, validator=attrs.validators.ge(0))
    candidates: int = attrs.field(default=CANDIDATES, validator=attrs.validators.ge(1))
    min_asks: float = attrs.field(default=MIN_ASKS, validator=attrs.validators.ge(0))

    @property
    def share_searches(self) -> int:
        """The day's share in searches (rounded down)."""
        return math.floor(self.share * self.daily_budget + 1e-9)


@attrs.frozen
class WarmReport:
    """What one run did (the job's summary).

    Attributes:
        mode: ``day`` or ``leftover`` (a last-hour run warming tomorrow's queries).
        day: The Pacific day it spent on.
        looked_at: Popular queries it considered (refreshed, fresh, failed); during the day
            only those asked often enough (``min_asks``).
        refreshed: Queries searched and cached.
        fresh: Queries skipped as fresh enough (nothing spent).
        failed: Searches made that failed (spent).
        spent_today: Warming's searches on ``day`` after the run (the ledger).
        cap: The most warming could have counted on ``day`` by this run.
        kept: The searches it kept for requests at its last check (the fixed reserve plus the
            requests' projected need until midnight).
        stopped: Why it stopped before the end of the list: ``per_run``, ``share``,
            ``reserve``, ``refused``; None when it went through the list.
    """

    mode: str
    day: str
    looked_at: int = 0
    refreshed: int = 0
    fresh: int = 0
    failed: int = 0
    spent_today: int = 0
    cap: int = 0
    kept: int = 0
    stopped: str | None = None

    def summary(self) -> dict[str, object]:
        """The job's summary (logged, kept with the run)."""
        return {
            "mode": self.mode,
            "refreshed": self.refreshed,
            "fresh": self.fresh,
            "failed": self.failed,
            "spent_today": self.spent_today,
            "cap": self.cap,
            "kept": self.kept,
            "stopped": self.stopped or "-",
        }


@attrs.frozen
class _Plan:
    """What one run may do: its mode, the ledger's cap, the fixed reserve, the freshness every
    query must keep, and the day's seconds gone and left (for the requests' projection)."""

    mode: str
    cap: int
    reserve: int
    min_fresh: float
    gone: float
    left: float

    def kept(self, used: int, spent: int) -> int:
        """Searches kept for requests when ``used`` were made today, ``spent`` by warming."""
        projected = (used - spent) * self.left / self.gone
        return self.reserve + math.ceil(projected - 1e-9)


def _plan(settings: WarmSettings, ttl: int, now: dt.datetime, next_run: dt.datetime) -> _Plan:
    day_start, midnight = _pacific_midnights(now)
    left = (midnight - now).total_seconds()
    # At least a minute gone: a run right at midnight projects from a short but real rate.
    gone = max(60.0, (now - day_start).total_seconds())
    until_next = max(0.0, (next_run - now).total_seconds())
    if left < ttl:
        # Fresh past midnight: until the first run after it (or as far as a search reaches).
        reserve = math.ceil(settings.reserve * min(1.0, left / LAST_HOUR_SECONDS))
        min_fresh = min(ttl - 1, left + until_next)
        return _Plan("leftover", settings.daily_budget, reserve, min_fresh, gone, left)
    day_seconds = (midnight - day_start).total_seconds()
    gone_by_next = (min(next_run, midnight) - day_start).total_seconds() / day_seconds
    cap = math.ceil(settings.share_searches * gone_by_next - 1e-9)
    min_fresh = max(0.0, min(ttl - 1, until_next) - LAPSE_SLACK_SECONDS)
    return _Plan("day", cap, settings.reserve, min_fresh, gone, left)


async def warm(
    suggest: WarmSuggest,
    ledger: WarmLedger,
    settings: WarmSettings,
    *,
    now: dt.datetime,
    next_run: dt.datetime,
) -> WarmReport:
    """One warming run (see the module docstring).

    Args:
        suggest: The suggest service.
        ledger: The day's counters.
        settings: What warming may spend.
        now: The wall clock (aware).
        next_run: When the next run starts (the end of this run's period).

    Raises:
        RedisUnavailable: Redis is down or too slow (nothing is warmed without the ledger).
    """
    plan = _plan(settings, suggest.ttl_seconds, now, next_run)
    day = pacific_day(now)
    report = WarmReport(mode=plan.mode, day=day, cap=plan.cap)
    made, kept = 0, plan.reserve
    if settings.max_per_run == 0 or settings.daily_budget == 0:
        stopped: str | None = "per_run" if settings.max_per_run == 0 else "reserve"
        queries: Sequence[str] = ()
    else:
        popular = await suggest.popular(settings.candidates)
        if plan.mode == "day":
            # Asks expected within one freshness, at the rate of the last day.
            scale = suggest.ttl_seconds / POPULARITY_WINDOW_SECONDS
            popular = [(q, asks) for q, asks in popular if asks * scale >= settings.min_asks]
        stopped, queries = None, [query for query, _asks in popular]
    counts = {outcome: 0 for outcome in RefreshOutcome}
    for query in queries:
        if made >= settings.max_per_run:
            stopped = "per_run"
            break
        used = await ledger.searches_used(day)
        kept = plan.kept(used, await ledger.warm_spent(day))
        if settings.daily_budget - used <= kept:
            stopped = "reserve"
            break
        if not await ledger.take(day, plan.cap):
            stopped = "share"
            break
        outcome = await suggest.refresh(query, min_fresh_seconds=plan.min_fresh)
        counts[outcome] += 1
        if outcome in (RefreshOutcome.FRESH, RefreshOutcome.REFUSED):
            await ledger.give_back(day)
        else:
            made += 1
        if outcome is RefreshOutcome.REFUSED:
            stopped = "refused"
            break
    return attrs.evolve(
        report,
        looked_at=sum(counts.values()) - counts[RefreshOutcome.REFUSED],
        refreshed=counts[RefreshOutcome.REFRESHED],
        fresh=counts[RefreshOutcome.FRESH],
        failed=counts[RefreshOutcome.FAILED],
        spent_today=await ledger.warm_spent(day),
        kept=kept,
        stopped=stopped,
    )
