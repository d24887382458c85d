"""``/v1/settings`` end to end: the real app over HTTP, real Postgres and Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import trio

from store.users import upsert_user
from tests.app.conftest import AppFactory, RunningApp

KEY = "k1:" + "a" * 40
ISS = "https://accounts.google.com"
DEFAULTS = {
    "autoPip": False,
    "skipSeconds": 10,
    "siteFlags": {},
    "historyRetentionDays": None,
    "historyPaused": False,
}
DOC = {
    "autoPip": True,
    "skipSeconds": 20,
    "siteFlags": {"www.youtube.com": {"skipAds": True, "mute": False}, "vimeo.com": {"x": True}},
    "historyRetentionDays": 30,
    "historyPaused": False,
}

Headers = dict[str, str]


@pytest.fixture
async def app(app_factory: AppFactory) -> AsyncIterator[RunningApp]:
    async with app_factory(jwt_keys=KEY) as running:
        yield running


async def sign_up(app: RunningApp, sub: str = "sub-a") -> tuple[uuid.UUID, Headers]:
    user_id, _ = await app.resources.db.run(upsert_user, ISS, sub)
    return user_id, {"Authorization": f"Bearer {app.resources.tokens.issue(user_id)}"}


def stored_row(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> str | None:
    """The user's settings row exactly as stored (every column), or None."""
    row = conn.execute("SELECT s::text FROM settings s WHERE user_id = %s", (user_id,)).fetchone()
    return None if row is None else str(row[0])


