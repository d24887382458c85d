"""Suggest: the pure parts of the YouTube search proxy, query normalization and result ranking.

Both are synchronous and free of I/O; the route, the cache, the quota accounting and the
YouTube client build on them.

Modules:

- :mod:`.normalize`: :func:`normalize_query` turns a client's raw query into the
  :class:`NormalizedQuery` that is the cache key and YouTube's ``q``; :class:`QueryRejected`
  is a 400 ``invalid_request``;
- :mod:`.ranking`: :func:`rank` orders results by the documented score
  (``docs/suggest-ranking.md``); the score is never displayed (YouTube policy).
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
