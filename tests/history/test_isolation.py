"""User A can never read, change or delete user B's history, whatever the request says."""

from __future__ import annotations

from tests.app.conftest import RunningApp
from tests.history.conftest import User, history_rows, ids, video


async def test_a_cannot_touch_b(app: RunningApp, alice: User, bob: User) -> None:
    url = app.resources.db.settings.url
    for n in (1, 2, 3):
        response = await app.client.post("/v1/history", json=video(n), headers=bob.headers)
        assert response.status_code == 200
    before = history_rows(url, bob.id)
    bob_id = str(bob.id)
    smuggled = {"X-User-Id": bob_id, "X-Forwarded-User": bob_id}

    # Reads: only ever A's own (empty) history, whatever names B.
    for path in (
        f"/v1/history?userId={bob_id}",
        f"/v1/history?user_id={bob_id}&user={bob_id}",
        f"/v1/history/last?userId={bob_id}",
    ):
        response = await app.client.get(path, headers={**alice.headers, **smuggled})
        assert response.status_code == 200
        assert response.json() in ({"items": []}, {"item": None}), path
    for path in (f"/v1/history/{bob_id}", f"/v1/users/{bob_id}/history", f"/v1/history/{bob_id}/x"):
        assert (await app.client.get(path, headers=alice.headers)).status_code in (404, 405)

    # Writes naming B in the body are refused before the database.
    for extra in ({"userId": bob_id}, {"user_id": bob_id}, {"id": 1}, {"user": bob_id}):
        response = await app.client.post(
            "/v1/history", json=video(9, **extra), headers=alice.headers
        )
        assert response.status_code == 422
    # The same video as B's, and queries naming B: A's own row only.
    response = await app.client.post(
        f"/v1/history?userId={bob_id}",
        json=video(2, title="A's title"),
        headers={**alice.headers, **smuggled},
    )
    assert ids(response) == ["vid00000002"]

    # Deletes: B's video IDs, B's ID in path and query.
    for path in (
        "/v1/history/youtube/vid00000001",
        f"/v1/history/youtube/vid00000003?userId={bob_id}",
        f"/v1/history?userId={bob_id}",
        f"/v1/history/{bob_id}/vid00000002",
    ):
        response = await app.client.delete(path, headers={**alice.headers, **smuggled})
        assert response.status_code == 204, path
    assert (await app.client.delete(f"/v1/users/{bob_id}/history")).status_code in (401, 404, 405)

    assert history_rows(url, bob.id) == before
    assert history_rows(url, alice.id) == []
    assert ids(await app.client.get("/v1/history", headers=bob.headers)) == [
        "vid00000003",
        "vid00000002",
        "vid00000001",
    ]
