"""The OpenAPI document is the contract: schemathesis against the real app, every operation.

The app runs in-process on loopback (``tests.app.conftest``) with the real Postgres test
database, a private Redis prefix, the loopback YouTube and OpenID fakes, and rate limits
raised so the run is not all 429s. schemathesis runs as a child process (its own CLI, so the
run is exactly what ``schemathesis run`` does: examples, coverage, fuzzing and the stateful
phase through the document's links) against the document the app serves, signed in as a test
user. It must find no 5xx, no undocumented status, no response that breaks the documented
content type, headers or body, no schema-valid request refused and no schema-violating one
accepted, and no timeout; schemathesis warnings fail the run too.

Bounds (``SMARTPIP_FUZZ``): unset, the ``make test`` run: deterministic generation and
:data:`CI_EXAMPLES` examples per operation, so the same cases run every time (under a minute
here); ``long`` (``make fuzz``): random data for ``SMARTPIP_FUZZ_SECONDS`` (default 600), with
the seed in the report (``SMARTPIP_FUZZ_SEED`` runs with a given one). ``SMARTPIP_FUZZ_ARGS`` adds
schemathesis options (``--include-operation-id recordWatch``); ``SMARTPIP_FUZZ_REPORT`` names a
file for the report (it is also shown when the test fails).

The client keeps its connections alive, as the extension's does: every answer before a body
was read, every refusal by the HTTP layer, on a reused connection
(docs/upstream-keepalive-wedge.md).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import trio

from smartpip.playlist.crypto import generate_key
from smartpip.playlist.upstream import YOUTUBE_SCOPE
from tests.app.conftest import AppFactory, RunningApp
from tests.app.conftest import app_factory as app_factory  # the fixture, shared
from tests.fakes.oidc_provider import FakeOidcProvider, s256
from tests.fakes.youtube import FakeYouTube
from tests.fakes.youtube_playlists import FakePlaylists
from tests.history.conftest import KEY, sign_in
from tests.playlist.write.grants_fake import FakeGrants
from tests.support.clock import FakeClock

CONFIG = Path(__file__).with_name("schemathesis.toml")
ROOT = Path(__file__).resolve().parents[2]
API_KEY = "AIzaSy-fuzz-test-key-0123456789"
OPS_TOKEN = "o" * 40
REDIRECT = "https://abcdefghijklmnopabcdefghijklmnop.chromiumapp.org/"
# Why so high: the run sends a few thousand requests a minute as one user from one address.
# 429 stays documented on every limited operation; tests/ratelimit tests the limits.
LIMIT = "100000/1m"
# Why: enough real sign-ins and refresh tokens for the examples, coverage and fuzzing phases
# to each reach the success path a few times (each is single use).
PREPARED = 8
# Why 100: about 40 s for the whole run on this 2-core machine (4,000 requests), every phase,
# 10-11 of the 20 links followed; the bounded run guards the contract, `make fuzz` digs.
CI_EXAMPLES = 100
# Why: a hang guard only (schemathesis bounds each request to 10 s itself); a run this long
# means something stopped answering, and trio kills the child when it fires.
CI_LIMIT = 600
FUZZ_SUB = "fuzz"


def bounds() -> tuple[list[str], float]:
    """schemathesis options for this run and the time it may take at most (see the module)."""
    extra = os.environ.get("SMARTPIP_FUZZ_ARGS", "").split()
    if os.environ.get("SMARTPIP_FUZZ") != "long":
        return ["--generation-deterministic", "--max-examples", str(CI_EXAMPLES), *extra], CI_LIMIT
    seed = os.environ.get("SMARTPIP_FUZZ_SEED") or str(secrets.randbelow(2**31))
    seconds = int(os.environ.get("SMARTPIP_FUZZ_SECONDS", "600"))
    options = ["--seed", seed, "--max-time", str(seconds), "--max-examples", "200", *extra]
    return options, seconds + CI_LIMIT


async def prepared(
    app: RunningApp, provider: FakeOidcProvider, user_id: uuid.UUID
) -> dict[str, Any]:
    """Real sign-in material for the hooks (``tests/contract/hooks.py``): every item valid once."""
    callbacks: list[dict[str, str]] = []
    for n in range(PREPARED):
        nonce = app.resources.nonces.start().nonce
        if n % 2:
            token = provider.make_id_token(sub=f"fuzz-id-token-{n}", nonce=nonce)
            callbacks.append({"idToken": token, "nonce": nonce})
            continue
        verifier = secrets.token_urlsafe(48)
        code = provider.authorize(
            sub=f"fuzz-code-{n}",
            nonce=nonce,
            redirect_uri=REDIRECT,
            code_challenge=s256(verifier),
            client_id=provider.client_id,
        )
        callbacks.append(
            {"code": code, "codeVerifier": verifier, "redirectUri": REDIRECT, "nonce": nonce}
        )
    refresh_tokens = [
        (
            await app.resources.sessions.sign_in(provider.issuer, f"fuzz-{n}", method="code")
        ).refresh_token
        for n in range(2 * PREPARED)
    ]
    return {
        "redirectUri": REDIRECT,
        "callbacks": callbacks,
        "refreshTokens": refresh_tokens,
        "consents": await prepared_consents(app, provider, user_id),
    }


async def prepared_consents(
    app: RunningApp, provider: FakeOidcProvider, user_id: uuid.UUID
) -> list[dict[str, str]]:
    """Real YouTube consents of the fuzz user (each valid once) for ``youtubeConnectCallback``."""
    service = app.resources.youtube
    assert service is not None
    consents = []
    for _ in range(PREPARED):
        started = await service.start(user_id, REDIRECT)
        query = dict(parse_qsl(urlsplit(started.authorization_url).query))
        code = provider.authorize(
            sub=FUZZ_SUB,
            nonce=query["nonce"],
            redirect_uri=REDIRECT,
            code_challenge=query["code_challenge"],
            client_id=provider.client_id,
            scopes=("openid", YOUTUBE_SCOPE),
            offline=True,
        )
        consents.append({"code": code, "state": started.state, "redirectUri": REDIRECT})
    return consents


# The suite's per-test timeout (pyproject.toml) is for ordinary tests; this one has its own
# bound (above), and pytest-timeout's only has to catch a hang of the bound itself.
@pytest.mark.timeout(bounds()[1] + 120)
async def test_the_served_document_holds_for_every_operation(
    app_factory: AppFactory, nursery: trio.Nursery, tmp_path: Path
) -> None:
    youtube = FakeYouTube(api_key=API_KEY)
    # Playlist writes on the same base URL, for the fuzz user (connected below); random
    # playlist IDs are taken as the user's own.
    youtube.playlists = FakePlaylists()
    youtube.playlists.adopt_unknown = True
    grants = FakeGrants(youtube.playlists)
    await nursery.start(youtube.run)
    # A clock that stands still: the prepared authorization codes never expire during the run.
    provider = FakeOidcProvider(clock=FakeClock())
    await nursery.start(provider.run)
    async with app_factory(
        playlist_grants=grants,
        playlist_user_daily_limit="1000",
        jwt_keys=KEY,
        youtube_api_key=API_KEY,
        youtube_api_url=youtube.base_url,
        suggest_daily_budget="100000",
        oidc_issuer=provider.issuer,
        oidc_client_id=provider.client_id,
        oidc_client_secret=provider.client_secret,
        oidc_redirect_uris=REDIRECT,
        ops_token=OPS_TOKEN,
        token_encryption_keys=f"t1:{generate_key()}",
        rate_limit_auth=LIMIT,
        rate_limit_user=LIMIT,
        rate_limit_writes=LIMIT,
        rate_limit_suggest=LIMIT,
    ) as app:
        # The fuzz user signs in with the fake Google, so that its YouTube consents match.
        issued = await app.resources.sessions.sign_in(provider.issuer, FUZZ_SUB, method="code")
        grants.connect(issued.user_id)
        # DELETE /v1/me erases its caller: it gets a user of its own, so that one deletion
        # does not turn every later request of the run into a 401.
        doomed = await sign_in(app, "fuzz-deleted")
        data = tmp_path / "fuzz-data.json"
        fuzz_data = await prepared(app, provider, issued.user_id)
        await trio.Path(data).write_text(json.dumps(fuzz_data))
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SMARTPIP_FUZZ_DATA": str(data),
            "SMARTPIP_FUZZ_TOKEN": issued.access_token,
            "SMARTPIP_FUZZ_DELETE_AUTH": doomed.headers["Authorization"],
            "SMARTPIP_FUZZ_OPS_TOKEN": OPS_TOKEN,
        }
        options, limit = bounds()
        command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG)]
        command += ["run", *options, f"{app.url}/v1/openapi.json"]
        with trio.fail_after(limit):
            result = await trio.run_process(
                command,
                env=env,
                cwd=tmp_path,
                capture_stdout=True,
                stderr=subprocess.STDOUT,
                check=False,
            )
    output = result.stdout.decode(errors="replace")
    if report := os.environ.get("SMARTPIP_FUZZ_REPORT"):
        await trio.Path(report).write_text(output)
    print(output)
    assert result.returncode == 0, "schemathesis found problems; its report is above"
