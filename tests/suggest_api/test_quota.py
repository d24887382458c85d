"""The YouTube quota through the API: quotaExceeded, the daily budget, the reset at midnight
Pacific, and what a search costs (units, metrics).

The apps run on a FakeClock set to a chosen Pacific instant, so ``Retry-After`` is exact; the
breaker keys in Redis still expire in real time (seconds to midnight), so after the clock
passes midnight the gate must ignore yesterday's quota breaker by itself.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from zoneinfo import ZoneInfo

import httpx

from store.quota import QuotaUsage, quota_usage
from tests.fakes.youtube import FakeYouTube
from tests.suggest_api.conftest import (
    SuggestApp,
    ask,
    bookkeep,
    breaker_gauges,
    cache_result,
    metric,
    sign_in,
    suggest_state,
)
from tests.support.clock import FakeClock

PACIFIC = ZoneInfo("America/Los_Angeles")
# 2026-03-10 15:00 PDT (DST began on March 8): 9 hours to midnight Pacific.
AFTERNOON = datetime(2026, 3, 10, 15, 0, tzinfo=PACIFIC).timestamp()
TTL = 1200  # SMARTPIP_SUGGEST_TTL_SECONDS default


def to_midnight(clock: FakeClock) -> int:
    """Seconds from the fake clock to the next midnight Pacific (computed independently)."""
    local = datetime.fromtimestamp(clock(), PACIFIC)
    midnight = datetime.combine(local.date() + timedelta(days=1), dtime(0), tzinfo=PACIFIC)
    return math.ceil(midnight.timestamp() - clock())


def pacific_day(clock: FakeClock) -> str:
    return datetime.fromtimestamp(clock(), PACIFIC).date().isoformat()


def assert_unavailable(
    response: httpx.Response, retry_after: int, *, resets_at: datetime | None = None
) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["code"] == "suggest_unavailable"
    assert response.headers["retry-after"] == str(retry_after)
    assert body["retryable"] is True
    assert body["retryAfter"] == retry_after
    if resets_at is not None:
        # RFC 3339 in UTC: the instant of midnight Pacific, for the extension's retry logic.
        assert body["resetsAt"] == resets_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    else:
        assert "resetsAt" not in body


def next_midnight(clock: FakeClock) -> datetime:
    local = datetime.fromtimestamp(clock(), PACIFIC)
    return datetime.combine(local.date() + timedelta(days=1), dtime(0), tzinfo=PACIFIC)


async def test_quota_exceeded_serves_the_cache_only_until_midnight_pacific(
    suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    clock = FakeClock(start=AFTERNOON)
    assert to_midnight(clock) == 9 * 3600
    async with suggest_app(clock=clock) as app:
        alice = await sign_in(app, "alice")
        assert cache_result(await ask(app, alice, "lofi beats")) == "MISS"
        assert youtube.calls == {"search": 1, "videos": 1}
        assert await suggest_state(app) == "up"

        youtube.inject("search", quota_exceeded=True)
        assert_unavailable(
            await ask(app, alice, "smooth jazz"), 9 * 3600, resets_at=next_midnight(clock)
        )
        assert youtube.calls == {"search": 2, "videos": 1}  # the one quotaExceeded call

        clock.advance(600)
        # Queries without a term in the corpus (only "lofi beats" was fetched): no local answer.
        for query in ("pasta", "rainy day", "smooth jazz"):
            assert_unavailable(
                await ask(app, alice, query), 9 * 3600 - 600, resets_at=next_midnight(clock)
            )
        assert youtube.calls == {"search": 2, "videos": 1}

        # The cached query is still served: fresh, then stale; never a call.
        assert cache_result(await ask(app, alice, "lofi beats")) == "HIT"
        clock.advance(TTL)  # 15:20:00, fetched at 15:00:00: stale
        stale = await ask(app, alice, "lofi beats")
        assert cache_result(stale) == "STALE"
        assert stale.headers["cache-control"] == "private, max-age=0"
        assert_unavailable(
            await ask(app, alice, "pasta"), to_midnight(clock), resets_at=next_midnight(clock)
        )
        assert to_midnight(clock) == 9 * 3600 - 600 - TTL
        assert youtube.calls == {"search": 2, "videos": 1}

        assert await breaker_gauges(app) == {"quota": 1.0, "upstream": 0.0, "key_invalid": 0.0}
        assert await metric(app, "suggest_cache_total", result="stale") == 1.0
        quota_calls = {"method": "search", "outcome": "quota"}
        assert await metric(app, "suggest_upstream_calls_total", **quota_calls) == 1.0
        assert await suggest_state(app) == "degraded"

        # Midnight Pacific: a new quota day. The breaker key still lives in Redis (its TTL
        # is real seconds), but it belongs to yesterday.
        clock.advance(to_midnight(clock) + 1)
        youtube.inject("search", quota_exceeded=False)
        assert cache_result(await ask(app, alice, "smooth jazz")) == "MISS"
        assert youtube.calls == {"search": 3, "videos": 2}
        assert await breaker_gauges(app) == {"quota": 0.0, "upstream": 0.0, "key_invalid": 0.0}
        assert await suggest_state(app) == "up"


async def test_quota_exceeded_counts_one_search_and_no_more(
    suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    clock = FakeClock(start=AFTERNOON)
    async with suggest_app(clock=clock) as app:
        alice = await sign_in(app, "alice")
        youtube.inject("search", quota_exceeded=True)
        for query in ("lofi beats", "smooth jazz", "pasta"):
            assert_unavailable(
                await ask(app, alice, query), 9 * 3600, resets_at=next_midnight(clock)
            )
        assert youtube.calls == {"search": 1}
        usage = await quota_usage(app.resources.redis, pacific_day(clock))
        assert usage == QuotaUsage(searches=1, units=100)
        # A new day's counter starts from nothing.
        clock.advance(to_midnight(clock))
        assert pacific_day(clock) == "2026-03-11"
        youtube.inject("search", quota_exceeded=False)
        assert cache_result(await ask(app, alice, "pasta")) == "MISS"
        usage = await quota_usage(app.resources.redis, "2026-03-11")
        assert usage == QuotaUsage(searches=1, units=101)


async def test_daily_budget_spent_refuses_until_midnight_without_calling(
    suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    clock = FakeClock(start=AFTERNOON)
    async with suggest_app(clock=clock, suggest_daily_budget="2") as app:
        alice = await sign_in(app, "alice")
        assert cache_result(await ask(app, alice, "lofi beats")) == "MISS"
        assert cache_result(await ask(app, alice, "smooth jazz")) == "MISS"
        assert youtube.calls["search"] == 2

        assert_unavailable(await ask(app, alice, "pasta"), 9 * 3600, resets_at=next_midnight(clock))
        clock.advance(1)
        assert_unavailable(
            await ask(app, alice, "rainy day"), 9 * 3600 - 1, resets_at=next_midnight(clock)
        )
        assert youtube.calls["search"] == 2
        assert cache_result(await ask(app, alice, "smooth jazz")) == "HIT"
        assert youtube.calls["search"] == 2

        assert (await breaker_gauges(app))["quota"] == 1.0
        assert await metric(app, "suggest_quota_searches_used") == 2.0
        assert await metric(app, "suggest_quota_searches_remaining") == 0.0
        assert await metric(app, "suggest_quota_searches_budget") == 2.0
        reset = await metric(app, "suggest_quota_reset_timestamp_seconds")
        assert reset == next_midnight(clock).timestamp()
        assert await suggest_state(app) == "degraded"

        clock.advance(to_midnight(clock))
        assert cache_result(await ask(app, alice, "pasta")) == "MISS"
        assert youtube.calls["search"] == 3
        await breaker_gauges(app)
        assert await metric(app, "suggest_quota_searches_used") == 1.0
        assert await metric(app, "suggest_quota_searches_remaining") == 1.0
        assert await metric(app, "suggest_quota_reset_timestamp_seconds") == reset + 86_400


async def test_a_search_costs_101_units_and_retries_cost_more(
    suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    clock = FakeClock(start=AFTERNOON)
    async with suggest_app(clock=clock) as app:
        alice = await sign_in(app, "alice")
        redis, day = app.resources.redis, pacific_day(clock)
        assert day == "2026-03-10"
        assert await quota_usage(redis, day) == QuotaUsage(searches=0, units=0)

        assert cache_result(await ask(app, alice, "lofi beats")) == "MISS"
        assert youtube.calls == {"search": 1, "videos": 1}
        assert await quota_usage(redis, day) == QuotaUsage(searches=1, units=101)

        # Two 5xx, then an answer: one search reserved, three search attempts charged.
        youtube.fail_next(2, method="search")
        assert cache_result(await ask(app, alice, "smooth jazz")) == "MISS"
        assert youtube.calls == {"search": 4, "videos": 2}
        assert await quota_usage(redis, day) == QuotaUsage(searches=2, units=101 + 301)

        # A hit costs nothing.
        assert cache_result(await ask(app, alice, "lofi beats")) == "HIT"
        assert await quota_usage(redis, day) == QuotaUsage(searches=2, units=402)


async def test_metrics_follow_calls_cache_results_and_quota(
    suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    clock = FakeClock(start=AFTERNOON)
    async with suggest_app(clock=clock, suggest_daily_budget="5") as app:
        alice = await sign_in(app, "alice")

        async def calls(method: str, outcome: str) -> float | None:
            return await metric(app, "suggest_upstream_calls_total", method=method, outcome=outcome)

        async def cache(result: str) -> float | None:
            return await metric(app, "suggest_cache_total", result=result)

        assert [await cache(r) for r in ("hit", "miss", "stale")] == [0.0, 0.0, 0.0]
        assert await calls("search", "ok") is None

        assert cache_result(await ask(app, alice, "lofi beats")) == "MISS"
        assert cache_result(await ask(app, alice, "Lofi  BEATS!")) == "HIT"
        assert cache_result(await ask(app, alice, "lofi beats")) == "HIT"
        assert youtube.calls == {"search": 1, "videos": 1}
        assert [await cache(r) for r in ("hit", "miss", "stale")] == [2.0, 1.0, 0.0]
        assert await calls("search", "ok") == 1.0
        assert await calls("videos", "ok") == 1.0

        youtube.fail_next(1, method="search")
        assert cache_result(await ask(app, alice, "smooth jazz")) == "MISS"
        assert youtube.calls == {"search": 3, "videos": 2}
        assert await calls("search", "error") == 1.0
        assert await calls("search", "ok") == 2.0
        assert await calls("videos", "ok") == 2.0

        await bookkeep(app)
        assert await metric(app, "suggest_quota_searches_used") == 2.0
        # The budget is in units (5 searches = 505): the retried search.list spent a third
        # search's worth, so 505 - 302 = 203 units are left, two searches of 101.
        assert await metric(app, "suggest_quota_searches_remaining") == 2.0
        assert await metric(app, "suggest_quota_units_used") == 101.0 + 201.0
