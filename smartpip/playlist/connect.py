"""Connecting YouTube: the consent step (incremental authorization), its status, withdrawal.

Sign-in asks Google for ``openid`` only. When the user turns the playlist feature on,
:meth:`Connections.start` gives the extension the authorization URL for the YouTube scope
(``include_granted_scopes=true``, ``access_type=offline``, ``prompt=consent``, PKCE S256, a
single-use state bound to this user and redirect URI, see :mod:`.states`), and
:meth:`Connections.finish` redeems the code, checks that the YouTube scope was granted (users
can untick it) and that the Google account is the signed-in one (same issuer and ``sub``),
and stores the refresh token sealed (:mod:`.crypto`). Withdrawal deletes the row, then revokes
the token at Google whatever Google answers. Consent and withdrawal go to the audit log with
the scopes, never a token.

::

    ConsentRejected     the state, the code or the consent itself is not acceptable; ``code``
                        says which (consent_rejected, scope_not_granted, account_mismatch)
    GoogleUnavailable   Google cannot be used now (smartpip.playlist.grants)
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

import attrs
import psycopg
import trio

from smartpip.logs import get_logger
from smartpip.playlist.crypto import Keyring, SealedToken, Unsealable
from smartpip.playlist.google import EVENT_DISCONNECTED, StoredGrants
from smartpip.playlist.grants import GoogleUnavailable
from smartpip.playlist.states import ConsentStates, StateRejected, code_challenge
from smartpip.playlist.upstream import YOUTUBE_SCOPE, GoogleOAuth, GoogleRefused
from store.audit import insert_audit
from store.oauth_accounts import (
    ConnectionRow,
    SealedRow,
    delete_oauth_account,
    select_connection,
    select_identity,
    select_sealed,
    upsert_oauth_account,
)
from store.postgres import Database
from store.redis import RedisStore

__all__ = [
    "EVENT_CONNECTED",
    "REVOKE_DEADLINE",
    "Connections",
    "ConsentRejected",
    "ConsentStart",
    "short_scopes",
]

EVENT_CONNECTED = "youtube_connected"
# Why 5 s: withdrawal and account deletion wait for Google's revocation endpoint this long at
# most; the row is gone either way, and a token Google did not hear about is refused at the
# next refresh all the same (it is never used again: nothing holds it).
REVOKE_DEADLINE = 5.0
_SCOPE_PREFIX = "https://www.googleapis.com/auth/"

log = get_logger(__name__)


class ConsentRejected(Exception):
    """The consent cannot be accepted. ``code`` is the API's error code; ``str`` says why."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


@attrs.frozen
class ConsentStart:
    """What the extension needs to send the user to Google."""

    authorization_url: str
    state: str
    expires_in: int


def short_scopes(scopes: tuple[str, ...] | list[str]) -> str:
    """The scopes for the audit log: space-separated, Google's URL prefix dropped."""
    return " ".join(sorted(s.removeprefix(_SCOPE_PREFIX) for s in scopes))[:100]


def _store_consent(
    conn: psycopg.Connection[Any],
    user_id: uuid.UUID,
    subject: str,
    sealed: SealedToken,
    scopes: tuple[str, ...],
) -> ConnectionRow | None:
    row = upsert_oauth_account(
        conn, user_id, subject=subject, key_id=sealed.kid, token_sealed=sealed.blob, scopes=scopes
    )
    if row is not None:
        insert_audit(conn, user_id, EVENT_CONNECTED, {"scopes": short_scopes(scopes)})
    return row


