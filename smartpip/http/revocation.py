"""Revoked access tokens: a deleted account's, or a signed-out sign-in's, stop working at once.

Access tokens are verified without any lookup, so a deletion or a logout alone would leave
them valid for up to :data:`~smartpip.http.tokens.ACCESS_TOKEN_TTL`. :class:`TokenRevocations`
knows two kinds of revocation:

- a **user** (account deletion): every token whose ``sub`` is the user;
- a **family** (logout, or refresh-token reuse detected): every token whose ``sid`` is the
  family, i.e. issued in that one sign-in. The user's other sign-ins keep working. Tokens
  without ``sid`` (issued before the claim existed, or by ``smartpip token``) belong to no
  family: only deleting the account revokes them, and they expire within 15 minutes.

The bearer guard consults :meth:`TokenRevocations.is_revoked` on every authenticated request,
after the signature check (a token remembered by :class:`~smartpip.http.guards.VerifiedTokenCache`
is checked too):

1. process-local tables of users and families revoked recently (by this replica, or seen in
   Redis): a hit answers at once, without I/O, and keeps answering while Redis is down;
2. otherwise the shared markers in Redis (:mod:`store.revocations`: the user's and the
   family's, read with one ``MGET``), written by whichever replica handled the deletion or the
   logout. A "not revoked" answer is remembered for :data:`CLEAR_TTL` seconds per (user,
   family) pair: one Redis command costs about 0.2-0.3 ms of this process's only core under
   coredis, more than the rest of a typical authenticated request, so checking on every
   request would halve throughput; the common case (a user's burst within a second) costs no
   Redis command at all. The price: another replica may accept a revoked token for up to
   :data:`CLEAR_TTL` after the revocation (the replica that handled it refuses at once).
   The read that a pair's expired answer needs also re-reads, in the same ``MGET``, the
   markers of up to :data:`REFRESH_BATCH` other pairs that were used since their last read
   and read more than :data:`REFRESH_AFTER` ago: many active users then cost a Redis command
   every half second or so instead of one each per second. The bound is unchanged, since
   every "not revoked" answer still comes from a read at most :data:`CLEAR_TTL` old.

Redis unavailable: the check **fails open** on the local knowledge. The replica that handled
a deletion or logout still refuses those tokens; other replicas accept them until Redis
returns (if the marker was written) or the tokens expire (15 minutes at most, if it was not).
Every route that reads or writes a deleted user's rows still fails, since the user row is
gone; a signed-out sign-in cannot be refreshed, since its family is revoked in Postgres.
Failing closed instead would turn a Redis outage (Redis holds nothing that cannot be rebuilt,
and its loss must only degrade the service) into a full API outage for everybody, to protect
the rare revoked token. The outage is logged once as a warning, and Redis is skipped for
:data:`REDIS_BACKOFF` seconds after a failure so that a frozen Redis does not add its timeout
to every request. A marker that could not be written is logged with it: as a warning for a
deleted account (rare, and worth an operator's look), at info level for a logout (frequent;
the outage warning already says that revocations reach only this replica meanwhile).
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import trio

from smartpip.http.tokens import ACCESS_TOKEN_TTL
from smartpip.logs import get_logger
from store.backoff import RedisBackoff
from store.redis import RedisStore, RedisUnavailable
from store.revocations import mark_family_revoked, mark_user_revoked, select_many_revocations

__all__ = [
    "CLEAR_TTL",
    "MAX_LOCAL_REVOCATIONS",
    "REDIS_BACKOFF",
    "REFRESH_AFTER",
    "REFRESH_BATCH",
    "REVOCATION_TTL",
    "TokenRevocations",
]

log = get_logger(__name__)

# Why +60: a token verifies until its expiry plus the verifier's 30 s clock leeway; 30 s more
# covers clock skew between the replica that wrote the marker and the ones reading it.
REVOCATION_TTL = ACCESS_TOKEN_TTL + 60
# Why 10,000 (per table): deletions are a handful a day; logouts and reuse detections live in
# the table for REVOCATION_TTL (16 minutes), so 10,000 is about 10 logouts a second, sustained.
# At about 100 bytes an entry each table stays under 1 MB. Past it the oldest entries go, and
# Redis still answers for them.
MAX_LOCAL_REVOCATIONS = 10_000
# Why 1 s: the rate limiter's back-off (smartpip.http.ratelimit.REDIS_BACKOFF); a dead Redis costs
# one timed-out check per second per process instead of one per request.
REDIS_BACKOFF = 1.0
# Why 1 s: "at once" as a person perceives it, while a user's burst of requests (the extension
# syncing history and settings together) costs one Redis round trip instead of one each.
CLEAR_TTL = 1.0
# Why half of CLEAR_TTL: a pair in use is re-read along with another pair's read once its
# answer is this old, so a steady user rarely needs a read of their own; a younger answer is
# left alone (re-reading it would spend Redis work for little gain).
REFRESH_AFTER = CLEAR_TTL / 2
# Why 64: one MGET of at most 129 keys (about 10 KB of request), which Redis answers in
# microseconds; it replaces up to 64 commands, each costing this process far more.
REFRESH_BATCH = 64
Pair = tuple[uuid.UUID, uuid.UUID | None]


class _ExpiringIds:
    """IDs remembered for a fixed time after they were added, at most ``max_entries``.

    Insertion order is expiry order (one TTL for all), so expired entries are swept from the
    front when adding; a lookup checks only its own entry (one dict lookup when absent, the
    common case, without reading the clock).
    """

    def __init__(self, ttl: float, monotonic: Callable[[], float], max_entries: int) -> None:
        self._ttl = ttl
        self._monotonic = monotonic
        self._max = max_entries
        self._expiry: OrderedDict[uuid.UUID, float] = OrderedDict()

    def __contains__(self, key: uuid.UUID) -> bool:
        expires = self._expiry.get(key)
        if expires is None:
            return False
        if expires > self._monotonic():
            return True
        del self._expiry[key]
        return False

    def add(self, key: uuid.UUID) -> None:
        now = self._monotonic()
        self._expiry.pop(key, None)
        self._expiry[key] = now + self._ttl
        while self._expiry:
            oldest, expires = next(iter(self._expiry.items()))
            if expires > now and len(self._expiry) <= self._max:
                break
            del self._expiry[oldest]


class TokenRevocations:
    """Which access tokens are revoked (by user or by family): local tables in front of Redis.

    Concurrency: state changes happen between awaits only, in the trio task of a request, so
    no lock is needed (the same argument as :class:`smartpip.http.ratelimit.RateLimiter`); a
    request whose pair another request's ``MGET`` is reading waits for that read rather than
    sending its own.

    Args:
        store: The Redis store holding the shared markers.
        ttl: Seconds a revocation lasts (locally and in Redis); at least the token lifetime
            plus the verification leeway.
        clock: Seconds since the epoch, written into the marker.
        monotonic: Monotonic seconds, for local expiry, the "clear" cache and the back-off.
        max_local: Most entries kept in each local table (users, families, "clear" answers).
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
        self._users = _ExpiringIds(ttl, monotonic, max_local)
        self._families = _ExpiringIds(ttl, monotonic, max_local)
        # (user, family) -> monotonic time until which "not revoked" (from Redis) is trusted.
        # Checked after the local tables, so a revocation made here needs no eviction.
        # Insertion order is expiry order (one TTL for all, re-inserted on each read).
        self._clear: OrderedDict[Pair, float] = OrderedDict()
        # The pairs of `_clear` answered from it since their last read: worth re-reading
        # along with another pair's read (an idle pair's entry is simply left to expire).
        self._used: set[Pair] = set()
        # The pairs whose markers a request is reading now, and the event set when it is done.
        self._reading: dict[Pair, trio.Event] = {}
        self._redis = RedisBackoff(
            went_down="token revocation check falls back to this process's knowledge; "
            "revocations made meanwhile reach only this replica",
            came_back="token revocation check uses Redis again",
            backoff=backoff,
            clock=monotonic,
        )

    async def revoke_user(self, user_id: uuid.UUID) -> bool:
        """Revoke every access token of ``user_id``: locally at once, then in Redis.

        Call it after the deletion committed. Never raises because of Redis.

        Returns:
            True when the shared marker was written (every replica refuses the tokens); False
            when Redis was unavailable (only this replica does; see the module docstring).
        """
        self._users.add(user_id)
        return await self._publish(
            mark_user_revoked(self._store, user_id, at=int(self._clock()), ttl_seconds=self._ttl),
            "revocation marker not written: other replicas accept the deleted user's access "
            "tokens until they expire",
            important=True,
        )

    async def revoke_family(self, family_id: uuid.UUID) -> bool:
        """Revoke every access token issued in one sign-in: locally at once, then in Redis.

        Call it after the family's revocation committed (logout, reuse detected). Never raises
        because of Redis.

        Args:
            family_id: The refresh-token family, the ``sid`` of its access tokens.

        Returns:
            True when the shared marker was written; False when Redis was unavailable (only
            this replica refuses the tokens).
        """
        self._families.add(family_id)
        return await self._publish(
            mark_family_revoked(
                self._store, family_id, at=int(self._clock()), ttl_seconds=self._ttl
            ),
            "session revocation marker not written: other replicas accept the signed-out "
            "session's access tokens until they expire",
            important=False,
        )

    async def _publish(self, write: Awaitable[None], lost: str, *, important: bool) -> bool:
        # Always tried, even while Redis is backed off: a write that might reach the other
        # replicas is worth up to one timeout of the (rare) revoking request.
        try:
            await write
        except RedisUnavailable as exc:
            (log.warning if important else log.info)(lost, error=str(exc))
            self._redis.failed(exc)
            return False
        self._redis.succeeded()
        return True

    async def is_revoked(self, user_id: uuid.UUID, family_id: uuid.UUID | None = None) -> bool:
        """Whether a token of ``user_id`` issued in ``family_id`` is revoked.

        Never raises because of Redis. Waits at most the store's ``connect_timeout +
        command_timeout``; while Redis is believed down, answers from the local tables only
        (fail open).

        Args:
            user_id: The token's user (``sub``).
            family_id: The token's family (``sid``); None for a token without one, which only
                a user revocation reaches.
        """
        pair = (user_id, family_id)
        known = self._known(pair)
        if known is not None:
            return known
        reading = self._reading.get(pair)
        if reading is not None:
            # Another request's read covers this pair and is in flight: its answer is fresher
            # than any remembered one, so wait for it instead of sending the same read again
            # (under load, every request of an expired pair would otherwise read at once).
            await reading.wait()
            known = self._known(pair)
            if known is not None:
                return known
            # That read failed (Redis away) or was cancelled: read here, as without it.
        return await self._read(pair)

    def _known(self, pair: Pair) -> bool | None:
        """The answer from local knowledge alone, or None when Redis must be asked."""
        user_id, family_id = pair
        if user_id in self._users or (family_id is not None and family_id in self._families):
            return True
        if self._clear.get(pair, 0.0) > self._monotonic():
            self._used.add(pair)
            return False
        return None

    async def _read(self, pair: Pair) -> bool:
        """Read the markers of ``pair`` and of the other pairs due (one MGET); remember them."""
        pairs = [pair, *self._due_for_refresh(pair, self._monotonic())]
        done = trio.Event()
        for each in pairs:
            self._reading[each] = done
        try:
            answers = await self._redis.attempt(select_many_revocations(self._store, pairs))
        finally:
            for each in pairs:
                if self._reading.get(each) is done:
                    del self._reading[each]
            done.set()
        if answers is None:
            return False
        revoked = False
        for (user, family), (user_revoked, family_revoked) in zip(pairs, answers, strict=True):
            # Later requests skip Redis. A local entry may outlive its marker by up to one
            # TTL: harmless, a deleted user's ID is never used again and a revoked family
            # never gets new tokens.
            if user_revoked:
                self._users.add(user)
            if family_revoked and family is not None:
                self._families.add(family)
            if user_revoked or family_revoked:
                self._forget_clear((user, family))
                revoked = revoked or (user, family) == pair
            else:
                self._remember_clear((user, family))
        return revoked

    def _due_for_refresh(self, asked: Pair, now: float) -> list[Pair]:
        """Other pairs used since their last read, read more than :data:`REFRESH_AFTER` ago
        (oldest first, at most :data:`REFRESH_BATCH`). Expired entries of pairs not used
        since are dropped on the way, so the scan only meets pairs of the last second."""
        due: list[Pair] = []
        idle: list[Pair] = []
        fresh_after = now + CLEAR_TTL - REFRESH_AFTER
        for pair, expires in self._clear.items():
            if expires > fresh_after or len(due) >= REFRESH_BATCH:
                break
            if pair in self._used:
                if pair != asked and pair not in self._reading:
                    due.append(pair)
            elif expires <= now:
                idle.append(pair)
        for pair in idle:
            del self._clear[pair]
        return due

    def _forget_clear(self, pair: Pair) -> None:
        self._clear.pop(pair, None)
        self._used.discard(pair)

    def _remember_clear(self, pair: Pair) -> None:
        self._clear.pop(pair, None)
        self._used.discard(pair)
        self._clear[pair] = self._monotonic() + CLEAR_TTL
        while len(self._clear) > self._max_local:
            oldest, _ = self._clear.popitem(last=False)
            self._used.discard(oldest)
