"""A raw HTTP/1.1 client over one TCP connection, for tests that need the bytes exact.

httpx hides connection reuse and refuses malformed framing; these tests need both: a head
sent without its body, a body that follows the answer, ``Content-Length`` together with
``Transfer-Encoding``, and a clear view of whether the server closed the connection.
"""

from __future__ import annotations

import attrs
import trio

__all__ = ["Closed", "RawConnection", "RawResponse", "request_bytes"]

_MAX_HEAD = 64 * 1024


@attrs.frozen
class RawResponse:
    """One parsed response."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def closes(self) -> bool:
        """Whether the server announced that it closes the connection after this response."""
        return self.headers.get("connection", "").lower() == "close"


class Closed(Exception):
    """The server closed the connection before a complete response."""


def request_bytes(
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    chunked: bool = False,
    host: str = "test",
) -> tuple[bytes, bytes]:
    """The head and the body of a request, framed by Content-Length or chunked."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        framed = (f"{len(body):x}\r\n".encode() + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
    else:
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        framed = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), framed


def _dechunk(data: bytes) -> tuple[bytes, int] | None:
    """A chunked body from the start of ``data`` and the bytes it used, or None if partial."""
    body, pos = b"", 0
    while True:
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(data[pos:line_end].split(b";")[0], 16)
        pos = line_end + 2
        if size == 0:
            trailer_end = data.find(b"\r\n", pos)
            return None if trailer_end < 0 else (body, trailer_end + 2)
        if len(data) < pos + size + 2:
            return None
        body += data[pos : pos + size]
        pos += size + 2


class RawConnection:
    """One client connection; responses are read with :meth:`response`."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buffer = bytearray()
        self.eof = False

    @classmethod
    async def open(cls, host: str, port: int) -> RawConnection:
        """Connect to ``host:port``."""
        return cls(await trio.open_tcp_stream(host, port))

    async def send(self, data: bytes) -> None:
        """Write raw bytes."""
        await self.stream.send_all(data)

    async def aclose(self) -> None:
        """Close our side."""
        await self.stream.aclose()

    async def _fill(self) -> None:
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError as error:
            # A reset: the server closed with our bytes unread, and the kernel may have thrown
            # away what it had sent us; tests that expect an answer fail on it.
            self.eof = True
            raise Closed(f"the server reset the connection: {error.__cause__!r}") from error
        if not data:
            self.eof = True
            raise Closed("the server closed the connection")
        self._buffer += data

    def _parse(self, head_request: bool) -> RawResponse | None:
        """A complete response from the start of the buffer (consumed), or None (untouched)."""
        buffer = bytes(self._buffer)
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > _MAX_HEAD:
                raise AssertionError("response head too large")
            return None
        status_line, *header_lines = buffer[:end].decode("latin-1").split("\r\n")
        status = int(status_line.split(" ")[1])
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        rest = buffer[end + 4 :]
        if head_request or status in (204, 304) or 100 <= status < 200:
            body, used = b"", 0
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parsed = _dechunk(rest)
            if parsed is None:
                return None
            body, used = parsed
        elif "content-length" in headers:
            used = int(headers["content-length"])
            if len(rest) < used:
                return None
            body = rest[:used]
        else:
            if not self.eof:
                return None  # delimited by the end of the connection
            body, used = rest, len(rest)
        del self._buffer[: end + 4 + used]
        return RawResponse(status, headers, body)

    async def response(self, *, head_request: bool = False) -> RawResponse:
        """Read one complete response. Cancellation-safe: a partial read loses nothing.

        Raises:
            Closed: the server closed the connection first.
        """
        while (parsed := self._parse(head_request)) is None:
            try:
                await self._fill()
            except Closed:
                if (parsed := self._parse(head_request)) is not None:
                    return parsed
                raise
        return parsed

    async def closed_by_server(self) -> bool:
        """Read on; True once the server closes, AssertionError if it sends anything else."""
        try:
            await self._fill()
        except Closed:
            return True
        raise AssertionError(f"unexpected bytes from the server: {bytes(self._buffer[:200])!r}")
