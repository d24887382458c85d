"""The project's nginx configuration, run for real in front of real `smartpip serve` processes.

nginx (Debian's nginx-light, installed by `.ci/run`) runs in the foreground with a temporary
prefix; the api replicas are `smartpip serve` on loopback ports. 127.0.0.1 plays Cloudflare's
edge (added to the trusted ranges), 127.0.0.2 any other peer.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from tests.deploy.nginx import Nginx, run_nginx
from tests.support.polling import wait_exit
from tests.test_serve import free_port, service_env, wait_until_serving

pytestmark = pytest.mark.subprocess

KEYS = "k1:" + "k" * 40
# Sign-in configured (nothing here reaches the issuer): /v1/auth/oidc/start answers 200 with
# the per-address RateLimit headers the address tests read.
SIGN_IN = {
    "oidc_issuer": "http://127.0.0.1:9",
    "oidc_client_id": "test-client",
    "oidc_client_secret": "s" * 40,
}
EDGE, STRANGER = "127.0.0.1", "127.0.0.2"


def client(nginx: Nginx, source: str = EDGE) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=source, verify=False)
    return httpx.AsyncClient(base_url=nginx.base, transport=transport, timeout=20)


class Replica:
    """One `smartpip serve` on a fixed loopback port, restartable on the same port."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.port = int(env["SMARTPIP_BIND"].rsplit(":", 1)[1])
        self.process: subprocess.Popen[str] | None = None
        self.start()

    def start(self) -> None:
        with self.log.open("a") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "smartpip.cli", "serve"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )

    async def ready(self) -> None:
        await wait_until_serving(f"http://127.0.0.1:{self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def lines(self) -> list[dict[str, object]]:
        text = self.log.read_text()
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@contextmanager
def replicas(
    count: int, pg_url: str, redis_prefix: str, tmp_path: Path, **extra: str
) -> Iterator[list[Replica]]:
    with ExitStack() as stack:
        started = []
        for index in range(count):
            env = service_env(pg_url, redis_prefix, free_port(), jwt_keys=KEYS, **extra)
            replica = Replica(env, tmp_path / f"api-{index}.log")
            stack.callback(replica.stop)
            started.append(replica)
        yield started


@pytest.fixture
def edge(pg_url: str, redis_prefix: str, tmp_path: Path) -> Iterator[tuple[Nginx, list[Replica]]]:
    with (
        replicas(1, pg_url, redis_prefix, tmp_path, **SIGN_IN) as api,
        run_nginx(tmp_path / "nginx", [r.port for r in api], free_port(), free_port()) as (
            nginx,
            _process,
        ),
    ):
        yield nginx, api


async def test_requests_are_proxied_and_ops_routes_hidden(
    edge: tuple[Nginx, list[Replica]],
) -> None:
    nginx, api = edge
    await api[0].ready()
    async with client(nginx) as http:
        status = await http.get("/v1/status")
        assert status.status_code == 200
        assert set(status.json()["features"]) == {"signIn", "history", "suggest", "playlist"}
        assert (await http.get("/healthz")).status_code == 200
        # Straight to the api these answer; through nginx they do not exist, however spelt.
        direct = f"http://127.0.0.1:{api[0].port}"
        async with httpx.AsyncClient(timeout=10) as plain:
            assert (await plain.get(direct + "/metrics")).status_code == 200
        for path in (
            "/metrics",
            "/metrics/",
            "/METRICS",
            "/%6Detrics",
            "//metrics",
            "/./metrics",
            "/v1/../metrics",
            "/v1/%2e%2e/metrics",
            "/ops/supervisors",
            "/ops%2Fsupervisors",
            "/%6Fps/supervisors",
            "/v1/%2E%2E/ops/supervisors",
            "/x/../ops/supervisors",
        ):
            answer = await http.get(path)
            assert answer.status_code == 404, path
            assert answer.headers["content-type"] == "application/problem+json", path
            body = answer.json()
            assert body["status"] == 404 and body["code"] == "not_found", path
            assert body["requestId"] == answer.headers["x-request-id"], path
        # http:// is sent to https://
        async with httpx.AsyncClient(timeout=10) as plain:
            moved = await plain.get(f"http://127.0.0.1:{nginx.http_port}/v1/status")
        assert moved.status_code == 301
        assert moved.headers["location"].startswith("https://")


def remaining(answer: httpx.Response) -> int:
    """What is left of the caller's sign-in bucket (``RateLimit: "auth";r=N;t=S``)."""
    fields = dict(part.split("=", 1) for part in answer.headers["ratelimit"].split(";")[1:])
    return int(fields["r"])


async def test_cf_connecting_ip_is_believed_only_from_the_edge(
    edge: tuple[Nginx, list[Replica]],
) -> None:
    nginx, api = edge
    await api[0].ready()
    async with client(nginx, EDGE) as through_edge:
        # Three users behind one edge: three buckets, each full.
        for user in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
            answer = await through_edge.post(
                "/v1/auth/oidc/start", headers={"CF-Connecting-IP": user}
            )
            assert answer.status_code == 200
            assert remaining(answer) == 19, user
    async with client(nginx, STRANGER) as direct:
        # Anyone else cannot pick an address: one bucket for the peer, whatever it claims.
        seen = []
        for user in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
            answer = await direct.post(
                "/v1/auth/oidc/start",
                headers={"CF-Connecting-IP": user, "X-Forwarded-For": user},
            )
            seen.append(remaining(answer))
    assert seen == [19, 18, 17]


async def test_request_ids_logs_errors_and_gzip(edge: tuple[Nginx, list[Replica]]) -> None:
    nginx, api = edge
    await api[0].ready()
    async with client(nginx) as http:
        kept = await http.get("/v1/status?q=secret-query", headers={"X-Request-ID": "req-12345"})
        assert kept.headers["x-request-id"] == "req-12345"
        replaced = await http.get("/v1/status", headers={"X-Request-ID": "bad id <script>"})
        generated = replaced.headers["x-request-id"]
        assert generated != "bad id <script>" and len(generated) == 32
        # nginx's own errors: problem+json with the request ID.
        too_big = await http.post(
            "/v1/history", content=b"x" * 20_000, headers={"X-Request-ID": "req-big"}
        )
        assert too_big.status_code == 413
        assert too_big.headers["content-type"] == "application/problem+json"
        assert too_big.json()["requestId"] == "req-big"
        huge = await http.get(
            "/v1/status", headers={"X-Padding": "p" * 20_000, "X-Request-ID": "req-huge"}
        )
        assert huge.status_code == 400
        assert huge.headers["content-type"] == "application/problem+json"
        assert huge.json()["code"] == "invalid_request"
        # The api's own errors pass untouched.
        missing = await http.get("/v1/nothing-here")
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
        # JSON is compressed, except sign-in answers.
        document = await http.get("/v1/openapi.json", headers={"Accept-Encoding": "gzip"})
        assert document.headers["content-encoding"] == "gzip"
        assert document.json()["openapi"].startswith("3.1")
        small = await http.get("/v1/status", headers={"Accept-Encoding": "gzip"})
        assert small.headers["content-encoding"] == "gzip"  # above the (lowered) minimum
        signin = await http.post("/v1/auth/oidc/start", headers={"Accept-Encoding": "gzip"})
        assert signin.status_code == 200 and len(signin.content) > 64
        assert "content-encoding" not in signin.headers
    app_ids = {line.get("request_id") for line in api[0].lines() if line.get("event") == "request"}
    assert {"req-12345", generated} <= app_ids
    access = [json.loads(line) for line in nginx.access_log().splitlines()]
    logged = {entry["request_id"] for entry in access}
    assert {"req-12345", generated, "req-big"} <= logged
    assert "secret-query" not in nginx.access_log()
    assert all(entry["client_net"] == "127.0.0.0/24" for entry in access)
    assert all("?" not in entry["path"] for entry in access)


async def test_upstream_down_and_flood_are_problem_json_with_retry_after(
    tmp_path: Path,
) -> None:
    closed = [free_port(), free_port()]  # nothing listens there
    with run_nginx(tmp_path / "nginx", closed, free_port(), free_port()) as (nginx, _process):
        async with client(nginx) as http:
            down = await http.get("/v1/status", headers={"X-Request-ID": "req-down"})
            assert down.status_code == 502
            assert down.headers["retry-after"] == "5"
            assert down.json() == {
                "type": "about:blank",
                "title": "Bad Gateway",
                "status": 502,
                "code": "upstream_error",
                "requestId": "req-down",
            }
            statuses: list[httpx.Response] = []

            async def burst() -> None:
                for _ in range(10):
                    statuses.append(await http.get("/v1/status"))

            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(burst)
        limited = [r for r in statuses if r.status_code == 429]
        # 200 requests far faster than 20 a second with a burst of 40: most are refused.
        assert len(limited) >= 100
        assert limited[0].headers["retry-after"] == "1"
        assert limited[0].json()["code"] == "rate_limited"


async def test_a_rolling_restart_under_load_fails_no_request(
    pg_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    with (
        replicas(2, pg_url, redis_prefix, tmp_path, drain_seconds="1", **SIGN_IN) as api,
        run_nginx(tmp_path / "nginx", [r.port for r in api], free_port(), free_port()) as (
            nginx,
            _process,
        ),
    ):
        for replica in api:
            await replica.ready()
        outcomes: list[int | str] = []
        done = trio.Event()
        # (count, event): set once that many requests have been answered.
        waiting: list[tuple[int, trio.Event]] = []

        async def steady_load(user: int) -> None:
            """One user through the edge at about 10 requests a second (under nginx's
            per-address limit of 20): reads, and every fourth a POST, which nginx never sends
            twice (a fresh address each, under the api's sign-in limit of 20 a minute)."""
            sent = 0
            async with client(nginx) as http:
                while not done.is_set():
                    sent += 1
                    try:
                        if sent % 4:
                            answer = await http.get(
                                "/v1/status", headers={"CF-Connecting-IP": f"203.0.113.{user}"}
                            )
                        else:
                            answer = await http.post(
                                "/v1/auth/oidc/start",
                                headers={"CF-Connecting-IP": f"198.18.{user}.{sent // 4 % 250}"},
                            )
                        outcomes.append(answer.status_code)
                    except httpx.TransportError as error:
                        outcomes.append(repr(error))
                    await trio.sleep(0.1)
                    for count, event in waiting:
                        if len(outcomes) >= count:
                            event.set()

        async def traffic(more: int) -> None:
            event = trio.Event()
            waiting.append((len(outcomes) + more, event))
            with trio.fail_after(30):
                await event.wait()

        async with trio.open_nursery() as nursery:
            for user in range(1, 9):
                nursery.start_soon(steady_load, user)
            for replica in api:
                assert replica.process is not None
                replica.process.send_signal(signal.SIGTERM)
                await wait_exit(replica.process, within=30)
                assert replica.process.returncode == 0
                replica.start()
                await replica.ready()
                await traffic(50)  # both replicas serve again before the next stops
            done.set()
    failures = [outcome for outcome in outcomes if outcome != 200]
    assert failures == [], failures[:10]
    assert len(outcomes) > 100


async def test_only_idempotent_requests_are_retried_on_the_next_replica(
    pg_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """One upstream reads each request and hangs up without answering (a replica dying
    mid-request). nginx tries the other replica for a GET; a POST, which may have been acted
    on, is never sent twice: 502."""

    async def hang_up(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)  # the request arrived...
        await stream.aclose()  # ...and no answer comes

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(partial(trio.serve_tcp, hang_up, 0, host="127.0.0.1"))
        dropper = listener.socket.getsockname()[1]
        with (
            replicas(1, pg_url, redis_prefix, tmp_path, **SIGN_IN) as api,
            run_nginx(tmp_path / "nginx", [dropper, api[0].port], free_port(), free_port()) as (
                nginx,
                _process,
            ),
        ):
            await api[0].ready()
            async with client(nginx) as http:
                gets = [(await http.get("/v1/status")).status_code for _ in range(6)]
                posts = [(await http.post("/v1/auth/oidc/start")).status_code for _ in range(6)]
        nursery.cancel_scope.cancel()
    assert gets == [200] * 6
    # Round robin sends some POSTs to the dropper first: those fail, the others are answered.
    assert 502 in posts and 200 in posts
    assert set(posts) == {200, 502}