def history_columns(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> tuple[Any, ...] | None:
    """The user's stored ``(history_retention_days, history_paused)``."""
    return conn.execute(
        "SELECT history_retention_days, history_paused FROM settings WHERE user_id = %s",
        (user_id,),
    ).fetchone()


async def test_first_get_answers_the_defaults(app: RunningApp) -> None:
    user_id, auth = await sign_up(app)
    response = await app.client.get("/v1/settings", headers=auth)
    assert response.status_code == 200
    assert response.json() == DEFAULTS
    assert response.headers["ETag"].startswith('"')
    assert await app.resources.db.run(stored_row, user_id) is None


async def test_put_then_get_round_trip(app: RunningApp) -> None:
    _, auth = await sign_up(app)
    put = await app.client.put("/v1/settings", json=DOC, headers=auth)
    assert put.status_code == 200, put.text
    assert put.json() == DOC
    get = await app.client.get("/v1/settings", headers=auth)
    assert get.json() == DOC
    assert get.content == put.content
    assert get.headers["ETag"] == put.headers["ETag"]


async def test_patch_merges_fields_and_site_flags_per_host(app: RunningApp) -> None:
    _, auth = await sign_up(app)
    await app.client.put("/v1/settings", json=DOC, headers=auth)
    patch = {
        "skipSeconds": 45,
        "siteFlags": {"www.youtube.com": {"pip": True}, "vimeo.com": None, "twitch.tv": {}},
    }
    response = await app.client.patch("/v1/settings", json=patch, headers=auth)
    assert response.status_code == 200, response.text
    expected = {
        "autoPip": True,
        "skipSeconds": 45,
        "siteFlags": {"twitch.tv": {}, "www.youtube.com": {"pip": True}},
        "historyRetentionDays": 30,
        "historyPaused": False,
    }
    assert response.json() == expected
    unchanged = await app.client.patch(
        "/v1/settings", json={"siteFlags": {"absent.example": None}}, headers=auth
    )
    assert unchanged.json() == expected
    assert unchanged.headers["ETag"] == response.headers["ETag"]
    assert (await app.client.patch("/v1/settings", json={}, headers=auth)).json() == expected
    assert (await app.client.get("/v1/settings", headers=auth)).json() == expected


async def test_patch_on_defaults_creates_the_row(app: RunningApp) -> None:
    _, auth = await sign_up(app)
    response = await app.client.patch("/v1/settings", json={"autoPip": True}, headers=auth)
    assert response.json() == {**DEFAULTS, "autoPip": True}


async def test_etag_follows_the_document_and_if_none_match_gives_304(app: RunningApp) -> None:
    _, auth = await sign_up(app)
    first = (await app.client.get("/v1/settings", headers=auth)).headers["ETag"]
    cached = await app.client.get("/v1/settings", headers={**auth, "If-None-Match": first})
    assert cached.status_code == 304
    assert cached.content == b""
    put = await app.client.put("/v1/settings", json=DOC, headers=auth)
    second = put.headers["ETag"]
    assert second != first
    stale = await app.client.get("/v1/settings", headers={**auth, "If-None-Match": first})
    assert stale.status_code == 200
    assert stale.headers["ETag"] == second
    fresh = await app.client.get("/v1/settings", headers={**auth, "If-None-Match": second})
    assert fresh.status_code == 304
    # Same document again (keys in another order): same tag.
    reordered = {
        "siteFlags": {
            "vimeo.com": {"x": True},
            "www.youtube.com": {"mute": False, "skipAds": True},
        },
        "skipSeconds": 20,
        "autoPip": True,
    }
    again = await app.client.put("/v1/settings", json=reordered, headers=auth)
    assert again.headers["ETag"] == second


@pytest.mark.parametrize(("method", "body"), [("PUT", DOC), ("PATCH", {"skipSeconds": 99})])
async def test_if_match(app: RunningApp, method: str, body: dict[str, object]) -> None:
    user_id, auth = await sign_up(app)
    await app.client.put("/v1/settings", json={**DEFAULTS, "skipSeconds": 5}, headers=auth)
    tag = (await app.client.get("/v1/settings", headers=auth)).headers["ETag"]
    before = await app.resources.db.run(stored_row, user_id)

    mismatch = await app.client.request(
        method, "/v1/settings", json=body, headers={**auth, "If-Match": '"0000"'}
    )
    assert mismatch.status_code == 412
    assert mismatch.json()["code"] == "precondition_failed"
    assert await app.resources.db.run(stored_row, user_id) == before

    match = await app.client.request(
        method, "/v1/settings", json=body, headers={**auth, "If-Match": tag}
    )
    assert match.status_code == 200, match.text
    stale = await app.client.request(
        method, "/v1/settings", json=body, headers={**auth, "If-Match": tag}
    )
    assert stale.status_code == 412
    absent = await app.client.request(method, "/v1/settings", json=body, headers=auth)
    assert absent.status_code == 200


async def test_two_devices_with_the_same_tag_exactly_one_wins(app: RunningApp) -> None:
    _, auth = await sign_up(app)
    tag = (await app.client.get("/v1/settings", headers=auth)).headers["ETag"]
    bodies = [{**DEFAULTS, "skipSeconds": 30 + i} for i in range(2)]
    statuses: dict[int, int] = {}

    async def device(index: int) -> None:
        response = await app.client.put(
            "/v1/settings", json=bodies[index], headers={**auth, "If-Match": tag}
        )
        statuses[index] = response.status_code

    async with trio.open_nursery() as nursery:
        for index in range(2):
            nursery.start_soon(device, index)
    assert sorted(statuses.values()) == [200, 412]
    winner = next(i for i, status in statuses.items() if status == 200)
    assert (await app.client.get("/v1/settings", headers=auth)).json() == bodies[winner]


def long_host(index: int) -> str:
    return ".".join([c * 63 for c in "abc"]) + f".h{index}"


VALID = {"autoPip": False, "skipSeconds": 10, "siteFlags": {}}
INVALID_PUTS = [
    pytest.param({"autoPip": "yes"}, "autoPip", id="autoPip-string"),
    pytest.param({"autoPip": 1}, "autoPip", id="autoPip-one"),
    pytest.param({"autoPip": None}, "autoPip", id="autoPip-null"),
    pytest.param({"skipSeconds": 0}, "skipSeconds", id="skip-zero"),
    pytest.param({"skipSeconds": 301}, "skipSeconds", id="skip-301"),
    pytest.param({"skipSeconds": 1.5}, "skipSeconds", id="skip-float"),
    pytest.param({"skipSeconds": 10.0}, "skipSeconds", id="skip-integral-float"),
    pytest.param({"skipSeconds": True}, "skipSeconds", id="skip-bool"),
    pytest.param({"skipSeconds": "10"}, "skipSeconds", id="skip-string"),
    pytest.param({"siteFlags": []}, "siteFlags", id="flags-array"),
    pytest.param({"siteFlags": "x"}, "siteFlags", id="flags-string"),
    pytest.param({"historyRetentionDays": 0}, "historyRetentionDays", id="retention-0"),
    pytest.param({"historyRetentionDays": 14}, "historyRetentionDays", id="retention-14"),
    pytest.param({"historyRetentionDays": 91}, "historyRetentionDays", id="retention-91"),
    pytest.param({"historyRetentionDays": -1}, "historyRetentionDays", id="retention-neg"),
    pytest.param({"historyRetentionDays": 7.0}, "historyRetentionDays", id="retention-float"),
    pytest.param({"historyRetentionDays": 7.5}, "historyRetentionDays", id="retention-frac"),
    pytest.param({"historyRetentionDays": "7"}, "historyRetentionDays", id="retention-str"),
    pytest.param({"historyRetentionDays": True}, "historyRetentionDays", id="retention-bool"),
    pytest.param({"historyRetentionDays": {}}, "historyRetentionDays", id="retention-object"),
    pytest.param({"historyRetentionDays": 10**30}, "historyRetentionDays", id="retention-huge"),
    pytest.param({"historyPaused": None}, "historyPaused", id="paused-null"),
    pytest.param({"historyPaused": 0}, "historyPaused", id="paused-zero"),
    pytest.param({"historyPaused": "false"}, "historyPaused", id="paused-string"),
    pytest.param({"siteFlags": {"Example.com": {}}}, "siteFlags", id="host-upper"),
    pytest.param({"siteFlags": {"exa mple.com": {}}}, "siteFlags", id="host-space"),
    pytest.param({"siteFlags": {"-a.com": {}}}, "siteFlags", id="host-hyphen"),
    pytest.param({"siteFlags": {"a..com": {}}}, "siteFlags", id="host-empty-label"),
    pytest.param({"siteFlags": {"": {}}}, "siteFlags", id="host-empty"),
    pytest.param({"siteFlags": {"*.a.com": {}}}, "siteFlags", id="host-wildcard"),
    pytest.param({"siteFlags": {"a.com.": {}}}, "siteFlags", id="host-trailing-dot"),
    pytest.param({"siteFlags": {"a.com:8080": {}}}, "siteFlags", id="host-port"),
    pytest.param({"siteFlags": {"https://a.com": {}}}, "siteFlags", id="host-scheme"),
    pytest.param({"siteFlags": {"a.com/path": {}}}, "siteFlags", id="host-path"),
    pytest.param({"siteFlags": {"a" * 64 + ".com": {}}}, "siteFlags", id="label-64"),
    pytest.param({"siteFlags": {"a.com": {"on": 1}}}, "siteFlags", id="flag-number"),
    pytest.param({"siteFlags": {"a.com": {"on": "true"}}}, "siteFlags", id="flag-string"),
    pytest.param({"siteFlags": {"a.com": {"on": None}}}, "siteFlags", id="put-flag-null"),
    pytest.param({"siteFlags": {"a.com": None}}, "siteFlags", id="put-host-null"),
    pytest.param({"siteFlags": {"a.com": True}}, "siteFlags", id="host-not-object"),
    pytest.param({"siteFlags": {"a.com": {"1on": True}}}, "siteFlags", id="flag-name"),
    pytest.param({"siteFlags": {"a.com": {"a" * 33: True}}}, "siteFlags", id="flag-name-long"),
    pytest.param(
        {"siteFlags": {"a.com": {f"f{i}": True for i in range(17)}}},
        "siteFlags",
        id="flags-17",
    ),
    pytest.param(
        {"siteFlags": {f"h{i}.example": {} for i in range(201)}}, "siteFlags", id="hosts-201"
    ),
    pytest.param(
        {"siteFlags": {long_host(i): {"on": True} for i in range(40)}},
        "siteFlags",
        id="over-8KiB",
    ),
    pytest.param({"userId": str(uuid.uuid4())}, "userId", id="unknown-userId"),
]


@pytest.mark.parametrize(("change", "field"), INVALID_PUTS)
async def test_invalid_put_is_422_naming_the_field(
    app: RunningApp, change: dict[str, object], field: str
) -> None:
    user_id, auth = await sign_up(app)
    response = await app.client.put("/v1/settings", json={**VALID, **change}, headers=auth)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert [e["field"] for e in problem["errors"]] == [field]
    assert await app.resources.db.run(stored_row, user_id) is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"autoPip": 1}, "autoPip", id="autoPip"),
        pytest.param({"skipSeconds": 301}, "skipSeconds", id="skipSeconds"),
        pytest.param({"siteFlags": {"a.com:80": None}}, "siteFlags", id="host-port"),
        pytest.param({"siteFlags": {"a.com": {"on": None}}}, "siteFlags", id="flag-null"),
        pytest.param({"historyRetentionDays": 3}, "historyRetentionDays", id="retention-3"),
        pytest.param({"historyRetentionDays": "30"}, "historyRetentionDays", id="retention-str"),
        pytest.param({"historyPaused": None}, "historyPaused", id="paused-null"),
        pytest.param({"id": 1}, "id", id="unknown-id"),
    ],
)
async def test_invalid_patch_is_422_naming_the_field(
    app: RunningApp, body: dict[str, object], field: str
) -> None:
    _, auth = await sign_up(app)
    response = await app.client.patch("/v1/settings", json=body, headers=auth)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_a_body_that_is_no_object_is_422_naming_the_body(
    app: RunningApp, method: str
) -> None:
    _, auth = await sign_up(app)
    headers = {**auth, "Content-Type": "application/json"}
    response = await app.client.request(method, "/v1/settings", content=b"[]", headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [{"field": "body", "message": "must be a JSON object"}]


async def test_put_requires_every_field_and_names_each_bad_one(app: RunningApp) -> None:
    _, auth = await sign_up(app)
    missing = await app.client.put("/v1/settings", json={"autoPip": True}, headers=auth)
    assert missing.status_code == 422
    assert {e["field"] for e in missing.json()["errors"]} == {"skipSeconds", "siteFlags"}
    bad = {"autoPip": "no", "skipSeconds": 0, "siteFlags": []}
    response = await app.client.put("/v1/settings", json=bad, headers=auth)
    assert [e["field"] for e in response.json()["errors"]] == [
        "autoPip",
        "skipSeconds",
        "siteFlags",
    ]


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({f"n{i}.example": {} for i in range(60)}, id="hosts"),
        pytest.param({long_host(i): {"on": True} for i in range(20)}, id="size"),
    ],
)
async def test_patch_past_the_limits_after_merging_is_422(
    app: RunningApp, extra: dict[str, object]
) -> None:
    user_id, auth = await sign_up(app)
    base = {long_host(100 + i) if i < 20 else f"h{i}.example": {"on": True} for i in range(150)}
    put = await app.client.put("/v1/settings", json={**VALID, "siteFlags": base}, headers=auth)
    assert put.status_code == 200, put.text
    before = await app.resources.db.run(stored_row, user_id)
    response = await app.client.patch("/v1/settings", json={"siteFlags": extra}, headers=auth)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["siteFlags"]
    assert await app.resources.db.run(stored_row, user_id) == before


