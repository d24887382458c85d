"""The ``warm`` job on the real service: the real Suggester, Redis and the YouTube fake.

The apps' ``warm`` loops are paused (``suggest_app`` sets ``SMARTPIP_JOBS_PAUSED=warm``), so
only the test runs the job's body, at moments of its choosing on the apps' fake wall clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from smartpip.runtime.jobs import job_bodies, job_specs
from smartpip.runtime.resources import open_resources
from smartpip.suggest import normalize_query
from smartpip.suggest.quota import PACIFIC
from store.popularity import record_queries
from store.quota import quota_usage
from store.redis import RedisStore
from store.warm import warm_spent
from supervisors import Every, JobRun
from tasks.catalogue import JOBS
from tests.app.conftest import AppFactory, RunningApp, make_config
from tests.app.conftest import app_factory as app_factory  # the fixture, shared
from tests.fakes.youtube import FakeYouTube
from tests.history.conftest import sign_in
from tests.suggest_api.conftest import (
    API_KEY,
    SuggestApp,
    ask,
    bookkeep,
    cache_result,
)
from tests.suggest_api.conftest import suggest_app as suggest_app  # the fixture, shared
from tests.suggest_api.conftest import youtube as youtube  # the fixture, shared
from tests.support.clock import FakeClock

# Noon Pacific: well inside the quota day, so the paced share is half the day's.
NOON = dt.datetime(2026, 6, 10, 12, tzinfo=PACIFIC)
DAY = "2026-06-10"
TTL = 1200


async def run_warm(app: RunningApp, clock: FakeClock) -> Mapping[str, object]:
    """One run of the ``warm`` job's body on ``app``, for the period of ``clock``'s now."""
    body = job_bodies(app.resources)["warm"]
    now = dt.datetime.fromtimestamp(clock(), dt.UTC)
    summary = await body(JobRun("warm", JOBS["warm"].schedule.period_at(now), "test"))
    assert summary is not None
    return summary


# Asks a day that make a query worth warming during the day (2 expected within 20 minutes).
BUSY = 200


async def ask_and_count(app: RunningApp, *queries: str) -> None:
    """Ask ``queries`` as a user, flush the popularity counts (as the bookkeeping does), and
    count ``BUSY`` more asks of each, as if the day had asked them that often."""
    user = await sign_in(app, "alice")
    for q in queries:
        assert (await ask(app, user, q)).status_code == 200
    await bookkeep(app)
    normalized = {q: normalize_query(q).text for q in queries}
    await record_queries(
        app.resources.redis, dict.fromkeys(normalized.values(), BUSY), now=app.resources.clock()
    )


async def test_a_warmed_query_is_then_served_from_the_cache_without_a_search(
    suggest_app: SuggestApp, youtube: FakeYouTube, redis_store: RedisStore
) -> None:
    clock = FakeClock(NOON.timestamp() + 300)  # 12:05, in the period 12:00-12:10
    async with suggest_app(clock=clock) as app:
        await ask_and_count(app, "lofi beats", "Lofi beats!", "jazz piano")
        assert youtube.calls["search"] == 2
        # Still fresh for longer than the next run: nothing to do.
        summary = await run_warm(app, clock)
        assert (summary["refreshed"], summary["fresh"]) == (0, 2)
        clock.advance(TTL - 240)  # 12:21: fresh until 12:25, the next run at 12:30
        summary = await run_warm(app, clock)
        assert (summary["mode"], summary["refreshed"], summary["spent_today"]) == ("day", 2, 2)
        assert youtube.calls["search"] == 4
        clock.advance(600)  # past the first searches' freshness, within the warmed one's
        user = await sign_in(app, "bob")
        assert cache_result(await ask(app, user, "lofi beats")) == "HIT"
        assert cache_result(await ask(app, user, "jazz piano")) == "HIT"
        assert youtube.calls["search"] == 4
        assert await warm_spent(redis_store, DAY) == 2
        assert (await quota_usage(redis_store, DAY)).searches == 4


async def test_the_ledger_in_redis_caps_warming_across_replicas(
    suggest_app: SuggestApp, youtube: FakeYouTube, redis_store: RedisStore
) -> None:
    clock = FakeClock(NOON.timestamp())
    # A share of 2 searches a day; at noon (paced) both: ceil(2 * 12 h 10 / 24 h).
    settings = {"suggest_daily_budget": "20", "warm_share": "0.1", "warm_reserve": "0"}
    async with (
        suggest_app(clock=clock, **settings) as first,
        suggest_app(clock=clock, **settings) as second,
    ):
        await ask_and_count(first, "cats", "dogs", "birds", "fish")
        assert youtube.calls["search"] == 4
        clock.advance(TTL + 1)
        summary = await run_warm(first, clock)
        assert (summary["refreshed"], summary["stopped"], summary["cap"]) == (2, "share", 2)
        summary = await run_warm(second, clock)  # another replica, the same ledger
        assert (summary["refreshed"], summary["stopped"], summary["spent_today"]) == (
            0,
            "share",
            2,
        )
        assert youtube.calls["search"] == 6
        assert await warm_spent(redis_store, DAY) == 2
        assert (await quota_usage(redis_store, DAY)).searches == 6


async def test_warming_stops_at_what_requests_may_need(
    suggest_app: SuggestApp, youtube: FakeYouTube, redis_store: RedisStore
) -> None:
    clock = FakeClock(NOON.timestamp())
    settings = {"suggest_daily_budget": "6", "warm_share": "1", "warm_reserve": "1"}
    async with suggest_app(clock=clock, **settings) as app:
        # 4 searches left; requests made 2 in the first half of the day, so 2 more are
        # expected by midnight: warming keeps those and the reserve of 1.
        await ask_and_count(app, "cats", "dogs")
        clock.advance(TTL + 1)
        summary = await run_warm(app, clock)
        assert (summary["refreshed"], summary["stopped"]) == (1, "reserve")
        assert (await quota_usage(redis_store, DAY)).searches == 3
        user = await sign_in(app, "carol")
        for q in ("owls", "bats", "eels"):  # the reserve: requests still get their searches
            assert cache_result(await ask(app, user, q)) == "MISS"
        assert youtube.calls["search"] == 6


async def test_the_job_exists_only_where_suggest_is_configured(
    app_factory: AppFactory, suggest_app: SuggestApp
) -> None:
    async with app_factory() as plain:
        assert "warm" not in job_bodies(plain.resources)
    async with suggest_app(jobs_paused="") as app:
        assert "warm" in job_bodies(app.resources)
        spec = next(spec for spec in job_specs(app.resources) if spec.name == "warm")
        assert (spec.schedule, spec.claims.kind, spec.paused) == (Every(600), "claim", False)
    assert (JOBS["warm"].kind, JOBS["warm"].schedule) == ("claim", Every(600))


async def test_an_operators_run_outside_a_server_starts_suggests_flights_itself(
    pg_url: str, redis_prefix: str, redis_store: RedisStore, youtube: FakeYouTube
) -> None:
    # `smartpip jobs run warm`: resources without the server, so nobody runs the flights.
    clock = FakeClock(NOON.timestamp())
    await record_queries(redis_store, {"cats": BUSY, "dogs": BUSY}, now=clock())
    config = make_config(
        pg_url, redis_prefix, youtube_api_key=API_KEY, youtube_api_url=youtube.base_url
    )
    async with open_resources(config, clock=clock) as resources:
        assert resources.suggest is not None and not resources.suggest.running
        body = job_bodies(resources)["warm"]
        now = dt.datetime.fromtimestamp(clock(), dt.UTC)
        summary = await body(JobRun("warm", JOBS["warm"].schedule.period_at(now), "cli"))
        assert summary is not None and summary["refreshed"] == 2
        assert not resources.suggest.running
    assert youtube.calls["search"] == 2


async def test_a_failed_search_is_spent_and_a_refusal_stops_the_run_spending_nothing(
    suggest_app: SuggestApp, youtube: FakeYouTube, redis_store: RedisStore
) -> None:
    clock = FakeClock(NOON.timestamp())
    async with suggest_app(clock=clock) as app:
        await ask_and_count(app, "cats", "dogs", "birds")
        clock.advance(TTL + 1)
        # The first refresh fails (a 5xx on every attempt), the second finds the quota gone.
        youtube.fail_next(3, method="search")
        youtube.inject("search", quota_exceeded=True)
        summary = await run_warm(app, clock)
        assert (summary["failed"], summary["refreshed"], summary["stopped"]) == (1, 0, "refused")
        assert summary["spent_today"] == 1 == await warm_spent(redis_store, DAY)
        calls = youtube.calls["search"]
        # The quota breaker is open now: the gate refuses before any search.
        summary = await run_warm(app, clock)
        assert (summary["failed"], summary["stopped"], summary["spent_today"]) == (0, "refused", 1)
        assert youtube.calls["search"] == calls
