"""Benchmark `smartpip serve` against the bare-ASGI ceiling, in one run, with wrk.

Starts the ceiling app (`bench.ceiling`) and the service as child processes on free ports, pinned
to one core (see `bench.servers`), waits until both answer ``/healthz``, then for the ceiling and
each endpoint of `bench.endpoints.ENDPOINTS`: runs the setup hook, warms up, and drives it with wrk
at a fixed connection count. Prints a table (req/s, p50/p95/p99, errors, ratio to the ceiling,
budget, verdict), writes the figures to ``bench/results/<UTC stamp>.json`` and ``latest.json``,
and exits 1 when a budget is missed or any request failed, 2 when the run could not be made.

The service's suggest talks to a fake YouTube the run starts first (`bench.fake_youtube`), and
the service keeps its Redis keys under a prefix of the run's own, deleted at the end. After the
table, a full run (no ``--only``) also makes the quota-economy run (`bench.economy`) and the
local-answer run over a 100,000-video corpus (`bench.corpus`).

Usage: ``python -m bench.run [--duration 10] [--connections 32] [--only /healthz]``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from bench import corpus, economy
from bench.endpoints import CEILING, ENDPOINTS, Endpoint, SetupContext
from bench.fake_youtube import api_url, fake_youtube_process
from bench.report import Row, format_table, judge, write_results
from bench.scratch import delete_prefix, fresh_prefix
from bench.servers import (
    DEFAULT_READY_TIMEOUT_S,
    EXIT_BROKEN,
    EXIT_FAILED,
    EXIT_OK,
    Pinning,
    ServerProcess,
    StartError,
    free_port,
    plan_pinning,
)
from bench.service import smartpip_command, smartpip_env
from bench.wrk import WRK_TIMEOUT, WrkError, WrkResult, ensure_wrk, lua_script, run_wrk, wrk_version

__all__ = ["main"]

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
HOST = "127.0.0.1"
READY_PATH = "/healthz"

# 10 s per endpoint gives ~10k requests at the ~1k req/s a single trio core serves: enough
# samples for a stable p99 (~100 in the tail) while the whole run stays well under a minute.
DEFAULT_DURATION_S = 10
# 2 s fills hypercorn's connection set, Python's caches and the service's pools before counting.
DEFAULT_WARMUP_S = 2
# 32 connections saturate one core with queueing visible in the tail, match the figures in
# docs (architecture: "wrk -c32"), and stay under hypercorn's listen backlog of 100.
DEFAULT_CONNECTIONS = 32
# Two wrk threads on the load core: wrk needs far less than a core at these rates.
DEFAULT_THREADS = 2
# Setup hooks make a few plain requests to a service that is up; 10 s is a hang, not slowness.
SETUP_TIMEOUT_S = 10.0


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Drive smartpip with wrk and compare it with a bare-ASGI ceiling.",
    )
    parser.add_argument("--duration", type=int, default=DEFAULT_DURATION_S, help="seconds each")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP_S, help="seconds each")
    parser.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="wrk threads")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="ENDPOINT",
        help="drive only this endpoint (path or table name; repeatable); the ceiling always runs",
    )
    parser.add_argument(
        "--service-cmd",
        help="command to start instead of `smartpip serve`; placeholders {python} {bind} {port}",
    )
    parser.add_argument(
        "--database-url", default="postgresql://postgres@127.0.0.1:5432/smartpip_bench"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--ready-timeout", type=float, default=DEFAULT_READY_TIMEOUT_S)
    parser.add_argument("--no-pin", action="store_true", help="do not pin to cores (taskset)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--economy",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also make the quota-economy and corpus runs after the table (default: only "
        "without --only)",
    )
    args = parser.parse_args(argv)
    if args.duration < 1 or args.warmup < 0:
        parser.error("--duration must be >= 1 and --warmup >= 0")
    if not 1 <= args.threads <= args.connections:
        parser.error("wrk needs 1 <= --threads <= --connections")
    known = {e.label for e in ENDPOINTS} | {e.path for e in ENDPOINTS}
    unknown = [name for name in args.only if name not in known]
    if unknown:
        parser.error(f"unknown endpoint(s) {unknown}; known: {sorted(known)}")
    return args


def _select(only: Sequence[str]) -> list[Endpoint]:
    return [e for e in ENDPOINTS if not only or e.label in only or e.path in only]


def _service_command(template: str | None, bind: str, port: int) -> list[str]:
    if template is not None:
        fields = {"python": sys.executable, "bind": bind, "port": str(port)}
        return [part.format(**fields) for part in shlex.split(template)]
    return smartpip_command()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Unwinds like Ctrl-C so every `with` block stops its child process.
    raise SystemExit(128 + signum)


class _Bench:
    """One run: the settings, the two servers, a scratch dir for wrk scripts."""

    def __init__(self, args: argparse.Namespace, wrk: str, pinning: Pinning, tmp: Path) -> None:
        self.args = args
        self.wrk = wrk
        self.pinning = pinning
        self.tmp = tmp
        self._scripts = 0

    def drive(
        self, server: ServerProcess, endpoint: Endpoint, headers: dict[str, str]
    ) -> WrkResult:
        self._scripts += 1
        script = self.tmp / f"endpoint-{self._scripts}.lua"
        script.write_text(lua_script(endpoint.method, headers, endpoint.body, endpoint.lua))
        url = server.base_url + endpoint.path
        common: dict[str, Any] = {
            "connections": self.args.connections,
            "threads": self.args.threads,
            "prefix": self.pinning.wrk_prefix,
        }
        if self.args.warmup:
            run_wrk(self.wrk, url, script, duration_s=self.args.warmup, **common)
        return run_wrk(self.wrk, url, script, duration_s=self.args.duration, **common)

    def measure(self, server: ServerProcess, endpoint: Endpoint, ceiling: WrkResult) -> Row:
        problems: list[str] = []
        result = _empty_result()
        headers = dict(endpoint.headers)
        try:
            if endpoint.setup is not None:
                with httpx.Client(timeout=SETUP_TIMEOUT_S) as client:
                    headers.update(
                        endpoint.setup(SetupContext(server.base_url, client, server.env or {}))
                    )
        except Exception as exc:  # a hook is plain user code: report it, keep the table
            problems.append(f"setup hook failed: {type(exc).__name__}: {exc}")
        else:
            try:
                result = self.drive(server, endpoint, headers)
            except (WrkError, OSError) as exc:
                problems.append(f"could not be measured: {exc}")
        return judge(
            label=endpoint.label,
            target="service",
            method=endpoint.method,
            path=endpoint.path,
            result=result,
            ceiling=ceiling,
            budget=endpoint.budget,
            problems=problems,
        )


def _empty_result() -> WrkResult:
    return WrkResult(0, 0.0, 0.0, 0.0, None, 0.0, 0.0, 0, 0, 0, 0, 0, "none")


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _git_revision() -> str | None:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the process exit code."""
    args = _parse_args(argv)
    endpoints = _select(args.only)
    try:
        wrk = ensure_wrk()
    except WrkError as exc:
        _progress(str(exc))
        return EXIT_BROKEN
    pinning = plan_pinning(enabled=not args.no_pin)
    now = dt.datetime.now(dt.UTC)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    results_dir: Path = args.results_dir
    signal.signal(signal.SIGTERM, _on_sigterm)
    _progress(f"pinning: {pinning.note}")

    ceiling_port, service_port = free_port(HOST), free_port(HOST)
    ceiling_bind, service_bind = f"{HOST}:{ceiling_port}", f"{HOST}:{service_port}"
    try:
        service_cmd = _service_command(args.service_cmd, service_bind, service_port)
    except StartError as exc:
        _progress(str(exc))
        return EXIT_BROKEN
    redis_prefix = fresh_prefix("wrk")
    youtube, youtube_key = fake_youtube_process(
        "youtube", host=HOST, log_path=results_dir / f"{stamp}-youtube.log"
    )
    service_env = smartpip_env(
        bind=service_bind,
        database_url=args.database_url,
        redis_url=args.redis_url,
        redis_prefix=redis_prefix,
        jwt_keys="bench:" + secrets.token_urlsafe(32),
        youtube_api_url=api_url(youtube),
        youtube_api_key=youtube_key,
    )
    ceiling = ServerProcess(
        "ceiling",
        [*pinning.server_prefix, sys.executable, "-m", "bench.ceiling", "--bind", ceiling_bind],
        host=HOST,
        port=ceiling_port,
        log_path=results_dir / f"{stamp}-ceiling.log",
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=REPO_ROOT,
    )
    service = ServerProcess(
        "service",
        [*pinning.server_prefix, *service_cmd],
        host=HOST,
        port=service_port,
        log_path=results_dir / f"{stamp}-service.log",
        env=service_env,
        cwd=REPO_ROOT,
    )

    rows: list[Row] = []
    try:
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
            # Exit callbacks run last first: the prefix goes once the service has stopped.
            stack.callback(lambda: _progress(delete_prefix(args.redis_url, redis_prefix)))
            stack.enter_context(ceiling)
            # The fake YouTube answers before the service starts (suggest's upstream).
            stack.enter_context(youtube)
            youtube.wait_ready_or_report(READY_PATH, args.ready_timeout)
            stack.enter_context(service)
            ceiling.wait_ready_or_report(READY_PATH, args.ready_timeout)
            service.wait_ready_or_report(READY_PATH, args.ready_timeout)
            bench = _Bench(args, wrk, pinning, tmp)
            total = (len(endpoints) + 1) * (args.duration + args.warmup)
            _progress(f"servers ready; about {total} s of load follows")

            _progress(f"{CEILING.label}: {ceiling.base_url}{CEILING.path}")
            reference = bench.drive(ceiling, CEILING, dict(CEILING.headers))
            rows.append(
                judge(
                    label=CEILING.label,
                    target="ceiling",
                    method=CEILING.method,
                    path=CEILING.path,
                    result=reference,
                    ceiling=reference,
                    budget=None,
                )
            )
            for endpoint in endpoints:
                _progress(f"{endpoint.label}: {service.base_url}{endpoint.path}")
                rows.append(bench.measure(service, endpoint, reference))
    except (StartError, WrkError) as exc:
        _progress(f"benchmark aborted: {exc}")
        if rows:
            print(format_table(rows))
        return EXIT_BROKEN
    except KeyboardInterrupt:
        _progress("interrupted; servers stopped")
        return 130
    except SystemExit:
        _progress("terminated; servers stopped")
        raise

    passed = not any(row.failed for row in rows)
    print(format_table(rows))
    if service.returncode not in (0, None):
        _progress(f"warning: the service exited {service.returncode} on SIGTERM (see its log)")
    document: dict[str, Any] = {
        "timestamp": now.isoformat(timespec="seconds"),
        "git_revision": _git_revision(),
        "passed": passed,
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "threads": args.threads,
            "wrk_timeout": WRK_TIMEOUT,
        },
        "wrk": wrk_version(wrk),
        "pinning": {
            "pinned": pinning.pinned,
            "note": pinning.note,
            "server": list(pinning.server_prefix),
            "wrk": list(pinning.wrk_prefix),
        },
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "servers": {
            server.name: {
                "command": server.command,
                "exit_code": server.returncode,
                "log": str(server.log_path),
            }
            for server in (ceiling, youtube, service)
        },
        "redis_prefix": redis_prefix,
        "results": [row.to_json() for row in rows],
    }
    for path in write_results(document, results_dir, stamp):
        _progress(f"wrote {path}")
    code = EXIT_OK if passed else EXIT_FAILED
    if args.economy or (args.economy is None and not args.only):
        settings = economy.EconomySettings(
            database_url=args.database_url,
            redis_url=args.redis_url,
            results_dir=results_dir,
            ready_timeout_s=args.ready_timeout,
        )
        # The worse of the two: broken (2) over failed (1) over passed (0); 130 if interrupted.
        code = max(code, economy.run_economy(settings, stamp))
        code = max(
            code,
            corpus.run_corpus_bench(
                args.database_url,
                corpus.DEFAULT_VIDEOS,
                corpus.DEFAULT_QUERIES,
                results_dir,
                corpus.P99_BUDGET_MS,
            ),
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