async def test_limits_are_inclusive(app: RunningApp) -> None:
    _, auth = await sign_up(app)
    edge = {
        "autoPip": True,
        "skipSeconds": 300,
        "siteFlags": {
            "a" * 63 + ".xn--bcher-kva.example": {f"F{i}_" + "x" * 28: True for i in range(16)},
            **{f"h{i}.example": {} for i in range(199)},
        },
    }
    response = await app.client.put("/v1/settings", json=edge, headers=auth)
    assert response.status_code == 200, response.text
    one = await app.client.patch("/v1/settings", json={"skipSeconds": 1}, headers=auth)
    assert one.status_code == 200


async def test_one_user_never_touches_another(app: RunningApp) -> None:
    _, auth_a = await sign_up(app, "sub-a")
    user_b, auth_b = await sign_up(app, "sub-b")
    await app.client.put("/v1/settings", json=DOC, headers=auth_b)
    before = await app.resources.db.run(stored_row, user_b)
    assert before is not None
    b = str(user_b)
    attempts: list[tuple[str, str, object]] = [
        ("PUT", "/v1/settings", DEFAULTS),
        ("PATCH", "/v1/settings", {"autoPip": False, "siteFlags": {"vimeo.com": None}}),
        ("PUT", f"/v1/settings?userId={b}", {**DEFAULTS, "userId": b}),
        ("PATCH", f"/v1/settings?user_id={b}", {"userId": b}),
        ("PATCH", "/v1/settings", {"user_id": b, "autoPip": False}),
        ("PUT", f"/v1/settings/{b}", DEFAULTS),
        ("PATCH", f"/v1/users/{b}/settings", DEFAULTS),
        ("DELETE", "/v1/settings", None),
    ]
    for method, path, body in attempts:
        response = await app.client.request(method, path, json=body, headers=auth_a)
        assert response.status_code != 500
        mine = await app.client.get("/v1/settings", headers=auth_a)
        assert mine.json()["skipSeconds"] != DOC["skipSeconds"]
    assert await app.resources.db.run(stored_row, user_b) == before
    assert (await app.client.get("/v1/settings", headers=auth_b)).json() == DOC


