"""Cache warming's rules under trio's MockClock, with in-memory fakes (``tests.warm.fakes``).

The job runs through the real scheduler loop (``supervisors.run_job``, in-memory claims) on a
wall clock that follows the mock clock, beside fake requests spending the same budget.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from functools import partial

import pytest
import trio
import trio.testing

from smartpip.suggest import quota as suggest_quota
from supervisors import Every, JobRun, JobSpec, MemoryClaims, run_job
from tasks.warm import (
    PACIFIC,
    WarmSettings,
    next_pacific_midnight,
    pacific_day,
    warm,
)
from tests.supervisors.helpers import make_registry
from tests.warm.fakes import FakeLedger, FakeSuggest, World

# Midnight Pacific (PDT) on an ordinary day.
DAY_START = dt.datetime(2026, 6, 10, tzinfo=PACIFIC).astimezone(dt.UTC)
DAY = "2026-06-10"
TOMORROW = "2026-06-11"
PERIOD = 600


def wall_from(start: dt.datetime) -> Callable[[], dt.datetime]:
    """A wall clock that follows trio's mock clock from ``start``."""
    return lambda: start + dt.timedelta(seconds=trio.current_time())


def queries(n: int) -> list[str]:
    return [f"query {i:03d}" for i in range(n)]


async def run_warm_job(
    world: World,
    settings: WarmSettings,
    seconds: float,
    *,
    replicas: tuple[str, ...] = ("a",),
    requests: Callable[[], Awaitable[None]] | None = None,
) -> list[Mapping[str, object]]:
    """Run the ``warm`` job's loop on ``replicas`` (sharing the claims) for ``seconds``."""
    suggest, ledger = FakeSuggest(world), FakeLedger(world)
    summaries: list[Mapping[str, object]] = []

    async def body(run: JobRun) -> Mapping[str, object]:
        report = await warm(suggest, ledger, settings, now=world.clock(), next_run=run.period.end)
        summaries.append(report.summary())
        return report.summary()

    job = JobSpec(
        "warm",
        schedule=Every(PERIOD),
        body=body,
        claims=MemoryClaims(clock=world.clock),
        deadline=240.0,
    )
    async with trio.open_nursery() as nursery:
        for name in replicas:
            registry = make_registry()
            registry.register("warm", supervisor=name)
            await nursery.start(
                partial(run_job, job, holder=name, registry=registry, clock=world.clock)
            )
        if requests is not None:
            nursery.start_soon(requests)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()
    return summaries


def test_pacific_days_and_midnights_match_the_quota_gate_across_dst() -> None:
    # Spring forward (8 March 2026) and fall back (1 November 2026) give 23- and 25-hour days.
    for start in (
        dt.datetime(2026, 3, 7, 6, tzinfo=dt.UTC),
        dt.datetime(2026, 10, 31, 6, tzinfo=dt.UTC),
    ):
        for hour in range(0, 72):
            now = start + dt.timedelta(hours=hour, minutes=17)
            assert pacific_day(now) == suggest_quota.pacific_day(now)
            assert next_pacific_midnight(now) == suggest_quota.next_pacific_midnight(now)


async def test_over_a_day_two_replicas_spend_exactly_the_share_paced(
    autojump_clock: trio.testing.MockClock,
) -> None:
    world = World(clock=wall_from(DAY_START), popular=queries(40))
    settings = WarmSettings(daily_budget=100, share=0.3, reserve=10, max_per_run=10)
    # Until 23:35: the runs from 23:40 (whose refreshes outlive midnight) are another test.
    await run_warm_job(world, settings, 23 * 3600 + 35 * 60, replicas=("a", "b"))
    warmed = world.searches_by("warm")
    assert len(warmed) == world.warm[DAY] == 30
    for count, search in enumerate(warmed, start=1):
        # Paced: by the end of a run's period, the share times the part of the day gone.
        gone = (search.at - DAY_START).total_seconds() + PERIOD
        assert count <= math.ceil(30 * gone / 86_400)
    assert world.searches_by("warm")[-1].at > DAY_START + dt.timedelta(hours=20)


def kept_for_requests(world: World, at: dt.datetime, reserve: int) -> int:
    """What warming must leave to requests at ``at``: the reserve and their projected need."""
    by_requests = len([s for s in world.searches_by("request") if s.at < at])
    gone = max(60.0, (at - DAY_START).total_seconds())  # as tasks.warm: at least a minute
    left = (DAY_START + dt.timedelta(days=1) - at).total_seconds()
    return reserve + math.ceil(by_requests * left / gone)


