"""Quota economy of ``GET /v1/suggest``: does every normalized query cost at most one search?

``python -m bench.economy`` (also run by ``python -m bench.run`` after its table) starts the
bench's fake YouTube (answering any query, logging every API request with its ``q`` and time),
then **two** ``smartpip serve`` instances on different ports sharing one database and one Redis
prefix (so one cache, one lease per query and one quota counter), and sends them a Zipf workload
from concurrent clients:

- 2,000 distinct raw queries built from a small vocabulary: a few hundred base phrases, each
  spelled several ways that differ only by casing, punctuation, extra spaces and stopwords, so
  that they collide after normalization (every spelling is checked against
  `smartpip.suggest.normalize_query` before the run);
- popularity rank to raw query shuffled (seeded), request ``i`` picks a rank from a Zipf law
  with ``s = 1.1`` over the 2,000 ranks, an instance and a user at random;
- the daily search budget raised to 100,000 so that the run measures de-duplication, not the
  budget; the fake answers after ``--upstream-latency`` (a search's round trip), so concurrent
  misses of one query really overlap in both instances.

It prints the requests served (by status and by ``X-Cache``), the distinct normalized queries,
the upstream searches made, the **duplicate searches** (one normalized ``q`` searched again
within the cache TTL; the target is zero), and what YouTube's default budget (100 searches a
day) would have allowed against what was needed. Figures go to
``bench/results/<stamp>-economy.json``. Exit status: 1 when a search was duplicated or any
request failed (5xx, 4xx or no answer), 2 when the run could not be made, else 0.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import random
import secrets
import signal
import sys
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import trio

from bench.fake_youtube import READY_PATH as YOUTUBE_READY_PATH
from bench.fake_youtube import api_url, fake_youtube_process
from bench.scratch import delete_prefix, fresh_prefix
from bench.servers import (
    DEFAULT_READY_TIMEOUT_S,
    EXIT_BROKEN,
    EXIT_FAILED,
    EXIT_OK,
    ServerProcess,
    StartError,
    free_port,
)
from bench.service import smartpip_command, smartpip_env
from bench.tokens import mint
from smartpip.config import Config
from smartpip.suggest import normalize_query, tokenize
from tests.support.pg import drop_database

__all__ = ["EconomySettings", "build_queries", "find_duplicates", "main", "run_economy"]

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

ZIPF_S = 1.1
DISTINCT_RAW = 2000
# A few thousand requests: with Zipf 1.1 over 2,000 ranks they ask ~900 of the raw queries.
DEFAULT_REQUESTS = 4000
# Enough clients that the popular queries are asked on both instances at the same moment.
DEFAULT_CONCURRENCY = 24
# A real search.list + videos.list takes a few hundred ms; 100 ms each keeps the run short
# while misses of one query still overlap across clients and instances.
DEFAULT_UPSTREAM_LATENCY_S = 0.1
DEFAULT_SEED = 10
# The most the configuration allows: the run measures de-duplication, not the budget.
RUN_DAILY_BUDGET = 100_000
# The service's default (SMARTPIP_SUGGEST_DAILY_BUDGET): 10,000 units a day, 100 per search.
DEFAULT_DAILY_BUDGET = 100
# Freshness of a cached answer (SMARTPIP_SUGGEST_TTL_SECONDS, its default): a second search
# of one normalized query within it is a duplicate.
TTL_S = 1200
TOKEN_POOL_SIZE = 50
# Over the service's longest wait for a search (5 s) plus the time to queue for a slot.
REQUEST_TIMEOUT_S = 15.0

# The vocabulary: base phrases are a topic and one or two modifiers, in that order.
# fmt: off
TOPICS = (
    "lofi", "jazz", "piano", "guitar", "rain", "ocean", "forest", "synthwave", "classical",
    "ambient", "meditation", "workout", "yoga", "cooking", "pasta", "ramen", "sushi", "travel",
    "tokyo", "paris", "kyoto", "iceland", "python", "rust", "javascript", "linux", "chess",
    "minecraft", "speedrun", "documentary", "history", "space", "physics", "cats", "dogs",
    "birds", "gardening", "woodworking", "drawing", "watercolor",
)
MODIFIERS = (
    "beginner", "tutorial", "mix", "live", "relaxing", "study", "sleep", "focus", "night",
    "morning", "quick", "easy", "advanced", "4k", "music", "sounds", "guide", "tips", "review",
    "compilation",
)
# fmt: on
# Dropped by normalization (all in its English list), so inserting them changes nothing.
STOPWORDS = ("the", "a", "for", "with", "to", "of", "my", "some", "and", "in", "of the")
SEPARATORS = (" ", " ", " ", "  ", "   ", " - ", ", ", "-", " / ", "_", " | ", ". ")
WRAPS = (("", ""), ("", "!!"), ("", "?"), ("", "..."), ('"', '"'), ("(", ")"), ("  ", "  "))
BASE_PHRASES = 650


@dataclass(frozen=True)
class EconomySettings:
    """One economy run."""

    database_url: str = "postgresql://postgres@127.0.0.1:5432/smartpip_bench"
    redis_url: str = "redis://127.0.0.1:6379/0"
    results_dir: Path = REPO_ROOT / "bench" / "results"
    requests: int = DEFAULT_REQUESTS
    concurrency: int = DEFAULT_CONCURRENCY
    upstream_latency_s: float = DEFAULT_UPSTREAM_LATENCY_S
    seed: int = DEFAULT_SEED
    ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S


@dataclass(frozen=True)
class Query:
    """A raw query of the workload and the normalized text it must map to."""

    raw: str
    normalized: str


@dataclass
class Outcome:
    """One request's answer (``status`` 0: no answer, see ``error``).

    ``local_items``/``local_relevant``: for a ``LOCAL`` answer, its items and those whose
    title holds at least one of the query's normalized terms.
    """

    instance: str
    raw: str
    status: int = 0
    cache: str | None = None
    query: str | None = None
    source: str | None = None
    started_s: float = 0.0
    seconds: float = 0.0
    error: str | None = None
    local_items: int = 0
    local_relevant: int = 0


@dataclass(frozen=True)
class Call:
    """One request the fake YouTube received."""

    t: float
    method: str
    q: str | None
    status: int


@dataclass
class Report:
    """The figures of one run (also the JSON document)."""

    requests: int
    concurrency: int
    instances: dict[str, int]
    seconds: float
    statuses: dict[str, int]
    x_cache: dict[str, int]
    failures: list[str]
    distinct_raw_asked: int
    distinct_normalized_asked: int
    normalization_mismatches: int
    upstream_searches: int
    upstream_videos_calls: int
    upstream_units: int
    upstream_non_200: int
    duplicate_searches: int
    duplicates: list[dict[str, Any]]
    searches_needed: dict[str, int]
    default_budget: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """No duplicate search and every request answered 200."""
        return self.duplicate_searches == 0 and not self.failures


# -- the workload -----------------------------------------------------------------------------


def _spell(words: Sequence[str], rng: random.Random) -> str:
    """One raw spelling of ``words``: casing, stopwords, separators, wrapping punctuation."""
    tokens: list[str] = []
    for word in words:
        if rng.random() < 0.3:
            tokens.append(rng.choice(STOPWORDS))
        tokens.append(rng.choice((word, word, word.upper(), word.title(), word.capitalize())))
    if rng.random() < 0.2:
        tokens.append(rng.choice(STOPWORDS[:-1]))
    text = tokens[0]
    for token in tokens[1:]:
        text += rng.choice(SEPARATORS) + token
    before, after = rng.choice(WRAPS)
    return before + text + after


def build_queries(seed: int, distinct: int = DISTINCT_RAW) -> list[Query]:
    """``distinct`` raw queries in popularity order (rank 1 first), each with its normalized form.

    Raises:
        AssertionError: A spelling does not normalize to its base phrase (a generator bug:
            the run would then test the generator, not the service).
    """
    rng = random.Random(seed)
    phrases = [f"{t} {m}" for t in TOPICS for m in MODIFIERS]
    phrases += [f"{t} {m} {n}" for t in TOPICS for m in MODIFIERS for n in MODIFIERS if m != n]
    bases = rng.sample(phrases, BASE_PHRASES)
    raw: dict[str, str] = {base: base for base in bases}
    while len(raw) < distinct:
        base = rng.choice(bases)
        raw.setdefault(_spell(base.split(), rng), base)
    queries = [Query(text, base) for text, base in raw.items()]
    for query in queries:
        got = normalize_query(query.raw).text
        assert got == query.normalized, f"{query.raw!r} normalizes to {got!r}"
    rng.shuffle(queries)
    return queries


def zipf_ranks(rng: random.Random, n: int, s: float, count: int) -> list[int]:
    """``count`` ranks in ``range(n)`` (0 most popular), P(rank k) proportional to 1/(k+1)^s."""
    weights = [1.0 / (k + 1) ** s for k in range(n)]
    return rng.choices(range(n), weights=weights, k=count)


# -- driving the two instances ----------------------------------------------------------------


async def _ask(
    client: httpx.AsyncClient, base_url: str, token: str, outcome: Outcome, t0: float
) -> None:
    outcome.started_s = time.monotonic() - t0
    try:
        answer = await client.get(
            base_url + "/v1/suggest",
            params={"q": outcome.raw},
            headers={"Authorization": f"Bearer {token}"},
        )
    except httpx.HTTPError as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
    else:
        outcome.status = answer.status_code
        outcome.cache = answer.headers.get("X-Cache")
        if answer.status_code == 200:
            body = answer.json()
            outcome.query, outcome.source = body.get("query"), body.get("source")
            if outcome.cache == "LOCAL":
                terms = set(normalize_query(outcome.raw).terms)
                titles = [tokenize(item["title"]) for item in body.get("items", [])]
                outcome.local_items = len(titles)
                outcome.local_relevant = sum(bool(terms & set(title)) for title in titles)
        else:
            outcome.error = answer.text[:200]
    outcome.seconds = time.monotonic() - t0 - outcome.started_s


async def _drive(
    settings: EconomySettings,
    instances: dict[str, str],
    token_env: dict[str, str],
    plan: list[Outcome],
) -> tuple[float, int | None]:
    """`_load` until done or until SIGTERM/SIGINT; returns its seconds and the signal, if any.

    A signal inside ``trio.run`` must not raise from a plain handler (that breaks trio's own
    loop, and the clean-up after it); it cancels the load instead, and the caller raises once
    trio has returned, so every child process is stopped and the Redis prefix deleted.
    """
    received: list[int] = []
    seconds = 0.0
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for signum in signals:
                    received.append(signum)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(watch)
            seconds = await _load(settings, instances, token_env, plan)
            nursery.cancel_scope.cancel()
    return seconds, received[0] if received else None


async def _load(
    settings: EconomySettings,
    instances: dict[str, str],
    token_env: dict[str, str],
    plan: list[Outcome],
) -> float:
    """Mint the users' tokens, then send ``plan`` from ``settings.concurrency`` clients."""
    tokens = await mint(Config.from_env(token_env), TOKEN_POOL_SIZE)
    rng = random.Random(settings.seed + 1)
    users = [rng.choice(tokens) for _ in plan]
    limits = httpx.Limits(max_connections=settings.concurrency * len(instances))
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        work = iter(zip(plan, users, strict=True))
        t0 = time.monotonic()

        async def client_task() -> None:
            for outcome, token in work:  # shared iterator: each request is sent once
                await _ask(client, instances[outcome.instance], token, outcome, t0)

        async with trio.open_nursery() as nursery:
            for _ in range(settings.concurrency):
                nursery.start_soon(client_task)
        return time.monotonic() - t0


