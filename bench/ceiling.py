"""The ceiling app: the fastest a request can go through hypercorn's trio worker on this box.

A bare ASGI callable (no framework, no middleware) that answers 200 ``{"status":"ok"}`` to
every HTTP request, served the way ``smartpip serve`` serves the real app:
``hypercorn.trio.serve`` inside ``trio.run``, one process, HTTP/1.1 keep-alive with hypercorn's
defaults, no access log, graceful shutdown on SIGTERM/SIGINT. The benchmark divides the service's
figures by this one's, measured in the same run, so machine speed cancels out.

Run it with ``python -m bench.ceiling --bind 127.0.0.1:8081``.
"""

from __future__ import annotations

import argparse
import json
import signal

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

__all__ = ["app", "main", "make_config"]

_BODY = json.dumps({"status": "ok"}, separators=(",", ":")).encode()
_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_BODY)).encode()),
]


async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """Answer every HTTP request with 200 and a fixed JSON body; accept lifespan."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    # Read the request body like a framework would, so POST endpoints compare fairly.
    more_body = True
    while more_body:
        message = await receive()
        more_body = message["type"] == "http.request" and message.get("more_body", False)
    await send(
        {"type": "http.response.start", "status": 200, "headers": _HEADERS, "trailers": False}
    )
    await send({"type": "http.response.body", "body": _BODY, "more_body": False})


def make_config(bind: str) -> Config:
    """Build the hypercorn config: the settings that matter for throughput match the service's."""
    config = Config()
    config.bind = [bind]
    config.workers = 1  # one process, one core: `serve` ignores workers anyway
    config.accesslog = None  # a log line per request would dominate a trivial app
    config.errorlog = "-"
    config.include_server_header = False  # as the service: a few bytes less per response
    # Keep-alive on, with hypercorn's defaults (as the service leaves them).
    config.keep_alive_timeout = Config.keep_alive_timeout
    config.keep_alive_max_requests = Config.keep_alive_max_requests
    return config


async def _until_signal() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            return


async def _serve(bind: str) -> None:
    await serve(app, make_config(bind), shutdown_trigger=_until_signal, mode="asgi")


def main(argv: list[str] | None = None) -> None:
    """Parse ``--bind`` and serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__)
    parser.add_argument("--bind", default="127.0.0.1:8081", help="host:port to listen on")
    args = parser.parse_args(argv)
    trio.run(_serve, args.bind)


if __name__ == "__main__":
    main()
