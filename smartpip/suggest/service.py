"""The suggest service: shared cache, single-flight searches, the quota gate, stale answers.

One :class:`Suggester` per process, built by the composition root when a YouTube key is
configured. :meth:`Suggester.suggest` answers a normalized query:

1. **Cache.** A fresh entry is a ``HIT``. Fresh entries seen by this process are kept in a
   small in-process LRU (:data:`LOCAL_ENTRIES`) until their freshness ends, so a hot query
   costs no Redis round trip; otherwise one Redis ``GET``. A search replaces only a stale or
   missing entry (or, for the warming job, one about to expire), so a local copy is always
   data that is still within its freshness. A
   Redis failure turns the shared cache off (a miss) for a few seconds (``RedisBackoff``),
   never fails the request.
2. **Single-flight in the process.** Misses for the same key share one *flight*, a task in
   the service's own nursery (not the request's), so a request that stops waiting (client
   gone, or answered stale) does not cancel the search the others wait for, and the search
   still fills the cache.
3. **Single-flight across replicas.** The flight takes the query's Redis lease (``SET NX``).
   A flight that finds it held polls the entry and the lease (one ``MGET``) until the holder
   has filled the cache, gave up, or the flight's deadline passed. Redis down: no lease, the
   flight searches (the gate's local allowance bounds that).
4. **Quota gate** (:class:`~smartpip.suggest.quota.QuotaGate`): reserve a search from the
   shared daily budget, honour the breaker; report quota errors, an invalid key, failures and
   successes back to it.
5. **Search, rank, store.** Under a process-wide cap on concurrent upstream calls; ranked by
   :func:`~smartpip.suggest.ranking.rank`; stored with the freshness TTL and the stale horizon.
6. **The corpus** (:mod:`~smartpip.suggest.corpus`). Every search's videos are written to it
   in the background (a task in the flights' nursery: the answer never waits for it, and a
   failed write is logged and counted, never an error). A miss that could not be searched
   (:class:`SuggestUnavailable`: budget spent, breaker open, key rejected, no answer within
   the wait, Redis away and the allowance spent, only the reserve left) and has no stale copy
   is answered from the corpus, ``LOCAL``, never cached; only when nothing there matches (or
   Postgres is away) is it :class:`SuggestUnavailable` (503).

A request with a stale copy waits at most ``stale_wait_seconds`` for the flight, then answers
``STALE`` (the flight goes on and refreshes the entry); without one it waits up to
``wait_seconds``, then answers from the corpus, or :class:`SuggestUnavailable`. A failed
flight leaves the cache untouched: stale where cached, else the corpus, else the flight's
error.

**The reserve.** While fewer than ``reserve`` searches are left today, a miss is searched only
if its query was asked more than once today (the popularity counts, plus this process's
counts not flushed yet); a one-off query is answered from the corpus instead.

Concurrency: trio tasks only; the flight table changes between awaits, so it needs no lock.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

import attrs
import trio

from smartpip.logs import get_logger
from smartpip.suggest.corpus import Corpus
from smartpip.suggest.local import LocalAnswers
from smartpip.suggest.metrics import SuggestMetrics
from smartpip.suggest.normalize import NormalizedQuery
from smartpip.suggest.quota import (
    PACIFIC,
    QuotaGate,
    Refusal,
    Reservation,
    next_pacific_midnight,
    seconds_until_pacific_midnight,
)
from smartpip.suggest.ranking import RankingWeights, rank
from smartpip.youtube import (
    BadRequest,
    Forbidden,
    KeyInvalid,
    QuotaExceeded,
    UpstreamFailure,
    Video,
    YouTubeClient,
)
from store.backoff import RedisBackoff
from store.popularity import DEFAULT_WINDOW_SECONDS, query_count, top_queries
from store.quota import UNIT_COSTS
from store.redis import RedisStore, RedisUnavailable
from store.suggest_cache import (
    CacheEntry,
    CacheKeys,
    cache_keys,
    read_entry,
    read_entry_and_lease,
    release_lease,
    take_lease,
    write_entry,
)
from tasks.suggest import QueryCounts

__all__ = [
    "Answer",
    "CacheResult",
    "SuggestError",
    "SuggestSettings",
    "SuggestUnavailable",
    "Suggester",
    "UpstreamError",
    "item_document",
    "items_json",
]

log = get_logger(__name__)

CacheResult = Literal["HIT", "MISS", "STALE", "LOCAL"]
Source = Literal["youtube", "cache", "local"]

_SOURCES: dict[CacheResult, Source] = {
    "HIT": "cache",
    "STALE": "cache",
    "MISS": "youtube",
    "LOCAL": "local",
}

# Why 1,024: answers are ~2-5 KB, so at most a few MB; a Zipf-shaped demand puts most requests
# on far fewer queries than that.
LOCAL_ENTRIES = 1024
# Retry-After when a flight could not answer for a transient reason (another replica's search
# failed, the service is stopping): the next attempt usually finds the cache filled.
_SHORT_RETRY = 2


class SuggestError(Exception):
    """A suggest request cannot be answered; the message is safe to show."""


class SuggestUnavailable(SuggestError):
    """503 ``suggest_unavailable``: no answer now, ``retry_after`` seconds until one may come.

    Attributes:
        retry_after: For ``Retry-After``, at least 1.
        reason: ``quota``, ``upstream``, ``key_invalid``, ``redis``, ``reserve``, ``timeout``,
            ``busy``.
        resets_at: When the daily quota resets (midnight Pacific), for ``quota`` and
            ``reserve`` refusals.
    """

    def __init__(
        self, detail: str, *, retry_after: int, reason: str, resets_at: datetime | None = None
    ) -> None:
        super().__init__(detail)
        self.retry_after = max(1, retry_after)
        self.reason = reason
        self.resets_at = resets_at


class UpstreamError(SuggestError):
    """502 ``upstream_error``: YouTube answered, but not usably (after the bounded retries)."""


@attrs.frozen
class SuggestSettings:
    """How the service caches, waits and searches (built from the configuration).

    Attributes:
        ttl_seconds: Freshness of a cached answer (``SMARTPIP_SUGGEST_TTL_SECONDS``).
        stale_seconds: Life of a cached answer from its search, stale part included
            (``SMARTPIP_SUGGEST_STALE_SECONDS``), at least ``ttl_seconds``.
        max_results: ``maxResults`` of the search, part of the cache key.
        wait_seconds: Longest a request without a stale copy waits for a search.
        stale_wait_seconds: Longest a request holding a stale copy waits before answering it.
        concurrency: Upstream searches in flight at once in this process.
        flight_seconds: Deadline of one flight (waiting for the cap, the lease holder, the
            search); past it the flight gives up.
        lease_seconds: TTL of the cross-replica lease; longer than a flight, so a live holder
            never loses it, short enough that a dead holder blocks the query only briefly.
        poll_seconds: Interval at which a flight polls another replica's lease.
        daily_budget: Searches a Pacific-time day (for the remaining-searches gauge).
        weights: Ranking weights.
        bookkeeping_seconds: Interval of the popularity flush and the gauge refresh.
        reserve: Searches of the day's budget kept for queries asked more than once today
            (``SMARTPIP_SUGGEST_RESERVE``); 0: every miss may search.
        local_max_age: ``Cache-Control: max-age`` of a ``LOCAL`` answer.
    """

    ttl_seconds: int = 1200
    stale_seconds: int = 86_400
    max_results: int = 10
    wait_seconds: float = 5.0
    # Why 0.5 s: the reliability guide asks for a stale answer "within a second" when YouTube
    # is slow; a healthy search (search.list + videos.list) often fits in it, so most
    # refreshes still answer fresh.
    stale_wait_seconds: float = 0.5
    concurrency: int = 4
    # Why 25 s: the client's worst case is two calls of three 3-second attempts plus backoff
    # (about 19 s); a flight past that is stuck behind the concurrency cap.
    flight_seconds: float = 25.0
    lease_seconds: float = 30.0
    # Why 50 ms: a search takes hundreds of milliseconds; polling faster only loads Redis.
    poll_seconds: float = 0.05
    daily_budget: int = 100
    weights: RankingWeights = attrs.field(factory=RankingWeights)
    bookkeeping_seconds: float = 5.0
    reserve: int = 0
    # Why 60 s: a local answer is a stand-in; the extension should ask again soon, when a
    # search (or a stale copy another replica fills) may give the real one.
    local_max_age: int = 60


@attrs.frozen
class Answer:
    """What :meth:`Suggester.suggest` returns.

    Attributes:
        items_json: The ``items`` array, serialized (spliced into the response).
        cache: ``HIT``, ``MISS``, ``STALE`` or ``LOCAL`` (the ``X-Cache`` header).
        max_age: Seconds of freshness left (``Cache-Control: max-age``); 0 when stale.
    """

    items_json: bytes
    cache: CacheResult
    max_age: int

    @property
    def source(self) -> Source:
        """The body's ``source``: ``youtube`` (searched), ``cache`` (a fresh or stale copy) or
        ``local`` (the corpus)."""
        return _SOURCES[self.cache]


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def items_json(videos: list[Video]) -> bytes:
    """The ``items`` array of ``videos``, serialized as the cache stores it."""
    return json.dumps(
        [item_document(video) for video in videos], ensure_ascii=False, separators=(",", ":")
    ).encode()


def item_document(video: Video) -> dict[str, object]:
    """One response item: the API's own fields only (never the ranking score)."""
    return {
        "provider": "youtube",
        "videoId": video.video_id,
        "title": video.title,
        "channelTitle": video.channel_title,
        "publishedAt": _iso(video.published_at),
        "thumbnailUrl": video.thumbnail_url,
        "url": video.url,
        "viewCount": video.view_count,
    }


