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

It also counts what clients asked of the server (:class:`Traffic`), so a test can prove that
the code under test did not ask the dependency at all, by count rather than by wall-clock
time: connections opened, bytes sent, and for Redis the commands by name. Bytes are counted
when the proxy receives them, before any fault applies: a command sent to a ``"hung"`` server
counts although it never reaches it, and a connection reset at once by ``"down"`` counts too.

Usage::

    proxy = FaultProxy("127.0.0.1", 5432)
    port = await nursery.start(proxy.run)
    proxy.mode = "down"
    with proxy.record() as asked:
        ...
    assert asked == Traffic(), f"the server was asked: {asked}"
"""

from __future__ import annotations

import contextlib
import math
import socket
import struct
from collections.abc import Iterator, Sequence
from typing import Literal, NoReturn

import attrs
import trio

__all__ = ["FaultProxy", "Mode", "Traffic"]

Mode = Literal["pass", "down", "hung", "slow"]

# Big enough that a chunk is rarely split, small enough to keep "slow" granular.
_CHUNK = 65536
# SO_LINGER with a zero timeout makes close() send RST instead of FIN.
_LINGER_RESET = struct.pack("ii", 1, 0)


@attrs.define
class Traffic:
    """What clients sent toward the server through a :class:`FaultProxy`.

    ``Traffic()`` (all zero) means the server was not asked anything.

    Attributes:
        connections: Client connections accepted (also those ``"down"`` reset at once).
        bytes: Bytes received from clients (also those ``"hung"`` holds back).
        commands: The RESP commands (Redis) among those bytes, by name in capitals
            (``"EVALSHA"``, ``"PING"``, ``"HELLO"``...); empty for other protocols.
    """

    connections: int = 0
    bytes: int = 0
    commands: list[str] = attrs.Factory(list)


class _RespCommands:
    """Splits one client's byte stream into RESP commands and names them.

    A client of Redis sends every command as an array of bulk strings
    (``*<n>\\r\\n`` then ``n`` times ``$<len>\\r\\n<bytes>\\r\\n``); a command may span chunks,
    and a bulk string may contain anything, ``*`` and CRLF included, so the stream is parsed
    rather than searched. The first bytes that are not RESP (another protocol, such as
    Postgres) stop the parsing for the connection.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._resp = True

    def feed(self, data: bytes) -> list[str]:
        """The names of the commands completed by ``data``."""
        if not self._resp:
            return []
        self._buffer += data
        names: list[str] = []
        while (name := self._next()) is not None:
            names.append(name)
        return names

    def _line(self, pos: int, marker: bytes) -> tuple[int, int] | None:
        """``(number, position after the line)`` of a ``<marker><digits>\\r\\n`` line at ``pos``."""
        if len(self._buffer) <= pos:
            return None
        if self._buffer[pos : pos + 1] != marker:
            raise ValueError("not RESP")
        end = self._buffer.find(b"\r\n", pos)
        if end < 0:
            return None
        return int(self._buffer[pos + 1 : end]), end + 2

    def _next(self) -> str | None:
        try:
            header = self._line(0, b"*")
            if header is None:
                return None
            count, pos = header
            name = ""
            for index in range(count):
                bulk = self._line(pos, b"$")
                if bulk is None:
                    return None
                size, start = bulk
                if len(self._buffer) < start + size + 2:
                    return None
                if index == 0:
                    name = self._buffer[start : start + size].decode("latin-1").upper()
                pos = start + size + 2
        except ValueError:
            self._resp = False
            self._buffer.clear()
            return None
        del self._buffer[:pos]
        return name


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
        traffic: Everything clients sent since the proxy started (see :meth:`record`).
    """

    def __init__(self, target_host: str, target_port: int, *, slow_delay: float = 0.05) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.slow_delay = slow_delay
        self.held = 0
        self.traffic = Traffic()
        self._recorders: list[Traffic] = [self.traffic]
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

    @contextlib.contextmanager
    def record(self) -> Iterator[Traffic]:
        """Count what clients send during the block (the yielded :class:`Traffic` fills up)."""
        traffic = Traffic()
        self._recorders.append(traffic)
        try:
            yield traffic
        finally:
            self._recorders.remove(traffic)

    def _count(
        self, *, connections: int = 0, data: bytes = b"", commands: Sequence[str] = ()
    ) -> None:
        for traffic in self._recorders:
            traffic.connections += connections
            traffic.bytes += len(data)
            traffic.commands += commands

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
        self._count(connections=1)
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
                    nursery.start_soon(self._pump, client, server, scope, _RespCommands())
                    nursery.start_soon(self._pump, server, client, scope, None)
            finally:
                self._links.discard(link)
                client.socket.close()
                server.socket.close()

    async def _pump(
        self,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        scope: trio.CancelScope,
        commands: _RespCommands | None,
    ) -> None:
        """Read ``source`` as bytes arrive (counting the client's) and forward them in order.

        Reading never waits for the gate, so what a client sends to a ``"hung"`` server is
        still received and counted (held in memory, then delivered in order).
        """
        to_sink, from_source = trio.open_memory_channel[bytes](math.inf)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._forward, from_source, sink, scope)
            try:
                async with to_sink:
                    while data := await source.receive_some(_CHUNK):
                        if commands is not None:
                            self._count(data=data, commands=commands.feed(data))
                        to_sink.send_nowait(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                # Either side going away ends the whole link.
                scope.cancel()

    async def _forward(
        self,
        chunks: trio.MemoryReceiveChannel[bytes],
        sink: trio.SocketStream,
        scope: trio.CancelScope,
    ) -> None:
        try:
            async for data in chunks:
                await self._gate()
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            # The source's end (once its bytes are delivered) or a broken sink ends the link.
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
