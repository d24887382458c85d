"""The HTTP server: hypercorn's HTTP/1.1 protocol code under our own accept loop.

hypercorn's ``worker_serve`` accepts every connection it is offered and hands the raw socket
stream to its protocol code, which shields its writes from cancellation. That leaves two ways
for one client to hold the process: open connections until file descriptors run out, or stop
reading a response so that a shielded write never ends (and neither does shutdown). So this
module runs the same pieces hypercorn's trio worker runs (``TCPServer`` per connection, one
``WorkerContext``, the ASGI ``Lifespan``) under an accept loop of ours that adds:

- **a cap on open connections** (``SMARTPIP_MAX_CONNECTIONS``, lowered to what the open-file
  limit allows): past it, a new connection gets an immediate ``503`` problem document with
  ``Retry-After`` and ``Connection: close``, written without reading the request (RFC 9112
  allows a response before the request is read) — a clear refusal instead of a silent queue;
- **a connection stream of ours** (:class:`ClientStream`): writes bounded by
  ``SMARTPIP_SEND_TIMEOUT``, closes that never cut a response short, a lingering close, and
  the keep-alive idle timer (``SMARTPIP_KEEPALIVE_TIMEOUT``, which also bounds the wait for a
  complete request head) as a receive deadline;
- the shutdown behaviour of ``worker_serve``: once the trigger fires, stop accepting, let idle
  keep-alive connections close at once, give requests in flight ``graceful_timeout``, and
  return as soon as no connection is left.

The wait for a body a route reads is bounded by Quart's ``BODY_TIMEOUT``; the request
deadline is :class:`smartpip.http.middleware.HygieneMiddleware`'s.
"""

from __future__ import annotations

import contextlib
import errno
import math
import resource
import uuid
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from socket import socket

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState, LifespanState
from hypercorn.utils import repr_socket_addr

from smartpip.http.problems import problem_body, problem_headers

__all__ = [
    "CLIENT_STATE_KEY",
    "ClientStream",
    "ConnectionGate",
    "SharedListener",
    "connection_limit",
    "serve",
]

# Why 1 s: a refused client should come back soon (connections turn over in milliseconds), and
# a client that ignores the hint costs one accept and one short write.
REFUSAL_RETRY_AFTER = 1
# Why 2 s: long enough for a client on a slow link to read a 300-byte answer before we close
# (closing with unread request bytes would reset the connection and lose the answer).
REFUSAL_LINGER_SECONDS = 2.0
# Why 64: refusals are cheap but each holds a descriptor for up to the linger time; past this
# many at once, further connections are closed without an answer.
MAX_CONCURRENT_REFUSALS = 64
# Why 2 s: a client that reads our answer and then sees our end of stream closes within a
# round trip; one that does not is not worth a descriptor for longer (nginx waits 5 s).
LINGER_SECONDS = 2.0
# Bytes read at a time while lingering (thrown away).
DRAIN_CHUNK = 65536
#: Key of the connection's :class:`ClientStream` in each request's ``scope["state"]``.
CLIENT_STATE_KEY = "smartpip.client"
# Descriptors kept free for everything but client connections: the Postgres pool, Redis,
# outbound HTTP, logs, the refusals above, and the listening sockets.
FD_RESERVE = 128


