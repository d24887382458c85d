"""What the kernel says about a test server's sockets (Linux ``/proc/net/tcp*``)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["tcp_states"]

# /proc/net/tcp's hexadecimal state codes (include/net/tcp_states.h).
_STATES = {"01": "ESTABLISHED", "06": "TIME_WAIT", "08": "CLOSE_WAIT", "0A": "LISTEN"}


def tcp_states(local_port: int) -> list[str]:
    """The states of every TCP socket whose local port is ``local_port`` (server side)."""
    states: list[str] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            port = int(fields[1].rsplit(":", 1)[1], 16)
            if port == local_port:
                states.append(_STATES.get(fields[3], fields[3]))
    return states
