"""``/v1/history`` end to end: the real app on real Postgres and Redis."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import trio

from tests.app.conftest import AppFactory, RunningApp, make_config, running_app
from tests.history.conftest import KEY, User, history_rows, ids, sign_in, video
from tests.support.faultproxy import FaultProxy
from tests.support.polling import eventually


async def post(app: RunningApp, user: User, body: dict[str, Any]) -> list[str]:
    return ids(await app.client.post("/v1/history", json=body, headers=user.headers))


async def test_post_get_and_last(app: RunningApp, alice: User) -> None:
    response = await app.client.get("/v1/history/last", headers=alice.headers)
    assert response.status_code == 200 and response.json() == {"item": None}
    assert ids(await app.client.get("/v1/history", headers=alice.headers)) == []

    response = await app.client.post("/v1/history", json=video(1), headers=alice.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "items": [
            {
                "provider": "youtube",
                "videoId": "vid00000001",
                "title": "Video 1",
                "url": "https://www.youtube.com/watch?v=vid00000001",
                "watchedAt": "2024-01-01T00:00:01Z",
            }
        ],
        "recorded": True,
    }
    assert await post(app, alice, video(2)) == ["vid00000002", "vid00000001"]
    response = await app.client.get("/v1/history/last", headers=alice.headers)
    assert response.json()["item"]["videoId"] == "vid00000002"


async def test_watched_at_defaults_to_now(app: RunningApp, alice: User) -> None:
    body = video(1)
    del body["watchedAt"]
    await post(app, alice, video(2))
    response = await app.client.post("/v1/history", json=body, headers=alice.headers)
    items = response.json()["items"]
    assert [i["videoId"] for i in items] == ["vid00000001", "vid00000002"]
    assert items[0]["watchedAt"].startswith("20") and items[0]["watchedAt"].endswith("Z")


async def test_rewatch_moves_to_top_and_updates(app: RunningApp, alice: User) -> None:
    for n in (1, 2, 3):
        await post(app, alice, video(n))
    rewatch = video(1, title="  New title  ", watchedAt="2024-01-02T00:00:00Z")
    response = await app.client.post("/v1/history", json=rewatch, headers=alice.headers)
    items = response.json()["items"]
    assert [i["videoId"] for i in items] == ["vid00000001", "vid00000003", "vid00000002"]
    assert items[0]["title"] == "New title"
    assert items[0]["watchedAt"] == "2024-01-02T00:00:00Z"
    assert len(history_rows(app.resources.db.settings.url, alice.id)) == 3


async def test_equal_times_last_written_first(app: RunningApp, alice: User) -> None:
    same = "2024-01-01T00:00:00Z"
    await post(app, alice, video(1, watchedAt=same))
    await post(app, alice, video(2, watchedAt=same))
    assert await post(app, alice, video(1, watchedAt=same)) == ["vid00000001", "vid00000002"]


async def test_prune_keeps_exactly_the_five_newest(app: RunningApp, alice: User) -> None:
    # Sent out of order: the newest by watchedAt survive, not the last sent.
    for n in (7, 1, 9, 3, 8, 2, 6, 4, 5):
        await post(app, alice, video(n))
    expected = [f"vid{n:08d}" for n in (9, 8, 7, 6, 5)]
    assert ids(await app.client.get("/v1/history", headers=alice.headers)) == expected
    assert len(history_rows(app.resources.db.settings.url, alice.id)) == 5
    # An entry older than all five is pruned at once.
    assert await post(app, alice, video(0)) == expected


async def test_etag_and_if_none_match(app: RunningApp, alice: User) -> None:
    await post(app, alice, video(1))
    first = await app.client.get("/v1/history", headers=alice.headers)
    etag = first.headers["etag"]
    again = await app.client.get("/v1/history", headers={**alice.headers, "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    await post(app, alice, video(2))
    changed = await app.client.get("/v1/history", headers={**alice.headers, "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert ids(changed) == ["vid00000002", "vid00000001"]


async def test_delete_one_and_all(app: RunningApp, alice: User) -> None:
    for n in (1, 2, 3):
        await post(app, alice, video(n))
    response = await app.client.delete("/v1/history/youtube/vid00000002", headers=alice.headers)
    assert response.status_code == 204 and response.content == b""
    assert ids(await app.client.get("/v1/history", headers=alice.headers)) == [
        "vid00000003",
        "vid00000001",
    ]
    for path in ("/v1/history/youtube/vid00000002", "/v1/history/nope/whatever"):
        assert (await app.client.delete(path, headers=alice.headers)).status_code == 204
    assert (await app.client.delete("/v1/history", headers=alice.headers)).status_code == 204
    assert ids(await app.client.get("/v1/history", headers=alice.headers)) == []
    assert (await app.client.delete("/v1/history", headers=alice.headers)).status_code == 204


@pytest.mark.parametrize(
    "path",
    [
        "/v1/history/youtube/vid%0000001",  # NUL: Postgres refuses it in text (was a 500)
        "/v1/history/you%00tube/vid00000001",
        "/v1/history/youtube/vid000000011",  # not a YouTube ID
        "/v1/history/YouTube/vid00000001",  # providers are lower-case
        "/v1/history/%E2%80%AE/%2E%2E",
    ],
)
async def test_forgetting_what_cannot_exist_is_204_and_keeps_the_rest(
    app: RunningApp, alice: User, path: str
) -> None:
    await post(app, alice, video(1))
    response = await app.client.delete(path, headers=alice.headers)
    assert response.status_code == 204, response.text
    assert ids(await app.client.get("/v1/history", headers=alice.headers)) == ["vid00000001"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"provider": "netflix"}, "provider"),
        ({"videoId": "short"}, "videoId"),
        ({"provider": "vimeo", "videoId": "abc", "url": "https://vimeo.com/1"}, "videoId"),
        ({"provider": "twitch", "videoId": "a!", "url": "https://twitch.tv/x"}, "videoId"),
        (
            {"provider": "dailymotion", "videoId": "x-1", "url": "https://dai.ly/x1"},
            "videoId",
        ),
        ({"url": "http://www.youtube.com/watch?v=vid00000001"}, "url"),
        ({"url": "javascript:alert(1)"}, "url"),
        ({"url": "https://youtube.com.evil.example/watch"}, "url"),
        ({"url": "https://me@www.youtube.com/watch"}, "url"),
        ({"url": "https://127.0.0.1/watch"}, "url"),
        ({"url": "https://[::1]/watch"}, "url"),
        ({"url": "https://169.254.169.254/"}, "url"),
        ({"title": ""}, "title"),
        ({"title": "x" * 301}, "title"),
        ({"title": "bell\x07"}, "title"),
        ({"watchedAt": "last tuesday"}, "watchedAt"),
        ({"watchedAt": "2999-01-01T00:00:00Z"}, "watchedAt"),
        ({"title": 5}, "title"),
        ({"userId": "00000000-0000-0000-0000-000000000000"}, "userId"),
        ({"id": 1}, "id"),
        ({"createdAt": "2024-01-01T00:00:00Z"}, "createdAt"),
    ],
)
async def test_validation_failures_name_the_field(
    app: RunningApp, alice: User, overrides: dict[str, Any], field: str
) -> None:
    response = await app.client.post(
        "/v1/history", json=video(1, **overrides), headers=alice.headers
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert [e["field"] for e in problem["errors"]] == [field]
    assert history_rows(app.resources.db.settings.url, alice.id) == []


@pytest.mark.parametrize("body", [b"null", b"[]", b'"a video"', b"5"])
async def test_a_body_that_is_no_object_is_422_naming_the_body(
    app: RunningApp, alice: User, body: bytes
) -> None:
    headers = {**alice.headers, "Content-Type": "application/json"}
    response = await app.client.post("/v1/history", content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [{"field": "body", "message": "must be a JSON object"}]


async def test_missing_fields_each_named(app: RunningApp, alice: User) -> None:
    response = await app.client.post("/v1/history", json={}, headers=alice.headers)
    assert response.status_code == 422
    named = {e["field"] for e in response.json()["errors"]}
    assert named == {"provider", "videoId", "title", "url"}


async def test_requires_a_bearer_token(app: RunningApp) -> None:
    for method, path in [
        ("GET", "/v1/history"),
        ("POST", "/v1/history"),
        ("GET", "/v1/history/last"),
        ("DELETE", "/v1/history"),
        ("DELETE", "/v1/history/youtube/vid00000001"),
    ]:
        response = await app.client.request(method, path, json=video(1))
        assert response.status_code == 401, (method, path)


async def test_deleted_account_gets_401_not_500(app: RunningApp, alice: User) -> None:
    with psycopg.connect(app.resources.db.settings.url, autocommit=True) as conn:
        conn.execute("DELETE FROM users WHERE id = %s", (alice.id,))
    response = await app.client.post("/v1/history", json=video(1), headers=alice.headers)
    assert response.status_code == 401, response.text
    assert response.json()["detail"] == "this account no longer exists; sign in again"


async def test_writes_are_rate_limited(app_factory: AppFactory) -> None:
    async with app_factory(jwt_keys=KEY, rate_limit_writes="3/1m") as app:
        user = await sign_in(app, "limited")
        for n in range(3):
            response = await app.client.post("/v1/history", json=video(n), headers=user.headers)
            assert response.status_code == 200
        response = await app.client.post("/v1/history", json=video(9), headers=user.headers)
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) > 0
        response = await app.client.delete("/v1/history", headers=user.headers)
        assert response.status_code == 429
        # Reads have their own budget.
        assert (await app.client.get("/v1/history", headers=user.headers)).status_code == 200


async def test_postgres_down_503_then_recovers(
    pg_url: str, redis_prefix: str, pg_proxy: FaultProxy
) -> None:
    url = pg_url.replace(":5432/", f":{pg_proxy.port}/")
    async with running_app(make_config(url, redis_prefix, jwt_keys=KEY)) as app:
        user = await sign_in(app, "outage")
        assert (
            await app.client.post("/v1/history", json=video(1), headers=user.headers)
        ).is_success
        pg_proxy.mode = "down"
        with trio.fail_after(5):
            response = await app.client.post("/v1/history", json=video(2), headers=user.headers)
        assert response.status_code == 503
        assert response.json()["code"] == "service_unavailable"
        assert int(response.headers["retry-after"]) > 0
        response = await app.client.get("/v1/history", headers=user.headers)
        assert response.status_code == 503
        pg_proxy.mode = "pass"

        async def recovered() -> bool:
            response = await app.client.get("/v1/history", headers=user.headers)
            return response.status_code == 200

        await eventually(recovered)
        assert await post(app, user, video(2)) == ["vid00000002", "vid00000001"]
