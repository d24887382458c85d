"""The quota economy with and without cache warming, on the same simulated Zipf days.

``python -m bench.economy --warming-day`` runs the real suggest service in this process (the
``Suggester``, its ``QuotaGate`` with the default budget of 100 searches a Pacific day, the
real Redis under a scratch prefix, the bench's fake YouTube on loopback) on a **simulated wall
clock**, so that whole days pass in seconds:

- the workload: ``--requests`` a day (default 1,500) spread uniformly at random over
  ``--days`` Pacific days (default 2, so that what the last hour warms for tomorrow is
  counted), each asking a raw query drawn like ``bench.economy``'s (Zipf s = 1.1 over 2,000
  spellings of 650 phrases; the same seed gives the same days);
- every 10 minutes (simulated) the popularity counts are flushed, as suggest's bookkeeping
  does, and, in the run *with* warming, the ``warm`` job's logic (``tasks.warm.warm``) runs
  with the default settings (share 30 %, reserve 10, 10 a run) through ``Suggester.refresh``;
- requests are made one after the other (this measures the budget, not concurrency);
- the budget is the service's default, 100 searches a day (``--budget`` to change it).

Both runs see exactly the same requests at the same simulated times. It reports, for each
run: the answers by ``X-Cache`` (``HIT``, ``MISS``, ``STALE``) and the 503s, the upstream
searches (counted by the fake) and how many were warming's, and **requests served per
upstream search** (answered 200, fresh or stale, over searches), plus the answers that were
fresh. Figures go to ``bench/results/<stamp>-warming-day.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import trio
from prometheus_client import CollectorRegistry

from bench.economy import ZIPF_S, build_queries, zipf_ranks
from bench.fake_youtube import BenchYouTube
from bench.scratch import fresh_prefix
from smartpip.suggest import normalize_query
from smartpip.suggest.metrics import SuggestMetrics
from smartpip.suggest.quota import PACIFIC, QuotaGate
from smartpip.suggest.service import Suggester, SuggestSettings, SuggestUnavailable, UpstreamError
from smartpip.suggest.warming import SuggestWarming
from smartpip.youtube import YouTubeClient, YouTubeSettings
from store.popularity import record_queries
from store.redis import RedisSettings, RedisStore, open_redis
from tasks.warm import RedisWarmLedger, WarmSettings, pacific_day, warm

__all__ = ["WarmingDaySettings", "run_warming_day"]

# The service's defaults: what a deployment gets without tuning (``--budget`` changes it).
DAILY_BUDGET = 100
TTL_S = 1200
WARM_PERIOD_S = 600
# An ordinary day (no DST change): midnight Pacific, 10 June 2026.
FIRST_DAY = dt.datetime(2026, 6, 10, tzinfo=PACIFIC)
_API_KEY = "bench-warming-day-key"


@dataclass(frozen=True)
class WarmingDaySettings:
    """One comparison."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    results_dir: Path = Path(__file__).resolve().parent / "results"
    requests_per_day: int = 1500
    days: int = 2
    seed: int = 10
    daily_budget: int = DAILY_BUDGET


@dataclass
class DayFigures:
    """One run's figures."""

    warming: bool
    requests: int
    answers: dict[str, int]
    searches: int
    warming_searches: int
    served: int
    fresh: int
    served_per_search: float
    fresh_per_search: float
    by_day: dict[str, dict[str, int]]


