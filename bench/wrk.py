"""Driving wrk: finding or installing it, writing its Lua script, running it, parsing its output.

The Lua script ends with a ``done()`` hook that prints one machine-parsable line,
``BENCH_RESULT {json}``, with the request count, duration, latency percentiles (p50/p95/p99,
microseconds), socket error counts, the number of non-2xx answers (counted in ``response()``
per thread, summed in ``done()``) and the number of 2xx answers the endpoint's own Lua
rejected (its ``response()`` adds 1 to the thread global ``bench_rejected``; a warm-cache run
rejects answers that are not cache hits, say). If that line is missing, the ``--latency`` text
report is parsed instead (it has no p95 and counts only 4xx/5xx answers as errors).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["WrkError", "WrkResult", "ensure_wrk", "lua_script", "run_wrk", "wrk_version"]

RESULT_MARKER = "BENCH_RESULT "

# wrk's own default, written out: an answer slower than this is a failure, not a latency sample.
WRK_TIMEOUT = "2s"
# wrk stops itself after --duration; this much longer means it hung, so it is killed.
WRK_GRACE_S = 30

_EPILOGUE = """
-- bench harness hooks (chained after any defined above)
local bench_threads = {}
local bench_user_setup, bench_user_init = setup, init
local bench_user_response, bench_user_done = response, done

function setup(thread)
  table.insert(bench_threads, thread)
  if bench_user_setup then bench_user_setup(thread) end
end

function init(args)
  bench_non2xx = 0
  bench_rejected = 0
  if bench_user_init then bench_user_init(args) end
end

function response(status, headers, body)
  if status < 200 or status > 299 then bench_non2xx = bench_non2xx + 1 end
  if bench_user_response then bench_user_response(status, headers, body) end
end

function done(summary, latency, requests)
  local non2xx, rejected = 0, 0
  for _, thread in ipairs(bench_threads) do
    non2xx = non2xx + (thread:get("bench_non2xx") or 0)
    rejected = rejected + (thread:get("bench_rejected") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"p50_us":%.1f,"p95_us":%.1f,' ..
    '"p99_us":%.1f,"max_us":%.1f,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"timeout_errors":%d,"status_errors":%d,"non2xx":%d,' ..
    '"rejected":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.timeout, e.status,
    non2xx, rejected))
  if bench_user_done then bench_user_done(summary, latency, requests) end
end
"""


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed nothing we can read."""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run's figures; latencies in milliseconds, ``p95_ms`` is None from the fallback."""

    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p95_ms: float | None
    p99_ms: float
    max_ms: float
    connect_errors: int
    read_errors: int
    write_errors: int
    timeout_errors: int
    non2xx: int
    source: str  # "lua" or "text"
    rejected: int = 0  # 2xx answers the endpoint's Lua counted as failed

    @property
    def errors(self) -> int:
        """Every failed request: socket errors, timeouts, non-2xx and rejected answers."""
        return (
            self.connect_errors
            + self.read_errors
            + self.write_errors
            + self.timeout_errors
            + self.non2xx
            + self.rejected
        )

    def to_json(self) -> dict[str, Any]:
        """Plain dict for the results file."""
        return {**asdict(self), "errors": self.errors}


