"""Sign-in end to end: the real app, a loopback OpenID provider, real Postgres and Redis."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import jwt
import psycopg
import pytest
import trio

from smartpip.auth.nonces import Nonces
from smartpip.http.tokens import JwtKey
from tests.app.conftest import KEY, REDIRECT, AppFactory, AuthAppFactory, RunningApp
from tests.app.signin import assert_401, bearer, refresh, sign_in, sign_in_with_code, start
from tests.fakes.oidc_provider import FakeOidcProvider, foreign_key, s256
from tests.support.faultproxy import FaultProxy

OLD_KEY = "k0:" + "b" * 40


@pytest.fixture
async def app(auth_app_factory: AuthAppFactory) -> AsyncIterator[RunningApp]:
    """One app with sign-in configured."""
    async with auth_app_factory() as running:
        yield running


# --- the two callback shapes --------------------------------------------------------------


async def test_start_issues_a_fresh_nonce(app: RunningApp) -> None:
    first = (await app.client.post("/v1/auth/oidc/start")).json()
    second = (await app.client.post("/v1/auth/oidc/start")).json()
    assert first["expiresIn"] == 600
    assert first["nonce"] != second["nonce"] and first["state"] != second["state"]
    random_part = first["nonce"].split(".")[0]
    assert len(base64.urlsafe_b64decode(random_part + "==")) * 8 >= 128


async def test_code_flow_signs_in_and_me_answers(
    app: RunningApp, provider: FakeOidcProvider, pg_url: str
) -> None:
    tokens = await sign_in(app, provider)
    assert tokens["tokenType"] == "Bearer"
    assert tokens["expiresIn"] == 900
    assert int(tokens["refreshExpiresIn"]) > 29 * 86400
    me = await app.client.get("/v1/me", headers=bearer(tokens["accessToken"]))
    assert me.status_code == 200, me.text
    assert set(me.json()) == {"id", "createdAt"}
    assert me.headers["ratelimit-policy"].startswith('"user";')
    assert provider.token_auth[-1] == "basic"  # the client secret went in HTTP Basic
    with psycopg.connect(pg_url) as conn:
        users = conn.execute("SELECT id, oidc_iss, oidc_sub FROM users").fetchall()
        events = conn.execute("SELECT event, meta FROM audit_logs").fetchall()
    assert users == [(uuid.UUID(me.json()["id"]), provider.issuer, "sub-1")]
    assert [e[0] for e in events] == ["sign_in"]
    assert events[0][1]["method"] == "code"


async def test_id_token_flow_and_same_user_again(
    app: RunningApp, provider: FakeOidcProvider
) -> None:
    first = await sign_in(app, provider, sub="same")
    nonce = await start(app)
    response = await app.client.post(
        "/v1/auth/oidc/callback",
        json={"idToken": provider.make_id_token(sub="same", nonce=nonce), "nonce": nonce},
    )
    assert response.status_code == 200, response.text
    ids = []
    for tokens in (first, response.json()):
        ids.append(
            (await app.client.get("/v1/me", headers=bearer(tokens["accessToken"]))).json()["id"]
        )
    assert ids[0] == ids[1]


# --- what the callback refuses ------------------------------------------------------------


async def callback_with(app: RunningApp, id_token_for: Callable[[str], str]) -> httpx.Response:
    nonce = await start(app)
    return await app.client.post(
        "/v1/auth/oidc/callback", json={"idToken": id_token_for(nonce), "nonce": nonce}
    )


@pytest.mark.parametrize(
    "case",
    ["wrong_aud", "foreign_iss", "expired", "future_iat", "foreign_key", "no_nonce_claim"],
)
async def test_id_token_verification_failures_are_401(
    app: RunningApp, provider: FakeOidcProvider, case: str
) -> None:
    now = int(time.time())
    makers: dict[str, Callable[[str], str]] = {
        "wrong_aud": lambda n: provider.make_id_token(sub="s", nonce=n, aud="someone-else"),
        "foreign_iss": lambda n: provider.make_id_token(
            sub="s", nonce=n, iss="https://evil.example"
        ),
        "expired": lambda n: provider.make_id_token(
            sub="s", nonce=n, iat=now - 7200, exp=now - 3600
        ),
        "future_iat": lambda n: provider.make_id_token(
            sub="s", nonce=n, iat=now + 3600, exp=now + 7200
        ),
        "foreign_key": lambda n: provider.make_id_token(
            sub="s", nonce=n, kid=provider.current_kid, key=foreign_key()
        ),
        "no_nonce_claim": lambda n: provider.make_id_token(sub="s", nonce=None),
    }
    response = await callback_with(app, makers[case])
    assert_401(response)
    assert "eyJ" not in response.text  # the detail names the check, never the token


async def test_nonce_unknown_reused_expired_or_mismatched(
    app: RunningApp, provider: FakeOidcProvider
) -> None:
    forged = await start(app)
    forged = forged[:-4] + ("AAAA" if not forged.endswith("AAAA") else "BBBB")
    token = provider.make_id_token(sub="s", nonce=forged)
    assert_401(
        await app.client.post("/v1/auth/oidc/callback", json={"idToken": token, "nonce": forged})
    )

    nonce = await start(app)
    token = provider.make_id_token(sub="s", nonce=nonce)
    body = {"idToken": token, "nonce": nonce}
    assert (await app.client.post("/v1/auth/oidc/callback", json=body)).status_code == 200
    reused = await app.client.post("/v1/auth/oidc/callback", json=body)
    assert_401(reused)
    assert "already used" in reused.json()["detail"]

    past = Nonces([JwtKey("k1", b"a" * 40)], app.resources.redis, clock=lambda: time.time() - 700)
    expired = past.start().nonce
    response = await app.client.post(
        "/v1/auth/oidc/callback",
        json={"idToken": provider.make_id_token(sub="s", nonce=expired), "nonce": expired},
    )
    assert_401(response)
    assert "expired" in response.json()["detail"]

    other = await start(app)
    mismatched = await app.client.post(
        "/v1/auth/oidc/callback",
        json={"idToken": provider.make_id_token(sub="s", nonce=await start(app)), "nonce": other},
    )
    assert_401(mismatched)


async def test_code_flow_refusals(app: RunningApp, provider: FakeOidcProvider) -> None:
    nonce = await start(app)
    verifier = secrets.token_urlsafe(48)
    code = provider.authorize(
        sub="s",
        nonce=nonce,
        redirect_uri=REDIRECT,
        code_challenge=s256(verifier),
        client_id=provider.client_id,
    )
    wrong_pkce = await app.client.post(
        "/v1/auth/oidc/callback",
        json={
            "code": code,
            "codeVerifier": secrets.token_urlsafe(48),
            "redirectUri": REDIRECT,
            "nonce": nonce,
        },
    )
    assert_401(wrong_pkce)
    not_allowed = await app.client.post(
        "/v1/auth/oidc/callback",
        json={
            "code": code,
            "codeVerifier": verifier,
            "redirectUri": "https://evil.example/",
            "nonce": nonce,
        },
    )
    assert not_allowed.status_code == 400
    assert "redirectUri" in not_allowed.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        [],
        {},
        {"code": "c", "idToken": "t", "nonce": "n"},
        {"idToken": "t"},
        {"idToken": 5, "nonce": "n"},
        {"idToken": "t", "nonce": "n", "userId": "someone"},
        {"code": "c", "codeVerifier": "short", "redirectUri": REDIRECT, "nonce": "n"},
        {"idToken": "t" * 9000, "nonce": "n"},
    ],
)
async def test_malformed_callback_bodies_are_400(app: RunningApp, body: object) -> None:
    response = await app.client.post("/v1/auth/oidc/callback", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_request"


async def test_provider_down_cold_cache_is_503(app: RunningApp, provider: FakeOidcProvider) -> None:
    provider.mode = "down"
    response = await callback_with(app, lambda n: provider.make_id_token(sub="s", nonce=n))
    assert response.status_code == 503
    problem = response.json()
    assert problem["code"] == "service_unavailable"
    assert problem["retryable"] is True
    assert int(response.headers["retry-after"]) > 0
    assert problem["retryAfter"] == int(response.headers["retry-after"])


async def test_a_refused_client_secret_is_our_misconfiguration_not_an_outage(
    auth_app_factory: AuthAppFactory,
    provider: FakeOidcProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong_secret = "not-" + provider.client_secret
    async with auth_app_factory(oidc_client_secret=wrong_secret) as app:
        response = await sign_in_with_code(app, provider)
    assert response.status_code == 503, response.text
    problem = response.json()
    assert problem["code"] == "sign_in_misconfigured"
    assert problem["retryable"] is False
    assert "retryAfter" not in problem and "retry-after" not in response.headers
    assert "client credentials" in problem["detail"] and "operator" in problem["detail"]
    assert provider.token_requests == 1  # the provider was reached: not an outage
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("refused our client credentials" in message for message in warnings)
    assert wrong_secret not in caplog.text and wrong_secret not in response.text


async def test_provider_down_warm_cache_still_signs_in(
    app: RunningApp, provider: FakeOidcProvider
) -> None:
    await sign_in(app, provider)  # warms discovery and keys
    provider.mode = "down"
    response = await callback_with(app, lambda n: provider.make_id_token(sub="s", nonce=n))
    assert response.status_code == 200, response.text


async def test_sign_in_disabled_without_client(app_factory: AppFactory) -> None:
    async with app_factory() as app:
        response = await app.client.post("/v1/auth/oidc/start")
    assert response.status_code == 404


# --- our access token ---------------------------------------------------------------------


def forge(claims: dict[str, object], *, key: bytes = b"a" * 40, **header: object) -> str:
    return jwt.encode(
        claims, key, algorithm="HS256", headers={"kid": "k1", "typ": "at+jwt", **header}
    )


async def test_bad_bearer_tokens_are_401(app: RunningApp, provider: FakeOidcProvider) -> None:
    tokens = await sign_in(app, provider)
    good = jwt.decode(tokens["accessToken"], options={"verify_signature": False})
    now = int(time.time())
    payload = base64.urlsafe_b64encode(json.dumps(good).encode()).rstrip(b"=").decode()
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"at+jwt","kid":"k1"}').rstrip(b"=")
    candidates = {
        "alg none": f"{none_header.decode()}.{payload}.",
        "wrong secret": forge(good, key=b"z" * 40),
        "no exp": forge({k: v for k, v in good.items() if k != "exp"}),
        "wrong typ": forge(good, typ="JWT"),
        "expired": forge({**good, "iat": now - 3600, "exp": now - 1800}),
        "unknown kid": forge(good, kid="nobody"),
        "id token": provider.make_id_token(sub="s", nonce="n"),
        "refresh token": tokens["refreshToken"],
        "garbage": "not-a-token",
    }
    for name, token in candidates.items():
        response = await app.client.get("/v1/me", headers=bearer(token))
        assert response.status_code == 401, name
        assert_401(response, invalid_token=True)
    missing = await app.client.get("/v1/me")
    assert_401(missing)
    assert "error=" not in missing.headers["www-authenticate"]


async def test_rotated_keys_keep_old_tokens_valid(
    auth_app_factory: AuthAppFactory, provider: FakeOidcProvider
) -> None:
    async with auth_app_factory(jwt_keys=OLD_KEY) as before:
        tokens = await sign_in(before, provider)
    async with auth_app_factory(jwt_keys=f"{KEY},{OLD_KEY}") as after:
        assert (
            await after.client.get("/v1/me", headers=bearer(tokens["accessToken"]))
        ).status_code == 200
        fresh = await sign_in(after, provider)
        assert jwt.get_unverified_header(fresh["accessToken"])["kid"] == "k1"
    async with auth_app_factory(jwt_keys=KEY) as retired:
        response = await retired.client.get("/v1/me", headers=bearer(tokens["accessToken"]))
        assert_401(response, invalid_token=True)


# --- refresh sessions ---------------------------------------------------------------------


async def test_refresh_rotates_and_reuse_after_grace_revokes_the_family(
    auth_app_factory: AuthAppFactory, provider: FakeOidcProvider, pg_url: str
) -> None:
    async with auth_app_factory(refresh_grace_seconds="0") as app:
        first = await sign_in(app, provider)
        second = await refresh(app, first["refreshToken"])
        assert second.status_code == 200, second.text
        assert second.json()["refreshToken"] != first["refreshToken"]
        assert (
            await app.client.get("/v1/me", headers=bearer(second.json()["accessToken"]))
        ).status_code == 200
        reused = await refresh(app, first["refreshToken"])
        assert_401(reused)
        assert_401(await refresh(app, second.json()["refreshToken"]))  # the family is gone
    with psycopg.connect(pg_url) as conn:
        events = [row[0] for row in conn.execute("SELECT event FROM audit_logs ORDER BY id")]
    assert events == ["sign_in", "refresh_reuse_detected"]


async def test_concurrent_refreshes_inside_the_grace_window(
    app: RunningApp, provider: FakeOidcProvider
) -> None:
    tokens = await sign_in(app, provider)
    results: list[httpx.Response] = []

    async def one() -> None:
        results.append(await refresh(app, tokens["refreshToken"]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one)
        nursery.start_soon(one)
    assert [r.status_code for r in results] == [200, 200]
    for response in results:  # both parts of the extension stay signed in
        assert (await refresh(app, response.json()["refreshToken"])).status_code == 200


async def test_logout_revokes_the_family(app: RunningApp, provider: FakeOidcProvider) -> None:
    tokens = await sign_in(app, provider)
    rotated = (await refresh(app, tokens["refreshToken"])).json()
    response = await app.client.post(
        "/v1/auth/logout", json={"refreshToken": rotated["refreshToken"]}
    )
    assert response.status_code == 204
    assert_401(await refresh(app, rotated["refreshToken"]))
    again = await app.client.post("/v1/auth/logout", json={"refreshToken": rotated["refreshToken"]})
    assert again.status_code == 204
    assert (await refresh(app, "x")).status_code == 401


# --- rate limits --------------------------------------------------------------------------


async def test_auth_rate_limit_429_with_headers(auth_app_factory: AuthAppFactory) -> None:
    async with auth_app_factory(rate_limit_auth="3/1m") as app:
        answers = [await app.client.post("/v1/auth/oidc/start") for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert answers[0].headers["ratelimit-policy"] == '"auth";q=3;w=60'
    assert answers[0].headers["ratelimit"].startswith('"auth";r=2;')
    limited = answers[3]
    assert limited.json()["code"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["ratelimit"].startswith('"auth";r=0;')


async def test_limits_are_shared_by_two_instances(auth_app_factory: AuthAppFactory) -> None:
    async with (
        auth_app_factory(rate_limit_auth="4/1m") as one,
        auth_app_factory(rate_limit_auth="4/1m") as two,
    ):
        codes = []
        for client in (one.client, two.client, one.client, two.client, one.client):
            codes.append((await client.post("/v1/auth/oidc/start")).status_code)
    assert codes == [200, 200, 200, 200, 429]


async def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(
    auth_app_factory: AuthAppFactory,
) -> None:
    async with auth_app_factory(rate_limit_auth="2/1m", trusted_proxies="10.0.0.0/8") as app:
        codes = [
            (
                await app.client.post(
                    "/v1/auth/oidc/start", headers={"X-Forwarded-For": f"203.0.113.{i}"}
                )
            ).status_code
            for i in range(3)
        ]
    assert codes == [200, 200, 429]


async def test_redis_down_falls_back_to_a_local_limit(
    auth_app_factory: AuthAppFactory, provider: FakeOidcProvider, redis_proxy: FaultProxy
) -> None:
    async with auth_app_factory(
        redis_url=f"redis://127.0.0.1:{redis_proxy.port}/0", rate_limit_auth="12/1m"
    ) as app:
        redis_proxy.mode = "down"
        with trio.fail_after(5):
            tokens = await sign_in(app, provider)  # sign-in works without Redis
            codes = [(await app.client.post("/v1/auth/oidc/start")).status_code for _ in range(3)]
        # the per-process fallback is a quarter of the limit (3); sign-in spent two of them
        assert codes == [200, 429, 429]
        me = await app.client.get("/v1/me", headers=bearer(tokens["accessToken"]))
        assert me.status_code == 200
        assert 'backend="local"' in (await app.client.get("/metrics")).text


# --- no raw tokens at rest ----------------------------------------------------------------


async def test_no_raw_token_in_the_database_or_redis(
    app: RunningApp, provider: FakeOidcProvider, pg_url: str
) -> None:
    tokens = await sign_in(app, provider)
    rotated = (await refresh(app, tokens["refreshToken"])).json()
    secrets_seen = [
        tokens["accessToken"],
        tokens["refreshToken"],
        rotated["accessToken"],
        rotated["refreshToken"],
    ]
    with psycopg.connect(pg_url) as conn:
        dump = json.dumps(
            [
                [str(cell) for cell in row]
                for table in ("users", "sessions", "audit_logs")
                for row in conn.execute(f"SELECT * FROM {table}").fetchall()
            ]
        )
    redis = app.resources.redis
    keys = [k async for k in redis.client.scan_iter(match=redis.prefix + "*")]
    values = [await redis.client.get(k) for k in keys if await redis.client.type(k) == b"string"]
    blob = dump + repr(keys) + repr(values)
    for secret in secrets_seen:
        assert secret not in blob
        assert secret.split(".")[-1] not in blob  # not even a JWT signature