# -- reading the fake's log -------------------------------------------------------------------


def read_calls(path: Path) -> list[Call]:
    """The fake YouTube's call log (one JSON object a line)."""
    calls = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                raw = json.loads(line)
                calls.append(Call(raw["t"], raw["method"], raw.get("q"), raw["status"]))
    return calls


def find_duplicates(searches: Sequence[Call], ttl_s: float) -> list[dict[str, Any]]:
    """Searches of a ``q`` made while an earlier search of it was still fresh (within ``ttl_s``)."""
    fresh_until: dict[str, float] = {}
    first_at: dict[str, float] = {}
    found = []
    for call in sorted(searches, key=lambda c: c.t):
        q = call.q or ""
        if q in fresh_until and call.t < fresh_until[q]:
            found.append({"q": q, "first_t": first_at[q], "again_t": call.t})
            continue
        fresh_until[q] = call.t + ttl_s
        first_at[q] = call.t
    return found


def _budget_figures(outcomes: Sequence[Outcome], searches: Sequence[Call]) -> dict[str, int]:
    """What the default budget would have allowed, and the requests left without an answer.

    With ``DEFAULT_DAILY_BUDGET`` searches, the first queries searched (in the order they were)
    get answers; every request for a later one would have been a 503 (nothing cached).
    """
    order = list(dict.fromkeys(c.q for c in sorted(searches, key=lambda c: c.t)))
    affordable = set(order[:DEFAULT_DAILY_BUDGET])
    normalized = {o.raw: normalize_query(o.raw).text for o in outcomes}
    unanswered = sum(1 for o in outcomes if normalized[o.raw] not in affordable)
    return {
        "budget": DEFAULT_DAILY_BUDGET,
        "searches_needed": len(order),
        "searches_allowed": min(len(order), DEFAULT_DAILY_BUDGET),
        "requests_without_answer": unanswered,
    }


