"""Revoked users: every access token of a deleted account stops working at once.

Access tokens are verified without any lookup, so a deletion alone would leave them valid for
up to :data:`~smartpip.tokens.ACCESS_TOKEN_TTL`. :class:`UserRevocations` is consulted by the
bearer guard on every authenticated request, after the signature check (a token remembered
by :class:`~smartpip.guards.VerifiedTokenCache` is checked too):

1. a process-local table of users revoked recently (by this replica, or seen in Redis): a hit
   answers at once, without I/O, and keeps answering while Redis is down;
2. otherwise the shared marker in Redis (:mod:`store.revocations`, one ``EXISTS``), written by
   whichever replica handled the deletion. A "not revoked" answer is remembered for
   :data:`CLEAR_TTL` seconds per user: one Redis command costs about 0.2-0.3 ms of this
   process's only core under coredis, more than the rest of a typical authenticated request,
   so checking on every request would halve throughput. The price: another replica may accept
   a deleted user's token for up to :data:`CLEAR_TTL` after the deletion (the replica that
   handled it refuses at once).

Redis unavailable: the check **fails open** on the local knowledge. The replica that handled
a deletion still refuses that user's tokens; other replicas accept them until Redis returns
or the tokens expire (15 minutes at most). Every route that reads or writes the user's rows
still fails for a deleted user, since the user row is gone. Failing closed instead would turn
a Redis outage (Redis holds nothing that cannot be rebuilt, and its loss must only degrade
the service) into a full API outage for everybody, to protect the rare deleted account. The
outage is logged once as a warning, and Redis is skipped for :data:`REDIS_BACKOFF` seconds
after a failure so that a frozen Redis does not add its timeout to every request.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable

from smartpip.logs import get_logger
from smartpip.redisbackoff import RedisBackoff
from smartpip.tokens import ACCESS_TOKEN_TTL
from store.redis import RedisStore, RedisUnavailable
from store.revocations import is_user_revoked, mark_user_revoked

__all__ = [
    "CLEAR_TTL",
    "MAX_LOCAL_REVOCATIONS",
    "REDIS_BACKOFF",
    "REVOCATION_TTL",
    "UserRevocations",
]

log = get_logger(__name__)

# Why +60: a token verifies until its expiry plus the verifier's 30 s clock leeway; 30 s more
# covers clock skew between the replica that wrote the marker and the ones reading it.
REVOCATION_TTL = ACCESS_TOKEN_TTL + 60
# Why 10,000: deletions are rare (a handful a day); at about 100 bytes an entry the table stays
# under 1 MB even so. Past it the oldest entries go, and Redis still answers for them.
MAX_LOCAL_REVOCATIONS = 10_000
# Why 1 s: the rate limiter's back-off (smartpip.ratelimit.REDIS_BACKOFF); a dead Redis costs
# one timed-out check per second per process instead of one per request.
REDIS_BACKOFF = 1.0
# Why 1 s: "at once" as a person perceives it, while a user's burst of requests (the extension
# syncing history and settings together) costs one Redis round trip instead of one each.
CLEAR_TTL = 1.0


class UserRevocations:
    """Which users' access tokens are revoked: a local table in front of Redis markers.

    Concurrency: state changes happen between awaits only, in the trio task of a request, so
    no lock is needed (the same argument as :class:`smartpip.ratelimit.RateLimiter`).

    Args:
        store: The Redis store holding the shared markers.
        ttl: Seconds a revocation lasts (locally and in Redis); at least the token lifetime
            plus the verification leeway.
        clock: Seconds since the epoch, written into the marker.
        monotonic: Monotonic seconds, for local expiry and the back-off.
        max_local: Most entries kept in the local table.
        backoff: Seconds Redis is skipped after it failed.
    """

    def __init__(
        self,
        store: RedisStore,
        *,
        ttl: int = REVOCATION_TTL,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        max_local: int = MAX_LOCAL_REVOCATIONS,
        backoff: float = REDIS_BACKOFF,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self._monotonic = monotonic
        self._max_local = max_local
        # user -> monotonic expiry; insertion order is expiry order (one TTL for all).
        self._local: OrderedDict[uuid.UUID, float] = OrderedDict()
        # user -> monotonic time until which "not revoked" (from Redis) is trusted.
        self._clear: OrderedDict[uuid.UUID, float] = OrderedDict()
        self._redis = RedisBackoff(
            went_down="token revocation check falls back to this process's knowledge",
            came_back="token revocation check uses Redis again",
            backoff=backoff,
            clock=monotonic,
        )

    async def revoke(self, user_id: uuid.UUID) -> bool:
        """Revoke every access token of ``user_id``: locally at once, then in Redis.

        Call it after the deletion committed. Never raises because of Redis.

        Returns:
            True when the shared marker was written (every replica refuses the tokens); False
            when Redis was unavailable (only this replica does; see the module docstring).
        """
        self._remember(user_id)
        self._clear.pop(user_id, None)
        try:
            await mark_user_revoked(
                self._store, user_id, at=int(self._clock()), ttl_seconds=self._ttl
            )
        except RedisUnavailable as exc:
            log.warning(
                "revocation marker not written: other replicas accept the deleted user's "
                "access tokens until they expire",
                error=str(exc),
            )
            self._redis.failed(exc)
            return False
        self._redis.succeeded()
        return True

    async def is_revoked(self, user_id: uuid.UUID) -> bool:
        """Whether the user's access tokens are revoked. Never raises because of Redis.

        Waits at most the store's ``connect_timeout + command_timeout``; while Redis is
        believed down, answers from the local table only (fail open).
        """
        if self._is_local(user_id):
            return True
        if self._clear.get(user_id, 0.0) > self._monotonic():
            return False
        revoked = await self._redis.attempt(is_user_revoked(self._store, user_id))
        if revoked is None:
            return False
        if not revoked:
            self._remember_clear(user_id)
        else:
            # Later requests of this user skip Redis. The local entry may outlive the marker
            # by up to one TTL: harmless, a deleted user's ID is never used again.
            self._remember(user_id)
        return revoked

    def _remember_clear(self, user_id: uuid.UUID) -> None:
        self._clear.pop(user_id, None)
        self._clear[user_id] = self._monotonic() + CLEAR_TTL
        while len(self._clear) > self._max_local:
            self._clear.popitem(last=False)

    def _is_local(self, user_id: uuid.UUID) -> bool:
        now = self._monotonic()
        while self._local:
            oldest, expires = next(iter(self._local.items()))
            if expires > now:
                break
            del self._local[oldest]
        return user_id in self._local

    def _remember(self, user_id: uuid.UUID) -> None:
        self._local.pop(user_id, None)
        self._local[user_id] = self._monotonic() + self._ttl
        while len(self._local) > self._max_local:
            self._local.popitem(last=False)
