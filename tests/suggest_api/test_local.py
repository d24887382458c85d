"""Local answers through the API: when YouTube cannot be asked and no stale copy exists, the
corpus of fetched videos answers (``X-Cache: LOCAL``, ``source: local``), for each cause that
stops a search, driven for real (the fake's errors and latency, the budget, a Redis proxy cut
with the allowance spent). Nothing matching, or Postgres away: 503 as before the corpus.
"""

from __future__ import annotations

import uuid
from datetime import UTC
from typing import Any

import httpx
import psycopg
import trio

from smartpip.suggest.quota import DEFAULT_REDIS_DOWN_BUDGET
from store.suggest_cache import cache_keys, read_entry
from tests.app.conftest import RunningApp
from tests.fakes.youtube import FakeYouTube
from tests.suggest_api.conftest import SuggestApp, User, ask, cache_result, metric, sign_in
from tests.suggest_api.test_quota import AFTERNOON, next_midnight, to_midnight
from tests.support.clock import FakeClock
from tests.support.faultproxy import FaultProxy
from tests.support.polling import eventually

# "lofi" finds four videos in the fake's corpus (lofi0000004 with search's snippet only).
SEED = "lofi"
LOFI = {"lofi0000001", "lofi0000002", "lofi0000003", "lofi0000004"}
# The cleanup job counts 30 days back from the real clock: on an app whose clock is a fake
# day in March it would delete the corpus the test just filled.
QUIET = {"jobs_paused": "warm,cleanup"}


async def corpus_writes(app: RunningApp, outcome: str = "ok") -> float:
    return await metric(app, "suggest_corpus_writes_total", outcome=outcome) or 0.0


async def seed(app: RunningApp, user: User, q: str = SEED) -> httpx.Response:
    """Search ``q`` (a MISS) and wait until its videos are in the corpus."""
    before = await corpus_writes(app)
    response = await ask(app, user, q)
    assert cache_result(response) == "MISS"

    async def written() -> bool:
        return await corpus_writes(app) > before

    await eventually(written)
    return response


def assert_local(response: httpx.Response, query: str) -> list[str]:
    """A local answer for ``query``; its video IDs."""
    assert response.status_code == 200, response.text
    assert response.headers["x-cache"] == "LOCAL"
    assert response.headers["cache-control"] == "private, max-age=60"
    body: dict[str, Any] = response.json()
    assert body["query"] == query
    assert body["source"] == "local"
    assert body["items"], "a local answer has at least one item"
    return [item["videoId"] for item in body["items"]]


