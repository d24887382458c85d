"""Database-bound load on `smartpip serve`: concurrent history writers, and Postgres going away.

``python -m bench.dbload burst`` starts the service (its own process, the default pool settings
unless ``--env`` overrides them) and runs ``--writers`` clients, each posting
``--per-writer`` watched videos to ``POST /v1/history`` one after the other, spread over
``--users`` users (1: every writer on the same user, whose writes Postgres serializes on the
user's row lock; the worst case for the pool). It prints the answers by status and the latency
percentiles, and exits 1 when any write was not a 200.

``python -m bench.dbload outage`` puts a fault proxy (``tests/support/faultproxy.py``) between
the service and Postgres and breaks it (``--mode down``: connections reset; ``hung``: nothing
forwarded). One client keeps asking for ``--window`` seconds from the moment of the fault
(``transition``: how many requests, how many waited longer than 0.1 s for their 503, and
until when); once ``/readyz`` reports Postgres down, ``--requests`` requests go one after the
other and then in parallel (how long each 503 took); finally Postgres is let through again
(how long until the first 200).

Both print one JSON document with every figure on the last line. Needs Postgres and Redis as in
development; the service creates the database ``--database`` when missing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import trio

from bench.scratch import delete_prefix, fresh_prefix
from bench.servers import DEFAULT_READY_TIMEOUT_S, ServerProcess, free_port, plan_pinning
from bench.service import smartpip_command, smartpip_env
from bench.tokens import mint
from smartpip.config import Config
from tests.support.faultproxy import FaultProxy

RESULTS = Path(__file__).parent / "results"
PG_HOST, PG_PORT = "127.0.0.1", 5432
# A database of its own: history rows of earlier runs stay out of other benches' way.
DEFAULT_DATABASE = "smartpip_bench_dbload"
# Well past any wait the service may impose (query timeout 6 s): a missing answer is a failure
# of the service, never of this client.
CLIENT_TIMEOUT_S = 30.0
# A 503 faster than this did not wait for the pool (a pool wait lasts its acquire timeout).
FAST_S = 0.1
#: Requests that got no answer, by the client's exception.
ERRORS: Counter[str] = Counter()


def video(writer: int, n: int) -> dict[str, str]:
    """A distinct valid history entry per writer and request."""
    video_id = f"w{writer:03d}n{n:06d}"[:11].ljust(11, "x")
    return {
        "provider": "youtube",
        "videoId": video_id,
        "title": f"writer {writer} video {n}",
        "url": f"https://www.youtube.com/watch?v={video_id}",
    }


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max of ``samples`` (seconds) in milliseconds."""
    if not samples:
        return {}
    ordered = sorted(samples)
    pick: Callable[[float], float] = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(pick(0.95) * 1000, 1),
        "p99_ms": round(pick(0.99) * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


async def timed(client: httpx.AsyncClient, method: str, path: str, **kw: Any) -> tuple[int, float]:
    """Send one request; its status (0: no answer) and its duration."""
    started = time.perf_counter()
    try:
        response = await client.request(method, path, **kw)
    except httpx.TransportError as exc:
        ERRORS[type(exc).__name__] += 1
        return 0, time.perf_counter() - started
    return response.status_code, time.perf_counter() - started


async def burst(args: argparse.Namespace, base_url: str, tokens: list[str]) -> dict[str, Any]:
    """``--writers`` closed-loop writers; statuses and latencies of every write."""
    statuses: Counter[int] = Counter()
    durations: list[float] = []
    limits = httpx.Limits(max_connections=args.writers, max_keepalive_connections=args.writers)
    async with httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT_S, limits=limits) as c:

        async def writer(w: int) -> None:
            headers = {"Authorization": f"Bearer {tokens[w % len(tokens)]}"}
            for n in range(args.per_writer):
                status, took = await timed(
                    c, "POST", "/v1/history", json=video(w, n), headers=headers
                )
                statuses[status] += 1
                durations.append(took)

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for w in range(args.writers):
                nursery.start_soon(writer, w)
        elapsed = time.perf_counter() - started
    total = sum(statuses.values())
    return {
        "writes": total,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "failed_pct": round(100 * (total - statuses[200]) / total, 2),
        "writes_per_s": round(total / elapsed, 1),
        **percentiles(durations),
    }


async def wait_for(client: httpx.AsyncClient, check: Callable[[httpx.Response], bool]) -> float:
    """Poll ``/readyz`` until ``check`` holds; the seconds it took."""
    started = time.perf_counter()
    with trio.fail_after(30):
        while True:
            if check(await client.get("/readyz")):
                break
            await trio.sleep(0.02)
    return time.perf_counter() - started


