"""Wait for a condition without sleeping blindly: poll it (bound the wait with a deadline)."""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable, Callable
from functools import partial

import trio

__all__ = ["eventually", "wait_exit", "wait_until"]


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], *, interval: float = 0.01
) -> None:
    """Return as soon as ``predicate()`` is true, polling every ``interval`` seconds.

    Always bound it: ``with trio.fail_after(5): await wait_until(...)``.

    Args:
        predicate: A sync or async callable; exceptions it raises propagate.
        interval: Seconds between polls.
    """
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await trio.sleep(interval)


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]], *, within: float = 10.0
) -> None:
    """:func:`wait_until` bounded by ``within`` seconds (``trio.TooSlowError`` past it)."""
    with trio.fail_after(within):
        await wait_until(predicate, interval=0.02)


async def wait_exit(process: subprocess.Popen[str], *, within: float) -> int:
    """Wait for a child process to exit without blocking the trio loop."""
    return await trio.to_thread.run_sync(partial(process.wait, timeout=within))
