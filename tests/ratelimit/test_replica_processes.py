"""A user's limit across two real ``smartpip serve`` processes on one Redis prefix: each admits
from its own leases, and together they admit what one shared bucket allows."""

from __future__ import annotations

import math

import httpx
import psycopg
import pytest
import trio

from smartpip.config import Config
from smartpip.http.tokens import AccessTokens
from store.redis import RedisStore
from store.users import upsert_user
from tests.test_serve import free_port, serve_process, service_env, wait_until_serving

pytestmark = pytest.mark.subprocess

KEY = "k1:" + "p" * 40


async def test_two_serve_processes_share_a_users_limit(
    pg_url: str, redis_prefix: str, redis_store: RedisStore
) -> None:
    del redis_store  # deletes the processes' keys afterwards
    settings = {
        "jwt_keys": KEY,
        "rate_limit_user": "40/1m",  # leases of 2 at most; refills one unit every 1.5 s
        "rate_limit_settle_ms": "20",
        "drain_seconds": "0",
    }
    ports = [free_port(), free_port()]
    with (
        serve_process(service_env(pg_url, redis_prefix, ports[0], **settings)) as one,
        serve_process(service_env(pg_url, redis_prefix, ports[1], **settings)) as two,
    ):
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        await wait_until_serving(bases[0], one)
        await wait_until_serving(bases[1], two)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            user_id, _created = upsert_user(conn, "https://test.example", "two-processes")
        token = AccessTokens(Config.from_env({"SMARTPIP_JWT_KEYS": KEY}).jwt_keys).issue(user_id)
        headers = {"Authorization": f"Bearer {token}"}
        statuses: list[int] = []
        refused: list[httpx.Response] = []
        async with httpx.AsyncClient(timeout=10) as client:
            started = trio.current_time()
            for n in range(70):
                answer = await client.get(bases[n % 2] + "/v1/history", headers=headers)
                statuses.append(answer.status_code)
                if answer.status_code == 429:
                    refused.append(answer)
            elapsed = trio.current_time() - started
    assert set(statuses) <= {200, 429}, statuses
    allowed = statuses.count(200)
    # One shared bucket: 40 at once plus the refill meanwhile; leases add at most 1
    # (min(2 replicas x 2, ceil(80 ms x 40/60 s))).
    assert allowed <= 40 + math.floor(elapsed * 40 / 60) + 1, (allowed, elapsed)
    assert allowed >= 40 - 4  # at most a lease of 2 lost per process
    assert refused and refused[0].headers["ratelimit-policy"] == '"user";q=40;w=60'
    assert int(refused[0].headers["retry-after"]) >= 1
    # Both processes refused: neither ran its own separate limit.
    assert 429 in statuses[0::2] and 429 in statuses[1::2]
