"""``smartpip serve --workers N``: one listening socket, N full replicas in child processes.

::

    smartpip serve --workers N         (this module: no event loop of the service, no pools)
      open the listening socket once   (smartpip.runtime.main.open_listeners)
      spawn N workers                  `smartpip serve --listen-fd FD --parent-fd P --worker I`
        each a whole replica: migrations, pools, supervisors, jobs (which coordinate through
        Postgres and Redis as separate replicas do), and the accept loop on the inherited socket
      SIGTERM/SIGINT  -> SIGTERM to every worker: they drain together, and the first whose
                         drain window ends shuts the shared socket down, so all refuse new
                         connections at once; the parent exits when the last worker has
      second signal   -> passed on: the workers stop at once (exit status 1)
      a worker exits  -> restarted after a short backoff; failing again and again at startup
                         (Postgres unreachable, a changed migration) stops everything

One socket shared, not a socket per worker with ``SO_REUSEPORT``: with shared sockets a
connection waits in one queue for whichever worker accepts it first, while a closing
``SO_REUSEPORT`` socket drops the connections queued on it. Workers are spawned (a fresh
interpreter each), never forked from a running event loop. They run in their own process
group, so a terminal's Ctrl-C reaches only the parent, which passes it on once; each holds
the read end of a pipe whose write end only the parent has, and stops when the parent is
gone, however it went.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Sequence

import attrs
import trio

from smartpip.logs import get_logger

__all__ = ["cpu_count", "run_workers"]

log = get_logger(__name__)

# Why 10 s: a worker that lived this long got through startup (migrations, pools); its exit
# is a crash to restart, not a startup that will fail the same way again.
STABLE_SECONDS = 10.0
# Why 5: a transient startup failure (Postgres restarting) gets a few tries over about 30 s
# of backoff; a permanent one stops the service instead of looping for ever.
MAX_QUICK_FAILURES = 5
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0


def cpu_count() -> int:
    """The CPUs this process may run on (``--workers auto``)."""
    return len(os.sched_getaffinity(0)) or 1


@attrs.define
class _Workers:
    count: int
    sockets: Sequence[socket.socket]
    parent_fd: int
    stopping: trio.Event = attrs.field(factory=trio.Event)
    failed: bool = False
    forced: bool = False
    processes: dict[int, trio.Process] = attrs.field(factory=dict)

    def command(self, index: int) -> list[str]:
        fds = [arg for sock in self.sockets for arg in ("--listen-fd", str(sock.fileno()))]
        return [
            sys.executable,
            "-m",
            "smartpip.cli",
            "serve",
            *fds,
            "--parent-fd",
            str(self.parent_fd),
            "--worker",
            str(index),
        ]

    def signal_all(self, signum: int) -> None:
        for process in self.processes.values():
            if process.returncode is None:
                process.send_signal(signum)

    def stop(self) -> None:
        if not self.stopping.is_set():
            self.stopping.set()
            self.signal_all(signal.SIGTERM)

    async def keep(self, index: int) -> None:
        """Run worker ``index``; restart it when it exits unasked, until stopping."""
        failures = 0
        while not self.stopping.is_set():
            started = trio.current_time()
            process = await trio.lowlevel.open_process(
                self.command(index),
                pass_fds=[*(s.fileno() for s in self.sockets), self.parent_fd],
                process_group=0,
            )
            self.processes[index] = process
            log.info("worker started", worker=index, pid=process.pid)
            status = await process.wait()
            if self.stopping.is_set():
                if status != 0:
                    self.failed = True
                log.info("worker stopped", worker=index, status=status)
                return
            failures = 1 if trio.current_time() - started >= STABLE_SECONDS else failures + 1
            if failures > MAX_QUICK_FAILURES:
                log.error("worker keeps failing; stopping", worker=index, status=status)
                self.failed = True
                self.stop()
                return
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (failures - 1))
            log.error("worker exited; restarting", worker=index, status=status, delay=delay)
            with trio.move_on_after(delay):
                await self.stopping.wait()

    async def watch_signals(self, cancel: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if not self.stopping.is_set():
                    log.info("shutdown requested; draining the workers", signal=name)
                    self.stop()
                else:
                    log.warning("second signal; stopping the workers at once", signal=name)
                    self.forced = True
                    self.signal_all(signal.SIGTERM)
        cancel.cancel()  # pragma: no cover


async def run_workers(count: int, sockets: Sequence[socket.socket]) -> int:
    """Run ``count`` workers on the listening ``sockets`` until a signal; the exit status.

    0 when every worker drained and stopped cleanly; 1 after a second signal, a worker that
    did not stop cleanly, or one that kept failing at startup.
    """
    read_end, write_end = os.pipe()
    workers = _Workers(count, sockets, read_end)
    try:
        async with trio.open_nursery() as outer:
            outer.start_soon(workers.watch_signals, outer.cancel_scope)
            async with trio.open_nursery() as nursery:
                for index in range(count):
                    nursery.start_soon(workers.keep, index)
            outer.cancel_scope.cancel()
    finally:
        os.close(read_end)
        os.close(write_end)
    log.info("stopped", workers=count)
    return 1 if workers.failed or workers.forced else 0
