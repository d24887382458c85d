"""Keep-alive connections are always answered or closed, never wedged (issue 9).

The defect this guards against: a route that answered before the server had read the whole
request body (most routes, on any status) left its keep-alive connection with no request
stream: the next request on it was read but never answered, the server's socket stayed in
CLOSE-WAIT, and the idle timer was never re-armed. Root cause and workaround:
``docs/upstream-keepalive-wedge.md``; the fix: :mod:`smartpip.http.exchange`.

The soak sends, over reused connections, to every operation of the OpenAPI document (plus an
unknown path and a wrong method), with and without a valid token, bodies the handler does not
read: with the head (Content-Length and chunked), and after the answer (head, answer, then
body and the next request). Every request must get an answer; a connection may only end after
an answer that said ``Connection: close``. Afterwards no server socket is left in CLOSE-WAIT
and no connection is left open.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import Counter
from urllib.parse import urlsplit

import trio

from smartpip.http.public import load_openapi
from tests.app.conftest import AppFactory, RunningApp
from tests.history.conftest import KEY, sign_in
from tests.support.polling import eventually
from tests.support.rawhttp import Closed, RawConnection, RawResponse, request_bytes
from tests.support.sockets import tcp_states

#: A body no handler expects: routes that read it refuse it, the others ignore it.
BODY = b'{"unexpected": true}'
#: How long the client waits for an answer to a head sent without its body before sending
#: the body anyway (routes that read the body only answer after it). Either way is valid.
EARLY_ANSWER_WAIT = 0.05
#: Bound on any single read: a request left unanswered this long is the wedge.
ANSWER_DEADLINE = 10
WORKERS = 4
ROUNDS = 4
_PARAM = re.compile(r"\{[^}]+\}")
_EXAMPLES = {"{provider}": "youtube", "{videoId}": "dQw4w9WgXcQ"}


def operations() -> list[tuple[str, str]]:
    """Every (method, path) of the contract, path parameters filled, plus two unroutable."""
    document = json.loads(load_openapi())
    ops = [
        (method.upper(), _PARAM.sub(lambda m: _EXAMPLES[m.group(0)], path))
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]
    return [*ops, ("GET", "/no/such/route"), ("PUT", "/v1/status")]


def json_headers(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` plus a JSON content type, so that routes taking a body wait for it."""
    return {**headers, "Content-Type": "application/json"}


def address(app: RunningApp) -> tuple[str, int]:
    url = urlsplit(app.url)
    assert url.hostname is not None and url.port is not None
    return url.hostname, url.port


def open_connections(app: RunningApp) -> int:
    """The server's ``http_connections_open`` gauge."""
    for line in app.resources.metrics.render().decode().splitlines():
        if line.startswith("http_connections_open "):
            return int(float(line.split()[1]))
    raise AssertionError("http_connections_open is not exported")