async def test_warming_never_spends_what_requests_may_need(
    autojump_clock: trio.testing.MockClock,
) -> None:
    world = World(clock=wall_from(DAY_START), budget=60, popular=queries(30))
    settings = WarmSettings(daily_budget=60, share=1.0, reserve=10, max_per_run=10)
    served: list[str] = []

    async def requests() -> None:
        # A few requests in the morning, then an evening rush that needs the whole budget.
        rng = random.Random(7)
        for _ in range(3):
            await trio.sleep(rng.uniform(3600, 7200))
            served.append(await world.request(f"query {rng.randrange(30, 200):03d}"))
        await trio.sleep_until(18 * 3600)
        while True:
            await trio.sleep(rng.uniform(30, 120))
            served.append(await world.request(f"query {rng.randrange(30, 200):03d}"))

    await run_warm_job(world, settings, 23 * 3600, requests=requests)
    warmed = world.searches_by("warm")
    assert warmed  # it did warm while the budget allowed
    for search in warmed:
        assert search.remaining_before > kept_for_requests(world, search.at, 10)
    # The last searches of the day went to requests.
    assert world.used[DAY] == 60
    assert [s.by for s in world.searches if s.remaining_before <= 10] == ["request"] * 10
    assert "MISS" in served and "503" in served


async def test_a_day_whose_requests_need_the_budget_is_left_to_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    world = World(clock=wall_from(DAY_START), budget=100, popular=queries(30))
    settings = WarmSettings(daily_budget=100, share=0.3, reserve=10, max_per_run=10)

    async def requests() -> None:
        # Steady demand for other queries: about 120 searches a day, more than the budget.
        rng = random.Random(3)
        while True:
            await trio.sleep(720)
            await world.request(f"query {rng.randrange(30, 10_000):05d}")

    await run_warm_job(world, settings, 23 * 3600, requests=requests)
    # One at 00:00 (no request yet to project from), then nothing: requests need it all.
    assert len(world.searches_by("warm")) == 1
    assert world.used[DAY] == 100


async def test_the_last_hour_spends_the_leftover_on_tomorrows_queries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    start = DAY_START + dt.timedelta(hours=22, minutes=55)
    world = World(clock=wall_from(start), popular=queries(20))
    world.used[DAY], world.warm[DAY] = 60, 30  # requests spent 60, warming its share
    settings = WarmSettings(daily_budget=100, share=0.3, reserve=10, max_per_run=10)
    summaries: list[Mapping[str, object]] = []

    async def requests_after_midnight() -> None:
        await trio.sleep(70 * 60)  # 00:05 the next day
        summaries.append({q: await world.request(q) for q in queries(10)})

    # From 22:55 to 00:30.
    summaries += await run_warm_job(world, settings, 95 * 60, requests=requests_after_midnight)
    warmed = world.searches_by("warm")
    midnight = DAY_START + dt.timedelta(days=1)
    before = [s for s in warmed if s.at < midnight]
    # 23:00-23:40: a refresh would be stale by midnight and the share is spent: nothing.
    # 23:50: the leftover warms the ten most asked queries, fresh until 00:10.
    assert [s.query for s in before] == queries(10)
    assert all(s.at >= midnight - dt.timedelta(minutes=10) for s in before)
    assert world.warm[DAY] == 40 and world.used[DAY] == 70
    # Tomorrow, at 00:05: all ten are answered from the cache, no search of tomorrow's budget.
    assert {q: "HIT" for q in queries(10)} in summaries
    assert not [s for s in world.searches if s.by == "request"]
    # The first runs of the new day follow the day's rules on the new day's ledger.
    assert world.warm.get(TOMORROW, 0) == len([s for s in warmed if s.at >= midnight]) <= 1


@pytest.mark.parametrize(
    ("minutes_before_midnight", "expected"),
    [
        (70, 0),  # 22:50: 5 left, the full reserve of 10 keeps them for requests
        # 23:50: ceil(10 * 10/60) = 2 of the reserve, and ceil(95 * 10 min / 23 h 50) = 1
        # for the requests' projected need.
        (10, 2),
    ],
)
async def test_the_reserve_shrinks_in_the_last_hour(
    autojump_clock: trio.testing.MockClock, minutes_before_midnight: int, expected: int
) -> None:
    now = DAY_START + dt.timedelta(days=1, minutes=-minutes_before_midnight)
    world = World(clock=wall_from(now), popular=queries(20))
    world.used[DAY] = 95
    settings = WarmSettings(daily_budget=100, share=1.0, reserve=10, max_per_run=10)
    report = await warm(
        FakeSuggest(world),
        FakeLedger(world),
        settings,
        now=now,
        next_run=now + dt.timedelta(seconds=PERIOD),
    )
    assert report.refreshed == expected == world.warm.get(DAY, 0)
    assert report.stopped == "reserve"
    assert world.used[DAY] == 95 + expected


