"""Key rotation: ``smartpip playlist rotate-keys`` re-seals every row under the newest key, in
batches, idempotently; the tokens keep working throughout."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
import trio

from smartpip.playlist.crypto import generate_key, parse_keyring
from smartpip.playlist.rotation import reseal_all
from tests.app.conftest import AuthAppFactory
from tests.fakes.oidc_provider import FakeOidcProvider
from tests.playlist.conftest import KEY_T1, KEY_T2, connect, oauth_row, signed_in


def key_ids(pg_url: str) -> list[str]:
    with psycopg.connect(pg_url) as conn:
        return [row[0] for row in conn.execute("SELECT key_id FROM oauth_accounts ORDER BY 1")]


async def test_rotation_reseals_every_row_under_the_newest_key(
    auth_app_factory: AuthAppFactory, provider: FakeOidcProvider, pg_url: str
) -> None:
    async with auth_app_factory(token_encryption_keys=KEY_T1) as old:
        users = [await signed_in(old, provider, f"google-{n}") for n in range(5)]
        for user in users:
            assert (await connect(old, provider, user)).status_code == 200
    assert key_ids(pg_url) == ["t1"] * 5
    before = {user.id: oauth_row(pg_url, user.id) for user in users}
    ring, _ = parse_keyring(f"{KEY_T2},{KEY_T1}")
    assert ring is not None
    async with auth_app_factory(token_encryption_keys=f"{KEY_T2},{KEY_T1}") as app:
        report = await reseal_all(app.resources.db, ring, batch_size=2)
        assert (report.resealed, report.changed, report.unopenable) == (5, 0, 0)
        assert report.batches == 3 and report.key_id == "t2"
        assert key_ids(pg_url) == ["t2"] * 5
        for user in users:
            row, old_row = oauth_row(pg_url, user.id), before[user.id]
            assert row is not None and old_row is not None and row[2] != old_row[2]
        again = await reseal_all(app.resources.db, ring)
        assert (again.resealed, again.batches) == (0, 1)
    # Only the new key from now on: every token still opens and refreshes.
    async with auth_app_factory(token_encryption_keys=KEY_T2) as new:
        service = new.resources.youtube
        assert service is not None
        for user in users:
            assert (await service.grants.access_token(user.id)).startswith("ya29.")


async def test_the_command_reports_counts_and_rows_no_key_opens(
    auth_app_factory: AuthAppFactory, provider: FakeOidcProvider, pg_url: str
) -> None:
    async with auth_app_factory(token_encryption_keys=KEY_T1) as old:
        alice = await signed_in(old, provider, "google-alice")
        assert (await connect(old, provider, alice)).status_code == 200
    async with auth_app_factory(token_encryption_keys=f"t9:{generate_key()}") as other:
        bob = await signed_in(other, provider, "google-bob")
        assert (await connect(other, provider, bob)).status_code == 200
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SMARTPIP_DATABASE_URL": pg_url,
        "SMARTPIP_TOKEN_ENCRYPTION_KEYS": f"{KEY_T2},{KEY_T1}",
        "SMARTPIP_LOG_LEVEL": "warning",
    }
    command = [sys.executable, "-m", "smartpip.cli", "playlist", "rotate-keys", "--batch-size", "1"]
    result = await trio.run_process(
        command, env=env, capture_stdout=True, capture_stderr=True, check=False
    )
    assert result.returncode == 4, result.stderr.decode()
    report = json.loads(result.stdout)
    assert report == {"key_id": "t2", "resealed": 1, "changed": 0, "unopenable": 1, "batches": 3}
    assert key_ids(pg_url) == ["t2", "t9"]
    stderr = result.stderr.decode()
    assert "no configured key opens" in stderr
    for spec in (KEY_T1, KEY_T2):
        assert spec.partition(":")[2] not in stderr + result.stdout.decode()


def test_the_command_needs_the_keys(pg_url: str) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SMARTPIP_DATABASE_URL": pg_url}
    result = subprocess.run(
        [sys.executable, "-m", "smartpip.cli", "playlist", "rotate-keys"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "SMARTPIP_TOKEN_ENCRYPTION_KEYS is not set" in result.stderr