async def test_writes_are_rate_limited_per_user(app_factory: AppFactory) -> None:
    async with app_factory(jwt_keys=KEY, rate_limit_writes="2/1m") as app:
        _, auth = await sign_up(app)
        _, other = await sign_up(app, "sub-other")
        assert (await app.client.put("/v1/settings", json=DOC, headers=auth)).status_code == 200
        assert (await app.client.patch("/v1/settings", json={}, headers=auth)).status_code == 200
        third = await app.client.put("/v1/settings", json=DOC, headers=auth)
        assert third.status_code == 429
        assert third.json()["code"] == "rate_limited"
        assert int(third.headers["Retry-After"]) > 0
        assert (await app.client.get("/v1/settings", headers=auth)).status_code == 200
        assert (await app.client.put("/v1/settings", json=DOC, headers=other)).status_code == 200


async def test_deleted_account_gets_401_not_500(app: RunningApp) -> None:
    user_id, auth = await sign_up(app)
    await app.client.put("/v1/settings", json=DOC, headers=auth)

    def delete_user(conn: psycopg.Connection[Any]) -> None:
        conn.execute("DELETE FROM users WHERE id = %s", (user_id,))

    await app.resources.db.run(delete_user)
    for method, body in [("GET", None), ("PUT", DOC), ("PATCH", {"autoPip": True})]:
        response = await app.client.request(method, "/v1/settings", json=body, headers=auth)
        assert response.status_code == 401, (method, response.text)
        assert response.json()["detail"] == "this account no longer exists; sign in again"
    assert await app.resources.db.run(stored_row, user_id) is None


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH"])
async def test_requires_a_bearer_token(app: RunningApp, method: str) -> None:
    response = await app.client.request(method, "/v1/settings", json=DOC)
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers


