"""Access tokens: the round trip, every way a token is refused, and key rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from smartpip.http.tokens import (
    ACCESS_TOKEN_TTL,
    SESSION_CLAIM,
    AccessClaims,
    AccessTokens,
    JwtKey,
    TokenInvalid,
)
from tests.auth.conftest import KEY, OLD_KEY
from tests.support.clock import FakeClock

USER = uuid.UUID("0f6b6a4e-5a9c-4c1e-9d59-2a7c3f1e8b10")


def claims_at(now: float, **overrides: Any) -> dict[str, Any]:
    """Valid claims for ``USER`` issued at ``now``; an override of None drops the claim."""
    claims: dict[str, Any] = {
        "iss": "smartpip",
        "aud": "smartpip-api",
        "sub": str(USER),
        "iat": int(now),
        "exp": int(now) + ACCESS_TOKEN_TTL,
        "jti": secrets.token_urlsafe(16),
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def craft(
    claims: dict[str, Any],
    *,
    key: JwtKey = KEY,
    algorithm: str = "HS256",
    typ: str | None = "at+jwt",
    kid: str | None = None,
) -> str:
    """An HS256 (or other) token made with pyjwt directly, not with AccessTokens."""
    headers: dict[str, Any] = {"kid": key.kid if kid is None else kid}
    if typ is not None:
        headers["typ"] = typ
    return jwt.encode(claims, key.secret, algorithm=algorithm, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_by_hand(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """HS256 signed without pyjwt's guards (pyjwt refuses a PEM key as an HMAC secret)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def rejected(tokens: AccessTokens, token: str) -> str:
    """Verify must refuse ``token``; the reason, which must not quote the token."""
    with pytest.raises(TokenInvalid) as raised:
        tokens.verify(token)
    reason = str(raised.value)
    assert reason
    assert token not in reason or not token
    assert raised.value.__cause__ is None
    return reason


def test_issue_verify_round_trip(tokens: AccessTokens, clock: FakeClock) -> None:
    token = tokens.issue(USER)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "HS256", "typ": "at+jwt", "kid": "k1"}
    payload = jwt.decode(token, options={"verify_signature": False})
    assert set(payload) == {"iss", "aud", "sub", "iat", "exp", "jti"}
    assert payload["iss"] == "smartpip" and payload["aud"] == "smartpip-api"
    assert len(base64.urlsafe_b64decode(payload["jti"] + "==")) == 16

    claims = tokens.verify(token)
    assert claims == AccessClaims(
        user_id=USER,
        jti=payload["jti"],
        issued_at=int(clock.now),
        expires_at=int(clock.now) + ACCESS_TOKEN_TTL,
    )
    assert tokens.ttl == ACCESS_TOKEN_TTL


def test_session_id_round_trip(tokens: AccessTokens, clock: FakeClock) -> None:
    family = uuid.uuid4()
    token = tokens.issue(USER, session_id=family)
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload[SESSION_CLAIM] == str(family)
    assert set(payload) == {"iss", "aud", "sub", "iat", "exp", "jti", "sid"}
    claims = tokens.verify(token)
    assert claims.session_id == family and claims.user_id == USER


def test_a_token_without_a_session_id_still_verifies(
    tokens: AccessTokens, clock: FakeClock
) -> None:
    # Tokens issued before the claim existed, and development tokens: no family.
    assert tokens.verify(craft(claims_at(clock.now))).session_id is None
    assert tokens.verify(tokens.issue(USER)).session_id is None


def test_malformed_session_id(tokens: AccessTokens, clock: FakeClock) -> None:
    family = uuid.uuid4()
    sids: list[object] = ["", "alice", family.hex, str(family).upper(), f"urn:uuid:{family}"]
    for sid in [*sids, 12, None, []]:
        token = craft(claims_at(clock.now, sid=sid))
        if sid is None:  # claims_at drops a None override: write the null explicitly
            token = craft({**claims_at(clock.now), "sid": None})
        assert rejected(tokens, token) == "malformed session ID", sid


def test_each_token_has_its_own_jti(tokens: AccessTokens) -> None:
    assert tokens.verify(tokens.issue(USER)).jti != tokens.verify(tokens.issue(USER)).jti


