"""Connections are bounded: a cap with a clear refusal past it, and writes that must progress."""

from __future__ import annotations

import json
import socket

import trio

from tests.app.conftest import AppFactory
from tests.app.test_keepalive import ANSWER_DEADLINE, address, open_connections
from tests.support.polling import eventually
from tests.support.rawhttp import RawConnection, request_bytes


def refused_total(metrics_text: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith("http_connections_refused_total "):
            return float(line.split()[1])
    raise AssertionError("http_connections_refused_total is not exported")


async def test_past_the_connection_limit_a_new_connection_gets_a_503_at_once(
    app_factory: AppFactory,
) -> None:
    async with app_factory(max_connections="3", keepalive_timeout="30") as app:
        await app.client.aclose()  # its pooled connection would count against the limit
        host, port = address(app)
        held = [await RawConnection.open(host, port) for _ in range(3)]
        try:
            for conn in held:  # each really is being served
                await conn.send(request_bytes("GET", "/healthz")[0])
                with trio.fail_after(ANSWER_DEADLINE):
                    assert (await conn.response()).status == 200
            await eventually(lambda: open_connections(app) == 3)

            extra = await RawConnection.open(host, port)
            try:
                await extra.send(request_bytes("GET", "/v1/status")[0])
                with trio.fail_after(ANSWER_DEADLINE):
                    refusal = await extra.response()
                    assert refusal.status == 503
                    assert refusal.closes
                    assert refusal.headers["content-type"] == "application/problem+json"
                    body = json.loads(refusal.body)
                    assert body["code"] == "service_unavailable"
                    assert "connection limit" in body["detail"]
                    assert body["retryable"] is True
                    assert body["retryAfter"] == int(refusal.headers["retry-after"]) == 1
                    assert await extra.closed_by_server()
            finally:
                await extra.aclose()
            assert refused_total(app.resources.metrics.render().decode()) == 1

            await held.pop().aclose()  # one slot frees up: new connections are served again
            await eventually(lambda: open_connections(app) == 2)
            again = await RawConnection.open(host, port)
            try:
                await again.send(request_bytes("GET", "/healthz")[0])
                with trio.fail_after(ANSWER_DEADLINE):
                    assert (await again.response()).status == 200
            finally:
                await again.aclose()
        finally:
            for conn in held:
                await conn.aclose()


async def test_a_client_that_stops_reading_is_dropped_after_the_send_timeout(
    app_factory: AppFactory,
) -> None:
    async with app_factory(probes=True, send_timeout="0.5") as app:
        host, port = address(app)
        # A small receive window, and a client that never reads: the 64 MiB answer stalls.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        try:
            await stream.socket.connect((host, port))
            await stream.send_all(request_bytes("GET", "/test/big")[0])
            await eventually(lambda: open_connections(app) == 1)
            # hypercorn's writes are shielded from cancellation: without a send timeout this
            # connection would hold its task forever. With it, the server lets go.
            await eventually(lambda: open_connections(app) == 0, within=15)
            assert (await app.client.get("/healthz")).status_code == 200
        finally:
            await stream.aclose()
