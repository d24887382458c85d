"""Tests of the OpenID Connect client (smartpip.oidc) against the local fake provider."""
