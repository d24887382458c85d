"""Running ``promtool`` from tests: found on PATH (Debian's ``prometheus`` package; ``.ci/run``
installs it), its output attached to the failure."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

__all__ = ["DEPLOY", "PROMETHEUS", "promtool"]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
# Why 60 s: promtool evaluates the longest test (27 hours of one-minute samples) in about 2 s;
# a hung promtool must fail the test, not stall the suite.
PROMTOOL_TIMEOUT = 60.0


def promtool(*args: str | Path) -> str:
    """Run ``promtool ARGS`` and return its output; a failure raises with the output."""
    binary = shutil.which("promtool")
    assert binary is not None, (
        "promtool is not installed: apt-get install prometheus (.ci/run does it when missing)"
    )
    done = subprocess.run(
        [binary, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(map(str, args))} failed:\n{output}"
    return output
