"""Waiting for a side effect in tests: poll a condition with a deadline, never a bare sleep."""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable, Callable
from functools import partial

import trio

# Why 20 ms: short next to the deadlines (seconds), long enough not to spin a core.
POLL_INTERVAL = 0.02


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 10.0) -> None:
    """Poll ``check`` until it returns True; raise ``trio.TooSlowError`` after ``within`` s."""
    with trio.fail_after(within):
        while not await check():  # noqa: ASYNC110 -- the condition is remote, no event to wait on
            await trio.sleep(POLL_INTERVAL)


async def wait_exit(process: subprocess.Popen[str], *, within: float) -> int:
    """Wait for a child process to exit without blocking the trio loop."""
    return await trio.to_thread.run_sync(partial(process.wait, timeout=within))
