"""The OpenID client's exceptions, and the logger every part of :mod:`smartpip.auth.oidc` shares.

::

    OidcError
      OidcUnavailable  the issuer cannot be reached, answers nonsense or is misconfigured (its
                       discovery document names another issuer), and nothing cached
                       serves                                                       -> 503
        OidcMisconfigured  the token endpoint refused our own client credentials: only an
                           operator can fix it (SMARTPIP_OIDC_CLIENT_ID / _SECRET); a
                           subclass, so callers that only know OidcUnavailable still answer
                           503                             -> 503 sign_in_misconfigured
      OidcRejected     a token or code failed a check; str() names the check        -> 401

    FetchFailed        internal: one upstream request failed; never leaves the package

Messages and logs never carry a token, a code, the client secret or an e-mail address.
"""

from __future__ import annotations

from smartpip.logs import get_logger

__all__ = [
    "FetchFailed",
    "OidcError",
    "OidcMisconfigured",
    "OidcRejected",
    "OidcUnavailable",
    "log",
    "misconfigured",
    "unavailable",
]

# One logger name for the whole package, as before it was split into modules.
log = get_logger("smartpip.auth.oidc")


class OidcError(Exception):
    """Base class of this module's errors."""


class OidcUnavailable(OidcError):
    """The issuer cannot be reached (or is misconfigured) and nothing cached serves: HTTP 503."""


class OidcMisconfigured(OidcUnavailable):
    """The provider refused our own client credentials: retrying cannot help, an operator must
    fix the configuration. HTTP 503 ``sign_in_misconfigured``, not retryable."""


class OidcRejected(OidcError):
    """Verification failed; ``str()`` names the check, never the token: HTTP 401."""


class FetchFailed(Exception):
    """An upstream request failed; the message says why (no secrets)."""


def unavailable(message: str) -> OidcUnavailable:
    """An OidcUnavailable, logged as a warning: the operator, not the user, must act."""
    log.warning("OpenID provider unavailable", reason=message)
    return OidcUnavailable(message)


def misconfigured(message: str) -> OidcMisconfigured:
    """An OidcMisconfigured, logged as a warning that names the settings to check.

    ``message`` must not hold the secret; the caller passes the provider's OAuth error code.
    """
    log.warning(
        "OpenID provider refused our client credentials: check SMARTPIP_OIDC_CLIENT_ID and "
        "SMARTPIP_OIDC_CLIENT_SECRET",
        reason=message,
    )
    return OidcMisconfigured(message)
