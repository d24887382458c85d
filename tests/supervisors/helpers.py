"""Shared helpers for the supervisor tests (all run on trio's MockClock)."""

from __future__ import annotations

import trio

from supervisors import StatusRegistry

# An arbitrary fixed wall time (2023-11-14T22:13:20Z) so status times are exact.
WALL_EPOCH = 1_700_000_000.0


def mock_wall_clock() -> float:
    """A wall clock that follows trio's (mock) clock from ``WALL_EPOCH``."""
    return WALL_EPOCH + trio.current_time()


def make_registry() -> StatusRegistry:
    """A registry whose wall times are ``WALL_EPOCH`` plus trio time."""
    return StatusRegistry(wall_clock=mock_wall_clock)


class Boom(Exception):
    """The failure the test children raise."""
