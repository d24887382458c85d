"""Consent states on their own: binding, expiry, derivation, single use with and without Redis."""

from __future__ import annotations

import uuid

import pytest

from smartpip.playlist.crypto import parse_keyring
from smartpip.playlist.states import STATE_TTL, ConsentStates, StateRejected, code_challenge
from store.redis import RedisStore
from tests.playlist.conftest import KEY_T1, KEY_T2
from tests.support.clock import FakeClock

REDIRECT = "https://abcdefghijklmnopabcdefghijklmnop.chromiumapp.org/"


def states(store: RedisStore, clock: FakeClock, *keys: str) -> ConsentStates:
    ring, _ = parse_keyring(",".join(keys or (KEY_T2,)))
    assert ring is not None
    return ConsentStates(ring, store, clock=clock)


async def test_issue_check_consume(redis_store: RedisStore, clock: FakeClock) -> None:
    consent, user = states(redis_store, clock), uuid.uuid4()
    issued = consent.issue(user, REDIRECT)
    assert issued.expires_in == STATE_TTL and len(issued.code_verifier) == 43
    assert code_challenge(issued.code_verifier) != issued.code_verifier
    checked = consent.check(issued.state, user, REDIRECT)
    assert (checked.code_verifier, checked.nonce) == (issued.code_verifier, issued.nonce)
    for other_user, other_redirect in ((uuid.uuid4(), REDIRECT), (user, REDIRECT + "x")):
        with pytest.raises(StateRejected, match="not issued"):
            consent.check(issued.state, other_user, other_redirect)
    await consent.consume(issued.state, user, REDIRECT)
    with pytest.raises(StateRejected, match="already used"):
        await consent.consume(issued.state, user, REDIRECT)


async def test_expiry_and_malformed(redis_store: RedisStore, clock: FakeClock) -> None:
    consent, user = states(redis_store, clock), uuid.uuid4()
    issued = consent.issue(user, REDIRECT)
    clock.advance(STATE_TTL)
    with pytest.raises(StateRejected, match="expired"):
        consent.check(issued.state, user, REDIRECT)
    for bad in ("", "a.b", "a.b.c", "x" * 300, "a.1.b.c"):
        with pytest.raises(StateRejected):
            consent.check(bad, user, REDIRECT)


async def test_a_state_survives_a_key_rotation(redis_store: RedisStore, clock: FakeClock) -> None:
    user = uuid.uuid4()
    before = states(redis_store, clock, KEY_T1).issue(user, REDIRECT)
    after = states(redis_store, clock, KEY_T2, KEY_T1)
    assert after.check(before.state, user, REDIRECT).code_verifier == before.code_verifier


async def test_redis_down_single_use_per_process(down_store: RedisStore, clock: FakeClock) -> None:
    consent, user = states(down_store, clock), uuid.uuid4()
    issued = consent.issue(user, REDIRECT)
    await consent.consume(issued.state, user, REDIRECT)
    with pytest.raises(StateRejected, match="already used"):
        await consent.consume(issued.state, user, REDIRECT)
