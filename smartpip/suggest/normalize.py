"""Normalization of suggest queries: the text that is both the cache key and YouTube's ``q``.

With about 100 YouTube searches a day for the whole service, two raw queries that mean the
same thing must share one cache entry. :func:`normalize_query` maps raw input to a
:class:`NormalizedQuery` whose ``text`` is that key, so ``"The Best  LOFI mix!!"`` and
``"best lofi mix"`` both become ``"best lofi mix"``.

The steps, in order (see ``docs/suggest-ranking.md`` for the reasoning):

1. reject input longer than :data:`MAX_QUERY_CHARS` code points, counted on the raw string
   (what the client controls, checked before any work);
2. reject control characters (other than tab, newline, carriage return, vertical tab and form
   feed, which count as whitespace) and lone surrogates;
3. Unicode NFKC, case fold, NFKC again (case folding can leave text that NFKC recomposes; the
   second pass makes the result a fixed point);
4. delete apostrophes (``don't`` -> ``dont``), turn every other punctuation (``P*``) and symbol
   (``S*``, so emoji too) into a space, delete format characters (``Cf``: zero-width joiners and
   the like), drop variation selectors, enclosing marks and combining marks left without a
   letter, keep letters, digits and their combining marks in every script;
5. split on whitespace, drop stopwords (the built-in English list and any configured extras),
   drop repeated terms keeping the first occurrence and the original order, keep at most
   ``max_terms`` terms;
6. reject an empty result, and a result longer than :data:`MAX_QUERY_CHARS` (NFKC can expand a
   character into several, and the returned text must itself be an acceptable query).

Everything here is pure and synchronous.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

import attrs

__all__ = [
    "ENGLISH_STOPWORDS",
    "MAX_QUERY_CHARS",
    "MAX_TERMS",
    "NormalizedQuery",
    "QueryRejected",
    "normalize_query",
    "parse_stopwords",
    "tokenize",
]

# Why 200: the limit; a page title or a short selection fits, a pasted article does not,
# and it bounds the work done per request before the cache is consulted.
MAX_QUERY_CHARS = 200

# Why 12: enough for a long video or page title after stopwords go; more terms only make the
# cache key rarer (fewer hits) and YouTube's matching looser.
MAX_TERMS = 12

_ENGLISH_STOPWORDS_TEXT = """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its
    itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    dont doesnt didnt isnt arent wasnt werent im ive youre theyre thats whats
"""

ENGLISH_STOPWORDS: frozenset[str] = frozenset(_ENGLISH_STOPWORDS_TEXT.split())
"""Common English function words, already in normalized form (case-folded, no apostrophes)."""

# Apostrophes are deleted rather than turned into a space, so that "don't" is one term ("dont")
# and "rock'n'roll" stays "rocknroll" instead of splitting off single letters.
_APOSTROPHES = frozenset("'\u2019\u2018\u02bc\uff07")

# Control characters that clients send as ordinary whitespace (pasted text); all other Cc reject.
_WHITESPACE_CONTROLS = frozenset("\t\n\r\v\f")


class QueryRejected(ValueError):
    """The query cannot be used; the message is safe to return as a 400 ``invalid_request`` detail.

    The message never echoes the query itself.
    """


@attrs.frozen
class NormalizedQuery:
    """A query after normalization.

    Attributes:
        text: The terms joined by single spaces: the cache key, YouTube's ``q`` and the
            ``query`` returned to clients.
        terms: The distinct terms, in first-occurrence order; never empty.
    """

    text: str
    terms: tuple[str, ...]

    def __attrs_post_init__(self) -> None:
        if not self.terms:
            raise ValueError("a normalized query has at least one term")
        if self.text != " ".join(self.terms):
            raise ValueError("text must be the terms joined by single spaces")


def _check_characters(raw: str) -> None:
    """Raise :class:`QueryRejected` on control characters and lone surrogates."""
    for char in raw:
        category = unicodedata.category(char)
        if category == "Cs":
            raise QueryRejected("the query is not valid Unicode text")
        if category == "Cc" and char not in _WHITESPACE_CONTROLS:
            raise QueryRejected("the query contains control characters")


def _fold(text: str) -> str:
    """NFKC, case fold, NFKC: the fixed point both queries and titles are compared in."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def _is_variation_selector(char: str) -> bool:
    code = ord(char)
    return 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF


