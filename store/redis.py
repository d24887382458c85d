"""Redis access for trio: a coredis client under a key prefix, with fail-fast calls.

Redis holds nothing that cannot be rebuilt, so the service runs without it (degraded). Every
Redis operation of ``store`` goes through ``RedisStore.fail_fast()`` (or ``RedisStore.call``):
a down, reset or frozen Redis raises ``RedisUnavailable`` within ``command_timeout`` (plus
``connect_timeout`` when a new connection is needed), never hangs the caller, and the first
operation after Redis returns succeeds.

coredis 6 notes: the client runs natively under trio (anyio) and must be entered as an async
context manager; its connections run as tasks of a task group owned by whoever entered it
(``open_redis``), so enter it in the composition root, before spawning the tasks that use it.
Commands are multiplexed over few connections. There are no automatic retries: a failed
command may or may not have been applied, and only the caller knows whether retrying is safe.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import ParamSpec, TypeVar

import anyio
import attrs
import coredis
import coredis.exceptions
import trio
from coredis.commands import Script
from coredis.retry import NoRetryPolicy

from store._redis_pool import SlotSafeConnectionPool
from store.errors import RedisUnavailable

__all__ = ["RedisSettings", "RedisStore", "RedisUnavailable", "open_redis"]

P = ParamSpec("P")
T = TypeVar("T")

# Errors meaning "Redis is not answering": coredis' own (connection lost, refused, handshake
# failed, LOADING), TimeoutError from its stream timeout, socket errors (OSError) and the
# stream errors of anyio/trio that could slip through.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    coredis.exceptions.ConnectionError,
    TimeoutError,
    OSError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)
# Keys per SCAN page and per UNLINK in delete_prefixed.
_SCAN_BATCH = 500


@attrs.frozen
class RedisSettings:
    """How to reach Redis and how long to wait for it.

    Attributes:
        url: ``redis://[user:password@]host:port/db`` (or ``rediss://``, ``unix://``).
        prefix: Prepended to every key; also what ``delete_prefixed`` deletes.
        connect_timeout: Seconds to open a connection (TCP connect).
        command_timeout: Seconds to wait for one reply (also the handshake's).
    """

    url: str
    prefix: str = "smartpip:"
    connect_timeout: float = attrs.field(default=0.5, validator=attrs.validators.gt(0))
    command_timeout: float = attrs.field(default=0.25, validator=attrs.validators.gt(0))


class RedisStore:
    """The Redis client plus the key prefix and the fail-fast rule.

    Attributes:
        client: The coredis client (bytes replies, no retries). Use it only inside
            ``fail_fast()``.
        prefix: The key prefix.
    """

    def __init__(self, client: coredis.Redis[bytes], settings: RedisSettings) -> None:
        self.client = client
        self.prefix = settings.prefix
        self._settings = settings
        # The client's own timeouts (connect, then the reply) normally fire first; this
        # deadline is the backstop for anything they do not cover.
        self._deadline = settings.connect_timeout + settings.command_timeout

    @property
    def settings(self) -> RedisSettings:
        """The settings this store was opened with."""
        return self._settings

    def key(self, *parts: str) -> str:
        """The full key for ``parts``: ``key("lease", "cleanup")`` -> ``smartpip:lease:cleanup``."""
        return self.prefix + ":".join(parts)

    @contextmanager
    def fail_fast(self) -> Iterator[None]:
        """Bound the Redis operations in the block and map failures to ``RedisUnavailable``.

        The block gets ``connect_timeout + command_timeout`` seconds in all. Errors that are
        not about availability (``WRONGTYPE``, script errors, ...) propagate unchanged.

        Raises:
            RedisUnavailable: Redis refused or dropped the connection or did not answer in time.
        """
        try:
            with trio.fail_after(self._deadline):
                yield
        except trio.TooSlowError as exc:
            raise RedisUnavailable(f"Redis did not answer within {self._deadline} s") from exc
        except _UNAVAILABLE as exc:
            raise RedisUnavailable(f"Redis unavailable: {type(exc).__name__}: {exc}") from exc
        except BaseExceptionGroup as group:
            _matched, rest = group.split(_UNAVAILABLE)
            if rest is not None:
                raise
            raise RedisUnavailable(f"Redis unavailable: {group!r}") from group

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` (a client method) inside ``fail_fast()``.

        Example: ``await store.call(store.client.get, store.key("nonce", n))``.
        """
        with self.fail_fast():
            return await fn(*args, **kwargs)

    async def run_script(
        self, script: Script[bytes], keys: list[str], args: list[str], *, what: str
    ) -> object:
        """Run a Lua ``script`` (EVALSHA, loading it on NOSCRIPT) inside ``fail_fast()``.

        Besides unavailability, Redis refusing a script (READONLY after a failover, OOM, BUSY)
        also raises ``RedisUnavailable``: for every caller here (rate limits, quota,
        popularity) that is the same as Redis being away, and they fall back alike.

        Args:
            script: The registered script.
            keys: Its KEYS (already prefixed).
            args: Its ARGV.
            what: Names the script in the error message.

        Raises:
            RedisUnavailable: Redis is down, too slow, or refused the script.
        """
        try:
            with self.fail_fast():
                reply: object = await script(keys=keys, args=args, client=self.client)
        except coredis.exceptions.RedisError as exc:
            raise RedisUnavailable(f"Redis refused the {what} script: {exc}") from exc
        return reply

    async def ping(self) -> None:
        """Check that Redis answers.

        Raises:
            RedisUnavailable: It does not.
        """
        with self.fail_fast():
            await self.client.ping()

    async def delete_prefixed(self) -> int:
        """Delete every key under ``prefix`` (SCAN + UNLINK in batches); for tests and tooling.

        Returns:
            The number of keys deleted.

        Raises:
            RedisUnavailable: Redis failed during the sweep (some keys may be left).
            ValueError: The prefix is empty (that would delete everything).
        """
        if not self.prefix:
            raise ValueError("refusing to delete every key: the prefix is empty")
        pattern = _glob_escape(self.prefix) + "*"
        deleted = 0
        cursor = 0
        while True:
            with self.fail_fast():
                cursor, keys = await self.client.scan(cursor, match=pattern, count=_SCAN_BATCH)
            if keys:
                with self.fail_fast():
                    deleted += await self.client.unlink(keys)
            if cursor == 0:
                return deleted


def _glob_escape(text: str) -> str:
    """Escape Redis glob metacharacters so that ``text`` matches literally."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


@asynccontextmanager
async def open_redis(settings: RedisSettings) -> AsyncIterator[RedisStore]:
    """Create the Redis client; does not connect, so it succeeds while Redis is down.

    Connections are opened on first use and re-opened after Redis returns.

    Args:
        settings: Where Redis is, the key prefix and the timeouts.

    Yields:
        The store. Leaving the block closes every connection.
    """
    pool = SlotSafeConnectionPool.from_url(
        settings.url,
        decode_responses=False,
        connect_timeout=settings.connect_timeout,
        stream_timeout=settings.command_timeout,
    )
    client: coredis.Redis[bytes] = coredis.Redis(connection_pool=pool, retry_policy=NoRetryPolicy())
    async with client:
        yield RedisStore(client, settings)