def analyse(
    settings: EconomySettings, outcomes: Sequence[Outcome], calls: Sequence[Call], seconds: float
) -> Report:
    """The run's figures from the requests' outcomes and the fake's log."""
    statuses = Counter(str(o.status) if o.status else "no answer" for o in outcomes)
    x_cache = Counter(o.cache or "-" for o in outcomes)
    failures = [
        f"{o.instance} {o.raw!r}: {o.status or 'no answer'} {o.error or ''}".strip()
        for o in outcomes
        if o.status != 200
    ]
    normalized = {o.raw: normalize_query(o.raw).text for o in outcomes}
    mismatches = sum(1 for o in outcomes if o.query is not None and o.query != normalized[o.raw])
    searches = [c for c in calls if c.method == "search"]
    videos = [c for c in calls if c.method == "videos"]
    duplicates = find_duplicates(searches, TTL_S)
    return Report(
        requests=len(outcomes),
        concurrency=settings.concurrency,
        instances=dict(Counter(o.instance for o in outcomes)),
        seconds=round(seconds, 2),
        statuses=dict(statuses),
        x_cache=dict(x_cache),
        failures=failures,
        distinct_raw_asked=len({o.raw for o in outcomes}),
        distinct_normalized_asked=len(set(normalized.values())),
        normalization_mismatches=mismatches,
        upstream_searches=len(searches),
        upstream_videos_calls=len(videos),
        upstream_units=100 * len(searches) + len(videos),
        upstream_non_200=sum(1 for c in calls if c.status != 200),
        duplicate_searches=len(duplicates),
        duplicates=duplicates[:20],
        searches_needed={
            "no cache": len(outcomes),
            "cache without normalization": len({o.raw for o in outcomes}),
            "cache with normalization": len(set(normalized.values())),
        },
        default_budget=_budget_figures(outcomes, searches),
    )