def _withdraw(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> SealedRow | None:
    row = delete_oauth_account(conn, user_id)
    if row is not None:
        insert_audit(conn, user_id, EVENT_DISCONNECTED, {"reason": "user"})
    return row


class Connections:
    """The connect service.

    Args:
        db: Users and their stored grants.
        redis: The consent states' single-use markers.
        google: Google's OAuth endpoints.
        keyring: Seals the refresh tokens.
        grants: The access-token cache, told when a grant ends.
    """

    def __init__(
        self,
        db: Database,
        redis: RedisStore,
        google: GoogleOAuth,
        keyring: Keyring,
        grants: StoredGrants,
    ) -> None:
        self._db = db
        self._google = google
        self._keyring = keyring
        self._grants = grants
        self._states = ConsentStates(keyring, redis)

    @property
    def grants(self) -> StoredGrants:
        """The :class:`~smartpip.playlist.grants.Grants` over the stored grants."""
        return self._grants

    async def start(self, user_id: uuid.UUID, redirect_uri: str) -> ConsentStart:
        """A consent attempt for ``user_id``, who comes back to ``redirect_uri``.

        Raises:
            GoogleUnavailable: The authorization endpoint is not known (discovery failed).
        """
        endpoint = await self._google.authorization_endpoint()
        issued = self._states.issue(user_id, redirect_uri)
        query = {
            "client_id": self._google.client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": f"openid {YOUTUBE_SCOPE}",
            "include_granted_scopes": "true",
            "access_type": "offline",
            "prompt": "consent",
            "state": issued.state,
            "nonce": issued.nonce,
            "code_challenge": code_challenge(issued.code_verifier),
            "code_challenge_method": "S256",
        }
        separator = "&" if "?" in endpoint else "?"
        return ConsentStart(
            authorization_url=f"{endpoint}{separator}{urlencode(query)}",
            state=issued.state,
            expires_in=issued.expires_in,
        )

    async def finish(
        self, user_id: uuid.UUID, *, code: str, state: str, redirect_uri: str
    ) -> ConnectionRow:
        """Redeem the consent's code and store the grant.

        Raises:
            ConsentRejected: ``consent_rejected`` (state not this user's, expired or used; code
                refused; ID token invalid), ``scope_not_granted``, ``account_mismatch``.
            GoogleUnavailable: Google could not be used (the state is spent: start again).
        """
        try:
            issued = await self._states.consume(state, user_id, redirect_uri)
        except StateRejected as error:
            raise ConsentRejected("consent_rejected", str(error)) from None
        try:
            consent = await self._google.redeem(
                code=code, code_verifier=issued.code_verifier, redirect_uri=redirect_uri
            )
        except GoogleRefused as error:
            raise ConsentRejected("consent_rejected", str(error)) from None
        if consent.nonce != issued.nonce:
            raise ConsentRejected("consent_rejected", "id token nonce does not match the state")
        identity = await self._db.read(select_identity, user_id)
        if identity != (consent.issuer, consent.subject):
            log.info("YouTube consent from another Google account refused")
            raise ConsentRejected(
                "account_mismatch",
                "the Google account that consented is not the signed-in one; connect with "
                "the account you signed in with",
            )
        scopes = consent.access.scopes
        if YOUTUBE_SCOPE not in scopes:
            raise ConsentRejected(
                "scope_not_granted",
                "the YouTube permission was not granted (it was unticked on Google's consent "
                "screen); connect again and allow it",
            )
        if consent.refresh_token is None:
            # Google sends one with access_type=offline and prompt=consent; without it there is
            # nothing to store.
            raise GoogleUnavailable("Google answered the consent without a refresh token")
        sealed = self._keyring.seal(user_id, consent.refresh_token)
        row = await self._db.run(_store_consent, user_id, consent.subject, sealed, scopes)
        if row is None:  # the account was deleted meanwhile
            await self._revoke(consent.refresh_token)
            raise ConsentRejected("consent_rejected", "the account no longer exists")
        self._grants.forget(user_id)
        log.info("YouTube connected", scopes=short_scopes(scopes))
        return row

    async def connection(self, user_id: uuid.UUID) -> ConnectionRow | None:
        """The user's grant (scopes, times), or None when not connected."""
        return await self._db.read(select_connection, user_id)

    async def disconnect(self, user_id: uuid.UUID) -> bool:
        """Delete the user's grant, then revoke it at Google (whatever Google answers).

        Returns:
            Whether there was a grant.
        """
        with trio.CancelScope(shield=True):  # a client hanging up must not skip the revoke
            row = await self._db.run(_withdraw, user_id)
            self._grants.forget(user_id)
            if row is not None:
                await self._revoke_row(row)
        return row is not None

    async def revoke_for_deletion(self, user_id: uuid.UUID) -> None:
        """Revoke the user's grant at Google before their account is deleted (which deletes
        the row in its own transaction). Never raises for Google; bounded in time."""
        row = await self._db.read(select_sealed, user_id)
        self._grants.forget(user_id)
        if row is not None:
            await self._revoke_row(row)

    async def _revoke_row(self, row: SealedRow) -> None:
        try:
            token = self._keyring.open(row.user_id, SealedToken(row.key_id, row.token_sealed))
        except Unsealable as error:
            log.warning("stored YouTube grant cannot be opened to revoke it", reason=str(error))
            return
        await self._revoke(token)

    async def _revoke(self, token: str) -> None:
        with trio.move_on_after(REVOKE_DEADLINE) as scope:
            try:
                await self._google.revoke(token)
            except GoogleUnavailable:
                log.warning("Google revocation failed; the grant is deleted here anyway")
                return
        if scope.cancelled_caught:
            log.warning("Google revocation timed out; the grant is deleted here anyway")
