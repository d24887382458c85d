"""The per-user limit across two running apps (two replicas on one Redis prefix), spent from
leases that each app's settle loop (the ``rate-limit-settle`` child) renews."""

from __future__ import annotations

import math

import trio

from tests.app.conftest import AppFactory
from tests.history.conftest import KEY, sign_in
from tests.support.polling import eventually

OPS_TOKEN = "o" * 40


async def test_two_apps_share_the_user_limit_through_their_leases(
    app_factory: AppFactory,
) -> None:
    settings = {
        "jwt_keys": KEY,
        "rate_limit_user": "40/1m",
        "rate_limit_settle_ms": "20",
        "ops_token": OPS_TOKEN,
    }
    async with app_factory(**settings) as one, app_factory(**settings) as two:
        user = await sign_in(one, "two-replicas")
        started = trio.current_time()
        answers = []
        for n in range(60):
            app = (one, two)[n % 2]
            answers.append(await app.client.get("/v1/history", headers=user.headers))
        elapsed = trio.current_time() - started
        allowed = [a for a in answers if a.status_code == 200]
        refused = [a for a in answers if a.status_code == 429]
        assert len(allowed) + len(refused) == 60
        # One bucket: 40 at once plus the refill meanwhile; leases add at most 1 (40/1m
        # refills less than one unit in a lease's 80 ms lifetime).
        assert len(allowed) <= 40 + math.floor(elapsed * 40 / 60) + 1
        assert len(allowed) >= 40 - 4  # at most a lease (2 units) lost per app
        assert refused[0].headers["ratelimit-policy"] == '"user";q=40;w=60'
        assert int(refused[0].headers["retry-after"]) >= 1
        assert refused[0].json()["code"] == "rate_limited"

        tree = await one.client.get(
            "/ops/supervisors", headers={"Authorization": f"Bearer {OPS_TOKEN}"}
        )
        assert tree.json()["children"]["rate-limit-settle"]["state"] == "running"

        other = await sign_in(one, "busy-reader")

        async def leased_ahead() -> bool:
            for _ in range(3):
                answer = await one.client.get("/v1/history", headers=other.headers)
                assert answer.status_code in (200, 429)
            metrics = (await one.client.get("/metrics")).text
            return 'rate_limit_leases_total{via="settle"}' in metrics and not any(
                line.startswith('rate_limit_leases_total{via="settle"} 0')
                for line in metrics.splitlines()
            )

        await eventually(leased_ahead)