def _strip(text: str) -> str:
    """Keep letters, digits, their marks and whitespace; punctuation and symbols become spaces."""
    out: list[str] = []
    for char in text:
        if char in _APOSTROPHES:
            continue
        category = unicodedata.category(char)
        major = category[0]
        if major in "LN":
            out.append(char)
        elif category in ("Mn", "Mc"):
            # A combining mark belongs to the letter before it (Devanagari vowel signs, accents
            # NFKC could not compose); one left behind by a stripped symbol is dropped, as are
            # variation selectors, which only pick a glyph (emoji or text presentation).
            if out and out[-1] != " " and not _is_variation_selector(char):
                out.append(char)
        elif category == "Me":
            # Enclosing marks (keycaps, circles) are decoration.
            continue
        elif major == "Z" or char.isspace():
            out.append(" ")
        elif category == "Cf":
            # Zero-width joiners, soft hyphens, BOMs: invisible, they must not split a word.
            continue
        else:
            # P*, S* (emoji included), and any other control, private-use or unassigned code
            # point that reached here (titles and descriptions are not rejected for those).
            out.append(" ")
    return "".join(out)


def tokenize(text: str) -> list[str]:
    """Split text into normalized terms, with no length limit and no rejection.

    This is the machinery :func:`normalize_query` uses, applied to free text such as a video's
    title or description (control characters become separators instead of errors). Stopwords
    and repeats are kept.

    Args:
        text: Any text.

    Returns:
        The terms in order of appearance.
    """
    # Stripping can bring a letter and a combining mark together (``a'\u0301``: the apostrophe
    # goes), which NFKC composes: fold and strip once more so the result is a fixed point.
    return _strip(_fold(_strip(_fold(text)))).split()


def _distinct(terms: Iterable[str], stopwords: frozenset[str]) -> list[str]:
    """The terms that are not stopwords, first occurrence only, in order."""
    seen: set[str] = set()
    kept: list[str] = []
    for term in terms:
        if term in stopwords or term in seen:
            continue
        seen.add(term)
        kept.append(term)
    return kept


def normalize_query(
    raw: str,
    *,
    extra_stopwords: frozenset[str] = frozenset(),
    max_terms: int = MAX_TERMS,
) -> NormalizedQuery:
    """Normalize a client's query into the cache key and the text sent to YouTube.

    Args:
        raw: The query as the client sent it.
        extra_stopwords: Configured stopwords, in normalized form (see :func:`parse_stopwords`),
            dropped in addition to :data:`ENGLISH_STOPWORDS`.
        max_terms: At most this many terms are kept (the first ones).

    Returns:
        The normalized query; ``normalize_query(result.text)`` gives the same result when called
        with the same keyword arguments.

    Raises:
        QueryRejected: The input is too long, contains control characters or lone surrogates,
            has no terms left after normalization, or expands past the length limit.
        ValueError: ``max_terms`` is less than 1 (a programming error, not a client's).
    """
    if max_terms < 1:
        raise ValueError(f"max_terms must be at least 1, got {max_terms}")
    if len(raw) > MAX_QUERY_CHARS:
        raise QueryRejected(f"the query is longer than {MAX_QUERY_CHARS} characters")
    _check_characters(raw)
    stopwords = ENGLISH_STOPWORDS | extra_stopwords
    terms = tuple(_distinct(tokenize(raw), stopwords)[:max_terms])
    if not terms:
        raise QueryRejected("the query has no searchable words")
    text = " ".join(terms)
    if len(text) > MAX_QUERY_CHARS:
        raise QueryRejected(
            f"the query is longer than {MAX_QUERY_CHARS} characters once normalized"
        )
    return NormalizedQuery(text=text, terms=terms)


def parse_stopwords(text: str) -> frozenset[str]:
    """Parse a comma-separated list of extra stopwords from configuration.

    Each item is normalized like a query term; empty items (``"a,,b"``, a trailing comma) are
    skipped.

    Args:
        text: For example ``"official, video, HD"``.

    Returns:
        The normalized stopwords, e.g. ``frozenset({"official", "video", "hd"})``.

    Raises:
        ValueError: An item contains a control character, or normalizes to more than one term
            (``"lo-fi"`` is ``"lo fi"``, which could never match a single term); the message
            names the item so that the operator can fix the variable.
    """
    words: set[str] = set()
    for item in text.split(","):
        try:
            _check_characters(item)
        except QueryRejected as exc:
            raise ValueError(f"stopword {item.strip()!r}: {exc}") from None
        terms = tokenize(item)
        if len(terms) > 1:
            raise ValueError(
                f"stopword {item.strip()!r} normalizes to several words {terms!r}; "
                "list each word separately"
            )
        words.update(terms)
    return frozenset(words)