async def test_only_queries_that_would_go_stale_before_the_next_run_are_refreshed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    now = DAY_START + dt.timedelta(hours=12)
    next_run = now + dt.timedelta(seconds=PERIOD)
    world = World(clock=wall_from(now), popular=["stays", "lapses", "missing"])
    # Lapsing in the last 30 s before the next run is left to that run (a gap of seconds).
    world.fresh_until["stays"] = next_run - dt.timedelta(seconds=29)
    world.fresh_until["lapses"] = next_run - dt.timedelta(seconds=31)
    suggest = FakeSuggest(world)
    settings = WarmSettings(daily_budget=100, share=0.3, reserve=10, max_per_run=10)
    report = await warm(suggest, FakeLedger(world), settings, now=now, next_run=next_run)
    assert [s.query for s in world.searches] == ["lapses", "missing"]
    assert (report.refreshed, report.fresh, report.stopped) == (2, 1, None)
    assert world.warm[DAY] == 2  # the fresh one's take was given back
    assert {min_fresh for _query, min_fresh in suggest.refreshes} == {PERIOD - 30}


async def test_a_run_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    now = DAY_START + dt.timedelta(hours=12)
    world = World(clock=wall_from(now), popular=queries(50))
    settings = WarmSettings(daily_budget=1000, share=1.0, reserve=10, max_per_run=7)
    report = await warm(
        FakeSuggest(world),
        FakeLedger(world),
        settings,
        now=now,
        next_run=now + dt.timedelta(seconds=PERIOD),
    )
    assert (report.refreshed, report.stopped, report.spent_today) == (7, "per_run", 7)
    assert len(world.searches) == 7


async def test_a_refusal_stops_the_run_and_spends_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    now = DAY_START + dt.timedelta(hours=12)
    world = World(clock=wall_from(now), popular=queries(5), refusing=True)
    settings = WarmSettings(daily_budget=100, share=1.0, reserve=10, max_per_run=10)
    report = await warm(
        FakeSuggest(world),
        FakeLedger(world),
        settings,
        now=now,
        next_run=now + dt.timedelta(seconds=PERIOD),
    )
    assert (report.refreshed, report.stopped, report.spent_today) == (0, "refused", 0)


async def test_a_share_of_zero_warms_only_with_the_leftover(
    autojump_clock: trio.testing.MockClock,
) -> None:
    world = World(clock=wall_from(DAY_START), popular=queries(5))
    settings = WarmSettings(daily_budget=100, share=0.0, reserve=10, max_per_run=10)
    await run_warm_job(world, settings, 23 * 3600 + 30 * 60)
    assert world.searches_by("warm") == []
    await run_warm_job(world, settings, 30 * 60)  # the mock clock goes on: 23:30 to 00:00
    assert [s.query for s in world.searches_by("warm")] == queries(5)


async def test_queries_asked_too_rarely_are_warmed_only_with_the_leftover(
    autojump_clock: trio.testing.MockClock,
) -> None:
    now = DAY_START + dt.timedelta(hours=12)
    # With a 20-minute freshness, 2 asks expected within it are 144 a day.
    world = World(clock=wall_from(now), popular=["busy", "usual", "rare"])
    world.asks.update(busy=1000, usual=144, rare=143)
    settings = WarmSettings(daily_budget=100, share=1.0, reserve=10, max_per_run=10)
    next_run = now + dt.timedelta(seconds=PERIOD)
    suggest, ledger = FakeSuggest(world), FakeLedger(world)
    report = await warm(suggest, ledger, settings, now=now, next_run=next_run)
    assert [s.query for s in world.searches] == ["busy", "usual"]
    assert (report.looked_at, report.refreshed, report.stopped) == (2, 2, None)
    # At 23:50 the searches left would be lost: the rare one is warmed for tomorrow too.
    late = DAY_START + dt.timedelta(hours=23, minutes=50)
    autojump_clock.jump((late - world.clock()).total_seconds())
    report = await warm(
        suggest, ledger, settings, now=late, next_run=late + dt.timedelta(seconds=PERIOD)
    )
    assert report.mode == "leftover"
    assert [s.query for s in world.searches[2:]] == ["busy", "usual", "rare"]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="share"):
        WarmSettings(daily_budget=100, share=1.5)
    assert WarmSettings(daily_budget=100, share=0.3).share_searches == 30
    assert WarmSettings(daily_budget=7, share=0.3).share_searches == 2
