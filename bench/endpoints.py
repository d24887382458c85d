"""What the benchmark drives: one `Endpoint` spec per measured request, with its budget.

Adding an endpoint is adding one entry to `ENDPOINTS`. A spec carries the request (method, path,
body, headers), an optional wrk Lua snippet for anything fancier (a ``request()`` function that
varies the body, say), an optional setup hook run once against the live service before the
endpoint is driven (to sign in and return an ``Authorization`` header, for instance), and a
`Budget`. Budgets are ratios to the ceiling app measured in the same run, never absolute times.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote_plus

import httpx

__all__ = ["CEILING", "ENDPOINTS", "Budget", "Endpoint", "SetupContext", "SetupHook"]


@dataclass(frozen=True)
class SetupContext:
    """What a setup hook gets: the service's base URL, a client, and the service's environment
    (so a hook can run ``smartpip`` commands against the same database and keys)."""

    base_url: str
    client: httpx.Client
    env: Mapping[str, str] = field(default_factory=dict)


SetupHook = Callable[[SetupContext], Mapping[str, str]]
"""Runs once before an endpoint is warmed up; returns extra request headers (may be empty)."""


@dataclass(frozen=True)
class Budget:
    """Pass conditions relative to the ceiling measured in the same run.

    Attributes:
        min_ratio: the endpoint's requests/s divided by the ceiling's must be at least this.
        max_p99_ratio: the endpoint's p99 latency divided by the ceiling's must be at most this.
        max_p99_ms: an absolute p99 bound, where an issue states one (a latency a user feels).
    """

    min_ratio: float | None = None
    max_p99_ratio: float | None = None
    max_p99_ms: float | None = None

    def describe(self) -> str:
        """Short text for the table, e.g. ``>=0.80`` or ``>=0.50 p99<=3.0x``."""
        parts = []
        if self.min_ratio is not None:
            parts.append(f">={self.min_ratio:.2f}")
        if self.max_p99_ratio is not None:
            parts.append(f"p99<={self.max_p99_ratio:.1f}x")
        if self.max_p99_ms is not None:
            parts.append(f"p99<{self.max_p99_ms:g}ms")
        return " ".join(parts) or "report"


@dataclass(frozen=True)
class Endpoint:
    """One request shape to drive with wrk.

    Attributes:
        path: request target, with its query string if any.
        method: HTTP method.
        body: request body sent with every request (set a Content-Type in ``headers``).
        headers: extra request headers, sent on every request of every connection.
        lua: wrk Lua code placed before the harness's own hooks. It may define ``init``,
            ``request``, ``setup``, ``response`` and ``done``; the harness chains its own
            hooks after them, so its result line and non-2xx count stay intact.
        setup: called once against the live service before the warm-up; the headers it
            returns are merged over ``headers``.
        budget: pass conditions; ``None`` means report-only.
        name: label in the table and the JSON; defaults to ``"METHOD path"``.
    """

    path: str
    method: str = "GET"
    body: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    lua: str | None = None
    setup: SetupHook | None = None
    budget: Budget | None = None
    name: str = ""

    @property
    def label(self) -> str:
        """The name shown in the table and used by ``--only``."""
        return self.name or f"{self.method} {self.path}"


BENCH_USER = "bench-user"


def bearer_token(ctx: SetupContext) -> Mapping[str, str]:
    """Sign in as the benchmark user with ``smartpip token`` (same database and keys)."""
    result = subprocess.run(
        [sys.executable, "-m", "smartpip.cli", "token", "--sub", BENCH_USER],
        env=dict(ctx.env),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {"Authorization": f"Bearer {result.stdout.strip()}"}


# Why 50: enough users that the per-user history rows and rate-limit buckets are spread the
# way real traffic spreads them, few enough to mint in a second.
TOKEN_POOL_SIZE = 50


def token_pool(ctx: SetupContext) -> Mapping[str, str]:
    """Tokens for a pool of users, handed to the Lua script below in a header it removes."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.tokens", "--count", str(TOKEN_POOL_SIZE)],
        env=dict(ctx.env),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return {"X-Bench-Tokens": " ".join(result.stdout.split())}


# Each request takes the next user's token (round robin); the pool header is not sent.
ROTATE_USERS_LUA = """
local tokens = {}
local turn = 0
init = function(args)
  for token in string.gmatch(wrk.headers["X-Bench-Tokens"], "%S+") do
    table.insert(tokens, token)
  end
  wrk.headers["X-Bench-Tokens"] = nil
end
request = function()
  turn = turn % #tokens + 1
  wrk.headers["Authorization"] = "Bearer " .. tokens[turn]
  return wrk.format()
end
"""

# As above, and each request watches one of 1,000 videos: upserts, re-watches and prunes.
WATCH_VIDEOS_LUA = ROTATE_USERS_LUA.replace(
    "  return wrk.format()",
    """  local id = string.format("bench%06d", math.random(0, 999))
  wrk.body = '{"provider":"youtube","videoId":"' .. id .. '","title":"Benchmark video ' .. id ..
    '","url":"https://www.youtube.com/watch?v=' .. id .. '"}'
  return wrk.format()""",
)


