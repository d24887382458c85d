"""The service's HTTP application: every feature's routes wired to what they use.

:func:`create_app` is the only place that assembles routes from the resources; route modules
receive the services they use as arguments (no module-level app or singletons, never the whole
:class:`~smartpip.runtime.resources.Resources`).
"""

from __future__ import annotations

from quart import Blueprint

from smartpip.account.routes import account_blueprint
from smartpip.auth.routes import auth_blueprint
from smartpip.history.model import select_providers
from smartpip.history.routes import history_blueprint
from smartpip.http.app import create_http_app
from smartpip.http.middleware import HygieneMiddleware
from smartpip.http.ops import ops_blueprint
from smartpip.http.public import api_v1_blueprint
from smartpip.http.status import feature_states
from smartpip.playlist.connect_routes import youtube_connect_blueprint
from smartpip.playlist.write_routes import playlist_write_blueprint
from smartpip.runtime.features import features
from smartpip.runtime.lifecycle import Lifecycle
from smartpip.runtime.resources import Resources, backups_status
from smartpip.settings.routes import settings_blueprint
from smartpip.suggest.routes import suggest_blueprint

__all__ = ["create_app"]


def create_app(
    resources: Resources, lifecycle: Lifecycle, *, extra: list[Blueprint] | None = None
) -> HygieneMiddleware:
    """Build the ASGI application.

    Args:
        resources: what the routes use (database, Redis, metrics, status registry...).
        lifecycle: shutdown state, for readiness.
        extra: additional blueprints (tests register probe routes this way).

    Returns:
        The Quart app wrapped in :class:`HygieneMiddleware`; the Quart app itself is
        available as ``.app``.
    """
    config, guards, db = resources.config, resources.guards, resources.db
    suggester, youtube = resources.suggest, resources.youtube
    enabled = features(config)

    writer = resources.playlist

    def feature_status() -> dict[str, str]:
        live: dict[str, str] = {}
        if suggester is not None:
            live["suggest"] = suggester.state()
        if writer is not None:
            live["playlist"] = writer.state()
        states = feature_states(resources.health.state, enabled, live=live)
        if writer is None:  # no Grants: the write is off whatever the configuration says
            states["playlist"] = "disabled"
        return states

    resources.metrics.watch_features(feature_status)

    blueprints = [
        ops_blueprint(
            resources.health.state,
            lambda: lifecycle.draining,
            resources.metrics,
            resources.supervision,
            ops_token=config.ops_token,
            backups=backups_status(config),
        ),
        api_v1_blueprint(feature_status),
        auth_blueprint(
            resources.sessions,
            resources.nonces,
            resources.oidc,
            guards,
            limit=config.rate_limit_auth,
            redirect_uris=config.oidc_redirect_uris,
        ),
        account_blueprint(
            db,
            guards,
            reads=config.rate_limit_user,
            writes=config.rate_limit_writes,
            before_delete=None if youtube is None else youtube.revoke_for_deletion,
        ),
        history_blueprint(
            db,
            guards,
            reads=config.rate_limit_user,
            writes=config.rate_limit_writes,
            providers=select_providers(config.history_providers),
        ),
        settings_blueprint(
            db, guards, reads=config.rate_limit_user, writes=config.rate_limit_writes
        ),
        suggest_blueprint(
            suggester,
            guards,
            limit=config.rate_limit_suggest,
            stopwords=frozenset(config.suggest_stopwords),
        ),
        youtube_connect_blueprint(
            youtube,
            guards,
            reads=config.rate_limit_user,
            writes=config.rate_limit_writes,
            redirect_uris=config.oidc_redirect_uris,
        ),
        playlist_write_blueprint(writer, guards, limit=config.rate_limit_writes),
        *(extra or ()),
    ]
    return create_http_app(
        blueprints,
        metrics=resources.metrics,
        cors_origins=config.cors_origins,
        log_level=config.log_level,
        log_format=config.log_format,
        request_timeout=config.request_timeout,
        body_timeout=config.body_timeout,
        draining=lambda: lifecycle.draining,
    )
