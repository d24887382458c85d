"""Fixtures that run the real app in-process on an ephemeral port, spoken to over HTTP, and
the loopback OpenID provider for apps with sign-in (``auth_app_factory``)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import attrs
import httpx
import pytest
import trio

from smartpip.config import Config
from smartpip.playlist.grants import Grants
from smartpip.runtime.lifecycle import Lifecycle
from smartpip.runtime.main import run_service
from smartpip.runtime.resources import Resources, open_resources
from store.redis import RedisStore
from tasks.catalogue import JOBS
from tests.app.probes import probe_blueprint
from tests.conftest import REDIS_URL
from tests.fakes.oidc_provider import FakeOidcProvider
from tests.support.polling import eventually

#: The signing key of ``auth_app_factory`` apps (any two of them accept each other's tokens).
KEY = "k1:" + "a" * 40
#: The one redirect URI ``auth_app_factory`` apps allow.
REDIRECT = "https://abcdefghijklmnopabcdefghijklmnop.chromiumapp.org/"


@attrs.frozen
class RunningApp:
    """An app serving on loopback, with its resources for white-box checks."""

    url: str
    client: httpx.AsyncClient
    resources: Resources
    lifecycle: Lifecycle
    release: trio.Event


def make_config(pg_url: str, redis_prefix: str, **overrides: str) -> Config:
    """A test configuration: ephemeral port, no drain, fast health probes.

    The scheduled jobs of the catalogue are paused (they would run against the test's data,
    and fail with an ERROR log in the tests that take Postgres away): a test of a job passes
    ``jobs_paused=""`` (or drives the job's coroutine itself).
    """
    env = {
        "SMARTPIP_JOBS_PAUSED": ",".join(JOBS),
        "SMARTPIP_BIND": "127.0.0.1:0",
        "SMARTPIP_DATABASE_URL": pg_url,
        "SMARTPIP_REDIS_URL": REDIS_URL,
        "SMARTPIP_REDIS_PREFIX": redis_prefix,
        "SMARTPIP_DRAIN_SECONDS": "0",
        "SMARTPIP_HEALTH_INTERVAL": "0.2",
        "SMARTPIP_DB_POOL_SIZE": "4",
    }
    env.update({f"SMARTPIP_{k.upper()}": v for k, v in overrides.items()})
    return Config.from_env(env)


@asynccontextmanager
async def running_app(
    config: Config,
    *,
    probes: bool = False,
    clock: Callable[[], float] = time.time,
    playlist_grants: Grants | None = None,
) -> AsyncIterator[RunningApp]:
    """Serve the app built from ``config`` until the block ends, then shut it down.

    With ``probes`` the test-only routes of :mod:`tests.app.probes` are mounted too;
    ``clock`` is the resources' wall clock (suggest's cache and quota day);
    ``playlist_grants`` turns the playlist write on with these users' tokens.
    """
    lifecycle = Lifecycle()
    release = trio.Event()
    async with open_resources(config, clock=clock, playlist_grants=playlist_grants) as resources:
        probed_at = (await resources.health.probe()).checked_at
        extra = (probe_blueprint(resources, release),) if probes else ()
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                lambda task_status: run_service(
                    resources, lifecycle, extra=extra, task_status=task_status
                )
            )
            url = binds[0]
            # The tree's health monitor probes once at start, on top of the startup probe above;
            # a fault a test injects before that probe ends would be found by the monitor rather
            # than by the request under test (a race a loaded machine loses), so wait for it.
            health = resources.health.state
            await eventually(lambda: health.checked_at != probed_at)
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                yield RunningApp(url, client, resources, lifecycle, release)
            release.set()
            lifecycle.begin_drain()
            lifecycle.stop_serving.set()


AppFactory = Callable[..., AbstractAsyncContextManager[RunningApp]]


@pytest.fixture
def app_factory(pg_url: str, redis_prefix: str, redis_store: RedisStore) -> AppFactory:
    """Start apps with overridden settings: ``async with app_factory(ops_token=...) as app``.

    Apps share the test's private Redis prefix; ``redis_store`` deletes its keys afterwards.
    """
    del redis_store

    def factory(
        *,
        probes: bool = False,
        clock: Callable[[], float] = time.time,
        playlist_grants: Grants | None = None,
        **overrides: str,
    ) -> AbstractAsyncContextManager[RunningApp]:
        config = make_config(pg_url, redis_prefix, **overrides)
        return running_app(config, probes=probes, clock=clock, playlist_grants=playlist_grants)

    return factory


@pytest.fixture
async def app(app_factory: AppFactory) -> AsyncIterator[RunningApp]:
    """The app with default test settings."""
    async with app_factory(probes=True) as running:
        yield running


@pytest.fixture
async def provider(nursery: trio.Nursery) -> FakeOidcProvider:
    """The fake OpenID provider, serving on loopback until the test ends."""
    provider = FakeOidcProvider()
    await nursery.start(provider.run)
    return provider


AuthAppFactory = Callable[..., AbstractAsyncContextManager[RunningApp]]


@pytest.fixture
def auth_app_factory(app_factory: AppFactory, provider: FakeOidcProvider) -> AuthAppFactory:
    """Start apps signing in with ``provider`` and signing with ``KEY``:
    ``async with auth_app_factory(**overrides) as app``; they share the test's Redis prefix."""

    def factory(**overrides: str) -> AbstractAsyncContextManager[RunningApp]:
        settings = {
            "jwt_keys": KEY,
            "oidc_issuer": provider.issuer,
            "oidc_client_id": provider.client_id,
            "oidc_client_secret": provider.client_secret,
            "oidc_redirect_uris": REDIRECT,
            "http_timeout": "1",
        }
        settings.update(overrides)
        return app_factory(**settings)

    return factory