# The warm-cache suggest run: ten normalized queries, each asked in two raw spellings that
# differ only by casing, punctuation, spaces and stopwords (so both hit one cache entry).
SUGGEST_QUERIES: tuple[str, ...] = (
    "lofi hip hop",
    "The LOFI  hip-hop!!",
    "jazz piano for studying",
    "Jazz Piano, studying",
    "rain sounds sleep",
    "rain sounds for SLEEP...",
    "python trio tutorial",
    "Python: Trio tutorial?",
    "morning cafe music",
    "  morning  cafe music  ",
    "synthwave night drive",
    "Synthwave - Night Drive",
    "quick pasta recipe",
    "a quick... pasta recipe",
    "tokyo walking tour 4k",
    "Tokyo walking tour (4K)",
    "piano cover anime",
    "PIANO cover of an anime",
    "deep focus ambient",
    "deep-focus AMBIENT",
)
# Setup sends each query this many times after the first pass; every answer must be a HIT.
SUGGEST_HIT_CHECKS = 2


def warm_suggest(ctx: SetupContext) -> Mapping[str, str]:
    """A token pool, and the cache warmed for `SUGGEST_QUERIES` (checked: all HITs after).

    The first pass fills the cache through the fake YouTube (MISS, or HIT for the second
    spelling of a query); then every query must answer ``X-Cache: HIT``, or the hook fails
    (the row then reports why instead of measuring misses).

    Returns:
        ``X-Bench-Tokens`` and ``X-Bench-Queries`` (URL-encoded, space-separated), both
        consumed and removed by `SUGGEST_LUA`.
    """
    pool = token_pool(ctx)
    first = pool["X-Bench-Tokens"].split()[0]
    headers = {"Authorization": f"Bearer {first}"}
    url = ctx.base_url + "/v1/suggest"
    for query in SUGGEST_QUERIES:
        answer = ctx.client.get(url, params={"q": query}, headers=headers)
        if answer.status_code != 200:
            raise RuntimeError(
                f"warming {query!r}: HTTP {answer.status_code} {answer.text[:200]} "
                "(is suggest configured with the bench's fake YouTube?)"
            )
    misses = []
    for _ in range(SUGGEST_HIT_CHECKS):
        for query in SUGGEST_QUERIES:
            answer = ctx.client.get(url, params={"q": query}, headers=headers)
            cache = answer.headers.get("X-Cache")
            if answer.status_code != 200 or cache != "HIT":
                misses.append(f"{query!r}: HTTP {answer.status_code} X-Cache {cache}")
    if misses:
        raise RuntimeError("not HITs after warming: " + "; ".join(misses))
    return {**pool, "X-Bench-Queries": " ".join(quote_plus(q) for q in SUGGEST_QUERIES)}


# Round robin over the users and, independently, over the queries. A 2xx answer that is not a
# cache HIT is rejected (counted as a failed request, `bench.wrk`): this row measures the warm
# cache, so a MISS or STALE during the run fails it rather than blending in.
SUGGEST_LUA = """
local tokens, queries = {}, {}
local turn, pick = 0, 0
init = function(args)
  for token in string.gmatch(wrk.headers["X-Bench-Tokens"], "%S+") do
    table.insert(tokens, token)
  end
  for query in string.gmatch(wrk.headers["X-Bench-Queries"], "%S+") do
    table.insert(queries, query)
  end
  wrk.headers["X-Bench-Tokens"] = nil
  wrk.headers["X-Bench-Queries"] = nil
end
request = function()
  turn = turn % #tokens + 1
  pick = pick % #queries + 1
  wrk.headers["Authorization"] = "Bearer " .. tokens[turn]
  return wrk.format(nil, "/v1/suggest?q=" .. queries[pick])
end
response = function(status, headers, body)
  local cache = headers["X-Cache"] or headers["x-cache"]
  if status >= 200 and status <= 299 and cache ~= "HIT" then
    bench_rejected = bench_rejected + 1
  end
end
"""

CEILING = Endpoint(path="/healthz", name="ceiling (bare ASGI)")
"""The reference request, sent to the ceiling app; it answers every path the same way."""

ENDPOINTS: tuple[Endpoint, ...] = (
    # Liveness does no I/O: it measures the framework's own cost over the bare server.
    Endpoint(path="/healthz", budget=Budget(min_ratio=0.8)),
    # Feature states; report-only until its design settles.
    Endpoint(path="/v1/status"),
    # Bearer verification and nothing else (no database, no Redis): its cost over /healthz.
    Endpoint(path="/v1/auth/session", setup=bearer_token, budget=Budget(min_ratio=0.7)),
    # Bearer, per-user rate limit (Redis) and one database read: a typical signed-in read.
    Endpoint(path="/v1/me", setup=bearer_token),
    # The user's last five videos, over a pool of users.
    Endpoint(
        path="/v1/history",
        setup=token_pool,
        lua=ROTATE_USERS_LUA,
        # Issue 11 item 8: at least 0.5 of the ceiling.
        budget=Budget(min_ratio=0.5, max_p99_ms=50),
    ),
    # Watching a video: upsert and prune in one transaction, over a pool of users.
    Endpoint(
        path="/v1/history",
        method="POST",
        name="POST /v1/history",
        headers={"Content-Type": "application/json"},
        setup=token_pool,
        lua=WATCH_VIDEOS_LUA,
        # Issue 11 item 8: at least 0.35 of the ceiling.
        budget=Budget(min_ratio=0.35, max_p99_ms=50),
    ),
    # Suggest on a warm cache (issue 11 item 8: at least 0.6 of the ceiling): bearer, the
    # per-user suggest limit (a leased unit), normalization, and a cached answer (in-process).
    Endpoint(
        path="/v1/suggest",
        name="GET /v1/suggest (warm)",
        setup=warm_suggest,
        lua=SUGGEST_LUA,
        budget=Budget(min_ratio=0.6),
    ),
)
