"""The refresh-session service: sign-in, refresh-token rotation with reuse detection, logout.

A sign-in starts a *family*; each refresh rotates the presented token into a child of the same
family. A refresh token is ``secrets.token_urlsafe(32)`` (256 random bits) and only its SHA-256
digest is stored. Presenting a rotated token again shortly after its rotation (within
``SessionPolicy.reuse_grace``) yields a sibling token, so two parts of the extension refreshing
at once both stay signed in; presenting it later means it was copied, and the whole family is
revoked. Every state change happens in one transaction under the user's session lock
(:func:`store.sessions.lock_user_sessions`, whose module docstring gives the argument).

Access tokens carry their family as ``sid``. Revoking a family (logout, reuse detected) also
revokes its access tokens (:class:`~smartpip.http.revocation.TokenRevocations`) once that has
committed. Transaction and marker are shielded from cancellation together: a started
transaction commits anyway (its thread is abandoned, not stopped), so a client hanging up
must not skip the marker.

Errors: ``SessionRejected`` (the HTTP layer answers 401); ``DatabaseUnavailable`` propagates
unchanged (503).
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import attrs
import psycopg
import trio

from smartpip.http.revocation import TokenRevocations
from smartpip.http.tokens import AccessTokens
from smartpip.logs import get_logger
from store.audit import (
    EVENT_LOGOUT,
    EVENT_REFRESH_REUSE_DETECTED,
    EVENT_SIGN_IN,
    MetaValue,
    insert_audit,
)
from store.postgres import Database
from store.sessions import (
    SessionRow,
    insert_session,
    lock_user_sessions,
    mark_session_used,
    revoke_family,
    select_session_for_update,
    select_session_owner,
)
from store.users import upsert_user

__all__ = ["IssuedTokens", "RejectReason", "SessionPolicy", "SessionRejected", "Sessions"]

log = get_logger(__name__)

RejectReason = Literal["unknown", "expired", "revoked", "reused"]

# 32 bytes: 256 bits of entropy, 43 URL-safe characters.
_REFRESH_TOKEN_BYTES = 32
# Our refresh tokens are 43 characters; a far longer string is not one (and is not hashed).
_MAX_REFRESH_TOKEN_CHARS = 256


@attrs.frozen
class SessionPolicy:
    """How long refresh sessions live.

    Attributes:
        idle: A refresh token unused this long expires; each rotation starts the period anew.
        absolute: A family expires this long after sign-in, however active.
        reuse_grace: A rotated token presented again within this time yields a sibling token
            instead of revoking the family (concurrent refreshes from one client).
    """

    idle: timedelta = timedelta(days=30)
    absolute: timedelta = timedelta(days=90)
    reuse_grace: timedelta = timedelta(seconds=10)


@attrs.frozen(repr=False)
class IssuedTokens:
    """Tokens handed to a client after sign-in or refresh.

    Attributes:
        access_token: Our access JWT.
        expires_in: Seconds the access token is valid.
        refresh_token: The new refresh token (opaque).
        refresh_expires_in: Seconds until the refresh token's idle expiry.
        user_id: The user signed in.
    """

    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    user_id: uuid.UUID

    def __repr__(self) -> str:
        return f"IssuedTokens(user_id={self.user_id!r}, <tokens redacted>)"


class SessionRejected(Exception):
    """A refresh token was refused (the HTTP layer answers 401).

    ``str()`` and ``reason`` name why: ``unknown``, ``expired``, ``revoked`` or ``reused``.
    """

    def __init__(self, reason: RejectReason) -> None:
        super().__init__(reason)
        self.reason: RejectReason = reason


@attrs.frozen
class _NewSession:
    """A transaction's result: the session row written for a new refresh token."""

    user_id: uuid.UUID
    family_id: uuid.UUID
    expires_at: datetime


@attrs.frozen
class _Rejected:
    """A transaction's result: refuse the token, after committing what was written.

    ``family_id`` is set when the family was revoked by this transaction (reuse detected).
    """

    reason: RejectReason
    family_id: uuid.UUID | None = None


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


def _looks_like_refresh_token(token: str) -> bool:
    return 0 < len(token) <= _MAX_REFRESH_TOKEN_CHARS and token.isascii()


