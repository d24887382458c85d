"""OpenID Connect client for Google sign-in: discovery, signing keys, ID tokens, code exchange.

Runs on trio with the service's shared ``httpx.AsyncClient`` (never pyjwt's ``PyJWKClient``,
which blocks the event loop on urllib). The exceptions are drawn in :mod:`._errors`: 503 for
:class:`OidcUnavailable` (``sign_in_misconfigured``, not retryable, for its subclass
:class:`OidcMisconfigured`: the provider refused our client credentials), 401 for
:class:`OidcRejected`.

Messages and logs never carry a token, a code, the client secret or an e-mail address.

Caching: the discovery document and the key set (JWKS) are fetched lazily and kept for their
``Cache-Control: max-age`` (clamped) or the configured default. A failed refresh keeps serving
the last good copy (logged as a warning). An unknown ``kid`` refetches the key set at most once
per ``kid_refetch_cooldown``, however many tokens carry it; then the token is rejected.

Modules, one responsibility each:

- :mod:`._errors`: the exception hierarchy and the module-wide logger;
- :mod:`._settings`: :class:`OidcSettings`;
- :mod:`._fetch`: one bounded HTTP exchange (deadline, size cap, no redirects, JSON shape);
- :mod:`._documents`: parsing the discovery document and the key set;
- :mod:`._cache`: the discovery and key-set caches (max-age, cool-down, single-flight);
- :mod:`._claims`: ID token header and claim checks, :class:`VerifiedIdentity`;
- :mod:`._client`: :class:`OidcClient`, tying them together, and the code exchange.
"""

from smartpip.auth.oidc._claims import GOOGLE_ISSUER, VerifiedIdentity, accepted_issuers
from smartpip.auth.oidc._client import OidcClient, TokenAnswer
from smartpip.auth.oidc._errors import OidcError, OidcMisconfigured, OidcRejected, OidcUnavailable
from smartpip.auth.oidc._settings import OidcSettings

__all__ = [
    "GOOGLE_ISSUER",
    "OidcClient",
    "OidcError",
    "OidcMisconfigured",
    "OidcRejected",
    "OidcSettings",
    "OidcUnavailable",
    "TokenAnswer",
    "VerifiedIdentity",
    "accepted_issuers",
]
