"""`smartpip serve --workers N` for real: one socket, N replicas, drained as one; a busy port;
responses that close their connection while the process drains."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from tests.support.polling import eventually, wait_exit
from tests.support.rawhttp import RawConnection, request_bytes
from tests.test_serve import free_port, get, readiness_is, service_env, wait_until_serving

pytestmark = pytest.mark.subprocess

KEYS = "k1:" + "k" * 40
# Long enough that a loaded machine sees the drain; the tests that drain take about this long.
DRAIN = 2.5


def children(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(word) for word in text.split()]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@contextmanager
def serve_workers(env: dict[str, str], workers: str, log: Path) -> Iterator[subprocess.Popen[str]]:
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "smartpip.cli", "serve", "--workers", workers],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        kids: list[int] = []
        try:
            yield process
        finally:
            kids = children(process.pid)
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
            for pid in kids:  # the workers stop once the parent is gone; never leave one
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


async def n_children(pid: int, count: int) -> bool:
    return len(children(pid)) == count


async def refused(base: str) -> bool:
    """Whether a new connection is refused. A connection that was queued when the socket shut
    down is reset instead: not refused yet, and not served either (poll again)."""
    try:
        await get(base + "/healthz")
    except httpx.ConnectError:
        return True
    except httpx.TransportError:
        return False
    return False


async def answered(base: str) -> bool:
    return (await get(base + "/healthz")).status_code == 200


def test_a_busy_port_is_one_line_and_exit_2(redis_prefix: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = service_env("postgresql://localhost/x", redis_prefix, port, jwt_keys=KEYS)
        result = subprocess.run(
            [sys.executable, "-m", "smartpip.cli", "serve", "--workers", "2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in line


async def test_workers_share_the_socket_restart_and_drain_as_one(
    pg_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(pg_url, redis_prefix, port, jwt_keys=KEYS, drain_seconds=str(DRAIN))
    with serve_workers(env, "2", tmp_path / "serve.log") as parent:
        await wait_until_serving(base, parent)
        await eventually(partial(n_children, parent.pid, 2), within=30)
        first, second = children(parent.pid)
        # Each worker accepts on the one socket: with either stopped, the other answers.
        for stopped in (first, second):
            os.kill(stopped, signal.SIGSTOP)
            try:
                for _ in range(3):
                    assert await answered(base)
            finally:
                os.kill(stopped, signal.SIGCONT)
        # A crashed worker is replaced; the other serves meanwhile.
        os.kill(first, signal.SIGKILL)
        assert await answered(base)

        async def replaced() -> bool:
            kids = children(parent.pid)
            return len(kids) == 2 and first not in kids

        await eventually(replaced, within=30)
        await wait_until_serving(base, parent)
        workers = children(parent.pid)
        parent.send_signal(signal.SIGTERM)
        await eventually(partial(readiness_is, base, 503), within=DRAIN)
        assert await answered(base)  # still serving inside the drain window
        await eventually(partial(refused, base), within=20)
        await wait_exit(parent, within=30)
    assert parent.returncode == 0, (tmp_path / "serve.log").read_text()[-3000:]
    assert not any(alive(pid) for pid in workers)
    log = (tmp_path / "serve.log").read_text()
    assert "worker exited; restarting" in log
    assert "Traceback" not in log


async def test_workers_stop_when_the_parent_is_killed(
    pg_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    port = free_port()
    env = service_env(pg_url, redis_prefix, port, jwt_keys=KEYS, drain_seconds="0")
    with serve_workers(env, "2", tmp_path / "serve.log") as parent:
        await wait_until_serving(f"http://127.0.0.1:{port}", parent)
        await eventually(partial(n_children, parent.pid, 2), within=30)
        workers = children(parent.pid)
        parent.kill()
        parent.wait(timeout=10)

        async def all_gone() -> bool:
            return not any(alive(pid) for pid in workers)

        await eventually(all_gone, within=30)


async def test_responses_close_their_connection_while_draining(
    pg_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """A proxy's pooled keep-alive connection is closed after its current response once the
    drain begins, so the proxy stops sending requests to a process about to stop; and a
    stopping process exits as soon as it is idle (graceful time 300 s)."""
    port = free_port()
    env = service_env(
        pg_url,
        redis_prefix,
        port,
        jwt_keys=KEYS,
        drain_seconds=str(DRAIN),
        graceful_timeout="300",
    )
    with serve_workers(env, "1", tmp_path / "serve.log") as process:
        await wait_until_serving(f"http://127.0.0.1:{port}", process)
        conn = await RawConnection.open("127.0.0.1", port)
        try:
            await conn.send(request_bytes("GET", "/v1/status")[0])
            with trio.fail_after(10):
                before = await conn.response()
            assert before.status == 200 and not before.closes
            process.send_signal(signal.SIGTERM)
            await eventually(partial(readiness_is, f"http://127.0.0.1:{port}", 503), within=DRAIN)
            await conn.send(request_bytes("GET", "/v1/status")[0])
            with trio.fail_after(10):
                during = await conn.response()
            assert during.status == 200 and during.closes
            with trio.fail_after(10):
                assert await conn.closed_by_server()
        finally:
            await conn.aclose()
        await wait_exit(process, within=30)
    assert process.returncode == 0


def test_workers_option(capsys: pytest.CaptureFixture[str]) -> None:
    from smartpip.cli import _parser
    from smartpip.runtime.workers import cpu_count

    assert _parser().parse_args(["serve"]).workers == 1
    assert _parser().parse_args(["serve", "--workers", "3"]).workers == 3
    assert _parser().parse_args(["serve", "--workers", "auto"]).workers == cpu_count()
    assert cpu_count() == len(os.sched_getaffinity(0))
    for bad in ("0", "two"):
        with pytest.raises(SystemExit) as refused:
            _parser().parse_args(["serve", "--workers", bad])
        assert refused.value.code == 2
    assert "--workers" in capsys.readouterr().err
