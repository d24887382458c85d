"""Canary: is the keep-alive wedge of hypercorn's trio worker + quart-trio still upstream?

``smartpip.http.exchange`` works around it (docs/upstream-keepalive-wedge.md). This test runs a
ten-line quart-trio app on hypercorn's own ``serve``, without any of our code, and checks that
both symptoms are still there:

1. after a request Quart answered, the keep-alive idle timer is never re-armed (the idle
   connection stays open far past ``keep_alive_timeout``);
2. a request whose body arrives after the answer wedges its connection: the next request on
   it is never answered, and the connection is not closed either.

When this test fails, upstream has changed: read the report in docs/, check the versions,
and remove the workaround (the shielded final send in smartpip/http/exchange.py) once both
symptoms are gone.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from importlib import metadata

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart_trio import QuartTrio

from tests.support.rawhttp import Closed, RawConnection, request_bytes

KEEP_ALIVE = 0.2
#: Ten times the keep-alive timeout: a fixed upstream closes the idle connection long before.
#: An observation window, not a speed check: these canaries assert that something does NOT
#: happen, which only a window can show; a loaded machine can only make them report "still
#: broken" for a fixed upstream (the next run corrects it), never fail while it is broken.
OBSERVE = 2.0
VERSIONS = f"hypercorn {metadata.version('hypercorn')}, quart-trio {metadata.version('quart-trio')}"


@asynccontextmanager
async def bare_app() -> AsyncIterator[int]:
    app = QuartTrio(__name__)

    @app.route("/", methods=["GET", "POST"])
    async def index() -> str:
        return "ok"

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.keep_alive_timeout = KEEP_ALIVE
    config.accesslog = None
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, app, config, shutdown_trigger=stop.wait))
        yield int(binds[0].rsplit(":", 1)[1])
        stop.set()
        nursery.cancel_scope.deadline = trio.current_time() + 1  # wedged connections linger


async def closed_within(conn: RawConnection, seconds: float) -> bool:
    with trio.move_on_after(seconds):
        try:
            await conn.response()
        except Closed:
            return True
        raise AssertionError("unexpected answer")
    return False


async def test_upstream_still_loses_the_idle_timer_after_a_quart_request() -> None:
    async with bare_app() as port:
        conn = await RawConnection.open("127.0.0.1", port)
        try:
            await conn.send(request_bytes("GET", "/")[0])
            with trio.fail_after(5):
                assert (await conn.response()).status == 200
            assert not await closed_within(conn, OBSERVE), (
                f"{VERSIONS}: the idle connection was closed after a Quart request; upstream "
                "may have fixed the keep-alive wedge: see docs/upstream-keepalive-wedge.md"
            )
        finally:
            await conn.aclose()


async def test_upstream_still_wedges_a_connection_whose_body_follows_the_answer() -> None:
    async with bare_app() as port:
        conn = await RawConnection.open("127.0.0.1", port)
        try:
            head, body = request_bytes("POST", "/", body=b"hello")
            await conn.send(head)
            with trio.fail_after(5):
                assert (await conn.response()).status == 200
            # The client's timing, reproduced: its body leaves after the server is done with
            # the answer (the race that real clients lose by chance). A fixed sleep by design:
            # the injected timing, not a wait for a side effect.
            await trio.sleep(0.05)
            await conn.send(body + request_bytes("GET", "/")[0])
            wedged = True
            with trio.move_on_after(OBSERVE):
                with contextlib.suppress(Closed):
                    await conn.response()
                wedged = False
            assert wedged, (
                f"{VERSIONS}: the request after a late body was answered or its connection "
                "closed; upstream may have fixed the keep-alive wedge: see "
                "docs/upstream-keepalive-wedge.md"
            )
        finally:
            await conn.aclose()