async def outage(
    args: argparse.Namespace, base_url: str, token: str, proxy: FaultProxy
) -> dict[str, Any]:
    """Requests while Postgres goes ``--mode`` and stays so, then the time to the first 200
    after it returns."""
    headers = {"Authorization": f"Bearer {token}"}
    out: dict[str, Any] = {"mode": args.mode}
    async with httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT_S) as c:
        assert (await c.get("/v1/history", headers=headers)).status_code == 200
        # One client keeps asking while the fault starts: how long do 503s keep waiting?
        transition: list[tuple[float, int, float]] = []
        proxy.mode = args.mode
        fault_at = time.perf_counter()
        with trio.move_on_after(args.window):
            while True:
                offset = time.perf_counter() - fault_at
                transition.append((offset, *await timed(c, "GET", "/v1/history", headers=headers)))
        slow = [(offset, took) for offset, _, took in transition if took > FAST_S]
        out["transition"] = {
            "window_s": args.window,
            "requests": len(transition),
            "statuses": dict(Counter(str(s) for _, s, _ in transition)),
            "slow": len(slow),
            "last_slow_started_at_s": round(slow[-1][0], 3) if slow else None,
            **percentiles([took for _, _, took in transition]),
        }
        out["readyz_down_after_s"] = round(await wait_for(c, lambda r: r.status_code == 503), 3)
        sequential = [
            await timed(c, "GET", "/v1/history", headers=headers) for _ in range(args.requests)
        ]
        parallel: list[tuple[int, float]] = []
        async with trio.open_nursery() as nursery:
            for _ in range(args.requests):

                async def one() -> None:
                    parallel.append(await timed(c, "GET", "/v1/history", headers=headers))

                nursery.start_soon(one)
        for name, results in (("sequential", sequential), ("parallel", parallel)):
            out[name] = {
                "statuses": dict(Counter(str(s) for s, _ in results)),
                **percentiles([d for _, d in results]),
            }
        proxy.mode = "pass"
        started = time.perf_counter()
        with trio.fail_after(30):
            while True:
                if (await timed(c, "GET", "/v1/history", headers=headers))[0] == 200:
                    break
                await trio.sleep(0.01)
        out["first_200_after_s"] = round(time.perf_counter() - started, 3)
    return out


async def run(args: argparse.Namespace, redis_prefix: str) -> dict[str, Any]:
    """Start the proxy (outage only) and the service, mint tokens, run the scenario."""
    jwt_keys = "bench:" + secrets.token_urlsafe(32)
    port = free_port()
    async with trio.open_nursery() as nursery:
        proxy = FaultProxy(PG_HOST, PG_PORT)
        pg_port = await nursery.start(proxy.run) if args.scenario == "outage" else PG_PORT
        database_url = f"postgresql://postgres@{PG_HOST}:{pg_port}/{args.database}"
        extra = dict(item.split("=", 1) for item in args.env)
        env = smartpip_env(
            bind=f"127.0.0.1:{port}",
            database_url=database_url,
            redis_url=args.redis_url,
            redis_prefix=redis_prefix,
            jwt_keys=jwt_keys,
            youtube_api_url="http://127.0.0.1:9/",
            youtube_api_key="unused",
            extra=extra,
        )
        log = RESULTS / f"dbload-{args.scenario}-service.log"
        command = [*plan_pinning(args.pin).server_prefix, *smartpip_command()]
        with ServerProcess(
            "smartpip", command, host="127.0.0.1", port=port, log_path=log, env=env
        ) as server:
            await trio.to_thread.run_sync(server.wait_ready, "/readyz", DEFAULT_READY_TIMEOUT_S)
            config = Config.from_env(
                {"SMARTPIP_DATABASE_URL": database_url, "SMARTPIP_JWT_KEYS": jwt_keys}
            )
            tokens = await mint(config, args.users)
            if args.scenario == "burst":
                result = await burst(args, server.base_url, tokens)
            else:
                result = await outage(args, server.base_url, tokens[0], proxy)
        nursery.cancel_scope.cancel()
    settings = {k: v for k, v in vars(args).items() if k != "redis_url"}
    return {"settings": settings, **result, "no_answer": dict(ERRORS)}


def main() -> int:
    """Parse the arguments, run, print the figures; 1 if a burst write failed."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenario", choices=("burst", "outage"))
    parser.add_argument("--writers", type=int, default=50)
    parser.add_argument("--per-writer", type=int, default=20)
    parser.add_argument("--users", type=int, default=1)
    parser.add_argument("--mode", choices=("down", "hung"), default="down")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="do not pin the service to one core"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="SMARTPIP_X=value",
        help="extra service environment",
    )
    args = parser.parse_args()
    redis_prefix = fresh_prefix("dbload")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            result = trio.run(run, args, redis_prefix)
            print(json.dumps(result))
            return 1 if args.scenario == "burst" and result["failed_pct"] > 0 else 0
        return 2
    finally:
        print(delete_prefix(args.redis_url, redis_prefix), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