def format_report(report: Report) -> str:
    """The printed summary."""
    by_instance = ", ".join(f"{k} {v:,}" for k, v in sorted(report.instances.items()))
    statuses = ", ".join(f"{k} x {v:,}" for k, v in sorted(report.statuses.items()))
    caches = ", ".join(f"{k} {v:,}" for k, v in sorted(report.x_cache.items()))
    budget = report.default_budget
    needed = report.searches_needed
    rate = report.requests / report.seconds if report.seconds else 0.0
    lines = [
        f"quota economy: {report.requests:,} requests from {report.concurrency} clients over "
        f"2 instances ({by_instance}) in {report.seconds:.1f} s ({rate:,.0f} req/s)",
        f"  workload: Zipf s={ZIPF_S} over {DISTINCT_RAW:,} raw queries "
        f"({report.distinct_raw_asked:,} asked, {report.distinct_normalized_asked:,} "
        "distinct once normalized)",
        f"  served: {statuses}",
        f"  X-Cache: {caches}",
        f"  upstream: {report.upstream_searches:,} search.list, "
        f"{report.upstream_videos_calls:,} videos.list ({report.upstream_units:,} units), "
        f"{report.upstream_non_200} not 200",
        f"  searches per distinct normalized query: "
        f"{report.upstream_searches / max(1, report.distinct_normalized_asked):.2f}; "
        f"{max(0, report.x_cache.get('MISS', 0) - report.upstream_searches):,} MISS answers "
        "shared a search another request started (same flight, or the other instance's lease)",
        f"  duplicate searches (same normalized q again within the {TTL_S} s TTL): "
        f"{report.duplicate_searches}",
        f"  searches needed: {needed['no cache']:,} without a cache, "
        f"{needed['cache without normalization']:,} caching raw queries, "
        f"{needed['cache with normalization']:,} caching normalized ones",
        f"  default budget ({budget['budget']}/day): allows {budget['searches_allowed']:,} of the "
        f"{budget['searches_needed']:,} searches needed;",
        f"    {budget['requests_without_answer']:,} of {report.requests:,} requests "
        f"({100 * budget['requests_without_answer'] / max(1, report.requests):.0f}%) "
        "would have had no answer (503) until the reset",
    ]
    if report.normalization_mismatches:
        lines.append(
            f"  warning: {report.normalization_mismatches} answers' query differs from "
            "normalize_query(q) run here"
        )
    lines += [
        f"  DUPLICATE {d['q']!r} at +{d['again_t'] - d['first_t']:.3f} s" for d in report.duplicates
    ]
    lines += [f"  FAILED {failure}" for failure in report.failures[:20]]
    if len(report.failures) > 20:
        lines.append(f"  ... and {len(report.failures) - 20} more failed requests")
    lines.append(f"  result: {'pass' if report.passed else 'FAIL'}")
    return "\n".join(lines)


