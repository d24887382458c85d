"""Query normalization: collisions, Unicode handling, stopwords, caps, rejections, idempotence."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smartpip.suggest import (
    ENGLISH_STOPWORDS,
    MAX_QUERY_CHARS,
    MAX_TERMS,
    NormalizedQuery,
    QueryRejected,
    normalize_query,
    parse_stopwords,
    tokenize,
)


def text_of(raw: str, extra_stopwords: frozenset[str] = frozenset()) -> str:
    return normalize_query(raw, extra_stopwords=extra_stopwords).text


@pytest.mark.parametrize(
    ("variants", "expected"),
    [
        (["The Best  LOFI mix!!", "best lofi mix", "  BEST, lofi... MIX?  "], "best lofi mix"),
        # Full-width letters and digits (NFKC) fold onto ASCII.
        (["\uff2c\uff4f\uff26\uff49 \uff12\uff10\uff12\uff14", "lofi 2024"], "lofi 2024"),
        # Ligatures and compatibility characters: "\ufb01" is the "fi" ligature.
        (["lo\ufb01 beats", "LOFI BEATS"], "lofi beats"),
        # Case folding beyond lower(): German sharp s.
        (["STRASSE", "stra\u00dfe"], "strasse"),
        # Composed and decomposed accents are one term; the accent is kept.
        (["Caf\u00e9 jazz", "CAFE\u0301 JAZZ"], "caf\u00e9 jazz"),
        # Emoji, symbols and punctuation go; ZWJ emoji sequences leave nothing behind.
        (
            [
                "lofi \U0001f3b5 mix \U0001f468\u200d\U0001f469\u200d\U0001f467 #chill",
                "lofi mix chill",
            ],
            "lofi mix chill",
        ),
        # Variation selectors and enclosing marks go with their emoji; a keycap digit stays.
        (["\u2764\ufe0f lofi 1\ufe0f\u20e3", "lofi 1"], "lofi 1"),
        # Apostrophes are deleted (typographic too); other punctuation separates words.
        (["rock'n'roll", "rock\u2019n\u2019roll"], "rocknroll"),
        (["AC/DC live", "ac dc live"], "ac dc live"),
        # Repeats keep the first occurrence, in order.
        (["mix lofi MIX Lofi beats mix", "mix lofi beats"], "mix lofi beats"),
        # Tab and newline are whitespace, not control characters to reject.
        (["lofi\tmix\r\nbeats", "lofi mix beats"], "lofi mix beats"),
    ],
)
def test_variants_share_one_text(variants: list[str], expected: str) -> None:
    assert {text_of(v) for v in variants} == {expected}


def test_terms_and_text_agree() -> None:
    query = normalize_query("The Best  LOFI mix!!")
    assert query == NormalizedQuery(text="best lofi mix", terms=("best", "lofi", "mix"))


def test_accented_and_unaccented_stay_distinct() -> None:
    # Accents carry meaning (Spanish "a\u00f1o" is not "ano"), so they are not stripped.
    assert text_of("caf\u00e9") != text_of("cafe")
    assert text_of("A\u00d1O nuevo") == "a\u00f1o nuevo"


def test_word_order_is_kept() -> None:
    # Decision (docs/suggest-ranking.md): order is YouTube's query too, so it is not sorted.
    assert text_of("mix lofi") == "mix lofi"
    assert text_of("lofi mix") == "lofi mix"


def test_letters_and_digits_of_every_script_are_kept() -> None:
    assert text_of("\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e") == (
        "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e"
    )
    assert text_of("\u6771\u4eac \u30e9\u30a4\u30d6\u3002") == "\u6771\u4eac \u30e9\u30a4\u30d6"
    assert text_of("\u041c\u0423\u0417\u042b\u041a\u0410 \u0661\u0662") == (
        "\u043c\u0443\u0437\u044b\u043a\u0430 \u0661\u0662"
    )


def test_stopwords_are_dropped() -> None:
    assert text_of("how to play the guitar for beginners") == "play guitar beginners"
    assert text_of("Don't Stop Me Now") == "stop"


def test_builtin_stopword_list_is_normalized_and_sized() -> None:
    assert 100 <= len(ENGLISH_STOPWORDS) <= 150
    assert all(tokenize(word) == [word] for word in ENGLISH_STOPWORDS)


def test_extra_stopwords() -> None:
    extra = frozenset({"official", "video"})
    assert text_of("Official Video lofi mix", extra_stopwords=extra) == "lofi mix"
    # The built-in list still applies.
    assert text_of("the official lofi", extra_stopwords=extra) == "lofi"


def test_term_cap_keeps_the_first_terms() -> None:
    words = [f"w{i}" for i in range(20)]
    query = normalize_query(" ".join(words))
    assert query.terms == tuple(words[:MAX_TERMS])
    assert normalize_query(" ".join(words), max_terms=3).terms == ("w0", "w1", "w2")


def test_term_cap_counts_after_stopwords_and_repeats() -> None:
    raw = "the a a lofi lofi mix the beats"
    assert normalize_query(raw, max_terms=3).terms == ("lofi", "mix", "beats")


def test_max_terms_below_one_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="max_terms") as excinfo:
        normalize_query("lofi", max_terms=0)
    assert not isinstance(excinfo.value, QueryRejected)


def test_exactly_the_limit_is_accepted() -> None:
    raw = "a" * MAX_QUERY_CHARS
    assert normalize_query(raw).text == raw


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("a" * (MAX_QUERY_CHARS + 1), "longer than 200"),
        # Counted before normalization: spaces and punctuation count too.
        ("lofi" + " " * 197, "longer than 200"),
        ("the a !!!", "no searchable words"),
        ("", "no searchable words"),
        ("   \t ", "no searchable words"),
        ("\U0001f3b5\U0001f3b6 \u2764\ufe0f \U0001f44d\U0001f3fd", "no searchable words"),
        ("lofi\x00mix", "control characters"),
        ("lofi \x1b[31m mix", "control characters"),
        ("lofi\x7f", "control characters"),
        ("lofi\x85mix", "control characters"),
        ("lofi \ud800 mix", "not valid Unicode"),
        # Under the raw limit, but NFKC expands each character to four ("\u3300" is a
        # four-kana word), so the normalized text would not be an acceptable query itself.
        ("\u3300" * 60, "once normalized"),
    ],
)
def test_rejections(raw: str, message: str) -> None:
    with pytest.raises(QueryRejected, match=message):
        normalize_query(raw)


def test_rejection_message_does_not_echo_the_query() -> None:
    with pytest.raises(QueryRejected) as excinfo:
        normalize_query("secret\x00stuff")
    assert "secret" not in str(excinfo.value)


def test_normalized_query_checks_its_invariants() -> None:
    with pytest.raises(ValueError, match="at least one term"):
        NormalizedQuery(text="", terms=())
    with pytest.raises(ValueError, match="joined"):
        NormalizedQuery(text="mix lofi", terms=("lofi", "mix"))


def test_parse_stopwords() -> None:
    assert parse_stopwords("Official, VIDEO ,hd,, \uff28\uff24, lyrics,") == frozenset(
        {"official", "video", "hd", "lyrics"}
    )
    assert parse_stopwords("") == frozenset()
    assert parse_stopwords("Don't") == frozenset({"dont"})


def test_parse_stopwords_rejects_phrases_and_controls() -> None:
    with pytest.raises(ValueError, match="lo-fi"):
        parse_stopwords("official, lo-fi")
    with pytest.raises(ValueError, match="control"):
        parse_stopwords("official, bad\x00word")


def test_tokenize_keeps_everything_and_never_rejects() -> None:
    long_text = "The the " * 100 + "END\x00of\x1btext"
    terms = tokenize(long_text)
    assert terms[:2] == ["the", "the"]
    assert terms[-3:] == ["end", "of", "text"]


# Text drawn from every category, weighted towards the interesting pieces: stopwords, case and
# accent variants, compatibility characters, emoji sequences, punctuation, expanding characters.
_pieces = st.one_of(
    st.sampled_from(sorted(ENGLISH_STOPWORDS)),
    st.sampled_from(
        [
            *("a", "B", " ", "  ", "\u00e9", "E\u0301", "\u00df", "'", "!", "-", "\t", "\n"),
            *("\uff21", "\ufb01", "\u3300", "\u200d", "\u2764\ufe0f", "1\ufe0f\u20e3", "\u0301"),
            *("zz", "\u0928\u092e\u0938\u094d\u0924\u0947", "\u01f0", "J\u030c\u0301"),
        ]
    ),
    st.characters(codec="utf-8"),
    st.text(max_size=5),
)
_query_text = st.lists(_pieces, max_size=60).map(lambda pieces: "".join(pieces)[:MAX_QUERY_CHARS])


@given(raw=_query_text, max_terms=st.integers(min_value=1, max_value=15))
def test_normalization_is_idempotent(raw: str, max_terms: int) -> None:
    extra = frozenset({"zz"})
    try:
        first = normalize_query(raw, extra_stopwords=extra, max_terms=max_terms)
    except QueryRejected:
        return
    again = normalize_query(first.text, extra_stopwords=extra, max_terms=max_terms)
    assert again == first
    assert len(first.terms) <= max_terms
    assert len(set(first.terms)) == len(first.terms)
    assert not set(first.terms) & (ENGLISH_STOPWORDS | extra)


def test_a_mark_joined_to_its_letter_by_a_stripped_apostrophe_is_composed() -> None:
    # Found by the idempotence property: the apostrophe goes, and NFKC then composes a + U+0301.
    first = normalize_query("a'\u0301")
    assert first.text == "\u00e1"
    assert normalize_query(first.text) == first
