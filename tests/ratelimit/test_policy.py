"""Policies from configuration strings, and the headers a decision produces."""

from __future__ import annotations

import pytest

from smartpip.http.ratelimit import Decision, Policy, bucket_key, parse_policy


@pytest.mark.parametrize(
    ("text", "limit", "period"),
    [
        ("30/60s", 30, 60.0),
        ("120/1m", 120, 60.0),
        ("1000/1h", 1000, 3600.0),
        ("5/s", 5, 1.0),
        ("10/m", 10, 60.0),
        ("2000/1d", 2000, 86_400.0),
        (" 30 / 90S ", 30, 90.0),
        ("300/5M", 300, 300.0),
    ],
)
def test_parse_policy_accepts(text: str, limit: int, period: float) -> None:
    policy = parse_policy("api", text)
    assert policy == Policy(name="api", limit=limit, period=period)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is not <count>/<window>"),
        ("30", "is not <count>/<window>"),
        ("30/60", "is not <count>/<window>"),  # a unit is required
        ("30/60x", "is not <count>/<window>"),
        ("-1/60s", "is not <count>/<window>"),
        ("1.5/60s", "is not <count>/<window>"),
        ("30/1.5m", "is not <count>/<window>"),
        ("30 per minute", "is not <count>/<window>"),
        ("0/60s", "count in '0/60s' must be at least 1"),
        ("30/0s", "window in '30/0s' must be between 1 s and 1 day"),
        ("30/2d", "window in '30/2d' must be between 1 s and 1 day"),
        ("20000/1s", "at most 10000 a second"),
    ],
)
def test_parse_policy_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="'suggest'") as info:
        parse_policy("suggest", text)
    assert message in str(info.value)


def test_fallback_is_a_quarter_of_the_limit_at_least_one() -> None:
    assert Policy("a", 30, 60).local_limit == 7
    assert Policy("a", 3, 60).local_limit == 1
    assert Policy("a", 1, 60).local_limit == 1
    assert Policy("a", 30, 60, fallback_limit=20).local_limit == 20


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "", "limit": 1, "period": 1},
        {"name": 'a"b', "limit": 1, "period": 1},
        {"name": "a b", "limit": 1, "period": 1},
        {"name": "a", "limit": 0, "period": 1},
        {"name": "a", "limit": 1, "period": 0},
        {"name": "a", "limit": 1, "period": float("nan")},
        {"name": "a", "limit": 4, "period": 1, "fallback_limit": 0},
        {"name": "a", "limit": 4, "period": 1, "fallback_limit": 5},
    ],
)
def test_policy_is_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Policy(**kwargs)  # type: ignore[arg-type]


POLICY = Policy("suggest", 30, 60)


def test_headers_when_allowed() -> None:
    decision = Decision(POLICY, True, 12, 0, 34, degraded=False)
    assert decision.headers() == {
        "RateLimit-Policy": '"suggest";q=30;w=60',
        "RateLimit": '"suggest";r=12;t=34',
    }


def test_headers_when_limited() -> None:
    decision = Decision(POLICY, False, 0, 2, 60, degraded=False)
    assert decision.headers() == {
        "RateLimit-Policy": '"suggest";q=30;w=60',
        "RateLimit": '"suggest";r=0;t=60',
        "Retry-After": "2",
    }


def test_headers_when_degraded_announce_the_local_quota() -> None:
    decision = Decision(POLICY, False, 0, 9, 60, degraded=True)
    assert decision.quota == 7
    assert decision.headers()["RateLimit-Policy"] == '"suggest";q=7;w=60'


def test_bucket_key_hashes_the_client() -> None:
    key = bucket_key(POLICY, "203.0.113.7")
    name, _, digest = key.partition(":")
    assert name == "suggest"
    assert "203.0.113.7" not in key
    assert len(digest) == 32
    assert bucket_key(POLICY, "203.0.113.7") == key
    assert bucket_key(POLICY, "203.0.113.8") != key
    assert bucket_key(Policy("other", 30, 60), "203.0.113.7") != key
