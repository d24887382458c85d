"""Fakes of the outside world: real HTTP servers on loopback that speak the upstreams' wire format.

- :mod:`tests.fakes.oidc_provider`: Google sign-in (discovery, JWKS, token, revocation); its
  HTTP routes are in :mod:`tests.fakes.oidc_routes`, its keys and JWT signing in
  :mod:`tests.fakes.jwt_keys`.
"""
