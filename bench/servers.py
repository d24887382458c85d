"""The servers under test as child processes: free ports, core pinning, readiness, clean stop.

"One process, one core" is made literal with ``taskset``: each server process is pinned to the
first core of this process's affinity set and wrk to the second, so the load generator never
competes with the server for its core. Without ``taskset`` or a second core, nothing is pinned
and the results say so.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

__all__ = [
    "DEFAULT_READY_TIMEOUT_S",
    "EXIT_BROKEN",
    "EXIT_FAILED",
    "EXIT_OK",
    "Pinning",
    "ServerProcess",
    "StartError",
    "free_port",
    "plan_pinning",
]

# Often enough to add no visible delay, rarely enough not to slow a starting process down.
READY_POLL_INTERVAL_S = 0.1
# The service creates and migrates its database on a cold start; that can take several seconds.
DEFAULT_READY_TIMEOUT_S = 60.0
# Exit statuses of the bench commands: pass, a budget missed, the run could not be made.
EXIT_OK, EXIT_FAILED, EXIT_BROKEN = 0, 1, 2
# Shutdown runs with a 0 s drain window; anything slower than this is a hang, so it gets SIGKILL.
STOP_TIMEOUT_S = 10.0


class StartError(RuntimeError):
    """A server exited or never answered its readiness check in time."""


@dataclass(frozen=True)
class Pinning:
    """Command prefixes that pin the servers and wrk to their own cores (empty: unpinned)."""

    server_prefix: tuple[str, ...]
    wrk_prefix: tuple[str, ...]
    note: str

    @property
    def pinned(self) -> bool:
        """Whether taskset is in use."""
        return bool(self.server_prefix)


def plan_pinning(enabled: bool = True) -> Pinning:
    """Servers on the first allowed core, wrk on the second, when taskset and 2 cores exist."""
    taskset = shutil.which("taskset")
    cores = sorted(os.sched_getaffinity(0))
    if not enabled:
        return Pinning((), (), "pinning disabled (--no-pin)")
    if taskset is None:
        return Pinning((), (), "taskset not found: servers and wrk share all cores")
    if len(cores) < 2:
        return Pinning((), (), f"only core {cores} available: servers and wrk share it")
    server, load = str(cores[0]), str(cores[1])
    return Pinning(
        (taskset, "-c", server),
        (taskset, "-c", load),
        f"servers on core {server}, wrk on core {load} (taskset)",
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel reports free right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """A server child process whose output goes to a log file; a context manager that stops it.

    The child gets its own session so a Ctrl-C in the terminal reaches only the harness, which
    then stops the child itself: SIGTERM, wait, SIGKILL after `STOP_TIMEOUT_S`.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        host: str,
        port: int,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.host = host
        self.port = port
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.returncode: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def wait_ready(self, path: str, deadline_s: float) -> None:
        """Poll ``GET path`` until it answers 200.

        Raises:
            StartError: the process exited, or ``deadline_s`` passed first.
        """
        process = self._require_process()
        give_up = time.monotonic() + deadline_s
        last = "no answer yet"
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < give_up:
                code = process.poll()
                if code is not None:
                    raise StartError(f"{self.name} exited with code {code} before it was ready")
                try:
                    answer = client.get(self.base_url + path)
                except httpx.TransportError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                else:
                    if answer.status_code == 200:
                        return
                    last = f"HTTP {answer.status_code}"
                time.sleep(READY_POLL_INTERVAL_S)
        raise StartError(f"{self.name} not ready after {deadline_s:.0f}s ({last})")

    def wait_ready_or_report(self, path: str, deadline_s: float) -> None:
        """:meth:`wait_ready`, printing the tail of the process's log to stderr if it fails.

        Raises:
            StartError: as :meth:`wait_ready`.
        """
        try:
            self.wait_ready(path, deadline_s)
        except StartError as exc:
            print(
                f"{exc}\n--- last lines of {self.log_path} ---\n{self.log_tail()}",
                file=sys.stderr,
                flush=True,
            )
            raise

    def stop(self) -> int | None:
        """SIGTERM, wait up to `STOP_TIMEOUT_S`, then SIGKILL; returns the exit code."""
        process = self._process
        if process is None:
            return self.returncode
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.returncode = process.returncode
        self._process = None
        return self.returncode

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log, for error reports."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(cannot read {self.log_path}: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise StartError(f"{self.name} is not running")
        return self._process
