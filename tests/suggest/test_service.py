"""The Suggester itself, against real Redis and the YouTube fake (no HTTP app in between).

The end-to-end behaviour is in ``tests/suggest_api``; this covers what a request cannot show
directly: the in-process copy of fresh entries, the batched popularity flush, a Suggester
that is not running.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import trio
from prometheus_client import CollectorRegistry

from smartpip.suggest import NormalizedQuery, normalize_query
from smartpip.suggest import service as service_module
from smartpip.suggest.metrics import SuggestMetrics
from smartpip.suggest.quota import QuotaGate
from smartpip.suggest.ranking import rank as real_rank
from smartpip.suggest.service import Suggester, SuggestSettings, SuggestUnavailable
from smartpip.youtube import Video, YouTubeClient, YouTubeSettings
from store.redis import RedisStore
from tasks.suggest import QueryCounts, SuggestBookkeeping
from tests.fakes.youtube import FakeYouTube
from tests.quota.conftest import proxied_store as proxied_store  # the fixture, shared
from tests.support.clock import FakeClock
from tests.support.faultproxy import FaultProxy

KEY = "AIzaSy-service-test-key-0123456789"


@pytest.fixture
async def youtube(nursery: trio.Nursery) -> FakeYouTube:
    fake = FakeYouTube(api_key=KEY)
    await nursery.start(fake.run)
    return fake


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=2.0, follow_redirects=False) as client:
        yield client


def build(
    store: RedisStore,
    youtube: FakeYouTube,
    http: httpx.AsyncClient,
    monotonic: FakeClock | None = None,
) -> Suggester:
    """A Suggester; ``monotonic`` drives its and its gate's Redis back-off."""
    client = YouTubeClient(YouTubeSettings(api_url=youtube.base_url, api_key=KEY), http)
    metrics = SuggestMetrics(CollectorRegistry())
    ticks = monotonic or FakeClock()
    gate = QuotaGate(store, monotonic=ticks)
    return Suggester(client, store, gate, metrics, SuggestSettings(), monotonic=ticks)


async def bookkeep(suggester: Suggester, store: RedisStore) -> None:
    """One pass of suggest's bookkeeping, as its supervised child runs it."""
    await SuggestBookkeeping(
        store, suggester.query_counts, suggester.redis_backoff, suggester.refresh_gauges
    ).run_once()


@pytest.fixture
def ticks() -> FakeClock:
    """The monotonic clock of the Redis back-offs."""
    return FakeClock()


@pytest.fixture
async def suggester(
    nursery: trio.Nursery,
    proxied_store: RedisStore,
    youtube: FakeYouTube,
    http: httpx.AsyncClient,
    ticks: FakeClock,
) -> Suggester:
    """A running Suggester whose Redis connection goes through ``redis_proxy``."""
    suggester = build(proxied_store, youtube, http, ticks)
    await nursery.start(suggester.run_flights)
    return suggester


async def test_fresh_entries_are_answered_from_the_process_without_redis(
    suggester: Suggester, youtube: FakeYouTube, redis_proxy: FaultProxy
) -> None:
    lofi = normalize_query("lofi beats")
    assert (await suggester.suggest(lofi)).cache == "MISS"
    redis_proxy.mode = "down"
    answer = await suggester.suggest(lofi)
    assert answer.cache == "HIT" and b"lofi0000001" in answer.items_json
    assert youtube.calls["search"] == 1


async def test_the_process_copy_is_bounded(
    suggester: Suggester, youtube: FakeYouTube, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "LOCAL_ENTRIES", 2)
    for text in ("lofi", "jazz", "cats"):
        await suggester.suggest(normalize_query(text))
    assert len(suggester._local) == 2
    assert youtube.calls["search"] == 3


