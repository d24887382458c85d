"""The write: add a video to the user's Smart PiP playlist on YouTube (``PlaylistWriter``).

:meth:`PlaylistWriter.add`, for one signed-in user:

1. **One write at a time per user** (``store.playlist_writes`` lock): a concurrent write for
   the same user is refused (:class:`WriteBusy`, retry shortly) rather than queued, so two
   first writes never create two playlists.
2. **Idempotency.** With an ``Idempotency-Key`` the answer of an earlier successful write with
   that key (for this user, kept a day) is replayed without calling YouTube; the same key with
   another body is :class:`KeyReused`. Errors are not remembered: retrying after an error
   tries again.
3. **Token** from :class:`~smartpip.playlist.grants.Grants` (so a disconnected user is told
   so whatever they add). YouTube answering 401 later: one refreshed token
   (``refresh=True``) and one retry; ``GrantRevoked`` then means the user was disconnected
   (:class:`NotConnectedError` ``consent_revoked``). A 401 for the fresh token too means the
   grant is of no use: it is deleted (``Grants.disconnect``) and the user asked to consent
   again (``consent_required``).
4. **Same video twice in a row** (to the same playlist) is one insert: the second answers
   ``alreadyAdded`` from ``youtube_playlists`` without calling YouTube or spending quota.
5. **Budget** (:class:`~smartpip.playlist.budget.PlaylistBudget`): 50 units for the insert,
   50 more when the playlist must be created, reserved before the calls.
6. **Create** the playlist (private) the first time and remember its ID at once; **insert**.
   ``playlistNotFound`` for the remembered playlist (the user deleted it): forget it, create a
   new one and insert again, once.

YouTube's errors become the domain errors of :mod:`.errors`; the routes map them to problems.
Nothing here logs or returns a token.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from smartpip.logs import get_logger
from smartpip.playlist.budget import CREATE_UNITS, INSERT_UNITS, BudgetRefused, PlaylistBudget
from smartpip.playlist.errors import (
    KeyReused,
    NotConnectedError,
    PlaylistFull,
    PlaylistGone,
    PlaylistRefused,
    UpstreamError,
    VideoGone,
    WriteBusy,
    WriteFailed,
    WriteUnavailable,
)
from smartpip.playlist.grants import GoogleUnavailable, GrantRevoked, Grants, NotConnected
from smartpip.playlist.metrics import PlaylistMetrics
from smartpip.playlist.model import AddBody, Added, fingerprint
from smartpip.youtube import PlaylistClient, QuotaExceeded, RateLimited, YouTubeError
from store.playlist_writes import (
    StoredAnswer,
    read_answer,
    release_write_lock,
    save_answer,
    take_write_lock,
)
from store.playlists import (
    PlaylistRow,
    forget_playlist,
    record_added,
    save_playlist,
    select_playlist,
)
from store.postgres import Database
from store.redis import RedisStore, RedisUnavailable

__all__ = ["PlaylistWriter", "WriteAnswer"]

log = get_logger(__name__)
_T = TypeVar("_T")

# Why 60 s: longer than a write's worst case (a token refresh plus up to four YouTube calls of
# 3 s each); a holder that died frees the user's writes after this.
DEFAULT_LOCK_SECONDS = 60.0
# Retry-After when Redis or Google's token endpoint does not answer: usually back soon.
_SOON = 30
# Retry-After after a short-term YouTube rate limit (per minute, not the daily quota).
_RATE_LIMITED_RETRY = 60
_DESCRIPTION = "Videos saved from the Smart PiP browser extension."


class WriteAnswer:
    """A successful answer: the document, and whether it is a replay of a remembered one."""

    def __init__(self, body: dict[str, object], *, replayed: bool) -> None:
        self.body = body
        self.replayed = replayed


_REASON_ERRORS: dict[str, Callable[[], WriteFailed]] = {
    "playlistContainsMaximumNumberOfVideos": PlaylistFull,
    "videoNotFound": VideoGone,
    "playlistItemsNotAccessible": PlaylistRefused,
    "playlistOperationUnsupported": PlaylistRefused,
    "forbidden": PlaylistRefused,
    "insufficientPermissions": lambda: NotConnectedError("consent_required"),
    "ACCESS_TOKEN_SCOPE_INSUFFICIENT": lambda: NotConnectedError("consent_required"),
}


def _lost() -> UpstreamError:
    log.warning("playlist: YouTube says the playlist it just created does not exist")
    return UpstreamError("YouTube lost the playlist it just created")


class _Token:
    """The user's access token for one write, refreshed at most once."""

    def __init__(self, grants: Grants, user_id: uuid.UUID) -> None:
        self._grants = grants
        self._user_id = user_id
        self._token: str | None = None
        self.refreshed = False

    async def get(self, *, refresh: bool = False) -> str:
        if self._token is not None and not refresh:
            return self._token
        try:
            self._token = await self._grants.access_token(self._user_id, refresh=refresh)
        except GrantRevoked:
            raise NotConnectedError("consent_revoked") from None
        except NotConnected:
            raise NotConnectedError("not_connected") from None
        except GoogleUnavailable as error:
            log.warning("playlist: Google's token endpoint unavailable", error=str(error))
            raise WriteUnavailable("google", _SOON) from None
        self.refreshed = self.refreshed or refresh
        return self._token

    async def disconnect(self, reason: str) -> None:
        """Delete the user's grant: YouTube refused even a freshly refreshed token."""
        self._token = None
        await self._grants.disconnect(self._user_id, reason=reason)


