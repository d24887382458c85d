"""The OpenID client: :class:`OidcClient`, which verifies ID tokens, redeems codes, revokes.

It ties the parts together: :mod:`._cache` for the discovery document and keys,
:mod:`._claims` for the token checks, :mod:`._fetch` for the token and revocation endpoints.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote_plus

import attrs
import httpx

from smartpip.auth.oidc._cache import ProviderCache, RequestHook
from smartpip.auth.oidc._claims import VerifiedIdentity, check_claims, decode, unverified_kid
from smartpip.auth.oidc._errors import FetchFailed, OidcRejected, misconfigured, unavailable
from smartpip.auth.oidc._fetch import json_object, request
from smartpip.auth.oidc._settings import OidcSettings

__all__ = ["OidcClient", "TokenAnswer"]

_OAUTH_ERROR = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@attrs.frozen
class TokenAnswer:
    """A token endpoint's answer (RFC 6749 5.1). Tokens never appear in ``repr``.

    Attributes:
        access_token: The access token.
        expires_in: Its lifetime in seconds.
        refresh_token: Present after a consent with ``access_type=offline``.
        scopes: The scopes granted (``scope``, split); empty if the answer had none.
        id_token: The ID token (unverified) of a code exchange; ``""`` for a refresh.
    """

    access_token: str = attrs.field(repr=False)
    expires_in: int
    refresh_token: str | None = attrs.field(repr=False)
    scopes: tuple[str, ...]
    id_token: str = attrs.field(repr=False)


class OidcClient:
    """Verifies ID tokens and exchanges authorization codes with one OpenID provider.

    Args:
        settings: Issuer, client and cache settings.
        http: The shared client (its timeouts apply; redirects are never followed).
        clock: Wall clock for ``exp``, ``iat`` and ``nbf``.
        monotonic: Clock for cache lifetimes and the refetch cool-down.
        on_request: Called with ``(endpoint, outcome)`` after each request to the provider:
            endpoint ``discovery``, ``jwks``, ``token`` or ``revocation``; outcome ``ok``,
            ``error`` (unreachable, 5xx, a malformed answer), ``rejected`` (the user's grant
            refused) or ``misconfigured`` (our client credentials refused). For the metrics.
    """

    def __init__(
        self,
        settings: OidcSettings,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        on_request: RequestHook = lambda _endpoint, _outcome: None,
    ) -> None:
        self._settings = settings
        self._http = http
        self._clock = clock
        self._issuer = settings.issuer.rstrip("/")
        self._on_request = on_request
        self._provider = ProviderCache(settings, http, monotonic, on_request)

    async def verify_id_token(self, id_token: str) -> VerifiedIdentity:
        """Verify an ID token's signature and claims (not its nonce against any store).

        Raises:
            OidcRejected: A check failed (alg not RS256, unknown key, bad signature, ``iss``,
                ``aud``, ``azp``, ``exp``, ``iat``, missing ``nonce``...).
            OidcUnavailable: No key set could be obtained.
        """
        kid = unverified_kid(id_token)
        discovery = await self._provider.discovery()
        key = await self._provider.signing_key(kid)
        settings = self._settings
        claims = decode(id_token, key, client_id=settings.client_id, issuer=discovery.issuer)
        return check_claims(
            claims,
            now=self._clock(),
            leeway=settings.leeway,
            client_id=settings.client_id,
            issuer=self._issuer,
        )

    async def exchange_code(self, *, code: str, code_verifier: str, redirect_uri: str) -> str:
        """Redeem an authorization code (PKCE) at the token endpoint; returns the ID token.

        The client authenticates with HTTP Basic (RFC 6749 2.3.1). The ID token is returned
        unverified: pass it to :meth:`verify_id_token`.

        Raises:
            OidcRejected: The endpoint refused the grant (bad, reused or expired code, wrong
                verifier or redirect URI); the message names the OAuth error code.
            OidcMisconfigured: The endpoint refused our own credentials (``invalid_client``,
                ``unauthorized_client``, or any 401): our misconfiguration, which neither the
                user nor a retry can fix; logged as a warning (never the secret).
            OidcUnavailable: Network error, timeout, 5xx, 408, 429 or a malformed answer
                (logged as a warning).
        """
        _, id_token = await self._redeem(code, code_verifier, redirect_uri)
        self._on_request("token", "ok")
        return id_token

    async def redeem_code(self, *, code: str, code_verifier: str, redirect_uri: str) -> TokenAnswer:
        """Redeem an authorization code (PKCE): the whole answer, refresh token and scopes
        included (the consent to an extra scope, with ``access_type=offline``).

        Raises:
            The same as :meth:`exchange_code`.
        """
        body, id_token = await self._redeem(code, code_verifier, redirect_uri)
        return self._answer(body, id_token)

    async def refresh_access_token(self, refresh_token: str) -> TokenAnswer:
        """A new access token for a stored refresh token (``grant_type=refresh_token``).

        Raises:
            OidcRejected: The grant was refused: ``str()`` is ``refresh refused: invalid_grant``
                when the user revoked it or it expired.
            OidcMisconfigured: Our client credentials were refused.
            OidcUnavailable: Network error, timeout, 5xx, 408, 429 or a malformed answer.
        """
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return self._answer(await self._token_request(form, refused="refresh refused"), "")

    async def _redeem(
        self, code: str, code_verifier: str, redirect_uri: str
    ) -> tuple[dict[str, Any], str]:
        """The token endpoint's answer to a code, and its (unverified) ID token."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": code_verifier,
            "redirect_uri": redirect_uri,
        }
        body = await self._token_request(form, refused="code exchange refused")
        id_token = body.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            self._on_request("token", "error")
            raise unavailable("token endpoint answered without an id token")
        return body, id_token

    def _answer(self, body: Mapping[str, Any], id_token: str) -> TokenAnswer:
        """The fields of a token answer (RFC 6749 5.1), which must hold an access token."""
        answer = _token_answer(body, id_token=id_token)
        if answer is None:
            self._on_request("token", "error")
            raise unavailable("token endpoint answered without a usable access token")
        self._on_request("token", "ok")
        return answer

    async def authorization_endpoint(self) -> str:
        """The provider's authorization endpoint (from discovery).

        Raises:
            OidcUnavailable: No discovery document, or it names no authorization endpoint.
        """
        endpoint = (await self._provider.discovery()).authorization_endpoint
        if endpoint is None:
            raise unavailable("the provider has no authorization endpoint")
        return endpoint

    async def _token_request(self, form: Mapping[str, str], *, refused: str) -> dict[str, Any]:
        """POST ``form`` to the token endpoint with our client credentials; the 200 answer.

        Raises:
            OidcRejected: ``"<refused>: <oauth error>"`` for the grant refused.
            OidcMisconfigured, OidcUnavailable: see :meth:`exchange_code`.
        """
        discovery = await self._provider.discovery()
        settings = self._settings
        auth = httpx.BasicAuth(quote_plus(settings.client_id), quote_plus(settings.client_secret))
        status, body = await self._call(
            "token", "POST", discovery.token_endpoint, data=form, auth=auth
        )
        if status == 200:
            return json_object(body)
        error = _oauth_error(body)
        if status == 401 or error in ("invalid_client", "unauthorized_client"):
            self._on_request("token", "misconfigured")
            raise misconfigured(f"token endpoint refused our client credentials: {error}")
        if 400 <= status < 500 and status not in (408, 429):
            self._on_request("token", "rejected")
            raise OidcRejected(f"{refused}: {error}")
        self._on_request("token", "error")
        raise unavailable(f"token endpoint answered HTTP {status}")

    async def revoke(self, token: str) -> None:
        """Revoke a Google token at the revocation endpoint.

        An ``invalid_token`` answer (already revoked or expired) counts as done.

        Raises:
            OidcUnavailable: No revocation endpoint, network error, or any other answer.
        """
        endpoint = (await self._provider.discovery()).revocation_endpoint
        if endpoint is None:
            raise unavailable("the provider has no revocation endpoint")
        status, body = await self._call("revocation", "POST", endpoint, data={"token": token})
        if status != 200 and not (status == 400 and _oauth_error(body) == "invalid_token"):
            self._on_request("revocation", "error")
            raise unavailable(f"revocation endpoint answered HTTP {status}")
        self._on_request("revocation", "ok")

    async def _call(
        self,
        endpoint: str,
        method: str,
        url: str,
        *,
        data: Mapping[str, str],
        auth: httpx.Auth | None = None,
    ) -> tuple[int, bytes]:
        try:
            status, _, body = await request(self._http, method, url, data=data, auth=auth)
        except FetchFailed as error:
            self._on_request(endpoint, "error")
            raise unavailable(f"OpenID provider unreachable: {error}") from None
        return status, body


def _token_answer(body: Mapping[str, Any], *, id_token: str) -> TokenAnswer | None:
    """The fields of a token answer, or None when it has no access token or lifetime."""
    access, expires_in = body.get("access_token"), body.get("expires_in")
    if not isinstance(access, str) or not access:
        return None
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0:
        return None
    refresh, scope = body.get("refresh_token"), body.get("scope")
    return TokenAnswer(
        access_token=access,
        expires_in=expires_in,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        scopes=tuple(scope.split()) if isinstance(scope, str) else (),
        id_token=id_token,
    )


def _oauth_error(body: bytes) -> str:
    """The OAuth ``error`` code of an error answer, if it looks like one."""
    error = json_object(body).get("error")
    if isinstance(error, str) and _OAUTH_ERROR.fullmatch(error):
        return error
    return "unknown_error"