async def test_popularity_counts_survive_a_failed_flush(
    suggester: Suggester,
    proxied_store: RedisStore,
    redis_proxy: FaultProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for text in ("jazz", "jazz", "lofi"):
        await suggester.suggest(normalize_query(text))
    redis_proxy.mode = "down"
    await bookkeep(suggester, proxied_store)  # fails: the counts stay pending
    assert suggester.state() == "degraded"
    for text in ("lofi", "lofi"):
        await suggester.suggest(normalize_query(text))  # answered from the process copy
    redis_proxy.mode = "pass"
    caplog.clear()  # coredis logs the refused connections at ERROR
    await bookkeep(suggester, proxied_store)
    assert await suggester.popular(5) == ["lofi", "jazz"]  # 3 against 2: nothing was lost


async def test_the_pending_counts_are_flushed_once_redis_answers(
    suggester: Suggester, proxied_store: RedisStore, redis_store: RedisStore
) -> None:
    for text in ("lofi", "lofi", "jazz"):
        await suggester.suggest(normalize_query(text))
    await bookkeep(suggester, proxied_store)
    await bookkeep(suggester, proxied_store)  # nothing new: nothing added twice
    assert await suggester.popular(5) == ["lofi", "jazz"]


def test_pending_queries_are_bounded() -> None:
    counts = QueryCounts(limit=2)
    for text in ("a1", "b2", "c3", "a1"):
        counts.note(text)
    assert counts.pending() == {"a1": 2, "b2": 1}
    taken = counts.take()
    counts.note("d4")
    counts.give_back(taken)  # what could not be written comes back, still bounded
    assert counts.pending() == {"d4": 1, "a1": 2}


def test_counts_being_flushed_still_count() -> None:
    counts = QueryCounts()
    counts.note("lofi")
    taken = counts.take()
    # Taken by a flush not finished yet: the reserve rule must still see the earlier ask.
    assert (counts.pending(), counts.count("lofi")) == ({}, 1)
    counts.note("lofi")
    assert counts.count("lofi") == 2
    counts.flushed()
    assert counts.count("lofi") == 1
    counts.give_back(taken)
    assert counts.count("lofi") == 2


async def test_a_suggester_that_is_not_running_answers_503(
    redis_store: RedisStore, youtube: FakeYouTube, http: httpx.AsyncClient
) -> None:
    stopped = build(redis_store, youtube, http)
    with pytest.raises(SuggestUnavailable) as caught:
        await stopped.suggest(normalize_query("lofi"))
    assert caught.value.reason == "busy" and caught.value.retry_after >= 1
    assert youtube.calls["search"] == 0


async def test_bookkeeping_notices_redis_is_back_without_traffic(
    suggester: Suggester,
    proxied_store: RedisStore,
    redis_proxy: FaultProxy,
    ticks: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis_proxy.mode = "down"
    await suggester.suggest(normalize_query("lofi"))  # cache read fails: the cache is off
    assert suggester.state() == "degraded"
    redis_proxy.mode = "pass"
    caplog.clear()  # coredis logs the refused connections at ERROR
    ticks.advance(60)  # the back-offs are over
    await bookkeep(suggester, proxied_store)
    assert suggester.state() == "up"


async def test_popularity_windows_longer_than_kept_are_refused(suggester: Suggester) -> None:
    with pytest.raises(ValueError, match="at most"):
        await suggester.popular(5, window_seconds=2 * 86_400)


async def test_a_bug_in_one_flight_fails_that_query_only(
    suggester: Suggester,
    youtube: FakeYouTube,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def rank(items: list[Video], query: NormalizedQuery, **kwargs: object) -> list[Video]:
        if query.text == "jazz":
            raise RuntimeError("a bug")
        return real_rank(items, query, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(service_module, "rank", rank)
    youtube.inject("search", latency=0.2)
    outcomes: dict[str, str] = {}

    async def ask(text: str) -> None:
        try:
            outcomes[text] = (await suggester.suggest(normalize_query(text))).cache
        except SuggestUnavailable as error:
            outcomes[text] = error.reason

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, "lofi")
        nursery.start_soon(ask, "jazz")
    assert outcomes == {"lofi": "MISS", "jazz": "busy"}
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "suggest flight failed" in errors[0]
    caplog.clear()


async def test_a_refresh_no_search_can_satisfy_is_refused(
    suggester: Suggester, youtube: FakeYouTube
) -> None:
    for floor in (-1.0, float(suggester.settings.ttl_seconds)):
        with pytest.raises(ValueError, match="min_fresh_seconds"):
            await suggester.refresh(normalize_query("lofi"), min_fresh_seconds=floor)
    assert youtube.calls["search"] == 0
