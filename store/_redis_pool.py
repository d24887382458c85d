"""A coredis connection pool that cleans up after failed or cancelled connection attempts.

coredis 6.9's ``ConnectionPool.get_connection`` takes a slot token from its queue before it
connects and gives it back only when the attempt fails with an exception. A cancellation (a
caller's deadline, a cancelled request) that lands during the TCP connect loses that token for
good: after ``max_connections`` of them every command waits forever for a connection although
Redis is healthy again. ``SlotSafeConnectionPool`` gives the token back in that case.

Also, a connection whose TCP connect failed or was cancelled (Redis down, refused, blackholed)
never closes the in-memory buffers it created in its constructor, so every failed attempt ends
in ``ResourceWarning: Unclosed <MemoryObject...Stream>`` when it is garbage collected. The pool
closes them.

The fix relies on coredis internals (``_construct_connection``, ``_available_connections``,
``_online_connections``); ``tests/store/test_redis.py`` reproduces the leak so an upgrade that
changes them fails loudly.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from coredis import BaseConnection, ConnectionPool

__all__ = ["SlotSafeConnectionPool"]

# The connection this task is constructing inside get_connection (same task, same context).
_constructing: ContextVar[BaseConnection | None] = ContextVar("_constructing", default=None)


class SlotSafeConnectionPool(ConnectionPool[Any]):
    """``coredis.ConnectionPool`` that cleans up after failed or cancelled connection attempts."""

    async def _construct_connection(self) -> Any:
        connection = await super()._construct_connection()
        _constructing.set(connection)
        return connection

    async def get_connection(self, **kwargs: Any) -> Any:
        reset = _constructing.set(None)
        try:
            return await super().get_connection(**kwargs)
        except BaseException as exc:
            connection = _constructing.get()
            if connection is not None and connection not in self._online_connections:
                # The attempt is over and its task has ended.
                _close_buffers(connection)
                # An Exception from a failed attempt: coredis has returned the token itself.
                # A cancellation (BaseException) while it was being started: it has not.
                if not isinstance(exc, Exception) and not self._available_connections.full():
                    self._available_connections.append_nowait(None)
            raise
        finally:
            _constructing.reset(reset)


def _close_buffers(connection: BaseConnection) -> None:
    """Close the memory streams of a connection that never ran (closing twice is harmless)."""
    for value in vars(connection).values():
        if isinstance(value, MemoryObjectSendStream | MemoryObjectReceiveStream):
            value.close()
