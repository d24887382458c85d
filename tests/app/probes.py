"""Test-only routes mounted beside the API to exercise the shared HTTP machinery."""

from __future__ import annotations

from collections.abc import AsyncIterator

import trio
from quart import Blueprint, Response, request

from smartpip.http.jsonbody import read_json
from smartpip.runtime.resources import Resources
from store.postgres import query_ping


def probe_blueprint(resources: Resources, release: trio.Event | None = None) -> Blueprint:
    """``POST /test/echo`` parses JSON strictly; ``/test/boom`` fails; ``/test/db`` queries;
    ``/test/redis`` pings Redis; ``/test/slow`` waits for ``release`` (a request kept in flight);
    ``/test/big`` streams 64 MiB."""
    bp = Blueprint("probes", __name__, url_prefix="/test")

    @bp.post("/echo")
    async def echo() -> dict[str, object]:
        return {"echo": await read_json(request)}

    @bp.get("/boom")
    async def boom() -> dict[str, object]:
        raise RuntimeError("secret internal detail")

    @bp.get("/db")
    async def db() -> dict[str, object]:
        await resources.db.run(query_ping)
        return {"db": "ok"}

    @bp.get("/redis")
    async def redis() -> dict[str, object]:
        await resources.redis.ping()
        return {"redis": "ok"}

    @bp.get("/big")
    async def big() -> Response:
        # 64 MiB in 1 MiB chunks: more than any socket buffer, for clients that stop reading.
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(64):
                yield b"x" * (1 << 20)

        return Response(chunks(), content_type="application/octet-stream")

    @bp.get("/slow")
    async def slow() -> dict[str, object]:
        assert release is not None
        await release.wait()
        return {"slow": "done"}

    return bp
