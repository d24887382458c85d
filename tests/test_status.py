"""Feature availability: configuration and dependency health map to up/degraded/down/disabled."""

from __future__ import annotations

from smartpip.config import Config
from smartpip.http.status import Feature, feature_states
from smartpip.playlist.crypto import generate_key
from smartpip.runtime.features import features
from tasks.health import HealthState

CONFIG_ENV = {
    "SMARTPIP_YOUTUBE_API_KEY": "key",
    "SMARTPIP_OIDC_CLIENT_ID": "client",
    "SMARTPIP_OIDC_CLIENT_SECRET": "secret",
}
CONFIG = Config.from_env(CONFIG_ENV)
FEATURES = features(CONFIG)
UNCONFIGURED = features(Config.from_env({}))
HISTORY = Feature("history", shipped=True, needs=("postgres",), degrades_without=("redis",))
SUGGEST = Feature("suggest", shipped=True, needs=("redis",))


def health(postgres: bool, redis: bool) -> HealthState:
    return HealthState(postgres=postgres, migrations=postgres, redis=redis)


def test_every_feature_is_reported() -> None:
    assert set(feature_states(health(True, True), FEATURES)) == {
        "signIn",
        "history",
        "suggest",
        "playlist",
    }


def test_shipped_and_unshipped_features() -> None:
    assert [f.name for f in FEATURES if f.shipped] == ["signIn", "history", "suggest", "playlist"]
    states = feature_states(health(True, True), FEATURES)
    # Playlist: shipped, but disabled here without SMARTPIP_TOKEN_ENCRYPTION_KEYS.
    assert states == {"signIn": "up", "history": "up", "suggest": "up", "playlist": "disabled"}
    assert feature_states(health(True, True), UNCONFIGURED)["playlist"] == "disabled"
    assert feature_states(health(True, False), FEATURES)["history"] == "degraded"
    assert feature_states(health(False, True), FEATURES)["history"] == "down"


def test_playlist_needs_postgres_and_redis() -> None:
    keys = {"SMARTPIP_TOKEN_ENCRYPTION_KEYS": "t1:" + generate_key()}
    configured = features(Config.from_env(dict(CONFIG_ENV) | keys))
    assert feature_states(health(True, False), configured)["playlist"] == "down"
    assert feature_states(health(False, True), configured)["playlist"] == "down"
    assert feature_states(health(True, True), configured, live={"playlist": "degraded"}) == {
        "signIn": "up",
        "history": "up",
        "suggest": "up",
        "playlist": "degraded",
    }


def test_suggest_degrades_without_redis_and_needs_no_postgres() -> None:
    assert feature_states(health(True, False), FEATURES)["suggest"] == "degraded"
    assert feature_states(health(False, True), FEATURES)["suggest"] == "up"
    assert feature_states(health(True, True), UNCONFIGURED)["suggest"] == "disabled"


def test_a_features_own_state_can_only_make_it_worse() -> None:
    up = health(True, True)
    assert feature_states(up, FEATURES, live={"suggest": "down"})["suggest"] == "down"
    assert feature_states(up, FEATURES, live={"suggest": "degraded"})["suggest"] == "degraded"
    no_redis = health(True, False)
    assert feature_states(no_redis, FEATURES, live={"suggest": "up"})["suggest"] == "degraded"
    assert feature_states(up, UNCONFIGURED, live={"suggest": "down"})["suggest"] == "disabled"


def test_states_follow_dependencies() -> None:
    both = (HISTORY, SUGGEST)
    assert feature_states(health(True, True), both) == {"history": "up", "suggest": "up"}
    assert feature_states(health(True, False), both) == {"history": "degraded", "suggest": "down"}
    assert feature_states(health(False, True), both) == {"history": "down", "suggest": "up"}


def test_pending_migrations_count_as_postgres_down() -> None:
    state = HealthState(postgres=True, migrations=False, redis=True)
    assert feature_states(state, (HISTORY,)) == {"history": "down"}


def test_unconfigured_feature_is_disabled() -> None:
    unconfigured = Feature("suggest", shipped=True, configured=False)
    assert feature_states(health(True, True), (unconfigured,)) == {"suggest": "disabled"}


def test_sign_in_is_reported_like_the_other_features() -> None:
    assert feature_states(health(True, True), UNCONFIGURED)["signIn"] == "disabled"
    assert feature_states(health(True, False), FEATURES)["signIn"] == "degraded"
    assert feature_states(health(False, True), FEATURES)["signIn"] == "down"
    switched_off = Config.from_env(
        {"SMARTPIP_ENV": "production", "SMARTPIP_JWT_KEYS": "k:" + "s" * 40}
        | {"SMARTPIP_SIGN_IN": "disabled"}
    )
    assert feature_states(health(True, True), features(switched_off))["signIn"] == "disabled"


def test_playlist_needs_sign_in_and_the_token_keys_and_can_be_switched_off() -> None:
    keys = {"SMARTPIP_TOKEN_ENCRYPTION_KEYS": "t1:" + generate_key()}
    configured = features(Config.from_env(dict(CONFIG_ENV) | keys))
    assert feature_states(health(True, True), configured)["playlist"] == "up"
    off = features(Config.from_env(dict(CONFIG_ENV) | keys | {"SMARTPIP_PLAYLIST": "off"}))
    assert feature_states(health(True, True), off)["playlist"] == "disabled"
    no_sign_in = features(Config.from_env(keys))
    assert feature_states(health(True, True), no_sign_in)["playlist"] == "disabled"