def assert_unavailable(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 503, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == "suggest_unavailable"
    assert int(response.headers["retry-after"]) >= 1
    return body


async def test_budget_spent_answers_locally_and_nothing_matching_is_503(
    suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    clock = FakeClock(start=AFTERNOON)
    async with suggest_app(**QUIET, clock=clock, suggest_daily_budget="1") as app:
        alice = await sign_in(app, "alice")
        await seed(app, alice)
        local = await ask(app, alice, "Lofi for the STUDY")
        assert set(assert_local(local, "lofi study")) <= LOFI
        assert youtube.calls["search"] == 1  # the budget is spent: no call

        # Nothing in the corpus holds "smooth" or "jazz": 503 until midnight, as before.
        body = assert_unavailable(await ask(app, alice, "smooth jazz"))
        assert body["retryAfter"] == to_midnight(clock)
        midnight = next_midnight(clock).astimezone(UTC)
        assert body["resetsAt"] == midnight.isoformat().replace("+00:00", "Z")
        assert await metric(app, "suggest_answers_total", source="local") == 1.0
        assert await metric(app, "suggest_answers_total", source="none") == 1.0
        assert await metric(app, "suggest_answers_total", source="youtube") == 1.0


async def test_quota_exceeded_answers_locally_and_the_local_answer_is_not_cached(
    suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    clock = FakeClock(start=AFTERNOON)
    async with suggest_app(**QUIET, clock=clock) as app:
        alice = await sign_in(app, "alice")
        await seed(app, alice)
        youtube.inject("search", quota_exceeded=True)
        first = await ask(app, alice, "rainy lofi")
        assert set(assert_local(first, "rainy lofi")) <= LOFI
        assert youtube.calls["search"] == 2  # the one quotaExceeded call
        # The breaker is open now: the next one answers locally without a call, again LOCAL
        # (not HIT: nothing was stored for this query).
        assert_local(await ask(app, alice, "rainy lofi"), "rainy lofi")
        assert youtube.calls["search"] == 2
        keys = cache_keys(app.resources.redis, "rainy lofi", 10)
        assert await read_entry(app.resources.redis, keys) is None

        # Midnight Pacific: YouTube is asked again, and its answer is what gets cached.
        clock.advance(to_midnight(clock) + 1)
        youtube.inject("search", quota_exceeded=False)
        searched = await ask(app, alice, "rainy lofi")
        assert cache_result(searched) == "MISS"
        assert searched.json()["source"] == "youtube"
        assert [item["videoId"] for item in searched.json()["items"]] == ["lofi0000002"]
        assert cache_result(await ask(app, alice, "rainy lofi")) == "HIT"


async def test_an_open_upstream_breaker_answers_locally(
    suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    async with suggest_app(**QUIET) as app:
        alice = await sign_in(app, "alice")
        await seed(app, alice)
        youtube.fail_next(100, method="search")
        # Failing searches are 502 (YouTube answered, unusably) until the breaker opens.
        for query in ("alpha", "bravo", "charlie", "delta", "echo"):
            assert (await ask(app, alice, query)).status_code == 502
        calls = youtube.calls["search"]
        assert_local(await ask(app, alice, "lofi coding"), "lofi coding")
        assert youtube.calls["search"] == calls


async def test_a_rejected_key_answers_locally(
    suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    async with suggest_app(**QUIET) as app:
        alice = await sign_in(app, "alice")
        await seed(app, alice)
        youtube.api_key = "rotated-" + uuid.uuid4().hex  # the app's key is no longer valid
        ids = assert_local(await ask(app, alice, "lofi relax"), "lofi relax")
        assert ids[0] == "lofi0000001"  # the only one with "relax" in its title
        assert youtube.calls["search"] == 2


async def test_youtube_slower_than_the_wait_answers_locally(
    suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    async with suggest_app(**QUIET, suggest_wait_seconds="0.5") as app:
        alice = await sign_in(app, "alice")
        await seed(app, alice)
        held = trio.Event()
        youtube.inject("search", hold=held)
        with trio.fail_after(5):
            assert_local(await ask(app, alice, "lofi mix"), "lofi mix")
        # The search goes on; once YouTube answers, its answer is cached and served.
        youtube.inject("search", hold=None)
        held.set()

        async def cached() -> bool:
            return (await ask(app, alice, "lofi mix")).headers["x-cache"] == "HIT"

        await eventually(cached)


async def test_redis_down_with_the_allowance_spent_answers_locally(
    suggest_app: SuggestApp, youtube: FakeYouTube, redis_proxy: FaultProxy
) -> None:
    redis_url = f"redis://127.0.0.1:{redis_proxy.port}/0"
    async with suggest_app(**QUIET, redis_url=redis_url, rate_limit_suggest="1000/1m") as app:
        alice = await sign_in(app, "alice")
        redis_proxy.mode = "down"
        await seed(app, alice)  # the first search of the local allowance
        for n in range(DEFAULT_REDIS_DOWN_BUDGET - 1):
            assert cache_result(await ask(app, alice, f"nothing {n}")) == "MISS"
        searches = youtube.calls["search"]
        assert searches == DEFAULT_REDIS_DOWN_BUDGET
        assert_local(await ask(app, alice, "lofi radio"), "lofi radio")
        assert youtube.calls["search"] == searches


async def test_within_the_reserve_only_queries_asked_again_are_searched(
    suggest_app: SuggestApp, youtube: FakeYouTube
) -> None:
    clock = FakeClock(start=AFTERNOON)
    settings = {"suggest_daily_budget": "3", "suggest_reserve": "1"}
    async with suggest_app(**QUIET, clock=clock, **settings) as app:
        alice = await sign_in(app, "alice")
        await seed(app, alice)  # 2 searches left
        assert cache_result(await ask(app, alice, "jazz")) == "MISS"  # 1 left: the reserve
        assert youtube.calls["search"] == 2

        # Asked once today: answered from the corpus, the reserve kept.
        body = await ask(app, alice, "lofi coding")
        assert_local(body, "lofi coding")
        assert youtube.calls["search"] == 2
        # Nothing matching, asked once: 503 until midnight (the reserve lasts the day).
        refused = assert_unavailable(await ask(app, alice, "pasta"))
        assert refused["retryAfter"] == to_midnight(clock)
        assert "resetsAt" in refused
        # Asked a second time today: worth the reserve.
        again = await ask(app, alice, "lofi coding")
        assert cache_result(again) == "MISS"
        assert youtube.calls["search"] == 3


async def test_postgres_down_is_503_and_a_failed_corpus_write_never_fails_a_search(
    suggest_app: SuggestApp, youtube: FakeYouTube, pg_url: str, pg_proxy: FaultProxy
) -> None:
    proxied = pg_url.replace(":5432/", f":{pg_proxy.port}/")
    async with suggest_app(**QUIET, database_url=proxied, db_acquire_timeout="0.5") as app:
        alice = await sign_in(app, "alice")
        await seed(app, alice)
        pg_proxy.mode = "down"

        # A search while Postgres is away answers as always; the write is counted failed.
        searched = await ask(app, alice, "jazz")
        assert cache_result(searched) == "MISS"

        async def failed() -> bool:
            return await corpus_writes(app, "failed") == 1.0

        await eventually(failed)

        # YouTube out of quota and Postgres away: 503 with Retry-After, never a 500.
        youtube.inject("search", quota_exceeded=True)
        assert_unavailable(await ask(app, alice, "lofi study"))
        pg_proxy.mode = "pass"

        async def local_again() -> bool:
            response = await ask(app, alice, "lofi study")
            return bool(response.headers.get("x-cache") == "LOCAL")

        await eventually(local_again)


async def test_no_corpus_row_carries_a_user_identity(
    suggest_app: SuggestApp, youtube: FakeYouTube, pg_url: str
) -> None:
    async with suggest_app(**QUIET) as app:
        alice = await sign_in(app, "alice")
        await seed(app, alice)
        await seed(app, alice, "jazz")
        user_id = (await app.client.get("/v1/me", headers=alice.headers)).json()["id"]
    with psycopg.connect(pg_url) as conn:
        columns = {
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'suggest_corpus'"
            )
        }
        rows = [row[0] for row in conn.execute("SELECT row_to_json(c)::text FROM suggest_corpus c")]
        ids = {row[0] for row in conn.execute("SELECT video_id FROM suggest_corpus")}
    assert not any("user" in column for column in columns), columns
    assert ids == LOFI | {"jazz0000001"}
    for row in rows:
        assert user_id not in row
        assert "alice" not in row


async def test_the_corpus_switched_off_keeps_the_old_503(
    suggest_app: SuggestApp, youtube: FakeYouTube, pg_url: str
) -> None:
    clock = FakeClock(start=AFTERNOON)
    async with suggest_app(
        **QUIET, clock=clock, suggest_daily_budget="1", suggest_corpus_days="0"
    ) as app:
        alice = await sign_in(app, "alice")
        assert cache_result(await ask(app, alice, SEED)) == "MISS"
        assert_unavailable(await ask(app, alice, "lofi study"))
        assert await corpus_writes(app) == 0.0
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM suggest_corpus").fetchone() == (0,)
