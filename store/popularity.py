"""How often each normalized suggest query was asked lately, for the cache-warming job.

Design: windowed hourly buckets. Requests are counted with ``ZINCRBY`` on the sorted set of the hour
they fall in (``pop:{w}:<hour number>``); a bucket expires once its last second has left the
longest window we read, and is trimmed to ``max_entries`` members (the lowest scores go first),
so memory is bounded by ``max_entries * buckets in the window``. ``top_queries`` sums the
buckets of the window (optionally weighting older hours less, a decay) in one script and
returns the best ``limit``.

Why buckets rather than one time-decayed set (``score += 2 ** (t / half_life)``): the decayed
scores grow without bound and need periodic rescaling, while buckets age out by TTL alone and
need no maintenance job. The cost is an hour's granularity, plenty for a warming job.

Only the normalized query text is stored: no user, client or time of an individual request.

Keys carry the hash tag ``{w}`` so that the multi-key read script stays on one slot should
the service move to Redis Cluster.

Concurrency: every write is one script (ZINCRBY, EXPIRE, trim), every read one script, so
concurrent replicas never see a half-updated bucket.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from coredis.commands import Script

from store.redis import RedisStore, RedisUnavailable

__all__ = [
    "BUCKET_SECONDS",
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_WINDOW_SECONDS",
    "MAX_QUERY_CHARS",
    "MAX_WINDOW_SECONDS",
    "query_count",
    "record_queries",
    "record_query",
    "top_queries",
]

# Why an hour: the warming job runs every few minutes to hours; finer buckets would multiply
# the keys read per call (24 for a day already) without changing what gets warmed.
BUCKET_SECONDS = 3600
# Why a day: YouTube's quota is daily, so a day of demand is what warming should follow.
DEFAULT_WINDOW_SECONDS = 24 * 3600
# Why 5,000 a bucket: ~100 bytes a member, so at most ~12 MB for a day's 24 buckets, and far
# more distinct queries than 100 searches a day could ever warm.
DEFAULT_MAX_ENTRIES = 5_000
# Normalized queries are capped by the suggest route (200 raw characters); refuse anything
# far beyond so a bug cannot fill Redis with huge members.
MAX_QUERY_CHARS = 512

# Why 31 days: a read names every bucket of the window as a key of one script call (745 at
# most); longer windows belong in a different design.
MAX_WINDOW_SECONDS = 31 * 24 * 3600

# KEYS[1] bucket; ARGV[1] TTL (s), ARGV[2] max entries, then (count, member) pairs.
_RECORD_LUA = """
for i = 3, #ARGV, 2 do
  redis.call('ZINCRBY', KEYS[1], tonumber(ARGV[i]), ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
local max = tonumber(ARGV[2])
if redis.call('ZCARD', KEYS[1]) > max then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(max + 1))
end
return 1
"""
_RECORD_SCRIPT: Script[bytes] = Script(script=_RECORD_LUA)

# KEYS[1] scratch key, KEYS[2..] buckets; ARGV[1] limit, ARGV[2..] weights (one a bucket).
# The scratch key is created and deleted inside the script, so it never outlives it.
_TOP_LUA = """
local n = #KEYS - 1
local args = {'ZUNIONSTORE', KEYS[1], n}
for i = 2, #KEYS do
  args[#args + 1] = KEYS[i]
end
args[#args + 1] = 'WEIGHTS'
for i = 2, #ARGV do
  args[#args + 1] = ARGV[i]
end
redis.call(unpack(args))
local top = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
redis.call('DEL', KEYS[1])
return top
"""
_TOP_SCRIPT: Script[bytes] = Script(script=_TOP_LUA)


# KEYS: buckets; ARGV[1] the member. Returns the sum of its scores (whole requests).
_COUNT_LUA = """
local total = 0
for i = 1, #KEYS do
  local score = redis.call('ZSCORE', KEYS[i], ARGV[1])
  if score then
    total = total + tonumber(score)
  end
end
return math.floor(total)
"""
_COUNT_SCRIPT: Script[bytes] = Script(script=_COUNT_LUA)


def _bucket_key(store: RedisStore, bucket: int) -> str:
    return store.key("pop", "{w}", str(bucket))


async def record_query(
    store: RedisStore,
    normalized: str,
    *,
    now: float,
    window_seconds: int = DEFAULT_WINDOW_SECONDS,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> None:
    """Count one request for ``normalized``; see :func:`record_queries`."""
    await record_queries(
        store, {normalized: 1}, now=now, window_seconds=window_seconds, max_entries=max_entries
    )


async def record_queries(
    store: RedisStore,
    counts: Mapping[str, int],
    *,
    now: float,
    window_seconds: int = DEFAULT_WINDOW_SECONDS,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> None:
    """Add ``counts`` (requests per normalized query) to the bucket of the hour ``now`` is in.

    One script call for the whole batch, so a process can count requests locally and flush
    them every few seconds instead of writing to Redis on every request.

    Args:
        store: The Redis store.
        counts: ``{normalized query: requests}``; only the normalized text, nothing else.
        now: Wall-clock seconds since the epoch.
        window_seconds: The longest window ``top_queries`` will be asked for; the bucket
            lives until its last second is older than that.
        max_entries: Members kept in the bucket (the lowest scores are dropped beyond it;
            equal scores are dropped in reverse lexicographic order, as Redis ranks them).

    Raises:
        ValueError: An empty or oversized query, a count under 1, or a window or bound under 1.
        RedisUnavailable: Redis is down, too slow, or refused the script.
    """
    if not 1 <= window_seconds <= MAX_WINDOW_SECONDS or max_entries < 1:
        raise ValueError(f"bad window/max_entries: {window_seconds}, {max_entries}")
    pairs: list[str] = []
    for normalized, count in counts.items():
        if not normalized or len(normalized) > MAX_QUERY_CHARS:
            raise ValueError(f"normalized query must have 1 to {MAX_QUERY_CHARS} characters")
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        pairs += [str(count), normalized]
    if not pairs:
        return
    bucket = math.floor(now / BUCKET_SECONDS)
    bucket_end = (bucket + 1) * BUCKET_SECONDS
    ttl = max(1, math.ceil(bucket_end + window_seconds - now))
    await store.run_script(
        _RECORD_SCRIPT,
        [_bucket_key(store, bucket)],
        [str(ttl), str(max_entries), *pairs],
        what="popularity",
    )


async def top_queries(
    store: RedisStore,
    *,
    limit: int,
    now: float,
    window_seconds: int = DEFAULT_WINDOW_SECONDS,
    half_life_seconds: float | None = None,
) -> list[tuple[str, float]]:
    """The ``limit`` most asked queries of the window ending at ``now``, best first.

    Args:
        store: The Redis store.
        limit: How many to return.
        now: Wall-clock seconds since the epoch.
        window_seconds: How far back to count (whole hours are counted: every hour that
            overlaps the window, so a day reads 25 buckets); at most ``MAX_WINDOW_SECONDS``.
        half_life_seconds: When given, an hour's counts weigh ``0.5 ** (age / half_life)``
            (age measured from the current hour's bucket), so recent demand wins; otherwise
            every hour of the window counts the same.

    Returns:
        ``(query, score)`` pairs by descending score, ties by descending query text.

    Raises:
        ValueError: A limit, window or half-life under 1.
        RedisUnavailable: Redis is down, too slow, or refused the script.
    """
    if limit < 1 or not 1 <= window_seconds <= MAX_WINDOW_SECONDS:
        raise ValueError(f"bad limit/window: {limit}, {window_seconds}")
    if half_life_seconds is not None and not half_life_seconds >= 1:
        raise ValueError(f"half_life_seconds must be at least 1, not {half_life_seconds}")
    current = math.floor(now / BUCKET_SECONDS)
    first = math.floor((now - window_seconds) / BUCKET_SECONDS)
    buckets = range(current, first - 1, -1)
    weights = [
        1.0
        if half_life_seconds is None
        else 0.5 ** ((current - b) * BUCKET_SECONDS / half_life_seconds)
        for b in buckets
    ]
    scratch = store.key("pop", "{w}", "top")
    reply = await store.run_script(
        _TOP_SCRIPT,
        [scratch, *(_bucket_key(store, b) for b in buckets)],
        [str(limit), *(repr(w) for w in weights)],
        what="popularity",
    )
    if not (isinstance(reply, list) and len(reply) % 2 == 0):
        raise RedisUnavailable(f"unexpected reply from the popularity script: {reply!r}")
    pairs: list[tuple[str, float]] = []
    for member, score in zip(reply[::2], reply[1::2], strict=True):
        if not isinstance(member, bytes) or not isinstance(score, bytes | str | int | float):
            raise RedisUnavailable(f"unexpected reply from the popularity script: {reply!r}")
        pairs.append((member.decode(), float(score)))
    return pairs


async def query_count(store: RedisStore, normalized: str, *, now: float, since: float) -> int:
    """How often ``normalized`` was counted in the hourly buckets from ``since`` to ``now``.

    Whole hours: every bucket that overlaps ``[since, now]`` counts (``since`` on an hour
    boundary, as midnight Pacific is, counts exactly from then).

    Raises:
        ValueError: ``since`` after ``now``, a window over ``MAX_WINDOW_SECONDS``, or an
            empty or oversized query.
        RedisUnavailable: Redis is down, too slow, or refused the script.
    """
    if not 0 <= now - since <= MAX_WINDOW_SECONDS:
        raise ValueError(f"bad window: {since} to {now}")
    if not normalized or len(normalized) > MAX_QUERY_CHARS:
        raise ValueError(f"normalized query must have 1 to {MAX_QUERY_CHARS} characters")
    first, last = math.floor(since / BUCKET_SECONDS), math.floor(now / BUCKET_SECONDS)
    reply = await store.run_script(
        _COUNT_SCRIPT,
        [_bucket_key(store, bucket) for bucket in range(first, last + 1)],
        [normalized],
        what="popularity",
    )
    if not isinstance(reply, int):
        raise RedisUnavailable(f"unexpected reply from the popularity script: {reply!r}")
    return reply
