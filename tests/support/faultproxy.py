"""A loopback TCP proxy for fault injection in tests.

The shared Postgres and Redis servers must never be stopped, so tests put a ``FaultProxy``
between the code under test and the real server, and break the proxy instead:

- ``"pass"``: forward bytes both ways.
- ``"down"``: reset (RST) every open connection at once; new connections are accepted and reset
  immediately, which a client sees like a refused or dropped connection.
- ``"hung"``: keep connections open but forward nothing in either direction, like a server
  stopped with SIGSTOP. Bytes read meanwhile are held and delivered when the mode returns to
  ``"pass"`` or ``"slow"`` (like SIGCONT).
- ``"slow"``: forward, waiting ``slow_delay`` seconds before each chunk.

Usage::

    proxy = FaultProxy("127.0.0.1", 5432)
    port = await nursery.start(proxy.run)
    proxy.mode = "down"
"""

from __future__ import annotations

import contextlib
import socket
import struct
from typing import Literal, NoReturn

import attrs
import trio

__all__ = ["FaultProxy", "Mode"]

Mode = Literal["pass", "down", "hung", "slow"]

# Big enough that a chunk is rarely split, small enough to keep "slow" granular.
_CHUNK = 65536
# SO_LINGER with a zero timeout makes close() send RST instead of FIN.
_LINGER_RESET = struct.pack("ii", 1, 0)


@attrs.define(eq=False)
class _Link:
    """One proxied connection: the client side, the server side, and their task's scope."""

    client: trio.SocketStream
    server: trio.SocketStream | None
    scope: trio.CancelScope

    def reset(self) -> None:
        """Abort both sides with RST and stop the link's tasks (sync, effective at once)."""
        for stream in (self.client, self.server):
            if stream is not None:
                _reset(stream)
        self.scope.cancel()


def _reset(stream: trio.SocketStream) -> None:
    # The socket may already be closed; resetting twice is harmless.
    with contextlib.suppress(OSError):
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    stream.socket.close()


class FaultProxy:
    """Forwards 127.0.0.1:<ephemeral> to ``target_host:target_port`` with switchable faults.

    Attributes:
        slow_delay: Seconds waited before forwarding each chunk in ``"slow"`` mode.
        held: Number of chunks currently held back by ``"hung"`` mode (lets tests wait until
            a request has really reached the proxy instead of sleeping).
    """

    def __init__(self, target_host: str, target_port: int, *, slow_delay: float = 0.05) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.slow_delay = slow_delay
        self.held = 0
        self._mode: Mode = "pass"
        self._mode_changed = trio.Event()
        self._links: set[_Link] = set()
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The listening port (only after ``run`` has started)."""
        if self._port is None:
            raise RuntimeError("FaultProxy is not running")
        return self._port

    @property
    def mode(self) -> Mode:
        """The current fault mode; setting it takes effect at once."""
        return self._mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        self._mode = mode
        if mode == "down":
            for link in list(self._links):
                link.reset()
        self._mode_changed.set()
        self._mode_changed = trio.Event()

    async def run(
        self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Listen and proxy until cancelled; ``task_status.started`` gets the port."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        sock = listeners[0].socket
        self._port = sock.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, self._handle, listeners)
            task_status.started(self.port)
            await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _handle(self, client: trio.SocketStream) -> None:
        if self._mode == "down":
            _reset(client)
            return
        try:
            server = await trio.open_tcp_stream(self.target_host, self.target_port)
        except OSError:
            _reset(client)
            return
        with trio.CancelScope() as scope:
            link = _Link(client, server, scope)
            self._links.add(link)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, client, server, scope)
                    nursery.start_soon(self._pump, server, client, scope)
            finally:
                self._links.discard(link)
                client.socket.close()
                server.socket.close()

    async def _pump(
        self, source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope
    ) -> None:
        try:
            while data := await source.receive_some(_CHUNK):
                await self._gate()
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            # Either side going away ends the whole link.
            scope.cancel()

    async def _gate(self) -> None:
        """Wait until the current mode lets a chunk through."""
        while True:
            mode = self._mode
            if mode == "pass":
                return
            if mode == "slow":
                await trio.sleep(self.slow_delay)
                return
            if mode == "down":
                raise trio.ClosedResourceError("proxy is down")
            self.held += 1
            try:
                await self._mode_changed.wait()
            finally:
                self.held -= 1