@attrs.define
class _Flight:
    """One in-process search (or wait for another replica's) for a cache key."""

    query: NormalizedQuery
    keys: CacheKeys
    min_fresh: float
    done: trio.Event = attrs.field(factory=trio.Event)
    entry: CacheEntry | None = None
    error: SuggestError | None = None


class _UnitMeter:
    """Counts the quota units of one search's attempts (the client's per-search hook)."""

    def __init__(self) -> None:
        self.units = 0

    def __call__(self, method: str, _outcome: str) -> None:
        self.units += UNIT_COSTS[method]


class Suggester:
    """Answers suggest queries through the cache, searching YouTube at most once per miss.

    Args:
        client: The YouTube client.
        store: The Redis store (cache, leases, popularity, and the gate's counters).
        gate: The quota gate.
        metrics: Where to count.
        settings: See :class:`SuggestSettings`.
        clock: Wall-clock seconds (cache freshness, ranking, the Pacific day).
        monotonic: Monotonic seconds (the Redis back-off).
        corpus: Where searches' videos are kept and local answers come from; None: no
            corpus (``SMARTPIP_SUGGEST_CORPUS_DAYS=0``), misses that cannot search are 503.

    Attributes:
        query_counts: How often each query was asked since the last flush (written to the
            popularity sets by ``tasks.suggest.SuggestBookkeeping``).
        redis_backoff: The cache's Redis back-off, shared with the bookkeeping.
    """

    def __init__(
        self,
        client: YouTubeClient,
        store: RedisStore,
        gate: QuotaGate,
        metrics: SuggestMetrics,
        settings: SuggestSettings = SuggestSettings(),  # frozen, so one shared default is safe
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        corpus: Corpus | None = None,
    ) -> None:
        self.settings = settings
        self._local_answers = None if corpus is None else LocalAnswers(corpus, metrics)
        self._client = client
        self._store = store
        self._gate = gate
        self._metrics = metrics
        self._clock = clock
        self.redis_backoff = RedisBackoff(
            went_down="suggest cache: Redis unavailable; shared cache off, misses search here",
            came_back="suggest cache: Redis answers again",
            backoff=5.0,
            clock=monotonic,
        )
        self._redis = self.redis_backoff
        self.query_counts = QueryCounts()
        self._limiter = trio.CapacityLimiter(settings.concurrency)
        self._flights: dict[str, _Flight] = {}
        self._nursery: trio.Nursery | None = None
        self._local: OrderedDict[str, CacheEntry] = OrderedDict()

    # -- the request path ------------------------------------------------------------------

    async def suggest(self, query: NormalizedQuery) -> Answer:
        """The ranked videos for ``query``, from the cache or one shared search.

        Raises:
            SuggestUnavailable: No cached copy, no search possible now (quota spent,
                breaker open, YouTube too slow, the key rejected) and nothing in the corpus
                matches (or Postgres is away): 503 with ``retry_after``.
            UpstreamError: No cached copy and YouTube answered unusably: 502.
        """
        self.query_counts.note(query.text)
        keys = cache_keys(self._store, query.text, self.settings.max_results)
        entry = self._local_entry(keys)
        if entry is None:
            entry = await self._redis.attempt(read_entry(self._store, keys))
        now = self._clock()
        if entry is not None and entry.fresh(now):
            self._keep(keys, entry)
            return self._answer(entry, "HIT", now)
        stale = entry if entry is not None and entry.usable(now) else None
        flight = self._join(query, keys, min_fresh=0.0)
        wait = self.settings.stale_wait_seconds if stale else self.settings.wait_seconds
        with trio.move_on_after(wait):
            await flight.done.wait()
        now = self._clock()
        if flight.entry is not None:
            self._keep(keys, flight.entry)
            return self._answer(flight.entry, "MISS", now)
        if stale is not None:
            return self._answer(stale, "STALE", now)
        error = flight.error or SuggestUnavailable(
            "YouTube did not answer in time", retry_after=_SHORT_RETRY, reason="timeout"
        )
        if isinstance(error, SuggestUnavailable):
            local = await self._local_answer(query, error)
            if local is not None:
                return local
        self._metrics.answer("none")
        raise error

    async def _local_answer(
        self, query: NormalizedQuery, error: SuggestUnavailable
    ) -> Answer | None:
        """The corpus's answer for a miss that could not be searched; None if it has none."""
        if self._local_answers is None:
            return None
        videos = await self._local_answers.search(
            query,
            now=datetime.fromtimestamp(self._clock(), UTC),
            limit=self.settings.max_results,
            reason=error.reason,
        )
        if videos is None:
            return None
        self._metrics.cache_result("local")
        self._metrics.answer("local")
        # Never stored: a local answer must not pass for YouTube's in the cache.
        return Answer(items_json(videos), "LOCAL", self.settings.local_max_age)

    async def refresh(self, query: NormalizedQuery, *, min_fresh_seconds: float = 0.0) -> bool:
        """Make sure ``query`` is cached fresh for ``min_fresh_seconds`` more (the warming job).

        Shares flights with requests, takes the lease and spends quota like a miss does; a
        gate refusal or an upstream failure leaves the entry as it was.

        Returns:
            True when a search (here or on another replica) refreshed it, False when the
            entry was already fresh enough.

        Raises:
            ValueError: ``min_fresh_seconds`` is not below the TTL (no search could satisfy it).
            SuggestError: The refresh failed (quota, breaker, YouTube).
        """
        if not 0 <= min_fresh_seconds < self.settings.ttl_seconds:
            raise ValueError(f"min_fresh_seconds must be in [0, {self.settings.ttl_seconds})")
        keys = cache_keys(self._store, query.text, self.settings.max_results)
        entry = await self._redis.attempt(read_entry(self._store, keys))
        if entry is not None and entry.fresh_until - self._clock() > min_fresh_seconds:
            return False
        flight = self._join(query, keys, min_fresh=min_fresh_seconds)
        await flight.done.wait()
        if flight.error is not None:
            raise flight.error
        return True

    async def popular(
        self, limit: int, *, window_seconds: int = DEFAULT_WINDOW_SECONDS
    ) -> list[str]:
        """The most asked normalized queries of the last ``window_seconds`` (the warming job).

        Raises:
            ValueError: A window longer than the counts are kept (a day).
            RedisUnavailable: Redis is down or too slow.
        """
        if window_seconds > DEFAULT_WINDOW_SECONDS:
            raise ValueError(f"popularity is kept for {DEFAULT_WINDOW_SECONDS} s at most")
        pairs = await top_queries(
            self._store, limit=limit, now=self._clock(), window_seconds=window_seconds
        )
        return [query for query, _score in pairs]

    def state(self) -> Literal["up", "degraded", "down"]:
        """For ``/v1/status``: ``down`` with a rejected key, ``degraded`` while the breaker is
        open (cached and stale answers only) or Redis is away (no shared cache), else ``up``."""
        reason = self._gate.breaker_reason
        if reason == "key_invalid":
            return "down"
        if reason is not None or self._redis.down or self._gate.redis_down:
            return "degraded"
        return "up"

    def _local_entry(self, keys: CacheKeys) -> CacheEntry | None:
        """The in-process copy of a fresh entry, or None (a stale copy is dropped)."""
        entry = self._local.get(keys.entry)
        if entry is None:
            return None
        if not entry.fresh(self._clock()):
            del self._local[keys.entry]
            return None
        self._local.move_to_end(keys.entry)
        return entry

    def _keep(self, keys: CacheKeys, entry: CacheEntry) -> None:
        """Remember a fresh entry in the process, evicting the least recently used."""
        self._local[keys.entry] = entry
        self._local.move_to_end(keys.entry)
        while len(self._local) > LOCAL_ENTRIES:
            self._local.popitem(last=False)

    def _answer(self, entry: CacheEntry, result: CacheResult, now: float) -> Answer:
        self._metrics.cache_result(result.lower())
        self._metrics.answer(_SOURCES[result])
        max_age = 0 if result == "STALE" else entry.max_age(now)
        return Answer(entry.items_json, result, max_age)

    # -- flights ---------------------------------------------------------------------------

    def _join(self, query: NormalizedQuery, keys: CacheKeys, *, min_fresh: float) -> _Flight:
        flight = self._flights.get(keys.entry)
        if flight is not None and flight.min_fresh >= min_fresh:
            return flight
        flight = _Flight(query, keys, min_fresh)
        if self._nursery is None:
            flight.error = SuggestUnavailable(
                "suggest is not running", retry_after=_SHORT_RETRY, reason="busy"
            )
            flight.done.set()
            return flight
        self._flights[keys.entry] = flight
        self._nursery.start_soon(self._fly, flight)
        return flight

    async def _fly(self, flight: _Flight) -> None:
        try:
            with trio.move_on_after(self.settings.flight_seconds):
                flight.entry = await self._fetch(flight)
            if flight.entry is None and flight.error is None:
                flight.error = SuggestUnavailable(
                    "the search did not finish in time", retry_after=_SHORT_RETRY, reason="timeout"
                )
        except SuggestError as error:
            flight.error = error
        except Exception:
            # A bug must fail this query only, not cancel every flight in the nursery.
            log.exception("suggest flight failed", query_terms=len(flight.query.terms))
            flight.error = SuggestUnavailable(
                "suggest failed unexpectedly", retry_after=_SHORT_RETRY, reason="busy"
            )
        finally:
            if flight.entry is None and flight.error is None:  # cancelled: shutting down
                flight.error = SuggestUnavailable(
                    "suggest is stopping", retry_after=_SHORT_RETRY, reason="busy"
                )
            if self._flights.get(flight.keys.entry) is flight:
                del self._flights[flight.keys.entry]
            flight.done.set()

    def _fresh_enough(self, entry: CacheEntry | None, min_fresh: float) -> bool:
        return entry is not None and entry.fresh_until - self._clock() > min_fresh

    async def _fetch(self, flight: _Flight) -> CacheEntry:
        keys = flight.keys
        token = await self._redis.attempt(
            take_lease(self._store, keys, self.settings.lease_seconds)
        )
        if token is None and not self._redis.down:
            # Held by another replica (or by an earlier flight of this process that gave up
            # waiting; its search still fills the entry).
            return await self._await_other_replica(flight)
        try:
            # The entry may have been filled between the request's read and the lease.
            entry = await self._redis.attempt(read_entry(self._store, keys))
            if entry is not None and self._fresh_enough(entry, flight.min_fresh):
                return entry
            return await self._search(flight)
        finally:
            if token is not None:
                with trio.CancelScope(shield=True):
                    await self._redis.attempt(release_lease(self._store, keys, token))

    async def _await_other_replica(self, flight: _Flight) -> CacheEntry:
        """Another replica holds the lease: wait for its entry (the flight's deadline bounds it)."""
        while True:
            await trio.sleep(self.settings.poll_seconds)
            try:
                entry, leased = await read_entry_and_lease(self._store, flight.keys)
            except RedisUnavailable as error:
                self._redis.failed(error)
                raise SuggestUnavailable(
                    "the shared cache became unavailable", retry_after=_SHORT_RETRY, reason="redis"
                ) from None
            if self._fresh_enough(entry, flight.min_fresh) and entry is not None:
                return entry
            if not leased:
                raise SuggestUnavailable(
                    "another replica's search failed", retry_after=_SHORT_RETRY, reason="upstream"
                )

    def _quota_reset(self) -> datetime:
        return next_pacific_midnight(datetime.fromtimestamp(self._clock(), UTC))

    async def _search(self, flight: _Flight) -> CacheEntry:
        """Reserve quota, search, rank and store: the one upstream call of a miss."""
        # The cap first: a flight that times out waiting for it has not spent a search.
        async with self._limiter:
            reservation = await self._reserve(flight.query)
            if isinstance(reservation, Refusal):
                raise SuggestUnavailable(
                    _REFUSALS[reservation.reason],
                    retry_after=reservation.retry_after,
                    reason=reservation.reason,
                    resets_at=(
                        self._quota_reset() if reservation.reason in ("quota", "reserve") else None
                    ),
                )
            return await self._search_reserved(flight, reservation.probe)

    async def _reserve(self, query: NormalizedQuery) -> Reservation | Refusal:
        """Reserve a search; within the reserve only for a query asked more than once today."""
        keep = self.settings.reserve
        if keep == 0:
            return await self._gate.reserve()
        reservation = await self._gate.reserve(keep=keep)
        if (
            isinstance(reservation, Refusal)
            and reservation.reason == "reserve"
            and await self._asked_today(query.text) > 1
        ):
            return await self._gate.reserve()
        return reservation

    async def _asked_today(self, text: str) -> int:
        """Requests for ``text`` since midnight Pacific: flushed (Redis) and not yet flushed.

        Redis away: this process's unflushed counts only.
        """
        now = self._clock()
        local = datetime.fromtimestamp(now, PACIFIC)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        flushed = await self._redis.attempt(query_count(self._store, text, now=now, since=midnight))
        return self.query_counts.count(text) + (flushed or 0)

    async def _search_reserved(self, flight: _Flight, probe: bool) -> CacheEntry:
        meter = _UnitMeter()
        try:
            videos = await self._client.search(flight.query.text, on_call=meter)
        except QuotaExceeded:
            await self._gate.quota_exceeded()
            midnight = seconds_until_pacific_midnight(datetime.fromtimestamp(self._clock(), UTC))
            raise SuggestUnavailable(
                _REFUSALS["quota"],
                retry_after=midnight,
                reason="quota",
                resets_at=self._quota_reset(),
            ) from None
        except KeyInvalid:
            await self._gate.key_invalid()
            raise SuggestUnavailable(
                _REFUSALS["key_invalid"], retry_after=3600, reason="key_invalid"
            ) from None
        except (UpstreamFailure, Forbidden) as error:
            # Forbidden (accessNotConfigured and the like) is the project's setup, not the
            # query: it fails every search, so it counts towards the breaker like a 5xx.
            log.warning("YouTube search failed", error=str(error), outcome=error.outcome)
            await self._gate.upstream_failed(probe=probe)
            raise UpstreamError("YouTube did not answer usably") from None
        except BadRequest as error:
            log.warning("YouTube refused the search", error=str(error))
            await self._gate.upstream_succeeded(probe=probe)
            raise UpstreamError("YouTube refused the search") from None
        finally:
            # reserve() counted the first search.list; the rest (its videos.list, retries) now.
            extra_units = meter.units - UNIT_COSTS["search"]
            if extra_units > 0:
                with trio.CancelScope(shield=True):
                    await self._gate.add_units(extra_units)
        await self._gate.upstream_succeeded(probe=probe)
        now = self._clock()
        ranked = rank(
            videos,
            flight.query,
            now=datetime.fromtimestamp(now, UTC),
            weights=self.settings.weights,
        )
        entry = CacheEntry(
            items_json=items_json(ranked),
            fetched_at=now,
            fresh_until=now + self.settings.ttl_seconds,
            stale_until=now + self.settings.stale_seconds,
        )
        await self._redis.attempt(write_entry(self._store, flight.keys, entry, now=now))
        if self._local_answers is not None and self._nursery is not None:
            fetched_at = datetime.fromtimestamp(now, UTC)
            self._local_answers.record(self._nursery, videos, flight.query, fetched_at)
        return entry

    # -- Redis, popularity and gauges -------------------------------------------------------

    async def refresh_gauges(self) -> None:
        """Re-read the day's quota counters and set the quota and breaker gauges."""
        usage = await self._gate.observe()
        self._metrics.set_breaker(self._gate.breaker_reason)
        if usage is not None:
            self._metrics.set_quota(
                usage, self.settings.daily_budget, self._quota_reset().timestamp()
            )

    @property
    def running(self) -> bool:
        """Whether :meth:`run_flights` runs, so that misses and refreshes can search."""
        return self._nursery is not None

    async def run_flights(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Own the nursery the flights run in, until cancelled (a supervised child)."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None


_REFUSALS = {
    "quota": "the daily YouTube search budget is spent; cached answers only until the reset",
    "upstream": "YouTube is failing; searches resume after a cool-down",
    "key_invalid": "YouTube rejected the service's API key",
    "redis": "searches are limited while the shared cache is unavailable",
    "reserve": "few searches are left today; they are kept for queries asked more than once",
}
