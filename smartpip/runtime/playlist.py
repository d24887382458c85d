"""The playlist feature's wiring: Google's OAuth endpoints over the sign-in's OpenID client.

:mod:`smartpip.playlist` may not import :mod:`smartpip.auth` (sibling features), so the
composition root adapts :class:`~smartpip.auth.oidc.OidcClient` to
:class:`~smartpip.playlist.upstream.GoogleOAuth` here, and builds the connect service and the
:class:`~smartpip.playlist.google.StoredGrants` the write half asks for access tokens.
"""

from __future__ import annotations

from smartpip.auth.oidc import (
    OidcClient,
    OidcMisconfigured,
    OidcRejected,
    OidcUnavailable,
    TokenAnswer,
)
from smartpip.config import Config
from smartpip.playlist.connect import Connections
from smartpip.playlist.google import StoredGrants
from smartpip.playlist.grants import GoogleUnavailable
from smartpip.playlist.upstream import AccessGrant, Consent, GoogleRefused
from store.postgres import Database
from store.redis import RedisStore

__all__ = ["OidcGoogleOAuth", "open_connections"]


def _access(answer: TokenAnswer) -> AccessGrant:
    return AccessGrant(answer.access_token, answer.expires_in, answer.scopes)


class OidcGoogleOAuth:
    """:class:`~smartpip.playlist.upstream.GoogleOAuth` over the OpenID client.

    Errors: ``OidcRejected`` becomes :class:`GoogleRefused` (its message names the OAuth
    error or the failed ID-token check); ``OidcUnavailable`` (``OidcMisconfigured`` included:
    nothing the user can fix) becomes :class:`GoogleUnavailable`.
    """

    def __init__(self, oidc: OidcClient, client_id: str) -> None:
        self._oidc = oidc
        self._client_id = client_id

    @property
    def client_id(self) -> str:
        return self._client_id

    async def authorization_endpoint(self) -> str:
        try:
            return await self._oidc.authorization_endpoint()
        except OidcUnavailable as error:
            raise GoogleUnavailable(str(error)) from None

    async def redeem(self, *, code: str, code_verifier: str, redirect_uri: str) -> Consent:
        try:
            answer = await self._oidc.redeem_code(
                code=code, code_verifier=code_verifier, redirect_uri=redirect_uri
            )
            identity = await self._oidc.verify_id_token(answer.id_token)
        except OidcRejected as error:
            raise GoogleRefused(str(error)) from None
        except (OidcMisconfigured, OidcUnavailable) as error:
            raise GoogleUnavailable(str(error)) from None
        return Consent(
            issuer=identity.issuer,
            subject=identity.subject,
            nonce=identity.nonce,
            refresh_token=answer.refresh_token,
            access=_access(answer),
        )

    async def refresh(self, refresh_token: str) -> AccessGrant:
        try:
            return _access(await self._oidc.refresh_access_token(refresh_token))
        except OidcRejected as error:
            raise GoogleRefused(str(error)) from None
        except OidcUnavailable as error:
            raise GoogleUnavailable(str(error)) from None

    async def revoke(self, token: str) -> None:
        try:
            await self._oidc.revoke(token)
        except OidcUnavailable as error:
            raise GoogleUnavailable(str(error)) from None


def open_connections(
    config: Config, db: Database, redis: RedisStore, oidc: OidcClient | None
) -> Connections | None:
    """The connect service (its ``grants`` is the write half's
    :class:`~smartpip.playlist.grants.Grants`), or None when the feature is off."""
    keyring = config.token_encryption_keys
    if not config.playlist_enabled or oidc is None or keyring is None:
        return None
    assert config.oidc_client_id is not None  # playlist_enabled implies sign-in
    google = OidcGoogleOAuth(oidc, config.oidc_client_id)
    return Connections(db, redis, google, keyring, StoredGrants(db, keyring, google))