def test_custom_issuer_audience_and_ttl(clock: FakeClock) -> None:
    custom = AccessTokens([KEY], issuer="me", audience="you", ttl=60, clock=clock)
    claims = custom.verify(custom.issue(USER))
    assert claims.expires_at - claims.issued_at == 60
    # The default issuer and audience do not accept it.
    assert rejected(AccessTokens([KEY], clock=clock), custom.issue(USER)) == "wrong issuer"


def test_alg_none_is_rejected(tokens: AccessTokens, clock: FakeClock) -> None:
    token = jwt.encode(claims_at(clock.now), "", algorithm="none", headers={"kid": "k1"})
    token_typed = jwt.encode(
        claims_at(clock.now), "", algorithm="none", headers={"kid": "k1", "typ": "at+jwt"}
    )
    assert rejected(tokens, token) == "wrong token type"
    assert rejected(tokens, token_typed) == "algorithm not allowed"


def test_wrong_secret_is_rejected(tokens: AccessTokens, clock: FakeClock) -> None:
    forged = craft(claims_at(clock.now), key=JwtKey("k1", b"x" * 32))
    assert rejected(tokens, forged) == "bad signature"


def test_other_hmac_algorithms_are_rejected(clock: FakeClock) -> None:
    # Signed with the right key, but HS512 is not what we issue: never taken from the header.
    key = JwtKey("long", b"L" * 64)  # HS512 wants 64 bytes (pyjwt warns otherwise)
    token = craft(claims_at(clock.now), key=key, algorithm="HS512")
    assert rejected(AccessTokens([key], clock=clock), token) == "algorithm not allowed"


def test_missing_exp_and_other_required_claims(tokens: AccessTokens, clock: FakeClock) -> None:
    for claim in ("exp", "iat", "iss", "aud", "sub", "jti"):
        token = craft(claims_at(clock.now, **{claim: None}))
        assert rejected(tokens, token) == f"missing claim {claim}"


def test_wrong_or_missing_typ(tokens: AccessTokens, clock: FakeClock) -> None:
    for typ in ("JWT", "at+jwt2", "id_token", ""):
        assert rejected(tokens, craft(claims_at(clock.now), typ=typ)) == "wrong token type"
    assert rejected(tokens, craft(claims_at(clock.now), typ=None)) == "wrong token type"


def test_typ_is_case_insensitive_and_may_carry_the_media_prefix(
    tokens: AccessTokens, clock: FakeClock
) -> None:
    for typ in ("AT+JWT", "At+Jwt", "application/at+jwt", "Application/AT+JWT"):
        assert tokens.verify(craft(claims_at(clock.now), typ=typ)).user_id == USER


def test_wrong_audience_and_issuer(tokens: AccessTokens, clock: FakeClock) -> None:
    assert rejected(tokens, craft(claims_at(clock.now, aud="other"))) == "wrong audience"
    # A list holding our audience among others is not a token meant for us alone.
    both = craft(claims_at(clock.now, aud=["smartpip-api", "other"]))
    assert rejected(tokens, both) == "wrong audience"
    assert rejected(tokens, craft(claims_at(clock.now, iss="https://evil"))) == "wrong issuer"


def test_expired(tokens: AccessTokens, clock: FakeClock) -> None:
    token = tokens.issue(USER)
    clock.advance(ACCESS_TOKEN_TTL + 29)  # within the 30 s leeway
    assert tokens.verify(token).user_id == USER
    clock.advance(1)
    assert rejected(tokens, token) == "expired"


def test_issued_in_the_future(tokens: AccessTokens, clock: FakeClock) -> None:
    assert tokens.verify(craft(claims_at(clock.now + 30))).user_id == USER  # leeway
    assert rejected(tokens, craft(claims_at(clock.now + 31))) == "issued in the future"


def test_not_before_in_the_future(tokens: AccessTokens, clock: FakeClock) -> None:
    token = craft(claims_at(clock.now, nbf=int(clock.now) + 300))
    assert rejected(tokens, token) == "not yet valid"


