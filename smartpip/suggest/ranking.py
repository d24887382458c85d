"""Ranking of YouTube search results for a suggest query.

The product plan's formula, made precise (``docs/suggest-ranking.md`` has the reasoning and a
worked example)::

    score = views_score + freshness_boost + text_match
    views_score     = views * ln(1 + view_count)                 # missing view_count counts as 0
    freshness_boost = freshness * 0.5 ** (age_days / half_life_days)   # age clamped at 0
    text_match      = title_match * (share of query terms among the title's terms)
                    + description_match * (share of query terms among the description's terms)

Results are ordered by score, highest first; ties go to the higher view count, then the newer
video, then the smaller ``video_id``, so the order is fully deterministic.

YouTube's policy forbids displaying derived metrics: :func:`rank` returns the caller's own
objects reordered and never attaches the score to them. :func:`score` is public for tests and
documentation only; it must never reach a response, a log line or a metric label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, TypeVar

import attrs

from smartpip.suggest.normalize import NormalizedQuery, tokenize

__all__ = [
    "Candidate",
    "Rankable",
    "RankingWeights",
    "freshness_boost",
    "rank",
    "score",
    "text_match",
    "views_score",
]

_SECONDS_PER_DAY = 86_400.0


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    """attrs validator: a finite number greater than zero."""
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a finite number above 0, got {value!r}")


@attrs.frozen
class RankingWeights:
    """The tunable parts of the score; every field must be finite and above 0.

    Scale: ``views_score`` moves by ``views`` for every factor of e (about 2.7) in view count,
    so a weight of 2.3 in another term is worth ten times the views.

    Attributes:
        views: Multiplier of ``ln(1 + view_count)``.
        freshness: The boost of a video published now.
        half_life_days: Age at which the freshness boost has halved.
        title_match: Boost when every query term appears in the title.
        description_match: Boost when every query term appears in the description.
    """

    # Why 1.0: the unit of the scale; the other weights are expressed against it.
    views: float = attrs.field(default=1.0, validator=_positive)
    # Why 3.0: a brand-new video ranks like one with e**3, about 20 times, the views; enough to
    # surface a fresh upload against an old hit with 10x its views, not against one with 100x.
    freshness: float = attrs.field(default=3.0, validator=_positive)
    # Why 30 days: suggestions follow what is current; a month-old video keeps half the boost,
    # a three-month-old one an eighth, after a year it is negligible (0.0007).
    half_life_days: float = attrs.field(default=30.0, validator=_positive)
    # Why 2.0: a title holding every query term is worth about 7 times (e**2) the views; YouTube
    # already ranked by relevance, this only corrects popular but off-topic results.
    title_match: float = attrs.field(default=2.0, validator=_positive)
    # Why 0.5: descriptions are long and stuffed with tags and links, so a match there is weak
    # evidence; a quarter of a title match.
    description_match: float = attrs.field(default=0.5, validator=_positive)


class Rankable(Protocol):
    """What :func:`rank` reads from a result; any object with these attributes works."""

    @property
    def video_id(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def published_at(self) -> datetime: ...

    @property
    def view_count(self) -> int | None: ...


R = TypeVar("R", bound=Rankable)


@attrs.frozen
class Candidate:
    """A minimal :class:`Rankable`: a search result with the fields the ranking needs.

    Attributes:
        video_id: YouTube's video ID.
        title: The title, HTML entities already unescaped.
        description: The snippet description, HTML entities already unescaped.
        published_at: Publication time; timezone-aware.
        view_count: Views, or ``None`` when the owner hides them.
    """

    video_id: str
    title: str
    description: str
    published_at: datetime
    view_count: int | None


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def views_score(view_count: int | None, weights: RankingWeights) -> float:
    """The popularity term: ``weights.views * ln(1 + view_count)``.

    Args:
        view_count: Views; ``None`` (hidden) and negative values count as 0.
        weights: The ranking weights.

    Returns:
        A value of at least 0.
    """
    return weights.views * math.log1p(max(view_count or 0, 0))


def freshness_boost(published_at: datetime, now: datetime, weights: RankingWeights) -> float:
    """The recency term: ``weights.freshness * 0.5 ** (age_days / weights.half_life_days)``.

    Args:
        published_at: Publication time, timezone-aware.
        now: The current time, timezone-aware.
        weights: The ranking weights.

    Returns:
        A value in ``(0, weights.freshness]``; a publication time in the future counts as age 0.

    Raises:
        ValueError: Either time is naive.
    """
    _require_aware(published_at, "published_at")
    _require_aware(now, "now")
    age_days = max((now - published_at).total_seconds() / _SECONDS_PER_DAY, 0.0)
    return weights.freshness * math.exp2(-age_days / weights.half_life_days)


def _share_found(terms: Sequence[str], text: str) -> float:
    """The fraction of ``terms`` that are among the normalized terms of ``text``."""
    if not terms:
        return 0.0
    present = set(tokenize(text))
    return sum(term in present for term in terms) / len(terms)


def text_match(
    terms: Sequence[str], title: str, description: str, weights: RankingWeights
) -> float:
    """The relevance term: weighted shares of the query terms found in title and description.

    Title and description are tokenized like queries (NFKC, case fold, punctuation and symbols
    stripped) with no length limit; a term matches only a whole equal term (no stemming, no
    prefixes).

    Args:
        terms: The query's terms (:attr:`NormalizedQuery.terms`).
        title: The video's title.
        description: The video's description.
        weights: The ranking weights.

    Returns:
        A value in ``[0, weights.title_match + weights.description_match]``.
    """
    return weights.title_match * _share_found(terms, title) + (
        weights.description_match * _share_found(terms, description)
    )


def score(
    item: Rankable, query: NormalizedQuery, *, now: datetime, weights: RankingWeights
) -> float:
    """The full score of one result. For tests and documentation only: never display it.

    Args:
        item: The result.
        query: The normalized query it was found for.
        now: The current time, timezone-aware.
        weights: The ranking weights.

    Returns:
        ``views_score + freshness_boost + text_match``.
    """
    return (
        views_score(item.view_count, weights)
        + freshness_boost(item.published_at, now, weights)
        + text_match(query.terms, item.title, item.description, weights)
    )


def rank(
    items: Sequence[R],
    query: NormalizedQuery,
    *,
    now: datetime,
    weights: RankingWeights = RankingWeights(),  # frozen, so one shared default is safe
) -> list[R]:
    """Order results best first, deterministically.

    Ties on the score go to the higher view count (missing counts as 0), then the newer
    ``published_at``, then the smaller ``video_id``.

    Args:
        items: The results, in any order.
        query: The normalized query they were found for.
        now: The current time, timezone-aware (injected, so tests control it).
        weights: The ranking weights.

    Returns:
        A new list of the same objects (not copies), reordered; the score is not attached.

    Raises:
        ValueError: ``now`` or an item's ``published_at`` is naive.
    """
    _require_aware(now, "now")

    def key(item: R) -> tuple[float, int, float, str]:
        return (
            -score(item, query, now=now, weights=weights),
            -max(item.view_count or 0, 0),
            -item.published_at.timestamp(),
            item.video_id,
        )

    return sorted(items, key=key)
