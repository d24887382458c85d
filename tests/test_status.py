"""Feature availability: configuration and dependency health map to up/degraded/down/disabled."""

from __future__ import annotations

from smartpip.config import Config
from smartpip.http.status import FEATURES, Feature, feature_states
from tasks.health import HealthState

CONFIG = Config.from_env({"SMARTPIP_YOUTUBE_API_KEY": "key"})
HISTORY = Feature("history", shipped=True, needs=("postgres",), degrades_without=("redis",))
SUGGEST = Feature(
    "suggest", shipped=True, configured=lambda c: c.youtube_api_key is not None, needs=("redis",)
)


def health(postgres: bool, redis: bool) -> HealthState:
    return HealthState(postgres=postgres, migrations=postgres, redis=redis)


def test_every_feature_is_reported() -> None:
    assert set(feature_states(CONFIG, health(True, True))) == {"history", "suggest", "playlist"}


def test_shipped_and_unshipped_features() -> None:
    assert [f.name for f in FEATURES if f.shipped] == ["history", "suggest"]
    states = feature_states(CONFIG, health(True, True))
    assert states == {"history": "up", "suggest": "up", "playlist": "disabled"}
    assert feature_states(CONFIG, health(True, False))["history"] == "degraded"
    assert feature_states(CONFIG, health(False, True))["history"] == "down"


def test_suggest_degrades_without_redis_and_needs_no_postgres() -> None:
    assert feature_states(CONFIG, health(True, False))["suggest"] == "degraded"
    assert feature_states(CONFIG, health(False, True))["suggest"] == "up"
    assert feature_states(Config.from_env({}), health(True, True))["suggest"] == "disabled"


def test_a_features_own_state_can_only_make_it_worse() -> None:
    up = health(True, True)
    assert feature_states(CONFIG, up, live={"suggest": "down"})["suggest"] == "down"
    assert feature_states(CONFIG, up, live={"suggest": "degraded"})["suggest"] == "degraded"
    no_redis = health(True, False)
    assert feature_states(CONFIG, no_redis, live={"suggest": "up"})["suggest"] == "degraded"
    unconfigured = Config.from_env({})
    assert feature_states(unconfigured, up, live={"suggest": "down"})["suggest"] == "disabled"


def test_states_follow_dependencies() -> None:
    features = (HISTORY, SUGGEST)
    assert feature_states(CONFIG, health(True, True), features) == {
        "history": "up",
        "suggest": "up",
    }
    assert feature_states(CONFIG, health(True, False), features) == {
        "history": "degraded",
        "suggest": "down",
    }
    assert feature_states(CONFIG, health(False, True), features) == {
        "history": "down",
        "suggest": "up",
    }


def test_pending_migrations_count_as_postgres_down() -> None:
    state = HealthState(postgres=True, migrations=False, redis=True)
    assert feature_states(CONFIG, state, (HISTORY,)) == {"history": "down"}


def test_unconfigured_feature_is_disabled() -> None:
    assert feature_states(Config.from_env({}), health(True, True), (SUGGEST,)) == {
        "suggest": "disabled"
    }