def test_malformed_claims(tokens: AccessTokens, clock: FakeClock) -> None:
    for claims, reason in [
        (claims_at(clock.now, sub="alice"), "subject is not a user ID"),
        (claims_at(clock.now, sub=USER.hex), "subject is not a user ID"),
        (claims_at(clock.now, sub=f"urn:uuid:{USER}"), "subject is not a user ID"),
        (claims_at(clock.now, sub=12), "malformed token"),
        (claims_at(clock.now, exp=str(int(clock.now) + 60)), "malformed time claim"),
        (claims_at(clock.now, exp=clock.now + 60.5), "malformed time claim"),
        (claims_at(clock.now, iat=True), "malformed time claim"),
        (claims_at(clock.now, jti=7), "malformed token"),
        (claims_at(clock.now, jti=""), "malformed token ID"),
    ]:
        assert rejected(tokens, craft(claims)) == reason, claims


def test_unknown_kid(tokens: AccessTokens, clock: FakeClock) -> None:
    assert rejected(tokens, craft(claims_at(clock.now), kid="nope")) == "unknown key"
    assert rejected(tokens, craft(claims_at(clock.now), kid="")) == "unknown key"
    no_kid = jwt.encode(claims_at(clock.now), KEY.secret, headers={"typ": "at+jwt"})
    assert rejected(tokens, no_kid) == "unknown key"


def test_google_style_rs256_id_token(tokens: AccessTokens, clock: FakeClock) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = claims_at(clock.now, iss="https://accounts.google.com", aud="client-id")
    id_token = jwt.encode(claims, private, algorithm="RS256", headers={"kid": "k1"})
    assert rejected(tokens, id_token) == "wrong token type"
    # Even dressed up as one of ours, RS256 is refused before any key is used.
    dressed = jwt.encode(
        claims_at(clock.now), private, algorithm="RS256", headers={"kid": "k1", "typ": "at+jwt"}
    )
    assert rejected(tokens, dressed) == "algorithm not allowed"


def test_hs256_signed_with_a_public_key(tokens: AccessTokens, clock: FakeClock) -> None:
    public_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "typ": "at+jwt", "kid": "k1"}
    forged = hs256_by_hand(header, claims_at(clock.now), public_pem)
    assert rejected(tokens, forged) == "bad signature"


def test_opaque_strings_and_refresh_tokens(tokens: AccessTokens) -> None:
    for token in (
        secrets.token_urlsafe(32),  # one of our refresh tokens
        "not a token",
        "",
        "a.b.c",
        "\udcff.\udcff.\udcff",  # lone surrogates
        "é.é.é",
    ):
        assert rejected(tokens, token) == "malformed token"
    assert rejected(tokens, "x" * 5000) == "malformed token"
    assert rejected(tokens, "e30.e30.") == "wrong token type"  # {}.{}. with no signature


def test_token_signed_with_the_previous_key_still_verifies(clock: FakeClock) -> None:
    before = AccessTokens([OLD_KEY], clock=clock)
    token = before.issue(USER)
    assert jwt.get_unverified_header(token)["kid"] == "k0"
    after = AccessTokens([KEY, OLD_KEY], clock=clock)
    assert after.verify(token).user_id == USER
    assert jwt.get_unverified_header(after.issue(USER))["kid"] == "k1"
    # Once the old key is removed, its tokens are refused.
    assert rejected(AccessTokens([KEY], clock=clock), token) == "unknown key"


def test_a_kid_does_not_vouch_for_another_keys_signature(clock: FakeClock) -> None:
    signed_by_old = craft(claims_at(clock.now), key=OLD_KEY, kid="k1")
    assert rejected(AccessTokens([KEY, OLD_KEY], clock=clock), signed_by_old) == "bad signature"


def test_constructor_refuses_bad_keys() -> None:
    with pytest.raises(ValueError, match="at least one"):
        AccessTokens([])
    with pytest.raises(ValueError, match="shorter than 32 bytes"):
        AccessTokens([JwtKey("short", b"s" * 31)])
    with pytest.raises(ValueError, match="repeated"):
        AccessTokens([KEY, JwtKey("k1", b"z" * 32)])
    with pytest.raises(ValueError, match="ttl"):
        AccessTokens([KEY], ttl=0)
