"""Route guards: bearer authentication and rate limits, as decorators for Quart views.

::

    guards = Guards(tokens, limiter, trusted_proxies, revocations)

    @bp.post("/v1/auth/refresh")
    @guards.limited(config.rate_limit_auth)          # per client address
    async def refresh() -> ...

    @bp.get("/v1/me")
    @guards.user(limit=config.rate_limit_user)      # bearer token, then per-user limit
    async def me(user: AccessClaims) -> ...         # the verified claims come in as ``user``

Failures are problem responses: 401 with ``WWW-Authenticate`` (the view never runs), 429 with
``Retry-After`` and the ``RateLimit`` headers. Allowed responses carry the ``RateLimit``
headers too.

Revocation: ``guards.user`` also refuses (401, ``invalid_token``) a valid token whose user was
deleted or whose sign-in (``sid``, its refresh-token family) was logged out or revoked for
refresh-token reuse, asking :class:`~smartpip.http.revocation.TokenRevocations` on every request,
after the signature check and before the rate limit, so a token remembered by
:class:`VerifiedTokenCache` is refused too. Both questions are one check: no Redis command
at all while a recent "not revoked" answer holds, else one. The composition root builds the
one checker that the account routes and the session service also use to revoke.
"""

from __future__ import annotations

import functools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from quart import ResponseReturnValue, make_response, request

from smartpip.http.clientip import Network, client_ip
from smartpip.http.problems import ApiError
from smartpip.http.ratelimit import Decision, Policy, RateLimiter
from smartpip.http.revocation import TokenRevocations
from smartpip.http.tokens import AccessClaims, AccessTokens, TokenInvalid

__all__ = ["Guards", "VerifiedTokenCache", "account_gone"]

View = Callable[..., Awaitable[ResponseReturnValue]]

# Why 10,000: one entry per live access token (15 minutes each); at about 300 bytes an entry
# the cache stays near 3 MB, and a miss only costs one signature check.
MAX_CACHED_TOKENS = 10_000
# Why cap the header: our tokens are about 300 bytes; anything past 4 KiB is not one of ours.
MAX_TOKEN_CHARS = 4096


class VerifiedTokenCache:
    """Remembers tokens that verified, so a token reused for 15 minutes is checked once.

    A token string always verifies the same way (its signature is deterministic and the keys
    only change with a restart); only time changes the answer, so each hit re-checks expiry.
    Entries are evicted oldest-first past :data:`MAX_CACHED_TOKENS`.
    """

    def __init__(
        self,
        tokens: AccessTokens,
        *,
        clock: Callable[[], float] = time.time,
        max_entries: int = MAX_CACHED_TOKENS,
    ) -> None:
        self._tokens = tokens
        self._clock = clock
        self._max = max_entries
        self._entries: OrderedDict[str, AccessClaims] = OrderedDict()

    def verify(self, token: str) -> AccessClaims:
        """Verify ``token`` (cached).

        Raises:
            TokenInvalid: the token is not a valid, unexpired access token of ours.
        """
        claims = self._entries.get(token)
        if claims is not None:
            if claims.expires_at > self._clock():
                return claims
            del self._entries[token]
        claims = self._tokens.verify(token)
        self._entries[token] = claims
        if len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return claims


def _unauthorized(detail: str, *, error: str | None) -> ApiError:
    challenge = 'Bearer realm="smartpip"'
    if error is not None:
        challenge += f', error="{error}"'
    return ApiError(401, detail, headers={"WWW-Authenticate": challenge})


def account_gone() -> ApiError:
    """The 401 for a valid token whose user no longer exists (the account was deleted)."""
    return _unauthorized("this account no longer exists; sign in again", error="invalid_token")


class Guards:
    """Builds the decorators; one instance per app, holding the verifier and the limiter.

    Args:
        tokens: Verifies the access tokens.
        limiter: Applies the rate limits.
        trusted_proxies: Peers whose forwarded-client-IP headers are believed.
        revocations: Which tokens are revoked (deleted accounts, ended sign-ins).
    """

    def __init__(
        self,
        tokens: AccessTokens,
        limiter: RateLimiter,
        trusted_proxies: Sequence[Network],
        revocations: TokenRevocations,
    ) -> None:
        self.cache = VerifiedTokenCache(tokens)
        self.limiter = limiter
        self.trusted_proxies = tuple(trusted_proxies)
        self.revocations = revocations

    async def refuse_revoked(self, claims: AccessClaims) -> None:
        """Raise the 401 problem if the token is revoked: its user deleted, or its sign-in
        (``sid``) logged out or revoked for refresh-token reuse.

        Never fails because of Redis (see :mod:`smartpip.http.revocation`).
        """
        if await self.revocations.is_revoked(claims.user_id, claims.session_id):
            raise _unauthorized("access token revoked", error="invalid_token")

    def authenticate(self) -> AccessClaims:
        """The verified claims of the current request's bearer token.

        Raises:
            ApiError: 401 with ``WWW-Authenticate`` (RFC 6750): no credentials, or invalid.
        """
        header = request.headers.get("Authorization")
        if header is None:
            raise _unauthorized("a bearer access token is required", error=None)
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("use the Bearer scheme", error="invalid_request")
        if len(token) > MAX_TOKEN_CHARS:
            raise _unauthorized("access token invalid", error="invalid_token")
        try:
            return self.cache.verify(token)
        except TokenInvalid as error:
            raise _unauthorized(f"access token invalid: {error}", error="invalid_token") from None

    def client(self) -> str:
        """The client's address, believing forwarded headers only from trusted proxies."""
        peer = request.scope.get("client")
        return client_ip(peer[0] if peer else None, request.scope["headers"], self.trusted_proxies)

    async def check(self, policy: Policy, key: str) -> Decision:
        """Apply ``policy`` to ``key``; raise the 429 problem when over the limit."""
        decision = await self.limiter.check(policy, key)
        if not decision.allowed:
            raise ApiError(
                429,
                f"too many requests; retry in {decision.retry_after} s",
                headers=decision.headers(),
            )
        return decision

    def limited(self, policy: Policy) -> Callable[[View], View]:
        """Limit a view per client address (for routes used before sign-in)."""

        def decorate(view: View) -> View:
            @functools.wraps(view)
            async def guarded(*args: Any, **kwargs: Any) -> ResponseReturnValue:
                decision = await self.check(policy, f"ip:{self.client()}")
                return await _with_headers(decision, await view(*args, **kwargs))

            return guarded

        return decorate

    def user(self, *, limit: Policy | None = None) -> Callable[[View], View]:
        """Require a valid, unrevoked bearer token (401 otherwise) and pass its claims as
        ``user``; with ``limit``, also limit the view per user."""

        def decorate(view: View) -> View:
            @functools.wraps(view)
            async def guarded(*args: Any, **kwargs: Any) -> ResponseReturnValue:
                claims = self.authenticate()
                await self.refuse_revoked(claims)
                if limit is None:
                    return await view(*args, user=claims, **kwargs)
                decision = await self.check(limit, f"user:{claims.user_id}")
                return await _with_headers(decision, await view(*args, user=claims, **kwargs))

            return guarded

        return decorate


async def _with_headers(decision: Decision, result: ResponseReturnValue) -> ResponseReturnValue:
    response = await make_response(result)
    response.headers.update(decision.headers())
    return response
