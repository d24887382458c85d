"""``DELETE /v1/me``: every row of the user goes, their tokens stop working at once everywhere,
and nobody else's data is touched."""

from __future__ import annotations

import uuid

import httpx
import psycopg
import trio

from smartpip.http.revocation import CLEAR_TTL
from tests.account.conftest import ISSUER, KEY, bearer, seed_user, user_rows
from tests.app.conftest import AppFactory, RunningApp
from tests.support.polling import eventually

TABLES_WITH_A_USER_COLUMN = """
SELECT table_name FROM information_schema.columns
WHERE table_schema = 'public' AND column_name = 'user_id' ORDER BY 1
"""


async def delete_me(app: RunningApp, token: str) -> None:
    response = await app.client.delete("/v1/me", headers=bearer(token))
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert response.headers["ratelimit-policy"].startswith('"writes";')


def assert_revoked(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "unauthorized"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_delete_leaves_no_row_of_the_user_anywhere(app: RunningApp, pg_url: str) -> None:
    alice = await seed_user(app, "alice")
    assert all(user_rows(pg_url, alice.user_id).values())  # data in every table before
    await delete_me(app, alice.access_token)
    assert user_rows(pg_url, alice.user_id) == {
        "users": [],
        "video_history": [],
        "settings": [],
        "sessions": [],
        "audit_logs": [],
        "oauth_accounts": [],
        "youtube_playlists": [],
    }
    with psycopg.connect(pg_url) as conn:
        tables = [row[0] for row in conn.execute(TABLES_WITH_A_USER_COLUMN).fetchall()]
        # A new table referencing users must be purged by store.account too (youtube_playlists:
        # by its ON DELETE CASCADE).
        assert tables == [
            "audit_logs",
            "oauth_accounts",
            "sessions",
            "settings",
            "video_history",
            "youtube_playlists",
        ]
        for table in tables:
            count = conn.execute(
                f"SELECT count(*) FROM {table} WHERE user_id = %s", (alice.user_id,)
            ).fetchone()
            assert count == (0,), table
        audit = conn.execute("SELECT user_id, event, meta FROM audit_logs").fetchall()
        texts = [row[0] for row in conn.execute("SELECT a::text FROM audit_logs a").fetchall()]
    # Only the deletion event stays: no user ID, no meta, no trace of the sign-ins.
    assert audit == [(None, "account_deleted", {})]
    assert not any(str(alice.user_id) in text or "alice" in text for text in texts)


async def test_delete_never_touches_another_user(app: RunningApp, pg_url: str) -> None:
    alice = await seed_user(app, "alice")
    bob = await seed_user(app, "bob")
    before = user_rows(pg_url, bob.user_id)
    await delete_me(app, alice.access_token)
    assert user_rows(pg_url, bob.user_id) == before
    assert all(before.values())
    me = await app.client.get("/v1/me", headers=bearer(bob.access_token))
    assert me.status_code == 200 and me.json()["id"] == str(bob.user_id)
    refreshed = await app.client.post("/v1/auth/refresh", json={"refreshToken": bob.refresh_token})
    assert refreshed.status_code == 200, refreshed.text


async def test_live_access_token_is_refused_at_once_on_every_instance(
    app_factory: AppFactory,
) -> None:
    async with app_factory(jwt_keys=KEY) as first, app_factory(jwt_keys=KEY) as second:
        alice = await seed_user(first, "alice")
        headers = bearer(alice.access_token)
        # Both instances have verified (and cached) the token before the deletion.
        for app in (first, second):
            assert (await app.client.get("/v1/auth/session", headers=headers)).status_code == 200
            assert (await app.client.get("/v1/me", headers=headers)).status_code == 200
        await delete_me(first, alice.access_token)
        for app in (first, second):
            for method, path in (("GET", "/v1/me"), ("GET", "/v1/me/export")):
                assert_revoked(await app.client.request(method, path, headers=headers))
        # Routes that read no row of the user (and the idempotent DELETE): refused at once
        # where the deletion happened, and on the other instance as soon as its remembered
        # "not revoked" answer expires (CLEAR_TTL, 1 s).
        assert_revoked(await first.client.get("/v1/auth/session", headers=headers))
        assert_revoked(await first.client.delete("/v1/me", headers=headers))

        async def refused_by_second() -> bool:
            response = await second.client.get("/v1/auth/session", headers=headers)
            return response.status_code == 401

        await eventually(refused_by_second, within=CLEAR_TTL + 2)
        assert_revoked(await second.client.get("/v1/auth/session", headers=headers))
        assert_revoked(await second.client.delete("/v1/me", headers=headers))


async def test_revocation_marker_lives_as_long_as_a_token(app: RunningApp) -> None:
    alice = await seed_user(app, "alice")
    await delete_me(app, alice.access_token)
    redis = app.resources.redis
    key = redis.key("revoked-user", str(alice.user_id))
    ttl = await redis.client.ttl(key)
    assert 900 + 30 < ttl <= 960
    # Only the random user ID, never a token or the OIDC subject.
    value = await redis.client.get(key)
    assert value is not None and value.isdigit()


async def test_refresh_tokens_of_the_deleted_user_fail(app: RunningApp) -> None:
    alice = await seed_user(app, "alice")
    await delete_me(app, alice.access_token)
    for token in (alice.refresh_token, alice.rotated_refresh_token):
        response = await app.client.post("/v1/auth/refresh", json={"refreshToken": token})
        assert response.status_code == 401, response.text


async def test_signing_in_again_starts_empty_with_a_new_id(app: RunningApp) -> None:
    alice = await seed_user(app, "alice")
    await delete_me(app, alice.access_token)
    again = await app.resources.sessions.sign_in(ISSUER, alice.sub, method="code")
    assert again.user_id != alice.user_id
    headers = bearer(again.access_token)
    me = await app.client.get("/v1/me", headers=headers)
    assert me.status_code == 200 and me.json()["id"] == str(again.user_id)
    export = (await app.client.get("/v1/me/export", headers=headers)).json()
    assert export["account"]["id"] == str(again.user_id)
    assert export["settings"] is None and export["history"] == []
    assert len(export["sessions"]) == 1
    assert [(e["event"], e["meta"]["new_user"]) for e in export["auditEvents"]] == [
        ("sign_in", True)
    ]


async def test_concurrent_refresh_and_delete_neither_deadlocks_nor_leaves_rows(
    app: RunningApp, pg_url: str
) -> None:
    alice = await seed_user(app, "alice")
    statuses: list[int] = []

    async def refresh() -> None:
        response = await app.client.post(
            "/v1/auth/refresh", json={"refreshToken": alice.refresh_token}
        )
        statuses.append(response.status_code)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(refresh)
            nursery.start_soon(delete_me, app, alice.access_token)
    assert all(status in (200, 401) for status in statuses), statuses
    assert not any(user_rows(pg_url, alice.user_id).values())
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM sessions").fetchone() == (0,)


async def test_token_for_a_user_without_a_row_is_401_not_404(app: RunningApp) -> None:
    # A token whose user is gone but not marked revoked (e.g. the marker could not be written).
    token = app.resources.tokens.issue(uuid.uuid4())
    for path in ("/v1/me", "/v1/me/export"):
        assert_revoked(await app.client.get(path, headers=bearer(token)))
