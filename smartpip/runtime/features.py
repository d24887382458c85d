"""The features ``/v1/status`` reports, as this deployment's configuration enables them."""

from __future__ import annotations

from smartpip.config import Config
from smartpip.http.status import Feature

__all__ = ["features"]


def features(config: Config) -> tuple[Feature, ...]:
    """signIn, history, suggest and playlist: shipped or not, configured or not, what each needs.

    Later issues flip ``shipped`` as each feature's endpoints land.
    """
    return (
        # Sign-in writes users and sessions to Postgres; its nonces and rate limits fall back
        # to per-process state without Redis (degraded: a nonce is single-use per replica).
        Feature(
            "signIn",
            shipped=True,
            configured=config.sign_in_enabled,
            needs=("postgres",),
            degrades_without=("redis",),
        ),
        Feature("history", shipped=True, needs=("postgres",), degrades_without=("redis",)),
        # Without Redis suggest still answers (no shared cache, a small local search allowance).
        Feature(
            "suggest",
            shipped=True,
            configured=config.youtube_api_key is not None,
            degrades_without=("redis",),
        ),
        # Playlist: on (SMARTPIP_PLAYLIST), sign-in configured and the token keys set. Consent
        # needs Postgres (its states fall back to per-process single use without Redis); writes
        # need Redis too (their budget, lock and idempotency records live there), so without
        # Redis the feature is down.
        Feature(
            "playlist",
            shipped=True,
            configured=config.playlist_enabled,
            needs=("postgres", "redis"),
        ),
    )
