"""The OpenID client's exceptions, and the logger every part of :mod:`smartpip.oidc` shares.

::

    OidcError
      OidcUnavailable  the issuer cannot be reached, answers nonsense or is misconfigured (its
                       discovery document names another issuer, it refuses our client
                       credentials), and nothing cached serves                       -> 503
      OidcRejected     a token or code failed a check; str() names the check        -> 401

    FetchFailed        internal: one upstream request failed; never leaves the package

Messages and logs never carry a token, a code, the client secret or an e-mail address.
"""

from __future__ import annotations

from smartpip.logs import get_logger

__all__ = ["FetchFailed", "OidcError", "OidcRejected", "OidcUnavailable", "log", "unavailable"]

# One logger name for the whole package, as before it was split into modules.
log = get_logger("smartpip.oidc")


class OidcError(Exception):
    """Base class of this module's errors."""


class OidcUnavailable(OidcError):
    """The issuer cannot be reached (or is misconfigured) and nothing cached serves: HTTP 503."""


class OidcRejected(OidcError):
    """Verification failed; ``str()`` names the check, never the token: HTTP 401."""


class FetchFailed(Exception):
    """An upstream request failed; the message says why (no secrets)."""


def unavailable(message: str) -> OidcUnavailable:
    """An OidcUnavailable, logged as a warning: the operator, not the user, must act."""
    log.warning("OpenID provider unavailable", reason=message)
    return OidcUnavailable(message)
