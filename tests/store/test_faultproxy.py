"""The fault-injection proxy itself, against a tiny trio echo server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

import attrs
import pytest
import trio

from store.redis import RedisSettings, open_redis
from tests.support.faultproxy import FaultProxy, Traffic, _RespCommands
from tests.support.polling import wait_until


@attrs.define
class EchoServer:
    """Echoes every chunk back and remembers what it received."""

    port: int = 0
    received: bytearray = attrs.Factory(bytearray)

    async def handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            try:
                while data := await stream.receive_some(65536):
                    self.received += data
                    await stream.send_all(data)
            except trio.BrokenResourceError:
                pass


@pytest.fixture
async def echo(nursery: trio.Nursery) -> EchoServer:
    server = EchoServer()
    listeners = await nursery.start(partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1"))
    server.port = listeners[0].socket.getsockname()[1]
    return server


@pytest.fixture
async def proxy(nursery: trio.Nursery, echo: EchoServer) -> FaultProxy:
    proxy = FaultProxy("127.0.0.1", echo.port, slow_delay=0.05)
    port = await nursery.start(proxy.run)
    assert port == proxy.port
    return proxy


async def connect(proxy: FaultProxy) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", proxy.port)


async def receive_exactly(stream: trio.SocketStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
async def client(proxy: FaultProxy) -> AsyncIterator[trio.SocketStream]:
    stream = await connect(proxy)
    async with stream:
        yield stream


async def test_pass_forwards_both_ways(client: trio.SocketStream, echo: EchoServer) -> None:
    with trio.fail_after(5):
        await client.send_all(b"hello")
        assert await receive_exactly(client, 5) == b"hello"
    assert bytes(echo.received) == b"hello"


async def test_down_resets_open_connections_and_new_ones(
    proxy: FaultProxy, client: trio.SocketStream
) -> None:
    with trio.fail_after(5):
        await client.send_all(b"a")
        assert await receive_exactly(client, 1) == b"a"
        proxy.mode = "down"
        with pytest.raises(trio.BrokenResourceError):
            await client.receive_some(10)
        fresh = await connect(proxy)
        async with fresh:
            # Accepted by the kernel, then reset: the peer sees a dead connection at once.
            with pytest.raises(trio.BrokenResourceError):
                await fresh.send_all(b"x")
                await fresh.receive_some(10)


async def test_pass_after_down_accepts_new_connections(proxy: FaultProxy) -> None:
    proxy.mode = "down"
    proxy.mode = "pass"
    with trio.fail_after(5):
        stream = await connect(proxy)
        async with stream:
            await stream.send_all(b"back")
            assert await receive_exactly(stream, 4) == b"back"


async def test_hung_holds_bytes_until_pass(
    proxy: FaultProxy, client: trio.SocketStream, echo: EchoServer
) -> None:
    proxy.mode = "hung"
    with trio.fail_after(5):
        await client.send_all(b"frozen")
        await wait_until(lambda: proxy.held == 1)
        assert echo.received == b""
        proxy.mode = "pass"
        assert await receive_exactly(client, 6) == b"frozen"
    assert proxy.held == 0


async def test_hung_also_holds_replies(
    proxy: FaultProxy, client: trio.SocketStream, echo: EchoServer
) -> None:
    with trio.fail_after(5):
        await client.send_all(b"ab")
        await wait_until(lambda: len(echo.received) == 2)
        # The echo may already be on its way back; freeze, then check nothing passes.
        proxy.mode = "hung"
        await client.send_all(b"cd")
        await wait_until(lambda: proxy.held >= 1)
        assert bytes(echo.received) in (b"ab", b"abcd")
        proxy.mode = "pass"
        assert await receive_exactly(client, 4) == b"abcd"


async def test_slow_delays_each_chunk(proxy: FaultProxy, client: trio.SocketStream) -> None:
    proxy.mode = "slow"
    with trio.fail_after(5):
        started = trio.current_time()
        await client.send_all(b"slow")
        assert await receive_exactly(client, 4) == b"slow"
    # One delay on the way in, one on the way out.
    assert trio.current_time() - started >= 2 * proxy.slow_delay


async def test_port_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        _ = FaultProxy("127.0.0.1", 1).port


# --- what clients asked -------------------------------------------------------------------


def resp(*args: bytes) -> bytes:
    """One command as a Redis client sends it: an array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


