"""One request and its response on a keep-alive connection, as the ASGI layer sees them.

:class:`Exchange` wraps the ASGI ``receive`` and ``send`` of one HTTP request so that the
connection it travels on is always either reusable or closed, never wedged:

- **The last response message is sent shielded from cancellation.** hypercorn's trio worker
  does its connection bookkeeping *inside* the app's ``send`` call for the final body
  message: it recycles the connection for the next request (and re-arms the keep-alive idle
  timer), or closes it. In that same call it hands the app ``http.disconnect``, and quart-trio
  answers that message by cancelling the request's nursery, which is the task running the
  bookkeeping. Cancelled half-way, the connection is left open with no request stream: the
  next request on it is read but never answered, the socket stays in CLOSE-WAIT after the
  client gives up, and the idle timer is never re-armed. Shielding the final send lets the
  bookkeeping finish; it cannot hang, since hypercorn already shields its own socket writes
  and bounds them (see :mod:`smartpip.http.server`). The full analysis and the upstream
  report: ``docs/upstream-keepalive-wedge.md``; the canary test
  ``tests/app/test_upstream_canary.py`` fails once upstream no longer needs this.
- **A response that starts before the request body has arrived closes the connection**
  (``Connection: close``, RFC 9112 9.6; RFC 9110 10.1.1 asks a server answering early to say
  whether it keeps reading). The unread rest of the body would otherwise be parsed as the next
  request's bytes, or wait forever for a client that reads our answer before sending it. A
  body already received but not yet taken by the framework is waited for briefly
  (:data:`BODY_GRACE_SECONDS`), so routes that ignore a body do not cost a reconnect.
- **Closing can be asked for** (:meth:`Exchange.close_connection`): framing errors such as
  ``Content-Length`` with ``Transfer-Encoding`` must not leave the connection open.

It also records what happened (status, client gone, body complete) for the access log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

from smartpip.http.server import CLIENT_STATE_KEY, ClientStream

__all__ = ["CLIENT_GONE", "Exchange", "Message", "Receive", "Send"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
HeaderList = list[tuple[bytes, bytes]]

#: How long a response that starts before the request body is complete waits for the rest.
#: Why 20 ms: when the client sent its body with the head, the body is already in this process,
#: only not yet taken by the framework's reader task, which runs within microseconds; a body
#: still on the network after that is rare, and the connection is then closed instead of kept.
BODY_GRACE_SECONDS = 0.02
#: What a send to a client that went away raises. hypercorn's trio ``TCPServer._close`` sends
#: EOF without holding its send lock, so a disconnect can also surface as BusyResourceError.
CLIENT_GONE = (trio.BrokenResourceError, trio.BusyResourceError, trio.ClosedResourceError)


def _expects_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length" and value.strip() not in (b"", b"0"):
            return True
    return False


class Exchange:
    """The ASGI side of one request/response, keeping its connection healthy.

    Args:
        scope: The request's ASGI scope.
        receive: hypercorn's ``receive``.
        send: hypercorn's ``send``.
        decorate: Called with the status and headers of the response start; returns the
            headers to send (the middleware's default headers).

    Attributes:
        status: The status sent, or None while no response has started.
        complete: The final response message has been handed to the server.
        body_complete: The whole request body has been received (True when there is none).
        client_gone: The client disconnected, or a send found the connection closed.
    """

    def __init__(
        self,
        scope: MutableMapping[str, Any],
        receive: Receive,
        send: Send,
        decorate: Callable[[int, HeaderList], HeaderList],
        closing: Callable[[], bool] = lambda: False,
    ) -> None:
        self._receive = receive
        self._send = send
        self._decorate = decorate
        # The process is draining: every response closes its connection (Connection: close),
        # so a proxy's keep-alive pool stops sending requests to a process about to stop.
        self._closing = closing
        self._close = False
        self.status: int | None = None
        self.complete = False
        self.body_complete = not _expects_body(scope["headers"])
        self._body_done: trio.Event | None = None  # made only when a response must wait
        self.client_gone = False
        state = scope.get("state") or {}
        #: The connection this exchange travels on (None outside smartpip.http.server).
        self.client: ClientStream | None = state.get(CLIENT_STATE_KEY)
        if self.client is not None:
            self.client.request_started()

    @property
    def started(self) -> bool:
        """Whether the response has started (its status and headers are on their way)."""
        return self.status is not None

    def close_connection(self) -> None:
        """Close the connection after this response (``Connection: close``)."""
        self._close = True

    async def receive(self) -> Message:
        """hypercorn's ``receive``, noting the end of the body and a disconnect."""
        message = await self._receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            self.body_complete = True
            if self._body_done is not None:
                self._body_done.set()
        elif message["type"] == "http.disconnect" and not self.complete:
            # After the final message, hypercorn says "disconnect" to end the exchange; only
            # before it does the word mean the client went away.
            self.client_gone = True
        return message

    async def send(self, message: Message) -> None:
        """hypercorn's ``send``, with the connection rules of the module docstring."""
        if message["type"] == "http.response.start":
            if not self.body_complete and not self._close:
                self._body_done = trio.Event()
                with trio.move_on_after(BODY_GRACE_SECONDS):
                    await self._body_done.wait()
            self.status = int(message["status"])
            headers = self._decorate(self.status, list(message.get("headers", [])))
            if self.client is not None:
                self.client.response_started()
            if self._close or self._closing() or not self.body_complete:
                headers = [(k, v) for k, v in headers if k != b"connection"]
                headers.append((b"connection", b"close"))
                if self.client is not None:
                    self.client.close_after_response()
            message["headers"] = headers
        final = message["type"] == "http.response.body" and not message.get("more_body", False)
        self.complete = self.complete or final
        if self.client_gone:
            return
        try:
            if final:
                # Shielded: see the module docstring (hypercorn recycles or closes the
                # connection inside this call, and quart-trio cancels us meanwhile).
                with trio.CancelScope(shield=True):
                    await self._send(message)
                    await self.finish()
            else:
                await self._send(message)
        except CLIENT_GONE:
            # Nobody is left to read the answer: not an error of ours.
            self.client_gone = True

    async def finish(self) -> None:
        """The exchange is over (answered, cut short or abandoned): release the connection's
        writer role, so that a close deferred meanwhile happens. Idempotent."""
        if self.client is not None:
            await self.client.response_finished()
