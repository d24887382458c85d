"""The token keyring: AES-256-GCM with the user ID and key ID as associated data, parsing of
``SMARTPIP_TOKEN_ENCRYPTION_KEYS``, and a sealed row that does not open elsewhere."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from smartpip.playlist.crypto import (
    Keyring,
    SealedToken,
    TokenKey,
    UnknownKey,
    Unsealable,
    generate_key,
    parse_keyring,
)
from smartpip.playlist.grants import GoogleUnavailable
from tests.app.conftest import RunningApp
from tests.fakes.oidc_provider import FakeOidcProvider
from tests.playlist.conftest import KEY_T1, KEY_T2, User, connect, oauth_row

TOKEN = "1//0gExampleRefreshToken-abcdefghijklmnopqrstuvwxyz"


def keyring(*specs: str) -> Keyring:
    ring, problems = parse_keyring(",".join(specs))
    assert ring is not None and not problems
    return ring


# Fixed (not generated): the values name parametrized tests, which pytest-xdist workers must
# collect identically.
ONE = "k1:" + KEY_T1.partition(":")[2]
TWO = "k2:" + KEY_T2.partition(":")[2]


def test_seal_then_open() -> None:
    ring, user = keyring(ONE), uuid.uuid4()
    sealed = ring.seal(user, TOKEN)
    assert sealed.kid == "k1" and TOKEN.encode() not in sealed.blob
    assert len(sealed.blob) == 12 + len(TOKEN) + 16
    assert ring.open(user, sealed) == TOKEN
    assert ring.seal(user, TOKEN).blob != sealed.blob  # a fresh nonce each time


def test_another_users_row_does_not_open() -> None:
    ring = keyring(ONE)
    sealed = ring.seal(uuid.uuid4(), TOKEN)
    with pytest.raises(Unsealable):
        ring.open(uuid.uuid4(), sealed)


def test_a_wrong_key_does_not_open() -> None:
    user = uuid.uuid4()
    sealed = keyring(ONE).seal(user, TOKEN)
    impostor = keyring(f"k1:{generate_key()}")  # same key ID, other key
    with pytest.raises(Unsealable):
        impostor.open(user, sealed)
    with pytest.raises(UnknownKey):
        keyring(TWO).open(user, sealed)


def test_relabelled_or_tampered_does_not_open() -> None:
    ring, user = keyring(ONE, TWO), uuid.uuid4()
    sealed = ring.seal(user, TOKEN)
    with pytest.raises(Unsealable):  # the key ID is associated data
        ring.open(user, SealedToken("k2", sealed.blob))
    flipped = bytes([sealed.blob[0], *sealed.blob[1:-1], sealed.blob[-1] ^ 1])
    with pytest.raises(Unsealable):
        ring.open(user, SealedToken("k1", flipped))
    with pytest.raises(Unsealable):
        ring.open(user, SealedToken("k1", b"short"))


def test_first_key_seals_and_every_key_opens() -> None:
    user = uuid.uuid4()
    old = keyring(ONE).seal(user, TOKEN)
    rotated = keyring(TWO, ONE)
    assert rotated.open(user, old) == TOKEN
    assert rotated.seal(user, TOKEN).kid == "k2"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("nocolon", "entries must be kid:key"),
        ("k1:", "entries must be kid:key"),
        ("bad kid!:" + ONE.partition(":")[2], "entries must be kid:key"),
        ("k1:***", "is not base64url"),
        ("k1:" + "QUJD", "must be 32 bytes"),
        (f"{ONE},{ONE}", "repeats the key id 'k1'"),
    ],
)
def test_parse_problems_name_no_key(raw: str, problem: str) -> None:
    ring, problems = parse_keyring(raw)
    assert any(problem in p for p in problems), problems
    secret = raw.partition(":")[2]
    assert all(len(secret) < 8 or secret not in p for p in problems)
    if raw.startswith(ONE):
        assert ring is not None and len(ring.keys) == 1


def test_padding_is_optional_and_weak_keys_are_spotted() -> None:
    padded = generate_key() + "="
    assert parse_keyring(f"k1:{padded}")[0] is not None
    assert TokenKey("z", bytes(32)).weak and not keyring(ONE).current.weak
    assert "<redacted>" not in repr(keyring(ONE)) and ONE.partition(":")[2] not in repr(
        keyring(ONE)
    )


async def test_a_sealed_token_copied_to_another_users_row_does_not_decrypt(
    app: RunningApp, provider: FakeOidcProvider, alice: User, bob: User, pg_url: str
) -> None:
    assert (await connect(app, provider, alice)).status_code == 200
    assert (await connect(app, provider, bob)).status_code == 200
    alices = oauth_row(pg_url, alice.id)
    assert alices is not None
    with psycopg.connect(pg_url) as conn:
        conn.execute(
            "UPDATE oauth_accounts SET key_id = %s, token_sealed = %s WHERE user_id = %s",
            (alices[1], alices[2], bob.id),
        )
    service = app.resources.youtube
    assert service is not None
    with pytest.raises(GoogleUnavailable):
        await service.grants.access_token(bob.id)
    # Alice's own row still works, and Bob's row was kept for an operator to look at.
    assert await service.grants.access_token(alice.id)
    assert oauth_row(pg_url, bob.id) is not None
