"""The process's shutdown state machine: serving -> draining -> stopping.

On the first SIGTERM or SIGINT the process starts *draining*: ``/readyz`` answers 503 at once
so load balancers stop sending new work, while the server keeps answering for the drain
window. Then :attr:`Lifecycle.stop_serving` fires, hypercorn stops accepting and finishes the
requests in flight. A second signal cancels everything at once.
"""

from __future__ import annotations

import os
import signal
from typing import NoReturn

import trio

from smartpip.logs import get_logger

__all__ = ["Lifecycle", "watch_parent", "watch_signals"]

log = get_logger(__name__)


class Lifecycle:
    """Shared shutdown flags; only :func:`watch_signals` (or tests) move it forward."""

    def __init__(self) -> None:
        self.draining = False
        self.stop_serving = trio.Event()
        self.forced = False

    def begin_drain(self) -> None:
        """Stop reporting ready; serving continues until :attr:`stop_serving` is set."""
        self.draining = True


async def watch_signals(
    lifecycle: Lifecycle,
    drain_seconds: float,
    cancel_all: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Turn SIGTERM/SIGINT into a graceful drain; a second signal cancels ``cancel_all``."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async with trio.open_nursery() as nursery:
            async for signum in signals:
                name = signal.Signals(signum).name
                if not lifecycle.draining:
                    log.info("shutdown requested; draining", signal=name, drain=drain_seconds)
                    lifecycle.begin_drain()
                    nursery.start_soon(_end_drain, lifecycle, drain_seconds)
                else:
                    log.warning("second signal; stopping at once", signal=name)
                    lifecycle.forced = True
                    cancel_all.cancel()
    raise AssertionError("signal stream ended")  # pragma: no cover


async def _end_drain(lifecycle: Lifecycle, drain_seconds: float) -> None:
    await trio.sleep(drain_seconds)
    log.info("drain window over; no new connections")
    lifecycle.stop_serving.set()


async def watch_parent(fd: int) -> None:
    """A worker's watch on its parent: the pipe ``fd`` ends when the parent is gone.

    The parent never writes; its end closes when it exits, however it exits (even SIGKILL).
    A worker left alone then drains and stops as on SIGTERM (it sends itself one, so that
    :func:`watch_signals` does it, and a later signal still counts as the second).
    """
    async with trio.lowlevel.FdStream(os.dup(fd)) as pipe:
        while await pipe.receive_some():
            pass
    log.warning("the parent process is gone; stopping")
    os.kill(os.getpid(), signal.SIGTERM)