def ensure_wrk() -> str:
    """Return wrk's path, installing the Debian package when root with apt-get.

    Raises:
        WrkError: wrk is missing and could not be installed.
    """
    found = shutil.which("wrk")
    if found:
        return found
    apt_get = shutil.which("apt-get")
    if apt_get and os.geteuid() == 0:
        print("wrk not found; installing the Debian package `wrk` with apt-get", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = [apt_get, "install", "-y", "wrk"]
        if subprocess.run(install, env=env, check=False).returncode != 0:
            subprocess.run([apt_get, "update"], env=env, check=False)
            subprocess.run(install, env=env, check=False)
        found = shutil.which("wrk")
        if found:
            return found
    raise WrkError(
        "wrk is not installed. Install the Debian package `wrk` "
        "(`sudo apt-get install -y wrk`), or run `make bench`, which installs it."
    )


def wrk_version(wrk: str) -> str:
    """First line of ``wrk --version`` (it exits 1 after printing it)."""
    done = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    lines = (done.stdout + done.stderr).splitlines()
    return lines[0].strip() if lines else "unknown"


def _lua_string(text: str) -> str:
    """Quote text as a Lua 5.1 string literal, byte by byte (safe for any UTF-8)."""
    out = []
    for byte in text.encode():
        if 0x20 <= byte < 0x7F and byte not in (0x22, 0x5C):
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def lua_script(
    method: str, headers: Mapping[str, str], body: str | None, extra_lua: str | None
) -> str:
    """The whole wrk script for one endpoint: request shape, custom Lua, harness hooks."""
    lines = [f"wrk.method = {_lua_string(method)}"]
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
    if body is not None:
        lines.append(f"wrk.body = {_lua_string(body)}")
    if extra_lua:
        lines.append(extra_lua)
    return "\n".join(lines) + "\n" + _EPILOGUE


def run_wrk(
    wrk: str,
    url: str,
    script: Path,
    *,
    duration_s: int,
    connections: int,
    threads: int,
    prefix: Sequence[str] = (),
) -> WrkResult:
    """Run wrk once against ``url`` and return its figures.

    Raises:
        WrkError: wrk exited non-zero or its output could not be parsed.
    """
    command = [
        *prefix,
        wrk,
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={duration_s}s",
        f"--timeout={WRK_TIMEOUT}",
        "--latency",
        f"--script={script}",
        url,
    ]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
            timeout=duration_s + WRK_GRACE_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish within {duration_s + WRK_GRACE_S} s") from exc
    if done.returncode != 0:
        raise WrkError(f"wrk exited {done.returncode}: {done.stderr.strip() or done.stdout}")
    return parse_output(done.stdout)


def parse_output(stdout: str) -> WrkResult:
    """Read the Lua result line, or fall back to the ``--latency`` text report."""
    for line in stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            return _from_lua(json.loads(line[len(RESULT_MARKER) :]))
    return _from_text(stdout)


def _from_lua(raw: dict[str, Any]) -> WrkResult:
    duration_s = raw["duration_us"] / 1e6
    return WrkResult(
        requests=raw["requests"],
        duration_s=duration_s,
        rps=raw["requests"] / duration_s if duration_s else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p95_ms=raw["p95_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        connect_errors=raw["connect_errors"],
        read_errors=raw["read_errors"],
        write_errors=raw["write_errors"],
        timeout_errors=raw["timeout_errors"],
        non2xx=raw["non2xx"],
        source="lua",
        rejected=raw.get("rejected", 0),
    )


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_DURATION = r"([\d.]+)(us|ms|s|m|h)"


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def _from_text(stdout: str) -> WrkResult:
    def search(pattern: str) -> re.Match[str] | None:
        return re.search(pattern, stdout, re.MULTILINE)

    totals = search(r"^\s*(\d+) requests in " + _DURATION)
    rps = search(r"^Requests/sec:\s*([\d.]+)")
    p50 = search(r"^\s*50%\s+" + _DURATION)
    p99 = search(r"^\s*99%\s+" + _DURATION)
    latency = search(r"^\s*Latency\s+\S+\s+\S+\s+" + _DURATION)
    if not (totals and rps and p50 and p99 and latency):
        raise WrkError(f"could not parse wrk output:\n{stdout}")
    sockets = search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
    connect, read, write, timeout = (int(g) for g in sockets.groups()) if sockets else (0,) * 4
    non2xx = search(r"Non-2xx or 3xx responses: (\d+)")
    return WrkResult(
        requests=int(totals.group(1)),
        duration_s=_ms(totals.group(2), totals.group(3)) / 1000,
        rps=float(rps.group(1)),
        p50_ms=_ms(p50.group(1), p50.group(2)),
        p95_ms=None,
        p99_ms=_ms(p99.group(1), p99.group(2)),
        max_ms=_ms(latency.group(1), latency.group(2)),
        connect_errors=connect,
        read_errors=read,
        write_errors=write,
        timeout_errors=timeout,
        non2xx=int(non2xx.group(1)) if non2xx else 0,
        source="text",
    )
