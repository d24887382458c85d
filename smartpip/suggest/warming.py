"""The suggest service as the cache-warming job sees it (``tasks.warm.WarmSuggest``).

Warming refreshes through :meth:`Suggester.refresh`, so it shares flights, leases and the
quota gate with requests. Here its answers become warming's outcomes: a refusal (budget,
breaker, key, Redis allowance, no answer in time) means no search was made and the run stops;
an upstream error means a search was made and failed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from smartpip.logs import get_logger
from smartpip.suggest.normalize import NormalizedQuery
from smartpip.suggest.service import Suggester, SuggestUnavailable, UpstreamError
from store.popularity import top_queries
from store.redis import RedisStore
from tasks.warm import POPULARITY_WINDOW_SECONDS, RefreshOutcome

__all__ = ["SuggestWarming"]

log = get_logger(__name__)

# Refusals made before any search: the gate said no (see ``QuotaGate.reserve``), or the
# service is not running (``busy``); only ``timeout`` may hide a search that was made.
_NO_SEARCH = frozenset({"quota", "upstream", "key_invalid", "redis", "reserve", "busy"})


class SuggestWarming:
    """:class:`tasks.warm.WarmSuggest` over a running :class:`Suggester`.

    Args:
        suggester: The suggest service.
        store: The Redis store its popularity sets are in.
        clock: The suggest service's wall clock (seconds).
    """

    def __init__(self, suggester: Suggester, store: RedisStore, clock: Callable[[], float]) -> None:
        self._suggester = suggester
        self._store = store
        self._clock = clock

    @property
    def ttl_seconds(self) -> int:
        return self._suggester.settings.ttl_seconds

    async def popular(self, limit: int) -> Sequence[tuple[str, float]]:
        # With the counts, unlike Suggester.popular: warming weighs how often each was asked.
        return await top_queries(
            self._store, limit=limit, now=self._clock(), window_seconds=POPULARITY_WINDOW_SECONDS
        )

    async def refresh(self, query: str, *, min_fresh_seconds: float) -> RefreshOutcome:
        try:
            normalized = NormalizedQuery(query, tuple(query.split(" ")))
        except ValueError:
            # Not a normalized query (the popularity sets hold only those): nothing to warm.
            log.warning("warming skipped a malformed popular query", chars=len(query))
            return RefreshOutcome.FRESH
        try:
            searched = await self._suggester.refresh(
                normalized, min_fresh_seconds=min_fresh_seconds
            )
        except SuggestUnavailable as error:
            if error.reason in _NO_SEARCH:
                log.info("warming stopped: no search possible", reason=error.reason)
                return RefreshOutcome.REFUSED
            # No answer in time: the search may have been made; count it as spent.
            return RefreshOutcome.FAILED
        except UpstreamError:
            return RefreshOutcome.FAILED
        return RefreshOutcome.REFRESHED if searched else RefreshOutcome.FRESH
