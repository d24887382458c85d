"""The write's budget through the app: the playlists' share, the per-user cap, the day's quota,
Redis down, and /v1/status."""

from __future__ import annotations

import datetime as dt
from datetime import UTC, datetime

import psycopg
import trio

from smartpip.youtube import pacific_day, seconds_until_pacific_midnight
from store.playlist_quota import playlist_usage
from store.quota import add_units, budget_units
from store.redis import RedisStore
from tests.fakes.youtube_playlists import FakePlaylists
from tests.playlist.write.conftest import (
    VIDEO_A,
    VIDEO_B,
    VIDEO_C,
    PlaylistApp,
    add,
    check_problem,
    connected,
    playlist_state,
)
from tests.playlist.write.grants_fake import FakeGrants
from tests.suggest_api.conftest import metric
from tests.support.faultproxy import FaultProxy
from tests.support.polling import eventually

# Two searches a day (202 units), half for playlists (101): a first write (create and
# insert, 100 units) fits, a second (50) does not.
TIGHT = {"suggest_daily_budget": "2", "playlist_share": "0.5"}


def today() -> str:
    return pacific_day(datetime.now(UTC))


async def test_the_share_spent_is_503_until_midnight_pacific_and_degraded(
    playlist_app: PlaylistApp, grants: FakeGrants, youtube: FakePlaylists, redis_store: RedisStore
) -> None:
    async with playlist_app(**TIGHT) as app:
        alice = await connected(app, grants, "alice")
        assert (await add(app, alice, VIDEO_A)).status_code == 200
        assert await playlist_state(app) == "up"
        response = await add(app, alice, VIDEO_B)
        problem = check_problem(response, 503, "playlist_unavailable")
        assert problem["reason"] == "budget"
        expected = seconds_until_pacific_midnight(datetime.now(UTC))
        assert abs(problem["retryAfter"] - expected) <= 5
        assert response.headers["retry-after"] == str(problem["retryAfter"])
        assert await playlist_state(app) == "degraded"
        assert youtube.calls == {"playlists": 1, "playlistItems": 1}
        assert await metric(app, "playlist_writes_total", outcome="budget") == 1
        assert await metric(app, "playlist_writes_total", outcome="added") == 1
        assert await metric(app, "playlist_quota_units_spent_total") == 100
    usage = await playlist_usage(redis_store, today())
    assert (usage.playlist_units, usage.units) == (100, 100)


async def test_searches_spent_the_day_so_writes_are_refused(
    playlist_app: PlaylistApp, grants: FakeGrants, youtube: FakePlaylists, redis_store: RedisStore
) -> None:
    await add_units(redis_store, today(), budget_units(100) - 60)
    async with playlist_app() as app:
        alice = await connected(app, grants, "alice")
        problem = check_problem(await add(app, alice, VIDEO_A), 503, "playlist_unavailable")
        assert problem["reason"] == "quota"
    assert youtube.calls == {}


async def test_each_user_has_a_daily_cap(
    playlist_app: PlaylistApp, grants: FakeGrants, youtube: FakePlaylists
) -> None:
    async with playlist_app(playlist_user_daily_limit="2") as app:
        alice = await connected(app, grants, "alice")
        bob = await connected(app, grants, "bob")
        for video in (VIDEO_A, VIDEO_B):
            assert (await add(app, alice, video)).status_code == 200
        assert (await add(app, alice, VIDEO_B)).json()["alreadyAdded"] is True  # free
        response = await add(app, alice, VIDEO_C)
        problem = check_problem(response, 429, "playlist_daily_limit")
        assert int(response.headers["retry-after"]) == problem["retryAfter"] > 0
        assert problem["resetsAt"].endswith("Z")
        assert (await add(app, bob, VIDEO_C)).status_code == 200
        assert await playlist_state(app) == "up"  # one user's cap is not the feature's
    assert youtube.calls["playlistItems"] == 3


async def test_a_day_redis_lost_is_restored_before_spending(
    playlist_app: PlaylistApp, grants: FakeGrants, youtube: FakePlaylists, pg_url: str
) -> None:
    # The quota job saved today's usage; Redis has lost it: nearly all of today is spent.
    with psycopg.connect(pg_url) as conn:
        conn.execute(
            "INSERT INTO quota_days (day, searches, units) VALUES (%s, %s, %s)",
            (dt.date.fromisoformat(today()), 99, budget_units(100) - 60),
        )
    async with playlist_app() as app:
        alice = await connected(app, grants, "alice")
        problem = check_problem(await add(app, alice, VIDEO_A), 503, "playlist_unavailable")
        assert problem["reason"] == "quota"
    assert youtube.calls == {}


async def test_another_replica_spending_the_share_shows_in_status(
    playlist_app: PlaylistApp, grants: FakeGrants
) -> None:
    async with playlist_app(**TIGHT) as one, playlist_app(**TIGHT) as two:
        alice = await connected(one, grants, "alice")
        await add(one, alice, VIDEO_A)
        await add(one, alice, VIDEO_B)
        assert await playlist_state(one) == "degraded"
        assert await playlist_state(two) == "up"
        writer = two.resources.playlist
        assert writer is not None
        await writer.refresh_gauges()  # what the playlist-bookkeeping child does every 5 s
        assert await playlist_state(two) == "degraded"
        assert await metric(two, "playlist_quota_units_used") == 100
        assert await metric(two, "playlist_quota_units_budget") == 101


async def test_redis_down_refuses_writes_and_status_says_down(
    playlist_app: PlaylistApp,
    grants: FakeGrants,
    youtube: FakePlaylists,
    redis_proxy: FaultProxy,
) -> None:
    async with playlist_app(redis_url=f"redis://127.0.0.1:{redis_proxy.port}/0") as app:
        alice = await connected(app, grants, "alice")
        redis_proxy.mode = "down"
        with trio.fail_after(5):
            response = await add(app, alice, VIDEO_A)
        problem = check_problem(response, 503, "playlist_unavailable")
        assert problem["retryAfter"] == 30

        async def down() -> bool:
            return await playlist_state(app) == "down"

        await eventually(down)
        redis_proxy.mode = "pass"

        async def up() -> bool:
            return await playlist_state(app) == "up"

        await eventually(up)
        assert (await add(app, alice, VIDEO_A)).status_code == 200
    assert youtube.calls == {"playlists": 1, "playlistItems": 1}