# -- the run ----------------------------------------------------------------------------------


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _scratch_database_url(url: str) -> str:
    """``url`` naming a database of its own (created by the service, dropped by the caller)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/smartpip_bench_economy_{uuid.uuid4().hex[:12]}"))


class _Interrupted(Exception):
    """The run was stopped by a signal (``signum``)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _serve_day(
    settings: EconomySettings,
    plan: list[Outcome],
    stamp: str,
    tag: str,
    extra: dict[str, str],
    database_url: str,
) -> tuple[float, list[Call], dict[str, Any]]:
    """Start the fake and two instances, send ``plan``, stop them; seconds, calls, servers.

    Raises:
        StartError: A server did not start.
        _Interrupted: SIGTERM or SIGINT arrived (every child is stopped first).
    """
    results_dir = settings.results_dir
    command = smartpip_command()
    redis_prefix = fresh_prefix(tag)
    jwt_keys = "bench:" + secrets.token_urlsafe(32)
    call_log = results_dir / f"{stamp}-{tag}-youtube-calls.log"
    youtube, youtube_key = fake_youtube_process(
        f"{tag}-youtube",
        host=HOST,
        log_path=results_dir / f"{stamp}-{tag}-youtube.log",
        latency_s=settings.upstream_latency_s,
        call_log=call_log,
    )
    servers: dict[str, ServerProcess] = {}
    for name in "AB":
        port = free_port(HOST)
        env = smartpip_env(
            bind=f"{HOST}:{port}",
            database_url=database_url,
            redis_url=settings.redis_url,
            redis_prefix=redis_prefix,
            jwt_keys=jwt_keys,
            youtube_api_url=api_url(youtube),
            youtube_api_key=youtube_key,
            extra={"SMARTPIP_SUGGEST_TTL_SECONDS": str(TTL_S), **extra},
        )
        servers[name] = ServerProcess(
            f"{tag}-{name.lower()}",
            command,
            host=HOST,
            port=port,
            log_path=results_dir / f"{stamp}-{tag}-{name.lower()}.log",
            env=env,
            cwd=REPO_ROOT,
        )
    with contextlib.ExitStack() as stack:
        # Runs last: after both instances and the fake have stopped.
        stack.callback(lambda: _progress(delete_prefix(settings.redis_url, redis_prefix)))
        stack.enter_context(youtube)
        youtube.wait_ready_or_report(YOUTUBE_READY_PATH, settings.ready_timeout_s)
        # One after the other: each migrates the shared database on start.
        for server in servers.values():
            stack.enter_context(server)
            server.wait_ready_or_report("/healthz", settings.ready_timeout_s)
        instances = {name: server.base_url for name, server in servers.items()}
        seconds, signum = trio.run(_drive, settings, instances, servers["A"].env or {}, plan)
        if signum is not None:
            raise _Interrupted(signum)
    calls = read_calls(call_log)
    info = {
        "redis_prefix": redis_prefix,
        "servers": {
            server.name: {"exit_code": server.returncode, "log": str(server.log_path)}
            for server in (youtube, *servers.values())
        },
        "youtube_call_log": str(call_log),
    }
    return seconds, calls, info


