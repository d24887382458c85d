"""Suggest's Prometheus metrics: cache results, upstream calls, quota and breaker gauges.

Labels take values from closed sets only: ``result`` (hit, miss, stale, local), ``source``
(:data:`ANSWER_SOURCES`), ``outcome`` of corpus writes, ``method`` (search,
videos), ``outcome`` (the client's :data:`~smartpip.youtube.CallHook` outcomes), ``reason``
(the breaker reasons). Never a query text.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from store.quota import QuotaUsage, budget_units, searches_left

__all__ = ["ANSWER_SOURCES", "BREAKER_REASONS", "CORPUS_WRITE_OUTCOMES", "SuggestMetrics"]

BREAKER_REASONS = ("quota", "upstream", "key_invalid")
#: Where an answer came from (the body's ``source``), or ``none`` for a 502/503.
ANSWER_SOURCES = ("youtube", "cache", "local", "none")
#: A search's videos written to the corpus (``ok``), not (``failed``: Postgres away), or
#: dropped because too many writes were pending.
CORPUS_WRITE_OUTCOMES = ("ok", "failed", "dropped")


class SuggestMetrics:
    """The suggest metrics, registered on the service's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.cache = Counter(
            "suggest_cache_total",
            "Suggest answers by cache result (hit, miss, stale, local)",
            ["result"],
            registry=registry,
        )
        self._cache = {
            result: self.cache.labels(result) for result in ("hit", "miss", "stale", "local")
        }
        self.answers = Counter(
            "suggest_answers_total",
            "Suggest answers by source: youtube (searched), cache (fresh or stale copy), local "
            "(the corpus, YouTube could not be asked), none (502/503)",
            ["source"],
            registry=registry,
        )
        self._answers = {source: self.answers.labels(source) for source in ANSWER_SOURCES}
        self.corpus_writes = Counter(
            "suggest_corpus_writes_total",
            "Searches whose videos were written to the corpus (ok), failed (Postgres away) or "
            "dropped (too many writes pending)",
            ["outcome"],
            registry=registry,
        )
        self._corpus_writes = {o: self.corpus_writes.labels(o) for o in CORPUS_WRITE_OUTCOMES}
        self.upstream_calls = Counter(
            "suggest_upstream_calls_total",
            "YouTube Data API calls (each attempt) by method and outcome",
            ["method", "outcome"],
            registry=registry,
        )
        self.quota_used = Gauge(
            "suggest_quota_searches_used",
            "Searches counted for the current Pacific-time day (all replicas)",
            registry=registry,
        )
        self.quota_remaining = Gauge(
            "suggest_quota_searches_remaining",
            "Searches left in the current Pacific-time day's budget",
            registry=registry,
        )
        self.quota_budget = Gauge(
            "suggest_quota_searches_budget",
            "Searches budgeted for a Pacific-time day (SMARTPIP_SUGGEST_DAILY_BUDGET)",
            registry=registry,
        )
        self.quota_reset = Gauge(
            "suggest_quota_reset_timestamp_seconds",
            "When the current Pacific-time day's quota resets (next midnight Pacific, Unix time)",
            registry=registry,
        )
        self.quota_units = Gauge(
            "suggest_quota_units_used",
            "YouTube quota units counted for the current Pacific-time day",
            registry=registry,
        )
        self.breaker = Gauge(
            "suggest_breaker_open",
            "1 while the suggest breaker is open for this reason (key_invalid: suggest is down)",
            ["reason"],
            registry=registry,
        )
        for reason in BREAKER_REASONS:
            self.breaker.labels(reason).set(0)

    def cache_result(self, result: str) -> None:
        """Count one answer: ``"hit"``, ``"miss"``, ``"stale"`` or ``"local"``."""
        self._cache[result].inc()

    def answer(self, source: str) -> None:
        """Count one answer by source: ``"youtube"``, ``"cache"``, ``"local"`` or ``"none"``."""
        self._answers[source].inc()

    def corpus_write(self, outcome: str) -> None:
        """Count one search's corpus write: ``"ok"``, ``"failed"`` or ``"dropped"``."""
        self._corpus_writes[outcome].inc()

    def upstream_call(self, method: str, outcome: str) -> None:
        """The YouTube client's ``on_call`` hook."""
        self.upstream_calls.labels(method, outcome).inc()

    def set_breaker(self, reason: str | None) -> None:
        """Show the breaker open for ``reason`` (None: closed)."""
        for known in BREAKER_REASONS:
            self.breaker.labels(known).set(1 if known == reason else 0)

    def set_quota(self, usage: QuotaUsage, budget: int, resets_at: float) -> None:
        """Show the day's shared usage; ``budget`` in searches, the remainder from the units,
        ``resets_at`` the Unix time of the next midnight Pacific."""
        self.quota_budget.set(budget)
        self.quota_reset.set(resets_at)
        self.quota_used.set(usage.searches)
        self.quota_remaining.set(searches_left(budget_units(budget), usage.units))
        self.quota_units.set(usage.units)
