"""Logout and refresh-token reuse end the sign-in's access tokens at once, on every replica.

Two app instances sharing the Redis prefix play two replicas; a token is refused on the
replica that handled the logout at once and on the other within ``CLEAR_TTL`` (its recent
"not revoked" answer first runs out). Redis down: fail open on the local knowledge.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
import trio

from smartpip.http.revocation import CLEAR_TTL
from tests.app.conftest import AuthAppFactory, RunningApp
from tests.app.signin import assert_401, bearer, refresh, sign_in
from tests.fakes.oidc_provider import FakeOidcProvider
from tests.support.faultproxy import FaultProxy
from tests.support.polling import eventually

# Why 4 s over CLEAR_TTL: the bound is CLEAR_TTL; the rest only absorbs a loaded CI machine.
PROPAGATION_DEADLINE = CLEAR_TTL + 4


async def status(app: RunningApp, access_token: str, path: str = "/v1/auth/session") -> int:
    """The status of an authenticated request (``/v1/auth/session``: no database, no limit)."""
    return (await app.client.get(path, headers=bearer(access_token))).status_code


async def logout(app: RunningApp, refresh_token: str) -> None:
    response = await app.client.post("/v1/auth/logout", json={"refreshToken": refresh_token})
    assert response.status_code == 204, response.text


async def assert_refused(app: RunningApp, access_token: str) -> None:
    for path in ("/v1/auth/session", "/v1/me"):
        assert_401(await app.client.get(path, headers=bearer(access_token)), invalid_token=True)


async def test_logout_refuses_the_sign_ins_access_tokens_here_at_once_and_there_soon(
    auth_app_factory: AuthAppFactory, provider: FakeOidcProvider
) -> None:
    async with auth_app_factory() as here, auth_app_factory() as there:
        first = await sign_in(here, provider, sub="alice")
        rotated = (await refresh(here, first["refreshToken"])).json()
        other = await sign_in(here, provider, sub="alice")  # another sign-in (family)
        family_tokens = [first["accessToken"], rotated["accessToken"]]
        for app in (here, there):  # working before; "there" now trusts "not revoked" a while
            for token in [*family_tokens, other["accessToken"]]:
                assert await status(app, token) == 200
                assert await status(app, token, "/v1/me") == 200

        await logout(here, rotated["refreshToken"])

        for token in family_tokens:
            await assert_refused(here, token)

        async def refused_there() -> bool:
            codes = [await status(there, token) for token in family_tokens]
            return codes == [401, 401]

        await eventually(refused_there, within=PROPAGATION_DEADLINE)
        for token in family_tokens:
            await assert_refused(there, token)
        # The user's other sign-in is untouched, on both replicas.
        for app in (here, there):
            assert await status(app, other["accessToken"], "/v1/me") == 200
        assert (await refresh(there, other["refreshToken"])).status_code == 200


async def test_reuse_detection_refuses_the_familys_access_tokens(
    auth_app_factory: AuthAppFactory, provider: FakeOidcProvider
) -> None:
    async with (
        auth_app_factory(refresh_grace_seconds="0") as here,
        auth_app_factory(refresh_grace_seconds="0") as there,
    ):
        first = await sign_in(here, provider, sub="alice")
        second = (await refresh(here, first["refreshToken"])).json()
        other = await sign_in(here, provider, sub="alice")
        for app in (here, there):
            assert await status(app, second["accessToken"]) == 200

        assert_401(await refresh(there, first["refreshToken"]))  # reused: detected "there"

        for token in (first["accessToken"], second["accessToken"]):
            await assert_refused(there, token)

        async def refused_here() -> bool:
            return await status(here, second["accessToken"]) == 401

        await eventually(refused_here, within=PROPAGATION_DEADLINE)
        await assert_refused(here, first["accessToken"])
        for app in (here, there):
            assert await status(app, other["accessToken"], "/v1/me") == 200


async def test_redis_down_the_replica_that_logged_out_refuses_and_the_api_answers(
    auth_app_factory: AuthAppFactory,
    provider: FakeOidcProvider,
    redis_proxy: FaultProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Chosen behaviour, as for deleted accounts: fail open. The replica that handled the
    logout refuses the family's access tokens from its own table; another replica accepts
    them until they expire (it cannot know); the refresh token is dead everywhere (Postgres).
    """
    redis_url = f"redis://127.0.0.1:{redis_proxy.port}/0"
    async with (
        auth_app_factory(redis_url=redis_url) as here,
        auth_app_factory(redis_url=redis_url) as there,
    ):
        tokens = await sign_in(here, provider, sub="alice")
        other = await sign_in(here, provider, sub="alice")
        for app in (here, there):
            assert await status(app, tokens["accessToken"]) == 200
        redis_proxy.mode = "down"
        with trio.fail_after(5):  # a hang guard: a dead Redis fails on the reset
            await logout(here, tokens["refreshToken"])
            await assert_refused(here, tokens["accessToken"])
            # The documented gap: "there" had no way to learn of the logout.
            assert await status(there, tokens["accessToken"], "/v1/me") == 200
            assert_401(await refresh(there, tokens["refreshToken"]))
            for app in (here, there):  # everything else keeps working
                assert await status(app, other["accessToken"], "/v1/me") == 200
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("revocation" in m and "only this replica" in m for m in warnings)


async def test_a_token_without_a_session_id_survives_logout_until_the_account_goes(
    auth_app_factory: AuthAppFactory, provider: FakeOidcProvider
) -> None:
    """Tokens issued before ``sid`` existed (and development tokens) belong to no sign-in:
    logging out cannot reach them; they expire within 15 minutes, or go with the account."""
    async with auth_app_factory() as app:
        tokens = await sign_in(app, provider, sub="alice")
        me: dict[str, Any] = (
            await app.client.get("/v1/me", headers=bearer(tokens["accessToken"]))
        ).json()
        legacy = app.resources.tokens.issue(uuid.UUID(me["id"]))  # no sid
        await logout(app, tokens["refreshToken"])
        await assert_refused(app, tokens["accessToken"])
        assert await status(app, legacy, "/v1/me") == 200
        deleted = await app.client.delete("/v1/me", headers=bearer(legacy))
        assert deleted.status_code == 204, deleted.text
        await assert_refused(app, legacy)
