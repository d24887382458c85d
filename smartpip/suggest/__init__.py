"""Suggest: the YouTube search proxy behind ``GET /v1/suggest``.

This package exports the pure parts, query normalization and result ranking (synchronous,
free of I/O); the service that caches and searches is imported from its own module.

Modules:

- :mod:`.normalize`: :func:`normalize_query` turns a client's raw query into the
  :class:`NormalizedQuery` that is the cache key and YouTube's ``q``; :class:`QueryRejected`
  is a 400 ``invalid_request``;
- :mod:`.ranking`: :func:`rank` orders results by the documented score
  (``docs/suggest-ranking.md``); the score is never displayed (YouTube policy);
- :mod:`.service`: :class:`~smartpip.suggest.service.Suggester`, the shared cache, single-flight
  searches, the quota gate and stale answers (``docs/suggest.md``);
- :mod:`.metrics`: its Prometheus metrics.
"""

from smartpip.suggest.normalize import (
    ENGLISH_STOPWORDS,
    MAX_QUERY_CHARS,
    MAX_TERMS,
    NormalizedQuery,
    QueryRejected,
    normalize_query,
    parse_stopwords,
    tokenize,
)
from smartpip.suggest.ranking import (
    Candidate,
    Rankable,
    RankingWeights,
    freshness_boost,
    rank,
    score,
    text_match,
    views_score,
)

__all__ = [
    "ENGLISH_STOPWORDS",
    "MAX_QUERY_CHARS",
    "MAX_TERMS",
    "Candidate",
    "NormalizedQuery",
    "QueryRejected",
    "Rankable",
    "RankingWeights",
    "freshness_boost",
    "normalize_query",
    "parse_stopwords",
    "rank",
    "score",
    "text_match",
    "tokenize",
    "views_score",
]