class Soak:
    """Drives one client connection after another and counts what happened."""

    def __init__(self, host: str, port: int, token_headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.token_headers = token_headers
        self.outcomes: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self._conn: RawConnection | None = None

    async def _connection(self) -> RawConnection:
        if self._conn is None:
            self._conn = await RawConnection.open(self.host, self.port)
            self.outcomes["connections"] += 1
        else:
            self.outcomes["reused"] += 1
        return self._conn

    async def _drop(self) -> None:
        if self._conn is not None:
            await self._conn.aclose()
            self._conn = None

    def _answered(self, response: RawResponse) -> None:
        self.statuses[response.status] += 1
        self.outcomes["answered"] += 1

    async def _send(self, conn: RawConnection, data: bytes) -> bool:
        """Write; False when the server had already closed (after announcing it)."""
        try:
            await conn.send(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def with_body(
        self, method: str, path: str, headers: dict[str, str], chunked: bool
    ) -> None:
        """Head and unread body together, then (if kept) the connection is reused."""
        conn = await self._connection()
        head, body = request_bytes(
            method, path, headers=json_headers(headers), body=BODY, chunked=chunked
        )
        assert await self._send(conn, head + body), "the server closed a kept-alive connection"
        with trio.fail_after(ANSWER_DEADLINE):
            response = await conn.response()
        self._answered(response)
        if response.closes:
            await self._drop()

    async def head_then_body(self, method: str, path: str, headers: dict[str, str]) -> None:
        """Head; answer (or not yet); then the body followed by the next request."""
        conn = await self._connection()
        head, body = request_bytes(method, path, headers=json_headers(headers), body=BODY)
        follow_head, _ = request_bytes("GET", "/v1/status")
        assert await self._send(conn, head), "the server closed a kept-alive connection"
        early: RawResponse | None = None
        with trio.move_on_after(EARLY_ANSWER_WAIT):
            early = await conn.response()
        if early is None:
            # The route waits for its body: send it, then the answer, then reuse.
            assert await self._send(conn, body)
            with trio.fail_after(ANSWER_DEADLINE):
                response = await conn.response()
            self._answered(response)
            self.outcomes["answered_after_body"] += 1
            if response.closes:
                await self._drop()
            return
        self._answered(early)
        # Answered before its body arrived: the server must say it closes, and close; the
        # request that follows the body must never be answered on this connection.
        assert early.closes, f"{method} {path} answered early without Connection: close"
        await self._send(conn, body + follow_head)
        with trio.fail_after(ANSWER_DEADLINE), contextlib.suppress(Closed):
            assert await conn.closed_by_server()
        self.outcomes["closed_after_early_answer"] += 1
        await self._drop()

    async def run(self, ops: list[tuple[str, str]]) -> None:
        try:
            for method, path in ops:
                for authed in (False, True):
                    # Deleting the account would turn the rest of the soak into 401s.
                    headers = self.token_headers if authed and path != "/v1/me" else {}
                    await self.with_body(method, path, headers, chunked=False)
                    await self.with_body(method, path, headers, chunked=True)
                    await self.head_then_body(method, path, headers)
        finally:
            with trio.CancelScope(shield=True):
                await self._drop()


async def test_every_request_on_a_kept_alive_connection_is_answered(
    app_factory: AppFactory,
) -> None:
    async with app_factory(
        jwt_keys=KEY,
        rate_limit_auth="100000/1m",
        rate_limit_user="100000/1m",
        rate_limit_writes="100000/1m",
    ) as app:
        user = await sign_in(app, "soak")
        host, port = address(app)
        soaks = [Soak(host, port, user.headers) for _ in range(WORKERS)]
        ops = operations()
        async with trio.open_nursery() as nursery:
            for soak in soaks:
                nursery.start_soon(soak.run, ops * ROUNDS)
        outcomes = sum((soak.outcomes for soak in soaks), Counter[str]())
        statuses = sum((soak.statuses for soak in soaks), Counter[int]())
        requests = WORKERS * ROUNDS * len(ops) * 2 * 3
        assert outcomes["answered"] == requests, (outcomes, statuses)
        # The soak did exercise both paths and real keep-alive reuse.
        assert outcomes["reused"] > requests // 3, outcomes
        assert outcomes["closed_after_early_answer"] > 0, outcomes
        assert outcomes["answered_after_body"] > 0, outcomes
        assert statuses[500] == 0, statuses

        async def all_released() -> bool:
            return "CLOSE_WAIT" not in tcp_states(port) and open_connections(app) == 0

        await eventually(all_released, within=10)


async def test_idle_connections_close_after_the_timeout_also_after_a_quart_request(
    app_factory: AppFactory,
) -> None:
    async with app_factory(keepalive_timeout="0.5") as app:
        host, port = address(app)
        # /v1/status is answered by Quart (the wedge cancelled the idle timer of exactly those);
        # /healthz by the middleware alone.
        for path in ("/v1/status", "/healthz", "/no/such/route"):
            conn = await RawConnection.open(host, port)
            try:
                await conn.send(request_bytes("GET", path)[0])
                with trio.fail_after(ANSWER_DEADLINE):
                    assert not (await conn.response()).closes
                    assert await conn.closed_by_server(), path
            finally:
                await conn.aclose()


async def test_a_stalled_request_head_is_cut_off_also_after_a_request(
    app_factory: AppFactory,
) -> None:
    async with app_factory(keepalive_timeout="0.5") as app:
        conn = await RawConnection.open(*address(app))
        try:
            await conn.send(request_bytes("GET", "/v1/status")[0])
            with trio.fail_after(ANSWER_DEADLINE):
                await conn.response()
                await conn.send(b"GET /v1/status HTTP/1.1\r\nHo")  # and nothing more
                assert await conn.closed_by_server()
        finally:
            await conn.aclose()


async def test_content_length_with_transfer_encoding_is_refused_and_closed(
    app: RunningApp,
) -> None:
    conn = await RawConnection.open(*address(app))
    hidden = b"GET /v1/status HTTP/1.1\r\nHost: test\r\n\r\n"
    smuggled = (
        b"POST /test/echo HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(5 + len(hidden)).encode() + b"\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden
    )
    try:
        await conn.send(smuggled)
        with trio.fail_after(ANSWER_DEADLINE):
            response = await conn.response()
            assert response.status == 400
            assert response.closes
            body = json.loads(response.body)
            assert body["code"] == "invalid_request"
            assert "Transfer-Encoding" in body["detail"]
            # The request hidden after the chunked body is never answered.
            assert await conn.closed_by_server()
    finally:
        await conn.aclose()


async def test_a_body_that_does_not_arrive_in_time_is_a_408_and_closes(
    app_factory: AppFactory,
) -> None:
    async with app_factory(probes=True, body_timeout="0.5") as app:
        conn = await RawConnection.open(*address(app))
        head, _body = request_bytes(
            "POST", "/test/echo", headers={"Content-Type": "application/json"}, body=b"{}" * 50
        )
        try:
            await conn.send(head + b"{")  # one byte of the hundred promised
            with trio.fail_after(ANSWER_DEADLINE):
                response = await conn.response()
                assert response.status == 408, response.body
                assert json.loads(response.body)["code"] == "request_timeout"
                assert response.closes
                assert await conn.closed_by_server()
        finally:
            await conn.aclose()
