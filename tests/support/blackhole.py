"""A loopback port where TCP connects hang, like a host that drops SYNs."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["blackhole_port"]


@contextmanager
def blackhole_port() -> Iterator[int]:
    """Yield a 127.0.0.1 port whose accept queue is full, so new connects never complete.

    Linux drops SYNs for a listener whose accept queue is full; with a backlog of 0 one
    connection (made here and never accepted) fills it.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        filler.connect(("127.0.0.1", port))
        yield port
    finally:
        filler.close()
        listener.close()