async def test_counts_connections_and_bytes_from_clients(
    proxy: FaultProxy, echo: EchoServer
) -> None:
    with proxy.record() as asked:
        stream = await connect(proxy)
        async with stream:
            with trio.fail_after(5):
                await stream.send_all(b"hello")
                assert await receive_exactly(stream, 5) == b"hello"
    # The echoed reply is not counted: only what clients send toward the server.
    assert asked == Traffic(connections=1, bytes=5, commands=[])
    assert proxy.traffic == asked  # the running total since the proxy started


async def test_record_counts_only_during_its_block(proxy: FaultProxy) -> None:
    stream = await connect(proxy)
    async with stream:
        with trio.fail_after(5):
            await stream.send_all(resp(b"PING"))
            await wait_until(lambda: proxy.traffic.commands == ["PING"])
            with proxy.record() as asked:
                pass
            await stream.send_all(resp(b"PING"))
            await wait_until(lambda: len(proxy.traffic.commands) == 2)
    assert asked == Traffic()


async def test_hung_still_counts_everything_sent_to_it(
    proxy: FaultProxy, client: trio.SocketStream, echo: EchoServer
) -> None:
    proxy.mode = "hung"
    with proxy.record() as asked, trio.fail_after(5):
        # The first command is held at the gate; the ones after it must be counted too,
        # although none reaches the server.
        for n in range(3):
            await client.send_all(resp(b"GET", b"key%d" % n))
            await wait_until(lambda: len(asked.commands) == n + 1)  # noqa: B023
    assert asked.commands == ["GET"] * 3
    assert echo.received == b""
    proxy.mode = "pass"
    with trio.fail_after(5):
        expected = b"".join(resp(b"GET", b"key%d" % n) for n in range(3))
        assert await receive_exactly(client, len(expected)) == expected  # in order


async def test_down_counts_the_connections_it_resets(proxy: FaultProxy) -> None:
    proxy.mode = "down"
    with proxy.record() as asked, trio.fail_after(5):
        fresh = await connect(proxy)
        async with fresh:
            await wait_until(lambda: asked.connections == 1)
    assert asked == Traffic(connections=1)


def test_resp_commands_are_parsed_across_any_split() -> None:
    # Bulk strings may hold "*", "$" and CRLF: the stream is parsed, not searched.
    stream = resp(b"set", b"k", b"*1\r\n$4\r\nPING\r\n") + resp(b"EVALSHA", b"abc", b"0")
    for size in (1, 2, 3, 7, len(stream)):
        parser = _RespCommands()
        names: list[str] = []
        for start in range(0, len(stream), size):
            names += parser.feed(stream[start : start + size])
        assert names == ["SET", "EVALSHA"], size


def test_other_protocols_are_not_taken_for_commands() -> None:
    parser = _RespCommands()
    startup = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"  # a Postgres SSLRequest
    assert parser.feed(startup) == []
    assert parser.feed(resp(b"PING")) == []  # the connection is not RESP: never parsed again


async def test_counts_the_commands_of_a_real_redis_client(redis_proxy: FaultProxy) -> None:
    settings = RedisSettings(url=f"redis://127.0.0.1:{redis_proxy.port}/0", prefix="unused:")
    async with open_redis(settings) as store:
        with redis_proxy.record() as connecting:
            await store.ping()
        assert connecting.connections == 1
        assert connecting.commands[-1] == "PING"  # after the handshake (HELLO, ...)
        with redis_proxy.record() as asked:
            await store.ping()
            await store.call(store.client.get, store.key("missing"))
        assert asked.connections == 0
        assert asked.commands == ["PING", "GET"]
