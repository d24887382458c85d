"""The whole process: `smartpip serve` for real, graceful shutdown, startup refusals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import httpx
import psycopg
import pytest
import trio
from quart import Blueprint

from smartpip.config import Config
from smartpip.http.tokens import AccessTokens, JwtKey
from smartpip.runtime.main import main
from tests.conftest import ADMIN_URL, REDIS_URL, url_for
from tests.support.polling import eventually, wait_exit
from tests.support.rawhttp import RawConnection, request_bytes

pytestmark = pytest.mark.subprocess

# The drain window of the shutdown tests: readiness must be seen flipped inside it (after it,
# connections are refused). Long enough that a loaded machine cannot miss it; the shutdown
# tests take about this long.
DRAIN = 2.5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_env(pg_url: str, redis_prefix: str, port: int, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SMARTPIP_BIND": f"127.0.0.1:{port}",
        "SMARTPIP_DATABASE_URL": pg_url,
        "SMARTPIP_REDIS_URL": REDIS_URL,
        "SMARTPIP_REDIS_PREFIX": redis_prefix,
        "SMARTPIP_HEALTH_INTERVAL": "0.2",
    }
    env.update({f"SMARTPIP_{k.upper()}": v for k, v in extra.items()})
    return env


@contextmanager
def serve_process(env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "smartpip.cli", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


async def get(url: str) -> httpx.Response:
    """One request on a fresh connection (no keep-alive reuse between calls)."""
    async with httpx.AsyncClient(timeout=5) as client:
        return await client.get(url)


async def wait_until_serving(base: str, process: subprocess.Popen[str] | None = None) -> None:
    async def serving() -> bool:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"exited early: {process.communicate()[1][-2000:]}")
        try:
            return (await get(base + "/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    await eventually(serving, within=30)


async def readiness_is(base: str, status: int) -> bool:
    return (await get(base + "/readyz")).status_code == status


async def refused(base: str) -> bool:
    try:
        await get(base + "/healthz")
    except httpx.ConnectError:
        return True
    return False


async def test_sigterm_drains_then_exits_0(pg_url: str, redis_prefix: str) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(pg_url, redis_prefix, port, drain_seconds=str(DRAIN))
    with serve_process(env) as process:
        await wait_until_serving(base, process)
        process.send_signal(signal.SIGTERM)
        # Readiness flips inside the drain window, while the server still serves (seen below);
        # past the window connections are refused, so the poll cannot outlive it. The window is
        # long enough that a loaded machine cannot miss it; how fast it flips is not measured.
        await eventually(partial(readiness_is, base, 503), within=DRAIN)
        assert (await get(base + "/readyz")).json()["status"] == "draining"
        assert (await get(base + "/healthz")).status_code == 200  # still serving
        await wait_exit(process, within=20)
        stderr = process.communicate()[1]
    assert process.returncode == 0, stderr[-2000:]
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert any(line.get("event") == "shutdown requested; draining" for line in lines)
    assert any(line.get("event") == "request" and line.get("route") == "/readyz" for line in lines)


async def test_second_signal_exits_at_once(pg_url: str, redis_prefix: str) -> None:
    port = free_port()
    env = service_env(pg_url, redis_prefix, port, drain_seconds="60")
    with serve_process(env) as process:
        await wait_until_serving(f"http://127.0.0.1:{port}", process)
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGINT)
        await wait_exit(process, within=10)  # far less than the 60 s drain window
    assert process.returncode == 1


async def test_a_stopping_process_exits_as_soon_as_it_is_idle(
    pg_url: str, redis_prefix: str
) -> None:
    """Idle keep-alive connections (left by requests Quart answered, whose idle timer the
    keep-alive wedge used to cancel) close at once on shutdown: the process does not wait for
    its 300 s grace time."""
    port = free_port()
    env = service_env(pg_url, redis_prefix, port, drain_seconds="0", graceful_timeout="300")
    with serve_process(env) as process:
        await wait_until_serving(f"http://127.0.0.1:{port}", process)
        held = [await RawConnection.open("127.0.0.1", port) for _ in range(5)]
        try:
            for conn in held:
                await conn.send(request_bytes("GET", "/v1/status")[0])
                with trio.fail_after(10):
                    assert (await conn.response()).status == 200
            process.send_signal(signal.SIGTERM)
            for conn in held:  # the server closes them, without a request
                with trio.fail_after(30):
                    assert await conn.closed_by_server()
            await wait_exit(process, within=30)
        finally:
            for conn in held:
                await conn.aclose()
    assert process.returncode == 0


async def test_request_in_flight_completes_during_shutdown(pg_url: str, redis_prefix: str) -> None:
    """SIGTERM while a request is in flight: it completes with 200, new connections are
    refused after the drain window, and main() returns 0."""
    entered, release = trio.Event(), trio.Event()
    slow = Blueprint("slow", __name__)

    @slow.get("/test/slow")
    async def slow_route() -> dict[str, str]:
        entered.set()
        await release.wait()
        return {"slow": "done"}

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = Config.from_env(service_env(pg_url, redis_prefix, port, drain_seconds=str(DRAIN)))
    outcome: dict[str, object] = {}

    async def run_main() -> None:
        outcome["status"] = await main(config, extra=[slow])

    async def slow_request() -> None:
        outcome["slow"] = await get(base + "/test/slow")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_main)
        await wait_until_serving(base)
        nursery.start_soon(slow_request)
        await entered.wait()
        os.kill(os.getpid(), signal.SIGTERM)
        await eventually(partial(readiness_is, base, 503), within=DRAIN)  # inside the window
        # after the drain window, new connections are refused
        await eventually(partial(refused, base), within=10)
        release.set()
    response = outcome["slow"]
    assert isinstance(response, httpx.Response)
    assert response.status_code == 200
    assert response.json() == {"slow": "done"}
    assert outcome["status"] == 0


@pytest.fixture
def scratch_db() -> Iterator[str]:
    name = f"smartpip_scratch_{os.getpid()}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    yield url_for(name)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smartpip.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_migrate_creates_the_database_and_is_idempotent(scratch_db: str, redis_prefix: str) -> None:
    env = service_env(scratch_db, redis_prefix, 0)
    first = run_cli("migrate", env=env)
    assert first.returncode == 0, first.stderr
    second = run_cli("migrate", env=env)
    assert second.returncode == 0, second.stderr
    assert '"versions": [1' in first.stderr or '"versions":[1' in first.stderr.replace(" ", "")
    assert "no pending migrations" in second.stderr
    with psycopg.connect(scratch_db) as conn:
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        }
    assert {"users", "video_history", "settings", "sessions", "audit_logs"} <= tables


def test_changed_applied_migration_stops_startup(scratch_db: str, redis_prefix: str) -> None:
    env = service_env(scratch_db, redis_prefix, free_port())
    assert run_cli("migrate", env=env).returncode == 0
    with psycopg.connect(scratch_db) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'tampered' WHERE version = 1")
    result = run_cli("serve", env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "0001" in result.stderr and "changed" in result.stderr


def test_unreachable_postgres_stops_startup_with_a_message(redis_prefix: str) -> None:
    env = service_env(f"postgresql://postgres@127.0.0.1:{free_port()}/x", redis_prefix, 0)
    result = run_cli("serve", env=env)
    assert result.returncode == 1
    assert "cannot start" in result.stderr
    assert "Traceback" not in result.stderr


def test_dev_token_mints_a_verifiable_token(pg_url: str, redis_prefix: str) -> None:
    keys = "k1:" + "a" * 40
    env = service_env(pg_url, redis_prefix, 0, jwt_keys=keys)
    result = run_cli("token", "--sub", "alice", env=env)
    assert result.returncode == 0, result.stderr
    claims = AccessTokens([JwtKey("k1", b"a" * 40)]).verify(result.stdout.strip())
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT oidc_iss, oidc_sub FROM users WHERE id = %s", (claims.user_id,))
        assert row.fetchone() == ("urn:smartpip:dev", "alice")
    again = run_cli("token", "--sub", "alice", env=env)
    assert (
        AccessTokens([JwtKey("k1", b"a" * 40)]).verify(again.stdout.strip()).user_id
        == claims.user_id
    )


def test_dev_token_refusals(pg_url: str, redis_prefix: str) -> None:
    production = service_env(
        pg_url, redis_prefix, 0, env="production", jwt_keys="k1:" + "a" * 40, sign_in="disabled"
    )
    refused = run_cli("token", "--sub", "alice", env=production)
    assert refused.returncode == 2
    assert "--force" in refused.stderr and refused.stdout == ""
    forced = run_cli("token", "--sub", "alice", "--force", env=production)
    assert forced.returncode == 0, forced.stderr
    no_keys = run_cli("token", "--sub", "alice", env=service_env(pg_url, redis_prefix, 0))
    assert no_keys.returncode == 2
    assert "SMARTPIP_JWT_KEYS" in no_keys.stderr
