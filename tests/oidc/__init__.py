"""Tests of the OpenID Connect client (smartpip.auth.oidc) against the local fake provider."""
