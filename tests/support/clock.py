"""A clock for tests that do real I/O (where trio's MockClock cannot be used)."""

from __future__ import annotations

import time

__all__ = ["FakeClock"]


class FakeClock:
    """Seconds that move only when the test says so; serves as a wall or monotonic clock.

    Starts at the current whole second unless ``start`` is given.
    """

    def __init__(self, start: float | None = None) -> None:
        self.now = float(int(time.time())) if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.now += seconds