def _guarded(
    run: Callable[[], tuple[float, list[Call], dict[str, Any]]],
) -> tuple[tuple[float, list[Call], dict[str, Any]] | None, int | None]:
    """``run()``, or the exit code of what stopped it (printed)."""
    try:
        return run(), None
    except StartError as exc:
        _progress(f"quota economy aborted: {exc}")
        return None, EXIT_BROKEN
    except _Interrupted as exc:
        if exc.signum == signal.SIGINT:
            _progress("interrupted; servers stopped")
            return None, 130
        _progress("terminated; servers stopped")
        raise SystemExit(128 + exc.signum) from None
    except KeyboardInterrupt:
        _progress("interrupted; servers stopped")
        return None, 130
    except Exception:  # minting tokens, the clients, the log: report, servers are stopped
        _progress(f"quota economy aborted; servers stopped\n{traceback.format_exc()}")
        return None, EXIT_BROKEN


def run_economy(settings: EconomySettings, stamp: str | None = None) -> int:
    """Make the runs and print their reports; returns the exit code.

    First the de-duplication run (budget lifted), then the same Zipf day twice with the
    default budget of 100 searches: the corpus switched off ("before"), then on ("after").
    """
    stamp = stamp or dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    results_dir = settings.results_dir
    queries = build_queries(settings.seed)
    rng = random.Random(settings.seed)
    ranks = zipf_ranks(rng, len(queries), ZIPF_S, settings.requests)
    day = [(rng.choice("AB"), queries[rank].raw) for rank in ranks]
    plan = [Outcome(instance=instance, raw=raw) for instance, raw in day]
    try:
        smartpip_command()
    except StartError as exc:
        _progress(str(exc))
        return EXIT_BROKEN

    distinct = len({q.normalized for q in queries})
    _progress(
        f"quota economy: {settings.requests:,} requests, Zipf s={ZIPF_S} over {len(queries):,} "
        f"raw queries ({distinct} normalized), {settings.concurrency} clients, 2 instances"
    )
    lifted = {"SMARTPIP_SUGGEST_DAILY_BUDGET": str(RUN_DAILY_BUDGET)}
    served, code = _guarded(
        lambda: _serve_day(settings, plan, stamp, "economy", lifted, settings.database_url)
    )
    if code is not None or served is None:
        return code or EXIT_BROKEN
    seconds, calls, info = served
    report = analyse(settings, plan, calls, seconds)
    print(format_report(report), flush=True)
    document: dict[str, Any] = {
        "timestamp": stamp,
        "settings": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
            "zipf_s": ZIPF_S,
            "distinct_raw_queries": DISTINCT_RAW,
            "daily_budget": RUN_DAILY_BUDGET,
            "ttl_s": TTL_S,
            "redis_prefix": info["redis_prefix"],
        },
        "passed": report.passed,
        **asdict(report),
        "failures": report.failures[:100],
        "servers": info["servers"],
        "youtube_call_log": info["youtube_call_log"],
    }

    budget_days: dict[str, BudgetDay] = {}
    # Before: the service as it was (no corpus, no reserve); after: its defaults.
    for label, corpus_days, reserve in (("before", "0", "0"), ("after", "30", "20")):
        _progress(
            f"budget day {label}: the same day, {DEFAULT_DAILY_BUDGET} searches, "
            f"SMARTPIP_SUGGEST_CORPUS_DAYS={corpus_days}, SMARTPIP_SUGGEST_RESERVE={reserve}"
        )
        day_plan = [Outcome(instance=instance, raw=raw) for instance, raw in day]
        extra = {
            "SMARTPIP_SUGGEST_DAILY_BUDGET": str(DEFAULT_DAILY_BUDGET),
            "SMARTPIP_SUGGEST_CORPUS_DAYS": corpus_days,
            "SMARTPIP_SUGGEST_RESERVE": reserve,
        }
        # A database of its own: no corpus rows and no saved quota day from another run.
        url = _scratch_database_url(settings.database_url)
        try:
            served, code = _guarded(
                functools.partial(
                    _serve_day, settings, day_plan, stamp, f"budget-{label}", extra, url
                )
            )
        finally:
            drop_database(url)
        if code is not None or served is None:
            return code or EXIT_BROKEN
        day_seconds, day_calls, _info = served
        budget_days[label] = budget_day(day_plan, day_calls, day_seconds)
    print(format_budget_days(budget_days), flush=True)
    passed = report.passed and budget_days["after"].met_goals
    document["budget_days"] = {label: asdict(day) for label, day in budget_days.items()}
    document["passed"] = passed
    path = results_dir / f"{stamp}-economy.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    _progress(f"wrote {path}")
    return EXIT_OK if passed else EXIT_FAILED