class PlaylistWriter:
    """Adds videos to users' playlists; one per process, built by the composition root.

    Args:
        grants: Access tokens for users' stored grants (the consent half).
        client: The YouTube playlist client.
        db: Where the playlist ID and the last video are remembered.
        redis: The write lock and the idempotency records.
        budget: The units budget.
        metrics: The playlist metrics.
        title: The title of the playlist created for a user.
        lock_seconds: TTL of a user's write lock.
    """

    def __init__(
        self,
        *,
        grants: Grants,
        client: PlaylistClient,
        db: Database,
        redis: RedisStore,
        budget: PlaylistBudget,
        metrics: PlaylistMetrics,
        title: str = "Smart PiP",
        lock_seconds: float = DEFAULT_LOCK_SECONDS,
    ) -> None:
        self._grants = grants
        self._client = client
        self._db = db
        self._redis = redis
        self.budget = budget
        self._metrics = metrics
        self._title = title
        self._lock_seconds = lock_seconds

    def state(self) -> str:
        """``degraded`` while the playlists' budget is spent today, else ``up``."""
        return "degraded" if self.budget.spent_today else "up"

    async def refresh_gauges(self) -> None:
        """Re-read today's usage (another replica may have spent the budget); best effort."""
        try:
            usage = await self.budget.observe()
        except RedisUnavailable:
            return
        self._metrics.set_usage(usage, self.budget.settings.playlist_units)

    async def add(
        self, user_id: uuid.UUID, body: AddBody, idempotency_key: str | None
    ) -> WriteAnswer:
        """Add ``body.video_id`` for ``user_id`` (see the module docstring).

        Raises:
            WriteFailed: One of its subclasses.
            BudgetRefused: The budget refused it (``reason`` says which limit).
            PlaylistOwnerMissing: The user was deleted meanwhile.
            DatabaseUnavailable: Postgres did not answer.
        """
        try:
            answer = await self._locked(user_id, body, idempotency_key)
        except (WriteFailed, BudgetRefused) as error:
            outcome = error.reason if isinstance(error, BudgetRefused) else error.outcome
            self._metrics.write(outcome)
            raise
        if answer.replayed:
            self._metrics.write("replayed")
        else:
            self._metrics.write("already_added" if answer.body["alreadyAdded"] else "added")
        return answer

    async def _locked(
        self, user_id: uuid.UUID, body: AddBody, idempotency_key: str | None
    ) -> WriteAnswer:
        try:
            holder = await take_write_lock(self._redis, user_id, self._lock_seconds)
        except RedisUnavailable as error:
            log.warning("playlist: Redis unavailable, write refused", error=str(error))
            raise WriteUnavailable("redis", _SOON) from None
        if holder is None:
            raise WriteBusy()
        try:
            return await self._idempotent(user_id, body, idempotency_key)
        finally:
            # Shielded and bounded: a request cancelled by its deadline still frees the lock.
            with trio.CancelScope(shield=True, deadline=trio.current_time() + 2):
                try:
                    await release_write_lock(self._redis, user_id, holder)
                except RedisUnavailable as error:
                    log.warning("playlist: write lock not released", error=str(error))

    async def _idempotent(
        self, user_id: uuid.UUID, body: AddBody, idempotency_key: str | None
    ) -> WriteAnswer:
        digest = fingerprint(body)
        try:
            stored = (
                await read_answer(self._redis, user_id, idempotency_key)
                if idempotency_key is not None
                else None
            )
        except RedisUnavailable as error:
            log.warning("playlist: Redis unavailable, write refused", error=str(error))
            raise WriteUnavailable("redis", _SOON) from None
        if stored is not None:
            if stored.fingerprint != digest:
                raise KeyReused()
            return WriteAnswer(stored.body, replayed=True)
        added = await self._write(user_id, body)
        document = added.document()
        if idempotency_key is not None:
            try:
                await save_answer(
                    self._redis, user_id, idempotency_key, StoredAnswer(digest, 200, document)
                )
            except RedisUnavailable as error:
                # The write is done; only a replay of it would insert again.
                log.warning("playlist: idempotency record not saved", error=str(error))
        return WriteAnswer(document, replayed=False)

    async def _reserve(self, user_id: uuid.UUID, units: int, *, first: bool) -> None:
        try:
            await self.budget.reserve(user_id, units, first=first)
        except RedisUnavailable as error:
            log.warning("playlist: Redis unavailable, write refused", error=str(error))
            raise WriteUnavailable("redis", _SOON) from None
        self._metrics.units.inc(units)

    async def _write(self, user_id: uuid.UUID, body: AddBody) -> Added:
        # The grant first: a user who disconnected is told so, even for the last video.
        token = _Token(self._grants, user_id)
        await token.get()
        row = await self._db.read(select_playlist, user_id) or PlaylistRow(None, None, None, None)
        named = body.playlist_id is not None
        target = body.playlist_id or row.playlist_id
        if (
            target is not None
            and row.last_playlist_id == target
            and row.last_video_id == body.video_id
        ):
            return Added(target, body.video_id, row.last_item_id, already_added=True)
        await self._reserve(
            user_id, INSERT_UNITS + (CREATE_UNITS if target is None else 0), first=True
        )
        created = target is None
        if target is None:
            target = await self._create(user_id, token)
        try:
            item_id = await self._insert(token, target, body.video_id)
        except PlaylistGone:
            if named:
                raise
            if created:
                raise _lost() from None
            # The user deleted the Smart PiP playlist: a new one, once.
            log.info("playlist: the Smart PiP playlist is gone; creating a new one")
            await self._db.run(forget_playlist, user_id, target)
            await self._reserve(user_id, CREATE_UNITS + INSERT_UNITS, first=False)
            target = await self._create(user_id, token)
            created = True
            try:
                item_id = await self._insert(token, target, body.video_id)
            except PlaylistGone:
                raise _lost() from None
        await self._db.run(
            record_added, user_id, playlist_id=target, video_id=body.video_id, item_id=item_id
        )
        return Added(target, body.video_id, item_id, playlist_created=created)

    async def _create(self, user_id: uuid.UUID, token: _Token) -> str:
        playlist_id = await self._call(
            "playlists",
            token,
            lambda t: self._client.create_playlist(t, title=self._title, description=_DESCRIPTION),
        )
        await self._db.run(save_playlist, user_id, playlist_id)
        return playlist_id

    async def _insert(self, token: _Token, playlist_id: str, video_id: str) -> str:
        return await self._call(
            "playlistItems",
            token,
            lambda t: self._client.insert_video(t, playlist_id=playlist_id, video_id=video_id),
        )

    async def _call(self, method: str, token: _Token, call: Callable[[str], Awaitable[_T]]) -> _T:
        """One YouTube call with the user's token; after a 401 one more with a fresh token."""
        refresh = False
        while True:
            try:
                result = await call(await token.get(refresh=refresh))
            except YouTubeError as error:
                unauthorized = error.status == 401
                self._metrics.call(method, "unauthorized" if unauthorized else error.outcome)
                if unauthorized and not token.refreshed:
                    refresh = True
                    continue
                if unauthorized:
                    await token.disconnect("youtube_refused")
                raise await self._failure(error) from None
            self._metrics.call(method, "ok")
            return result

    async def _failure(self, error: YouTubeError) -> WriteFailed | BudgetRefused:
        """The domain error for YouTube's ``error``."""
        if error.status == 401:
            return NotConnectedError("consent_required")
        if isinstance(error, QuotaExceeded):
            try:
                return await self.budget.quota_exceeded()
            except RedisUnavailable as redis_error:
                log.warning("playlist: quota spent not shared", error=str(redis_error))
                return self.budget.refusal("quota")
        if isinstance(error, RateLimited):
            return WriteUnavailable("rate_limited", _RATE_LIMITED_RETRY)
        if "playlistNotFound" in error.reasons:
            return PlaylistGone()
        for reason in error.reasons:
            if reason in _REASON_ERRORS:
                return _REASON_ERRORS[reason]()
        log.warning("playlist: YouTube answered unusably", error=str(error))
        return UpstreamError(str(error))