class SimClock:
    """The simulated wall clock (seconds since the epoch), moved by the driver."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def plan_requests(settings: WarmingDaySettings) -> list[tuple[float, str]]:
    """``(simulated time, raw query)`` for every request, in time order (seeded)."""
    queries = build_queries(settings.seed)
    rng = random.Random(settings.seed)
    total = settings.requests_per_day * settings.days
    ranks = zipf_ranks(rng, len(queries), ZIPF_S, total)
    start = FIRST_DAY.timestamp()
    end = (FIRST_DAY + dt.timedelta(days=settings.days)).timestamp()
    times = sorted(rng.uniform(start, end) for _ in range(total))
    return [(t, queries[rank].raw) for t, rank in zip(times, ranks, strict=True)]


async def _one_run(
    settings: WarmingDaySettings,
    plan: Sequence[tuple[float, str]],
    youtube: BenchYouTube,
    http: httpx.AsyncClient,
    *,
    warming: bool,
) -> DayFigures:
    clock = SimClock(FIRST_DAY.timestamp())
    prefix = fresh_prefix("warming-day")
    async with open_redis(
        RedisSettings(url=settings.redis_url, prefix=prefix, command_timeout=2.0)
    ) as store:
        try:
            return await _drive(settings, plan, youtube, http, store, clock, warming=warming)
        finally:
            await store.delete_prefixed()


async def _drive(
    settings: WarmingDaySettings,
    plan: Sequence[tuple[float, str]],
    youtube: BenchYouTube,
    http: httpx.AsyncClient,
    store: RedisStore,
    clock: SimClock,
    *,
    warming: bool,
) -> DayFigures:
    client = YouTubeClient(YouTubeSettings(api_url=youtube.base_url, api_key=_API_KEY), http)
    gate = QuotaGate(store, daily_budget=settings.daily_budget, clock=clock)
    suggester = Suggester(
        client,
        store,
        gate,
        SuggestMetrics(CollectorRegistry()),
        SuggestSettings(ttl_seconds=TTL_S, daily_budget=settings.daily_budget),
        clock=clock,
    )
    target, ledger = SuggestWarming(suggester, store, clock), RedisWarmLedger(store)
    warm_settings = WarmSettings(daily_budget=settings.daily_budget)
    searches_before = youtube.calls["search"]
    answers: Counter[str] = Counter()
    by_day: dict[str, Counter[str]] = {}
    warm_days: set[str] = set()
    next_tick = FIRST_DAY.timestamp() + WARM_PERIOD_S

    async def tick(at: float) -> None:
        clock.now = at
        await record_queries(store, suggester.query_counts.take(), now=at)
        if warming:
            now = dt.datetime.fromtimestamp(at, dt.UTC)
            warm_days.add(pacific_day(now))
            await warm(
                target,
                ledger,
                warm_settings,
                now=now,
                next_run=now + dt.timedelta(seconds=WARM_PERIOD_S),
            )

    async with trio.open_nursery() as nursery:
        await nursery.start(suggester.run_flights)
        await tick(FIRST_DAY.timestamp())
        for at, raw in plan:
            while next_tick <= at:
                await tick(next_tick)
                next_tick += WARM_PERIOD_S
            clock.now = at
            day = pacific_day(dt.datetime.fromtimestamp(at, dt.UTC))
            try:
                result: str = (await suggester.suggest(normalize_query(raw))).cache
            except SuggestUnavailable:
                result = "503"
            except UpstreamError:
                result = "502"
            answers[result] += 1
            by_day.setdefault(day, Counter())[result] += 1
        nursery.cancel_scope.cancel()
    searches = youtube.calls["search"] - searches_before
    warming_searches = 0
    for day in warm_days:
        warming_searches += await ledger.warm_spent(day)
    served = answers["HIT"] + answers["MISS"] + answers["STALE"]
    fresh = answers["HIT"] + answers["MISS"]
    return DayFigures(
        warming=warming,
        requests=len(plan),
        answers=dict(answers),
        searches=searches,
        warming_searches=warming_searches,
        served=served,
        fresh=fresh,
        served_per_search=round(served / max(1, searches), 2),
        fresh_per_search=round(fresh / max(1, searches), 2),
        by_day={day: dict(counts) for day, counts in by_day.items()},
    )


async def _compare(settings: WarmingDaySettings) -> list[DayFigures]:
    plan = plan_requests(settings)
    youtube = BenchYouTube(_API_KEY, bind="127.0.0.1:0", any_query=True)
    async with trio.open_nursery() as nursery, httpx.AsyncClient(timeout=5.0) as http:
        await nursery.start(youtube.run)
        runs = [
            await _one_run(settings, plan, youtube, http, warming=False),
            await _one_run(settings, plan, youtube, http, warming=True),
        ]
        nursery.cancel_scope.cancel()
    return runs


def format_figures(settings: WarmingDaySettings, runs: Sequence[DayFigures]) -> str:
    """The printed comparison."""
    lines = [
        f"warming day: {settings.requests_per_day:,} requests a day over {settings.days} "
        f"Pacific days, Zipf s={ZIPF_S}, budget {settings.daily_budget}/day, TTL {TTL_S} s, seed "
        f"{settings.seed}",
    ]
    for run in runs:
        answers = ", ".join(f"{k} {v:,}" for k, v in sorted(run.answers.items()))
        lines += [
            f"  {'with' if run.warming else 'without'} warming: {answers}",
            f"    upstream searches {run.searches} (warming {run.warming_searches}); "
            f"served {run.served:,} = {run.served_per_search} per search; "
            f"fresh {run.fresh:,} = {run.fresh_per_search} per search",
        ]
        for day, counts in sorted(run.by_day.items()):
            lines.append(
                f"    {day}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
            )
    return "\n".join(lines)


def run_warming_day(settings: WarmingDaySettings, stamp: str) -> int:
    """Make both runs, print and save the figures; returns the exit code (0)."""
    runs = trio.run(_compare, settings)
    print(format_figures(settings, runs), flush=True)
    document: dict[str, Any] = {
        "timestamp": stamp,
        "settings": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
            "zipf_s": ZIPF_S,
            "ttl_s": TTL_S,
            "warm_period_s": WARM_PERIOD_S,
        },
        "runs": [asdict(run) for run in runs],
    }
    path = settings.results_dir / f"{stamp}-warming-day.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {path}", flush=True)
    return 0