# -- the budget day: where answers come from with the default budget -------------------------

# The goals for the day with the corpus: under 2 % of requests without an answer, and
# at least 90 % of local answers' items holding one of the query's terms.
NO_ANSWER_GOAL = 0.02
RELEVANCE_GOAL = 0.90


@dataclass(frozen=True)
class BudgetDay:
    """Where one budget day's answers came from."""

    requests: int
    seconds: float
    youtube: int
    cache: int
    stale: int
    local: int
    no_answer: int
    no_answer_statuses: dict[str, int]
    searches: int
    local_items: int
    local_relevant: int

    @property
    def no_answer_share(self) -> float:
        return self.no_answer / max(1, self.requests)

    @property
    def relevance(self) -> float | None:
        return self.local_relevant / self.local_items if self.local_items else None

    @property
    def met_goals(self) -> bool:
        relevance = self.relevance
        return self.no_answer_share < NO_ANSWER_GOAL and (
            relevance is None or relevance >= RELEVANCE_GOAL
        )


def budget_day(outcomes: Sequence[Outcome], calls: Sequence[Call], seconds: float) -> BudgetDay:
    """The figures of one budget day."""
    by_cache = Counter(o.cache for o in outcomes if o.status == 200)
    failed = [o for o in outcomes if o.status != 200]
    return BudgetDay(
        requests=len(outcomes),
        seconds=round(seconds, 2),
        youtube=by_cache.get("MISS", 0),
        cache=by_cache.get("HIT", 0),
        stale=by_cache.get("STALE", 0),
        local=by_cache.get("LOCAL", 0),
        no_answer=len(failed),
        no_answer_statuses=dict(Counter(str(o.status) if o.status else "none" for o in failed)),
        searches=sum(1 for c in calls if c.method == "search"),
        local_items=sum(o.local_items for o in outcomes),
        local_relevant=sum(o.local_relevant for o in outcomes),
    )


