"""The playlist writes' budget: their share of the day's YouTube units and a per-user cap.

Every YouTube call of a write is reserved first (``store.playlist_quota``, one Lua script
shared by all replicas): 50 units for ``playlistItems.insert``, 50 more when the Smart PiP
playlist must be created. The first reservation of a request also counts one of the user's
daily writes. A refusal says why and until when (the next midnight Pacific, when the
project's quota resets).

Redis unavailable: writes are refused (503). Unlike suggest there is no per-process
allowance: nothing is cached to protect, a write can wait, and uncounted writes would spend
the search budget blind.

Concurrency: trio tasks only; the one piece of local state (the day the budget was last seen
spent) is written between awaits.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Literal

import attrs

from smartpip.logs import get_logger
from smartpip.youtube import next_pacific_midnight, pacific_day, seconds_until_pacific_midnight
from store.errors import DatabaseUnavailable
from store.playlist_quota import (
    PlaylistUsage,
    Verdict,
    exhaust_playlist_budget,
    playlist_usage,
    reserve_playlist_units,
)
from store.quota import UNIT_COSTS, budget_units
from store.redis import RedisStore

__all__ = ["BudgetRefused", "PlaylistBudget", "RefusalReason"]

log = get_logger(__name__)

RefusalReason = Literal["budget", "quota", "user_limit"]

#: The units of one ``playlistItems.insert``.
INSERT_UNITS = UNIT_COSTS["playlist_insert"]
#: The units of one ``playlists.insert``.
CREATE_UNITS = UNIT_COSTS["playlist_create"]


class BudgetRefused(Exception):
    """No units for this write today.

    Attributes:
        reason: ``"budget"`` (the playlists' share is spent), ``"quota"`` (the day's whole
            budget is spent, or YouTube said so), ``"user_limit"`` (the user's daily writes).
        retry_after: Seconds until the next midnight Pacific (at least 1).
        resets_at: That midnight, in UTC.
    """

    def __init__(self, reason: RefusalReason, retry_after: int, resets_at: datetime) -> None:
        super().__init__(f"playlist writes refused ({reason}) until {resets_at.isoformat()}")
        self.reason = reason
        self.retry_after = retry_after
        self.resets_at = resets_at


@attrs.frozen
class BudgetSettings:
    """The numbers of the budget.

    Attributes:
        daily_searches: The day's budget in searches (``SMARTPIP_SUGGEST_DAILY_BUDGET``).
        share: The playlists' share of the day's units (``SMARTPIP_PLAYLIST_SHARE``).
        user_daily_limit: Writes a user may make a day (``SMARTPIP_PLAYLIST_USER_DAILY_LIMIT``).
    """

    daily_searches: int
    share: float
    user_daily_limit: int

    @property
    def day_units(self) -> int:
        """The day's whole budget in units (searches and playlist writes)."""
        return budget_units(self.daily_searches)

    @property
    def playlist_units(self) -> int:
        """The playlists' share of it, in units (rounded down)."""
        return int(self.day_units * self.share)


_REFUSALS: dict[Verdict, RefusalReason] = {
    Verdict.SHARE_SPENT: "budget",
    Verdict.DAY_SPENT: "quota",
    Verdict.USER_CAP: "user_limit",
}


class PlaylistBudget:
    """Reserves the units of playlist calls from the shared daily budget.

    Args:
        store: The Redis store.
        settings: The budget's numbers.
        restore: Restores a Pacific day's counter from Postgres (``tasks.quota.restore_day``)
            when a reservation finds it missing; None: a missing counter starts at zero.
        clock: Wall-clock seconds (the Pacific day).
    """

    def __init__(
        self,
        store: RedisStore,
        settings: BudgetSettings,
        *,
        restore: Callable[[str], Awaitable[object]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.settings = settings
        self._restore = restore
        self._clock = clock
        self._spent_day: str | None = None

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def refusal(self, reason: RefusalReason, now: datetime | None = None) -> BudgetRefused:
        """The refusal for ``reason`` now; a budget refusal marks the day spent here."""
        now = now or self._now()
        if reason != "user_limit":
            self._spent_day = pacific_day(now)
        return BudgetRefused(
            reason, seconds_until_pacific_midnight(now), next_pacific_midnight(now)
        )

    @property
    def spent_today(self) -> bool:
        """The playlists' budget was last seen spent today (``/v1/status``: ``degraded``)."""
        return self._spent_day == pacific_day(self._now())

    async def reserve(self, user_id: uuid.UUID, units: int, *, first: bool) -> None:
        """Reserve ``units`` for a call made for ``user_id``.

        Args:
            user_id: The user.
            units: The call's units (:data:`INSERT_UNITS`, :data:`CREATE_UNITS`, or a sum).
            first: The request's first reservation: it counts one of the user's writes.

        Raises:
            BudgetRefused: A limit refused it; nothing was counted.
            RedisUnavailable: Redis did not answer (the caller refuses the write).
        """
        now = self._now()
        day = pacific_day(now)
        settings = self.settings

        async def attempt(create: bool) -> Verdict:
            grant = await reserve_playlist_units(
                self._store,
                day,
                user_id,
                cost=units,
                day_budget=settings.day_units,
                playlist_budget=settings.playlist_units,
                user_limit=settings.user_daily_limit,
                count_user=first,
                create=create,
            )
            return grant.verdict

        verdict = await attempt(create=self._restore is None)
        if verdict is Verdict.MISSING and self._restore is not None:
            # Redis lost the day's counter (restart, eviction): put back what Postgres saved
            # first, or the searches already made today would be spent again.
            try:
                await self._restore(day)
            except DatabaseUnavailable as exc:
                log.warning(
                    "playlist quota: the day's counter is missing and Postgres cannot restore"
                    " it; counting from Redis alone",
                    error=str(exc),
                )
            verdict = await attempt(create=True)
        if verdict is not Verdict.ALLOWED:
            raise self.refusal(_REFUSALS[verdict], now)

    async def quota_exceeded(self) -> BudgetRefused:
        """YouTube answered ``quotaExceeded``: the playlists' share is spent until midnight
        Pacific (shared through Redis). Returns the refusal to answer with.

        Raises:
            RedisUnavailable: Redis did not answer (the refusal still holds in this process).
        """
        now = self._now()
        refusal = self.refusal("quota", now)
        await exhaust_playlist_budget(self._store, pacific_day(now), self.settings.playlist_units)
        return refusal

    async def observe(self) -> PlaylistUsage:
        """Today's usage; refreshes :attr:`spent_today` (another replica may have spent it).

        Raises:
            RedisUnavailable: Redis did not answer.
        """
        now = self._now()
        day = pacific_day(now)
        usage = await playlist_usage(self._store, day)
        settings = self.settings
        room = min(settings.playlist_units - usage.playlist_units, settings.day_units - usage.units)
        self._spent_day = day if room < INSERT_UNITS else None
        return usage
