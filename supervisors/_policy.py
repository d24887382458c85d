"""Restart policies: when a child is restarted, how long to wait, and when to give up.

These are plain values with no I/O; the supervisor (``_supervisor.py``) applies them.
"""

from __future__ import annotations

import enum
import random

import attrs


class RestartPolicy(enum.Enum):
    """Which endings of a child lead to a restart.

    Attributes:
        PERMANENT: always restarted, after an exception and after a clean return alike
            (a long-running child that returns is treated as having stopped by mistake).
        TRANSIENT: restarted only after an exception; a clean return ends it for good.
        TEMPORARY: never restarted; any ending ends it for good.
    """

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"

    def restarts_after(self, error: BaseException | None) -> bool:
        """Whether a child that ended this way is restarted.

        Args:
            error: the exception the child failed with, or None for a clean return.

        Returns:
            True if the supervisor should restart the child.
        """
        if self is RestartPolicy.PERMANENT:
            return True
        if self is RestartPolicy.TRANSIENT:
            return error is not None
        return False


@attrs.frozen
class Backoff:
    """Exponential backoff between restarts, capped and randomised.

    The delay before restart number ``attempt`` (1-based) is
    ``minimum * factor ** (attempt - 1)``, capped at ``maximum``, then multiplied by a
    random factor in ``[1 - jitter, 1 + jitter]`` so that replicas restarting after a
    shared outage do not retry in lockstep, and finally clamped to
    ``[minimum * (1 - jitter), maximum]``.

    Attributes:
        minimum: delay in seconds before the first restart (>= 0).
        maximum: largest delay in seconds (>= minimum).
        factor: growth per attempt (>= 1).
        jitter: relative spread of the random factor, in [0, 1).
    """

    minimum: float = 1.0
    maximum: float = 60.0
    factor: float = 2.0
    jitter: float = 0.1

    def __attrs_post_init__(self) -> None:
        if self.minimum < 0:
            raise ValueError(f"Backoff.minimum must be >= 0, got {self.minimum}")
        if self.maximum < self.minimum:
            raise ValueError(
                f"Backoff.maximum ({self.maximum}) must be >= minimum ({self.minimum})"
            )
        if self.factor < 1:
            raise ValueError(f"Backoff.factor must be >= 1, got {self.factor}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"Backoff.jitter must be in [0, 1), got {self.jitter}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The delay in seconds before restart number ``attempt``.

        Args:
            attempt: 1-based number of the restart (1 gets about ``minimum``).
            rng: source of the jitter; pass a seeded one for reproducible delays.

        Returns:
            The delay in seconds, within ``[minimum * (1 - jitter), maximum]``.

        Raises:
            ValueError: if ``attempt`` is less than 1.
        """
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        try:
            base = min(self.maximum, self.minimum * self.factor ** (attempt - 1))
        except OverflowError:
            base = self.maximum
        spread = rng.uniform(1 - self.jitter, 1 + self.jitter) if self.jitter else 1.0
        return min(self.maximum, max(self.minimum * (1 - self.jitter), base * spread))


@attrs.frozen
class RestartBudget:
    """At most ``max_restarts`` restarts of one child within any ``window`` seconds.

    Failures are timed with ``trio.current_time()``. The failure that would be restart
    number ``max_restarts + 1`` inside the window escalates instead: the supervisor stops
    and raises ``EscalationError``. A clean return of a ``PERMANENT`` child counts too,
    so a child that keeps returning at once cannot spin forever.

    Attributes:
        max_restarts: restarts allowed inside the window (0: the first failure escalates).
        window: length of the sliding window in seconds (> 0).
    """

    max_restarts: int = 5
    window: float = 60.0

    def __attrs_post_init__(self) -> None:
        if self.max_restarts < 0:
            raise ValueError(f"RestartBudget.max_restarts must be >= 0, got {self.max_restarts}")
        if self.window <= 0:
            raise ValueError(f"RestartBudget.window must be > 0, got {self.window}")
