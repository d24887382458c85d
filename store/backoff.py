"""Back off from a Redis that just failed, then let a single probe find out if it is back.

Shared by the rate limiter and the revocation check: each Redis failure costs a caller up to
the command timeout, so after one the callers use their local fallback for ``backoff``
seconds; then exactly one caller (the probe) tries Redis again while the others keep using
the fallback until it answers.

Concurrency: trio runs one task at a time and the state changes only between awaits, so no
lock is needed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import structlog

from store.redis import RedisUnavailable

__all__ = ["RedisBackoff"]

log = structlog.get_logger(__name__)
T = TypeVar("T")


class RedisBackoff:
    """Whether to ask Redis now.

    Args:
        went_down: Logged once (warning) when Redis first fails.
        came_back: Logged once (info) when it answers again.
        backoff: Seconds Redis is skipped after a failure.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        *,
        went_down: str,
        came_back: str,
        backoff: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._went_down = went_down
        self._came_back = came_back
        self._backoff = backoff
        self._clock = clock
        self._down_until: float | None = None
        self._probing = False

    @property
    def down(self) -> bool:
        """The last Redis attempt failed."""
        return self._down_until is not None

    def route(self) -> tuple[bool, bool]:
        """``(ask Redis?, is this the probe?)``; a probe must end with :meth:`end_probe`."""
        if self._down_until is None:
            return True, False
        if self._probing or self._clock() < self._down_until:
            return False, False
        self._probing = True
        return True, True

    def end_probe(self) -> None:
        """The probe's Redis call is over (whatever its outcome)."""
        self._probing = False

    def failed(self, exc: RedisUnavailable) -> None:
        """Redis failed: skip it for the back-off period."""
        if self._down_until is None:
            log.warning(self._went_down, error=str(exc))
        self._down_until = self._clock() + self._backoff

    def succeeded(self) -> None:
        """Redis answered."""
        if self._down_until is not None:
            log.info(self._came_back)
            self._down_until = None

    async def attempt(self, op: Coroutine[Any, Any, T]) -> T | None:
        """Await ``op`` (a store coroutine) unless Redis is backed off; None when it is away.

        ``RedisUnavailable`` is swallowed (and starts the back-off); a skipped ``op`` is closed
        without running.
        """
        ask, probing = self.route()
        if not ask:
            op.close()
            return None
        try:
            result = await op
        except RedisUnavailable as exc:
            self.failed(exc)
            return None
        else:
            self.succeeded()
            return result
        finally:
            if probing:
                self.end_probe()
