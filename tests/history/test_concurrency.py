"""The last-5 invariant under concurrency: many writers, two app instances, one user."""

from __future__ import annotations

from collections import Counter

import httpx
import trio

from tests.app.conftest import AppFactory, RunningApp
from tests.history.conftest import KEY, history_rows, ids, sign_in, video

#: 40 distinct videos, then 10 repeats of the newest ones (identical bodies, so the end state
#: does not depend on which repeat commits last).
REQUESTS = [*range(40), *range(30, 40)]


async def test_fifty_concurrent_posts_through_two_apps(app_factory: AppFactory) -> None:
    async with (
        app_factory(jwt_keys=KEY, rate_limit_writes="1000/1m") as one,
        app_factory(jwt_keys=KEY, rate_limit_writes="1000/1m") as two,
    ):
        user = await sign_in(one, "racer")
        responses: list[httpx.Response] = []

        async def send(app: RunningApp, n: int) -> None:
            responses.append(
                await app.client.post("/v1/history", json=video(n), headers=user.headers)
            )

        async with trio.open_nursery() as nursery:
            for i, n in enumerate(REQUESTS):
                nursery.start_soon(send, (one, two)[i % 2], n)

        assert len(responses) == len(REQUESTS)
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
        assert all(1 <= len(r.json()["items"]) <= 5 for r in responses)
        rows = history_rows(one.resources.db.settings.url, user.id)
        assert len(rows) == 5
        assert not [key for key, count in Counter((r[2], r[3]) for r in rows).items() if count > 1]
        newest = [f"vid{n:08d}" for n in (39, 38, 37, 36, 35)]
        assert ids(await two.client.get("/v1/history", headers=user.headers)) == newest