@pytest.mark.parametrize("days", [1, 7, 30, 90, None])
async def test_each_offered_retention_round_trips(app: RunningApp, days: int | None) -> None:
    _, auth = await sign_up(app)
    put = await app.client.put(
        "/v1/settings", json={**DEFAULTS, "historyRetentionDays": days}, headers=auth
    )
    assert put.status_code == 200, put.text
    assert put.json()["historyRetentionDays"] == days
    patched = await app.client.patch(
        "/v1/settings", json={"historyRetentionDays": days, "historyPaused": True}, headers=auth
    )
    assert patched.status_code == 200, patched.text
    assert patched.json() == {**DEFAULTS, "historyRetentionDays": days, "historyPaused": True}
    assert (await app.client.get("/v1/settings", headers=auth)).json() == patched.json()


async def test_patch_null_retention_goes_back_to_the_last_five(app: RunningApp) -> None:
    user_id, auth = await sign_up(app)
    await app.client.patch("/v1/settings", json={"historyRetentionDays": 7}, headers=auth)
    response = await app.client.patch(
        "/v1/settings", json={"historyRetentionDays": None}, headers=auth
    )
    assert response.status_code == 200, response.text
    assert response.json() == DEFAULTS
    assert await app.resources.db.run(history_columns, user_id) == (None, False)


async def test_a_put_without_the_history_fields_keeps_them(app: RunningApp) -> None:
    _, auth = await sign_up(app)
    chosen = {"historyRetentionDays": 7, "historyPaused": True}
    await app.client.patch("/v1/settings", json=chosen, headers=auth)
    old_client = {"autoPip": True, "skipSeconds": 15, "siteFlags": {}}
    response = await app.client.put("/v1/settings", json=old_client, headers=auth)
    assert response.status_code == 200, response.text
    assert response.json() == {**old_client, **chosen}
    cleared = {**old_client, "historyRetentionDays": None, "historyPaused": False}
    response = await app.client.put("/v1/settings", json=cleared, headers=auth)
    assert response.json() == cleared


async def test_history_fields_change_the_etag(app: RunningApp) -> None:
    _, auth = await sign_up(app)
    first = await app.client.get("/v1/settings", headers=auth)
    paused = await app.client.patch("/v1/settings", json={"historyPaused": True}, headers=auth)
    assert paused.headers["ETag"] != first.headers["ETag"]
    stale = await app.client.patch(
        "/v1/settings",
        json={"historyRetentionDays": 1},
        headers={**auth, "If-Match": first.headers["ETag"]},
    )
    assert stale.status_code == 412
