"""What every fake upstream's raw ASGI app needs besides its routes."""

from __future__ import annotations

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable

__all__ = ["serve_lifespan"]


async def serve_lifespan(receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """Answer the lifespan protocol until shutdown (the fakes hold no resources)."""
    while True:
        event = await receive()
        if event["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif event["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