class Sessions:
    """Refresh sessions on Postgres, issuing access tokens with ``tokens``.

    Args:
        db: The database.
        tokens: Issues the access tokens.
        policy: Lifetimes.
        revocations: Revokes a family's access tokens when the family is revoked (the
            bearer guard's own checker).
        clock: Seconds since the epoch (``time.time``); injectable for tests.
    """

    def __init__(
        self,
        db: Database,
        tokens: AccessTokens,
        policy: SessionPolicy,
        revocations: TokenRevocations,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._tokens = tokens
        self._policy = policy
        self._revocations = revocations
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _issue(self, refresh_token: str, new: _NewSession, now: datetime) -> IssuedTokens:
        return IssuedTokens(
            access_token=self._tokens.issue(new.user_id, session_id=new.family_id),
            expires_in=self._tokens.ttl,
            refresh_token=refresh_token,
            refresh_expires_in=max(0, int((new.expires_at - now).total_seconds())),
            user_id=new.user_id,
        )

    async def sign_in(self, iss: str, sub: str, *, method: str) -> IssuedTokens:
        """Sign a verified OIDC identity in: find or create the user, start a family.

        Writes the audit event ``sign_in`` (meta ``method``, ``new_user``, ``family``).

        Args:
            iss: The identity provider's issuer (already verified by the caller).
            sub: The subject (already verified by the caller).
            method: How the identity was proven, a short code such as ``code`` or ``id_token``.

        Returns:
            The first tokens of the new family.

        Raises:
            DatabaseUnavailable: Postgres is not answering.
        """
        token, now = secrets.token_urlsafe(_REFRESH_TOKEN_BYTES), self._now()
        new = await self._db.run(self._sign_in, iss, sub, method, _hash(token), now)
        return self._issue(token, new, now)

    def _sign_in(
        self,
        conn: psycopg.Connection[Any],
        iss: str,
        sub: str,
        method: str,
        token_hash: bytes,
        now: datetime,
    ) -> _NewSession:
        user_id, created = upsert_user(conn, iss, sub)
        family_id, new = self._start_family(conn, user_id, token_hash, now)
        meta: dict[str, MetaValue] = {
            "method": method,
            "new_user": created,
            "family": str(family_id),
        }
        insert_audit(conn, user_id, EVENT_SIGN_IN, meta)
        return new

    async def start(self, user_id: uuid.UUID) -> IssuedTokens:
        """Start a new family for an existing user (the dev-token CLI). No audit event.

        Args:
            user_id: The user.

        Returns:
            The first tokens of the new family.

        Raises:
            psycopg.errors.ForeignKeyViolation: There is no such user.
            DatabaseUnavailable: Postgres is not answering.
        """
        token, now = secrets.token_urlsafe(_REFRESH_TOKEN_BYTES), self._now()
        _, new = await self._db.run(self._start_family, user_id, _hash(token), now)
        return self._issue(token, new, now)

    def _start_family(
        self, conn: psycopg.Connection[Any], user_id: uuid.UUID, token_hash: bytes, now: datetime
    ) -> tuple[uuid.UUID, _NewSession]:
        lock_user_sessions(conn, user_id)
        family_id = uuid.uuid4()
        absolute = now + self._policy.absolute
        expires_at = min(now + self._policy.idle, absolute)
        insert_session(
            conn,
            user_id=user_id,
            family_id=family_id,
            parent_id=None,
            token_hash=token_hash,
            expires_at=expires_at,
            absolute_expires_at=absolute,
        )
        return family_id, _NewSession(user_id, family_id, expires_at)

    async def refresh(self, refresh_token: str) -> IssuedTokens:
        """Rotate a refresh token: the presented one is used up, a new one is returned.

        The decision is taken in one transaction holding the user's session lock and the
        presented row's lock, so it is made on committed, current state (see
        :mod:`store.sessions`): of two concurrent refreshes of the same token, the second
        waits for the first to commit and then sees the token used. Rules, in order:

        - unknown token: ``unknown``;
        - family revoked: ``revoked``;
        - past the idle expiry (``expires_at``) or the family's absolute expiry: ``expired``;
        - already rotated, within ``reuse_grace`` of its first rotation: a sibling token (a
          second child of the same parent, same family);
        - already rotated, later: the family is revoked, ``refresh_reuse_detected`` is
          audited and both COMMIT, then the family's access tokens are revoked
          (:meth:`TokenRevocations.revoke_family`) and ``reused`` is raised (the
          transaction function returns the rejection instead of raising, which would roll
          the revocation back);
        - otherwise: the token is marked used and a child is written, whose idle expiry is
          now + ``idle``, capped by the family's absolute expiry.

        Args:
            refresh_token: The token as presented.

        Returns:
            New tokens; ``refresh_expires_in`` counts to the new token's idle expiry.

        Raises:
            SessionRejected: As listed above.
            DatabaseUnavailable: Postgres is not answering. The rotation's outcome is unknown:
                a retry with the same token within ``reuse_grace`` succeeds either way; a later
                retry counts as reuse if the rotation did commit.
        """
        if not _looks_like_refresh_token(refresh_token):
            raise SessionRejected("unknown")
        token, now = secrets.token_urlsafe(_REFRESH_TOKEN_BYTES), self._now()
        with trio.CancelScope(shield=True):  # see the module docstring
            outcome = await self._db.run(self._refresh, _hash(refresh_token), _hash(token), now)
            if isinstance(outcome, _Rejected) and outcome.family_id is not None:
                shared = await self._revocations.revoke_family(outcome.family_id)
                log.warning(  # once the revocation is committed
                    "refresh token reuse detected: token family and its access tokens revoked",
                    revoked_everywhere=shared,
                )
        if isinstance(outcome, _Rejected):
            raise SessionRejected(outcome.reason)
        return self._issue(token, outcome, now)

    def _refresh(
        self, conn: psycopg.Connection[Any], presented: bytes, new_hash: bytes, now: datetime
    ) -> _NewSession | _Rejected:
        session = self._lock_session(conn, presented)
        if session is None:
            return _Rejected("unknown")
        if session.revoked_at is not None:
            return _Rejected("revoked")
        if now >= session.expires_at or now >= session.absolute_expires_at:
            return _Rejected("expired")
        if session.used_at is not None and now - session.used_at > self._policy.reuse_grace:
            revoke_family(conn, session.family_id, now)
            meta = {"family": str(session.family_id)}
            insert_audit(conn, session.user_id, EVENT_REFRESH_REUSE_DETECTED, meta)
            return _Rejected("reused", session.family_id)
        # First rotation, or a concurrent one inside the grace window (a sibling): either
        # way a new child of the presented session; used_at keeps the first rotation's time.
        mark_session_used(conn, session.id, now)
        expires_at = min(now + self._policy.idle, session.absolute_expires_at)
        insert_session(
            conn,
            user_id=session.user_id,
            family_id=session.family_id,
            parent_id=session.id,
            token_hash=new_hash,
            expires_at=expires_at,
            absolute_expires_at=session.absolute_expires_at,
        )
        return _NewSession(session.user_id, session.family_id, expires_at)

    @staticmethod
    def _lock_session(conn: psycopg.Connection[Any], token_hash: bytes) -> SessionRow | None:
        """The presented session, read under the owner's session lock and its row lock."""
        owner = select_session_owner(conn, token_hash)
        if owner is None:
            return None
        lock_user_sessions(conn, owner)
        # Re-read under the lock: the state may have changed since the unlocked read, and
        # the row may be gone (user deleted, expired row cleaned up).
        return select_session_for_update(conn, token_hash)

    async def logout(self, refresh_token: str) -> None:
        """Revoke the family of a refresh token, audit ``logout``, then revoke the family's
        access tokens (:meth:`TokenRevocations.revoke_family`: at once on this replica, on
        the others within :data:`~smartpip.http.revocation.CLEAR_TTL` unless Redis is down).

        Idempotent: an unknown token changes nothing and raises nothing, so a client retrying
        a logout (or logging out after the session expired or was revoked) always succeeds.
        Any token of the family will do, rotated and expired ones included: revoking can only
        reduce access. For a family already revoked only the access-token revocation is
        written again (no audit event), so a retry after Redis was down completes it.

        Args:
            refresh_token: The token as presented.

        Raises:
            DatabaseUnavailable: Postgres is not answering: the family may or may not be
                revoked, its access tokens are not (a retry completes both).
        """
        if not _looks_like_refresh_token(refresh_token):
            return
        with trio.CancelScope(shield=True):  # see the module docstring
            family_id = await self._db.run(self._logout, _hash(refresh_token), self._now())
            if family_id is not None:
                await self._revocations.revoke_family(family_id)

    def _logout(
        self, conn: psycopg.Connection[Any], token_hash: bytes, now: datetime
    ) -> uuid.UUID | None:
        session = self._lock_session(conn, token_hash)
        if session is None:
            return None
        if revoke_family(conn, session.family_id, now):
            insert_audit(conn, session.user_id, EVENT_LOGOUT, {"family": str(session.family_id)})
        return session.family_id
