"""Fakes of the outside world: real HTTP servers on loopback that speak the upstreams' wire format.

- :mod:`tests.fakes.oidc_provider`: Google sign-in (discovery, JWKS, token, revocation).
"""
