"""What the benchmark drives: one `Endpoint` spec per measured request, with its budget.

Adding an endpoint is adding one entry to `ENDPOINTS`. A spec carries the request (method, path,
body, headers), an optional wrk Lua snippet for anything fancier (a ``request()`` function that
varies the body, say), an optional setup hook run once against the live service before the
endpoint is driven (to sign in and return an ``Authorization`` header, for instance), and a
`Budget`. Budgets are ratios to the ceiling app measured in the same run, never absolute times.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx

__all__ = ["CEILING", "ENDPOINTS", "Budget", "Endpoint", "SetupContext", "SetupHook"]


@dataclass(frozen=True)
class SetupContext:
    """What a setup hook gets: the service's base URL, a client, and the service's environment
    (so a hook can run ``smartpip`` commands against the same database and keys)."""

    base_url: str
    client: httpx.Client
    env: Mapping[str, str] = field(default_factory=dict)


SetupHook = Callable[[SetupContext], Mapping[str, str]]
"""Runs once before an endpoint is warmed up; returns extra request headers (may be empty)."""


@dataclass(frozen=True)
class Budget:
    """Pass conditions relative to the ceiling measured in the same run.

    Attributes:
        min_ratio: the endpoint's requests/s divided by the ceiling's must be at least this.
        max_p99_ratio: the endpoint's p99 latency divided by the ceiling's must be at most this.
    """

    min_ratio: float | None = None
    max_p99_ratio: float | None = None

    def describe(self) -> str:
        """Short text for the table, e.g. ``>=0.80`` or ``>=0.50 p99<=3.0x``."""
        parts = []
        if self.min_ratio is not None:
            parts.append(f">={self.min_ratio:.2f}")
        if self.max_p99_ratio is not None:
            parts.append(f"p99<={self.max_p99_ratio:.1f}x")
        return " ".join(parts) or "report"


@dataclass(frozen=True)
class Endpoint:
    """One request shape to drive with wrk.

    Attributes:
        path: request target, with its query string if any.
        method: HTTP method.
        body: request body sent with every request (set a Content-Type in ``headers``).
        headers: extra request headers, sent on every request of every connection.
        lua: wrk Lua code placed before the harness's own hooks. It may define ``init``,
            ``request``, ``setup``, ``response`` and ``done``; the harness chains its own
            hooks after them, so its result line and non-2xx count stay intact.
        setup: called once against the live service before the warm-up; the headers it
            returns are merged over ``headers``.
        budget: pass conditions; ``None`` means report-only.
        name: label in the table and the JSON; defaults to ``"METHOD path"``.
    """

    path: str
    method: str = "GET"
    body: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    lua: str | None = None
    setup: SetupHook | None = None
    budget: Budget | None = None
    name: str = ""

    @property
    def label(self) -> str:
        """The name shown in the table and used by ``--only``."""
        return self.name or f"{self.method} {self.path}"


BENCH_USER = "bench-user"


def bearer_token(ctx: SetupContext) -> Mapping[str, str]:
    """Sign in as the benchmark user with ``smartpip token`` (same database and keys)."""
    result = subprocess.run(
        [sys.executable, "-m", "smartpip.cli", "token", "--sub", BENCH_USER],
        env=dict(ctx.env),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {"Authorization": f"Bearer {result.stdout.strip()}"}


CEILING = Endpoint(path="/healthz", name="ceiling (bare ASGI)")
"""The reference request, sent to the ceiling app; it answers every path the same way."""

ENDPOINTS: tuple[Endpoint, ...] = (
    # Liveness does no I/O: it measures the framework's own cost over the bare server.
    Endpoint(path="/healthz", budget=Budget(min_ratio=0.8)),
    # Feature states; report-only until its design settles.
    Endpoint(path="/v1/status"),
    # Bearer verification and nothing else (no database, no Redis): its cost over /healthz.
    Endpoint(path="/v1/auth/session", setup=bearer_token, budget=Budget(min_ratio=0.7)),
    # Bearer, per-user rate limit (Redis) and one database read: a typical signed-in read.
    Endpoint(path="/v1/me", setup=bearer_token),
)
