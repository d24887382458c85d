"""Every request has a deadline (SMARTPIP_REQUEST_TIMEOUT): past it, 503 and the connection
is released, whatever the request was waiting for."""

from __future__ import annotations

import json

import trio

from tests.app.conftest import make_config, running_app
from tests.app.test_keepalive import ANSWER_DEADLINE, address, open_connections
from tests.support.faultproxy import FaultProxy
from tests.support.polling import eventually
from tests.support.rawhttp import RawConnection, request_bytes


async def test_a_request_stuck_on_a_hung_database_ends_at_the_deadline(
    pg_url: str, redis_prefix: str, pg_proxy: FaultProxy
) -> None:
    config = make_config(
        pg_url.replace(":5432/", f":{pg_proxy.port}/"),
        redis_prefix,
        # The database layer would wait a minute; the request deadline is what must end it.
        db_acquire_timeout="60",
        db_statement_timeout_ms="60000",
        request_timeout="1",
        suggest_wait_seconds="0.5",
        body_timeout="0.5",
        # The health monitor would find the hang after its 1 s probe timeout and fail the
        # request as "Postgres is down" about when the deadline ends it: keep it minutes away.
        health_interval="300",
    )
    async with running_app(config, probes=True) as app:
        assert (await app.client.get("/test/db")).status_code == 200
        pg_proxy.mode = "hung"
        conn = await RawConnection.open(*address(app))
        try:
            await conn.send(request_bytes("GET", "/test/db")[0])
            with trio.fail_after(ANSWER_DEADLINE):
                response = await conn.response()
                assert response.status == 503, response.body
                body = json.loads(response.body)
                assert body["code"] == "deadline_exceeded"
                assert body["retryable"] is True
                assert body["retryAfter"] == int(response.headers["retry-after"])
                assert "1 s" in body["detail"]
                # The connection is released, not left to the stuck query.
                assert response.closes
                assert await conn.closed_by_server()
            # Other requests are served meanwhile.
            assert (await app.client.get("/healthz")).status_code == 200
        finally:
            await conn.aclose()
            pg_proxy.mode = "pass"
        await eventually(lambda: open_connections(app) <= 1)  # the test client's own
        assert (await app.client.get("/test/db")).status_code == 200