def connection_limit(configured: int) -> int:
    """``configured``, lowered so that connections cannot exhaust the open-file limit."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, soft - FD_RESERVE))


@attrs.define
class ConnectionGate:
    """Counts open connections against the limit; the counters are exported as metrics.

    Only trio tasks of the one server touch it, between awaits, so no lock is needed.

    Attributes:
        limit: Most connections served at once.
        open: Connections being served now.
        refused: Connections refused since start (cumulative).
    """

    limit: int
    open: int = 0
    refused: int = 0
    _refusing: int = 0
    _clients: set[ClientStream] = attrs.field(factory=set)

    def admit(self, client: ClientStream) -> None:
        """Count ``client`` as open (the caller checked the limit)."""
        self.open += 1
        self._clients.add(client)

    def leave(self, client: ClientStream) -> None:
        """``client`` is closed."""
        self.open -= 1
        self._clients.discard(client)

    def close_idle(self) -> None:
        """Shutting down: close every connection that is between requests."""
        for client in list(self._clients):
            client.close_if_idle()

    async def refuse(self, stream: trio.abc.HalfCloseableStream) -> None:
        """Answer 503 on a connection past the limit, then close it (bounded in time)."""
        self.refused += 1
        if self._refusing >= MAX_CONCURRENT_REFUSALS:
            return  # closed by the caller without an answer
        self._refusing += 1
        try:
            with trio.move_on_after(REFUSAL_LINGER_SECONDS):
                await stream.send_all(_refusal_bytes())
                await stream.send_eof()
                # Read until the client closes: closing with its request unread would send a
                # reset, which can destroy our answer before the client has read it.
                while await stream.receive_some(4096):
                    pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._refusing -= 1


def _refusal_bytes() -> bytes:
    body = problem_body(
        503,
        "the server is at its connection limit; retry shortly",
        request_id=uuid.uuid4().hex,
        retry_after=REFUSAL_RETRY_AFTER,
    )
    headers = problem_headers(
        {
            "Retry-After": str(REFUSAL_RETRY_AFTER),
            "Content-Length": str(len(body)),
            "Connection": "close",
        }
    )
    head = "HTTP/1.1 503 Service Unavailable\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    return head.encode("latin-1") + b"\r\n" + body


class _NoIdleTask:
    """Stands in for hypercorn's per-connection idle timer, which :class:`ClientStream` keeps.

    hypercorn restarts its idle timer after every response by starting a new task (and
    cancels it when the next request arrives): a task start, a cancellation and their
    scheduling rounds per request. The stream's receive deadline does the same job without a
    task. (hypercorn's interface: ``restart(task_group, action)``, ``stop()``.)
    """

    async def restart(self, task_group: object, action: object) -> None:
        del task_group, action

    async def stop(self) -> None:
        pass


class ClientStream(trio.abc.HalfCloseableStream):
    """An accepted connection as hypercorn's protocol code sees it.

    Three rules on top of the socket, each closing a way for one client to hold a task:

    - **Writes are bounded.** hypercorn writes inside a cancel scope that shields it from every
      outer cancellation, so the deadline lives here, inside the shield, where it applies: a
      write that does not finish within ``send_timeout`` fails as "client gone".
    - **A close never cuts a response short.** hypercorn may close the connection from its
      reader task (idle timeout, a protocol error in pipelined bytes) while a request task is
      writing a response. A close asked for by any task but the one writing the response is
      deferred until that response is finished (:meth:`response_finished`); the socket itself
      is closed only by :meth:`close_for_real`, once hypercorn is done with the connection.
    - **Closing lingers** (RFC 9112 9.6): once closing begins, whatever the client still sends
      is read and thrown away (never parsed as a request) until the client closes too or
      ``linger`` seconds pass. Closing a socket with unread bytes makes the kernel send a reset,
      which can destroy the answer before the client has read it.

    Concurrency: only trio tasks of one connection use it, between awaits; the task writing a
    response registers itself (:meth:`response_started`), which is what "another task" means.
    """

    def __init__(
        self,
        stream: trio.SocketStream,
        *,
        send_timeout: float,
        keepalive_timeout: float,
        linger: float = LINGER_SECONDS,
    ) -> None:
        self._stream = stream
        self._send_timeout = send_timeout
        self._keepalive = keepalive_timeout
        self._linger = linger
        # Until a request head has arrived (the exchange says so), the client has this long.
        self._idle_deadline = trio.current_time() + keepalive_timeout
        self._in_request = False
        #: hypercorn reads the peer and local addresses from it.
        self.socket = stream.socket
        self._responder: trio.lowlevel.Task | None = None
        self._closing = False
        self._linger_deadline = math.inf
        self._eof_pending = False
        self._eof_sent = False
        self._reader: trio.CancelScope | None = None
        self._ended = False
        #: The scope of the connection's tasks (set by the accept loop); cancelled once the
        #: client has closed and no response is being written (see :meth:`_peer_gone`).
        self.scope: trio.CancelScope | None = None

    # The HTTP layer's side (smartpip.http.exchange), one response at a time.

    def request_started(self) -> None:
        """A request head has arrived: the idle timer stops until its response is written."""
        self._in_request = True
        self._set_idle_deadline(math.inf)

    def response_started(self) -> None:
        """The current task starts writing a response."""
        self._responder = trio.lowlevel.current_task()

    async def response_finished(self) -> None:
        """The response is written (or abandoned); a close deferred meanwhile happens now."""
        self._responder = None
        self._in_request = False
        self._set_idle_deadline(trio.current_time() + self._keepalive)
        if self._eof_pending:
            await self._send_eof_now()
        if self._ended:
            self._end_connection()

    def close_if_idle(self) -> None:
        """Shutting down: close now unless a request is in progress (it closes after it)."""
        if not self._in_request:
            self._begin_close()

    def close_after_response(self) -> None:
        """The response being written ends the connection: stop reading requests now."""
        self._begin_close()

    # hypercorn's side.

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if not data:  # h11's end of a Content-Length body: nothing to bound
            await self._stream.send_all(data)
            return
        with trio.move_on_after(self._send_timeout) as scope:
            await self._stream.send_all(data)
        if scope.cancelled_caught:
            # Half a write leaves the stream unusable: to hypercorn the client is gone, and the
            # connection closes (its reader would otherwise wait on the client forever).
            self._begin_close()
            raise trio.BrokenResourceError("the client did not read the response in time")

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        self._begin_close()
        responder = self._responder
        if responder is not None and responder is not trio.lowlevel.current_task():
            self._eof_pending = True  # after the response in progress
            await trio.lowlevel.checkpoint()
            return
        await self._send_eof_now()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if not self._closing:
            with trio.CancelScope(deadline=self._idle_deadline) as scope:
                self._reader = scope
                try:
                    data = await self._stream.receive_some(max_bytes)
                finally:
                    self._reader = None
                if not data:
                    self._peer_gone()
                return data
            if not self._closing:
                # The idle timer fired: nothing, or only part of a request head, came in time.
                self._begin_close()
        return await self._drain()

    async def aclose(self) -> None:
        # hypercorn's close: end of stream now (or after the response in progress); the socket
        # is closed by close_for_real once the connection's tasks are done.
        await self.send_eof()

    # The accept loop's side.

    async def close_for_real(self) -> None:
        """Close the socket (after a last end of stream, if none was sent)."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._send_eof_now()
        await self._stream.aclose()

    def _begin_close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._linger_deadline = trio.current_time() + self._linger
        if self._reader is not None:
            self._reader.cancel()  # the reader switches to draining (receive_some)

    def _set_idle_deadline(self, deadline: float) -> None:
        self._idle_deadline = deadline
        if self._reader is not None and not self._closing:
            self._reader.deadline = deadline

    async def _drain(self) -> bytes:
        """Read and discard until the client closes or the linger ends; then "end of stream"."""
        if self._responder is None:
            await self._send_eof_now()  # nothing being written: tell the client at once
        with (
            trio.move_on_at(self._linger_deadline),
            contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
        ):
            while await self._stream.receive_some(DRAIN_CHUNK):
                pass
        self._peer_gone()
        return b""

    def _peer_gone(self) -> None:
        """No more requests can come: end the connection once no response is being written.

        hypercorn's connection task otherwise waits for its keep-alive timer, holding the
        socket in CLOSE-WAIT for up to ``keep_alive_timeout`` after the client left.
        """
        self._ended = True
        if self._responder is None:
            self._end_connection()

    def _end_connection(self) -> None:
        if self.scope is not None:
            self.scope.cancel()

    async def _send_eof_now(self) -> None:
        self._eof_pending = False
        if self._eof_sent:
            await trio.lowlevel.checkpoint()
            return
        self._eof_sent = True
        # Failing means the client is gone already: nothing left to end.
        with contextlib.suppress(
            trio.BrokenResourceError, trio.BusyResourceError, trio.ClosedResourceError
        ):
            await self._stream.send_eof()


class SharedListener(trio.abc.Listener[trio.SocketStream]):
    """A listening socket that another process may shut down (``--workers``).

    Workers share one listening socket; the first whose drain window ends shuts it down
    (``shutdown(SHUT_RDWR)``), which refuses new connections for all of them at once. An
    accept in another worker then fails with ``EINVAL``: for it, that means "no more
    connections", not an error, so it waits to be cancelled like an idle accept.
    """

    def __init__(self, listener: trio.SocketListener) -> None:
        self._listener = listener

    async def accept(self) -> trio.SocketStream:
        try:
            return await self._listener.accept()
        except OSError as error:
            if error.errno != errno.EINVAL:
                raise
        await trio.sleep_forever()

    async def aclose(self) -> None:
        await self._listener.aclose()


async def serve(
    app: AppWrapper,
    hconfig: HypercornConfig,
    sockets: Sequence[socket],
    gate: ConnectionGate,
    *,
    send_timeout: float,
    shutdown_trigger: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on the listening ``sockets`` until ``shutdown_trigger`` returns.

    Then stop accepting, close idle connections, and return once every connection is done or
    ``hconfig.graceful_timeout`` has passed. Reports the bound URLs through ``task_status``.
    """
    context = WorkerContext(None)
    state: LifespanState = {}
    lifespan = Lifespan(app, hconfig, state)

    async def handle(stream: trio.SocketStream) -> None:
        if gate.open >= gate.limit:
            await gate.refuse(stream)
            return
        client = ClientStream(
            stream, send_timeout=send_timeout, keepalive_timeout=hconfig.keep_alive_timeout
        )
        gate.admit(client)
        try:
            # Each request's scope["state"] is a shallow copy of this: smartpip.http.exchange finds
            # the connection it answers on there.
            connection_state = ConnectionState({**state, CLIENT_STATE_KEY: client})
            # hypercorn types the stream as an SSLStream; plain streams take its AttributeError
            # path (no handshake), as for trio.SocketStream itself.
            server = TCPServer(app, hconfig, context, connection_state, client)  # type: ignore[arg-type]
            server.idle_task = _NoIdleTask()  # type: ignore[assignment]
            with trio.CancelScope() as client.scope:
                await server
        finally:
            gate.leave(client)
            await client.close_for_real()

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as connections:
            listeners = [
                SharedListener(trio.SocketListener(trio.socket.from_stdlib_socket(s)))
                for s in sockets
            ]
            binds = [f"http://{repr_socket_addr(s.family, s.getsockname())}" for s in sockets]
            try:
                async with trio.open_nursery() as accepting:
                    accepting.start_soon(
                        partial(
                            trio.serve_listeners, handle, listeners, handler_nursery=connections
                        )
                    )
                    task_status.started(binds)
                    await shutdown_trigger()
                    accepting.cancel_scope.cancel()
            finally:
                # Idle keep-alive connections close at once; the others after their request.
                await context.terminated.set()
                gate.close_idle()
                connections.cancel_scope.deadline = trio.current_time() + hconfig.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