def format_budget_days(days: dict[str, BudgetDay]) -> str:
    """The before/after table."""

    def share(n: int, day: BudgetDay) -> str:
        return f"{n:,} ({100 * n / max(1, day.requests):.1f}%)"

    rows: list[tuple[str, Callable[[BudgetDay], str]]] = [
        ("YouTube (MISS)", lambda d: share(d.youtube, d)),
        ("shared cache (HIT)", lambda d: share(d.cache, d)),
        ("stale copy (STALE)", lambda d: share(d.stale, d)),
        ("corpus (LOCAL)", lambda d: share(d.local, d)),
        ("no answer", lambda d: share(d.no_answer, d)),
        ("upstream searches", lambda d: f"{d.searches:,}"),
        (
            "local items holding a query term",
            lambda d: "-" if d.relevance is None else f"{100 * d.relevance:.1f}%",
        ),
    ]
    before, after = days["before"], days["after"]
    lines = [
        f"  budget day: the same {before.requests:,} requests with the default budget of "
        f"{DEFAULT_DAILY_BUDGET} searches",
        f"    {'':34}{'before':>18}{'after':>18}",
    ]
    lines += [f"    {name:34}{cell(before):>18}{cell(after):>18}" for name, cell in rows]
    lines.append(
        f"    no answer {100 * before.no_answer_share:.1f}% -> "
        f"{100 * after.no_answer_share:.1f}% (goal < {100 * NO_ANSWER_GOAL:.0f}%); local "
        f"relevance goal >= {100 * RELEVANCE_GOAL:.0f}%: "
        f"{'met' if after.met_goals else 'NOT MET'}"
    )
    return "\n".join(lines)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Unwinds like Ctrl-C so every `with` block stops its child process.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, make the run; returns the exit code."""
    defaults = EconomySettings()
    parser = argparse.ArgumentParser(prog="python -m bench.economy", description=__doc__)
    parser.add_argument("--requests", type=int, default=defaults.requests)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument(
        "--upstream-latency",
        type=float,
        default=defaults.upstream_latency_s,
        help="seconds the fake YouTube takes per call",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--database-url", default=defaults.database_url)
    parser.add_argument("--redis-url", default=defaults.redis_url)
    parser.add_argument("--results-dir", type=Path, default=defaults.results_dir)
    parser.add_argument("--ready-timeout", type=float, default=defaults.ready_timeout_s)
    parser.add_argument(
        "--warming-day",
        action="store_true",
        help="instead: the same simulated Zipf days with and without cache warming, in this "
        "process on a simulated clock (bench/warming_day.py)",
    )
    parser.add_argument(
        "--per-day", type=int, default=1500, help="--warming-day: requests a simulated day"
    )
    parser.add_argument("--days", type=int, default=2, help="--warming-day: simulated days")
    parser.add_argument(
        "--budget", type=int, default=100, help="--warming-day: searches a Pacific day"
    )
    args = parser.parse_args(argv)
    if args.warming_day:
        from bench.warming_day import WarmingDaySettings, run_warming_day

        if args.per_day < 1 or args.days < 1 or args.budget < 0:
            parser.error("--per-day and --days must be >= 1, --budget >= 0")
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        settings = WarmingDaySettings(
            redis_url=args.redis_url,
            results_dir=args.results_dir,
            requests_per_day=args.per_day,
            days=args.days,
            seed=args.seed,
            daily_budget=args.budget,
        )
        return run_warming_day(settings, stamp)
    if args.requests < 1 or args.concurrency < 1 or args.upstream_latency < 0:
        parser.error("--requests and --concurrency must be >= 1, --upstream-latency >= 0")
    signal.signal(signal.SIGTERM, _on_sigterm)
    return run_economy(
        EconomySettings(
            database_url=args.database_url,
            redis_url=args.redis_url,
            results_dir=args.results_dir,
            requests=args.requests,
            concurrency=args.concurrency,
            upstream_latency_s=args.upstream_latency,
            seed=args.seed,
            ready_timeout_s=args.ready_timeout,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
