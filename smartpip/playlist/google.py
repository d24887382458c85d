"""The :class:`~smartpip.playlist.grants.Grants` the write half uses: :class:`StoredGrants`.

Access tokens come from Google's token endpoint (``grant_type=refresh_token``) with the user's
stored refresh token, and live only in this process's memory until :data:`EXPIRY_MARGIN`
seconds before they expire. A refresh that Google answers ``invalid_grant`` (the user revoked
access at Google, or the grant expired), or whose token lacks the YouTube scope, deletes the
stored grant (only if it is still the one that was refused: a reconnect racing it is kept),
records ``youtube_disconnected`` in the audit log, and raises
:class:`~smartpip.playlist.grants.GrantRevoked`.

Concurrency: one refresh per user at a time in a process (a per-user lock); callers that
waited use the token the first one got. Other replicas keep their own tokens.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import attrs
import psycopg
import trio

from smartpip.logs import get_logger
from smartpip.playlist.crypto import Keyring, SealedToken, Unsealable
from smartpip.playlist.grants import GoogleUnavailable, GrantRevoked, NotConnected
from smartpip.playlist.upstream import YOUTUBE_SCOPE, GoogleOAuth, GoogleRefused
from store.audit import insert_audit
from store.oauth_accounts import SealedRow, delete_oauth_account_if_sealed, select_sealed
from store.postgres import Database

__all__ = ["EVENT_DISCONNECTED", "EXPIRY_MARGIN", "MAX_CACHED", "StoredGrants"]

#: The audit event of a grant that ended (meta ``reason``: ``user``, ``invalid_grant``,
#: ``scope_removed``, ``youtube_refused``).
EVENT_DISCONNECTED = "youtube_disconnected"
# Why 5 minutes: a token handed out must outlive the YouTube call it is for (seconds), and
# Google's clock and ours may differ; Google's access tokens live an hour.
EXPIRY_MARGIN = 300.0
# Why 10,000: one entry per user who wrote a playlist in the last hour, ~200 bytes each.
MAX_CACHED = 10_000

log = get_logger(__name__)


@attrs.frozen
class _Cached:
    token: str = attrs.field(repr=False)
    fresh_until: float  # monotonic


def _forget(conn: psycopg.Connection[Any], row: SealedRow, reason: str) -> bool:
    deleted = delete_oauth_account_if_sealed(conn, row)
    if deleted:
        insert_audit(conn, row.user_id, EVENT_DISCONNECTED, {"reason": reason})
    return deleted


class StoredGrants:
    """Access tokens for users' stored grants, cached in memory.

    Args:
        db: Where the sealed refresh tokens are.
        keyring: Opens them.
        google: The token endpoint.
        monotonic: Clock of the cache.
        max_cached: Bound of the cache (oldest evicted first).
    """

    def __init__(
        self,
        db: Database,
        keyring: Keyring,
        google: GoogleOAuth,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        max_cached: int = MAX_CACHED,
    ) -> None:
        self._db = db
        self._keyring = keyring
        self._google = google
        self._monotonic = monotonic
        self._max = max_cached
        self._cache: OrderedDict[uuid.UUID, _Cached] = OrderedDict()
        self._locks: dict[uuid.UUID, tuple[trio.Lock, list[int]]] = {}

    def forget(self, user_id: uuid.UUID) -> None:
        """Drop the user's cached access token (after a disconnect or deletion)."""
        self._cache.pop(user_id, None)

    async def disconnect(self, user_id: uuid.UUID, *, reason: str) -> None:
        """Delete the stored grant (see :meth:`smartpip.playlist.grants.Grants.disconnect`)."""
        self.forget(user_id)
        row = await self._db.read(select_sealed, user_id)
        if row is not None and await self._db.run(_forget, row, reason):
            log.info("YouTube grant refused by YouTube; disconnected", reason=reason)

    def _fresh(self, user_id: uuid.UUID) -> str | None:
        cached = self._cache.get(user_id)
        if cached is None:
            return None
        if cached.fresh_until <= self._monotonic():
            del self._cache[user_id]
            return None
        return cached.token

    async def access_token(self, user_id: uuid.UUID, *, refresh: bool = False) -> str:
        """A valid access token with the YouTube scope (see
        :meth:`smartpip.playlist.grants.Grants.access_token`)."""
        if not refresh and (token := self._fresh(user_id)) is not None:
            return token
        stale = self._cache.get(user_id)
        lock, waiters = self._locks.setdefault(user_id, (trio.Lock(), [0]))
        waiters[0] += 1
        try:
            async with lock:
                current = self._cache.get(user_id)
                # Someone refreshed while we waited: theirs is at least as new as we want.
                if current is not None and current is not stale and self._fresh(user_id):
                    return current.token
                return await self._refresh(user_id)
        finally:
            waiters[0] -= 1
            if not waiters[0]:
                del self._locks[user_id]

    async def _refresh(self, user_id: uuid.UUID) -> str:
        self._cache.pop(user_id, None)
        row = await self._db.read(select_sealed, user_id)
        if row is None:
            raise NotConnected("the user has not connected YouTube")
        try:
            refresh_token = self._keyring.open(user_id, SealedToken(row.key_id, row.token_sealed))
        except Unsealable as error:
            # An operator removed a key before `smartpip playlist rotate-keys` ran, or the row
            # was tampered with: keep the row (the right key may come back), say why.
            log.warning("stored YouTube grant cannot be opened", reason=str(error))
            raise GoogleUnavailable("the stored grant cannot be opened") from None
        started = self._monotonic()
        try:
            grant = await self._google.refresh(refresh_token)
        except GoogleRefused as error:
            if not error.invalid_grant:  # not about the user's grant: keep it
                log.warning("Google refused a refresh", reason=str(error))
                raise GoogleUnavailable("Google refused the refresh") from None
            await self._db.run(_forget, row, "invalid_grant")
            log.info("YouTube grant refused by Google (invalid_grant); disconnected")
            raise GrantRevoked(
                "Google refused the stored grant (revoked or expired); connect YouTube again"
            ) from None
        if grant.scopes and YOUTUBE_SCOPE not in grant.scopes:
            await self._db.run(_forget, row, "scope_removed")
            log.info("YouTube scope no longer granted; disconnected")
            raise GrantRevoked("the YouTube permission was withdrawn; connect YouTube again")
        fresh_until = started + grant.expires_in - EXPIRY_MARGIN
        self._cache[user_id] = _Cached(grant.access_token, fresh_until)
        self._cache.move_to_end(user_id)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return grant.access_token
