"""The process: ``trio.run(main)`` with hypercorn and the root supervisor side by side.

::

    main(config)
      migrate (create the database when missing, apply migrations under an advisory lock)
      async with open_resources(config) as resources:      # the composition root
        root nursery
          watch_signals     SIGTERM/SIGINT -> drain -> stop serving; second signal -> cancel
          run_supervisor    the supervision tree (smartpip.runtime.tree)
          serve_http        hypercorn's HTTP/1.1 protocol under our accept loop
                            (smartpip.http.server); returns when in-flight requests are done
        (serve_http returned: cancel the supervisors, then the pools close)
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Sequence
from functools import partial

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.utils import wrap_app
from quart import Blueprint

from smartpip.config import Config
from smartpip.http.middleware import HygieneMiddleware
from smartpip.http.server import ConnectionGate, connection_limit, serve
from smartpip.http.tokens import AccessTokens
from smartpip.logs import get_logger
from smartpip.runtime.app import create_app
from smartpip.runtime.lifecycle import Lifecycle, watch_parent, watch_signals
from smartpip.runtime.resources import Resources, open_resources, postgres_settings
from smartpip.runtime.tree import supervision_tree
from store.bootstrap import migrate_database
from store.migrations import MigrationError
from store.postgres import DatabaseUnavailable, open_database
from store.users import upsert_user
from supervisors import EscalationError, JobSpec, run_supervisor

__all__ = [
    "ListenError",
    "StartupError",
    "dev_token",
    "hypercorn_config",
    "main",
    "migrate",
    "open_listeners",
    "serve_http",
]

log = get_logger(__name__)
# Why 32 KiB: above our own 16 KiB header limit, so oversize headers get our 431 problem
# response; beyond it hypercorn answers 400 by itself.
H11_MAX_INCOMPLETE = 32 * 1024


class StartupError(Exception):
    """The service cannot start; the message tells the operator why."""


class ListenError(Exception):
    """The listening socket cannot be opened (address in use, not ours to bind...)."""


def open_listeners(config: Config) -> list[socket.socket]:
    """The sockets on ``SMARTPIP_BIND``, bound but not listening yet.

    Opened once, before anything else starts: by ``smartpip serve`` itself, whose workers
    inherit them (:mod:`smartpip.runtime.workers`). A busy address fails here, at once. The
    server starts listening (:func:`serve_http`) only once it is ready to accept: until then
    a connection is refused (a proxy tries another replica) rather than queued unanswered.

    Raises:
        ListenError: naming the address and the reason, e.g. "Address already in use".
    """
    hconfig = hypercorn_config(config)
    try:
        sockets = hconfig.create_sockets().insecure_sockets
    except OSError as error:
        raise ListenError(f"cannot listen on {config.bind}: {error.strerror or error}") from None
    return sockets


def hypercorn_config(config: Config) -> HypercornConfig:
    """Hypercorn settings for our one-process deployment."""
    hconfig = HypercornConfig()
    hconfig.bind = [config.bind]
    # Hypercorn's default (3 s) would cut off slow requests during shutdown.
    hconfig.graceful_timeout = config.graceful_timeout
    hconfig.accesslog = None  # smartpip.http.middleware writes one JSON line per request
    hconfig.errorlog = logging.getLogger("hypercorn.error")
    hconfig.include_server_header = False
    hconfig.h11_max_incomplete_size = H11_MAX_INCOMPLETE
    # Between requests and before a complete request head: a client that sends nothing (or
    # half its headers) for this long is disconnected.
    hconfig.keep_alive_timeout = config.keepalive_timeout
    return hconfig


async def serve_http(
    app: HygieneMiddleware,
    config: Config,
    lifecycle: Lifecycle,
    gate: ConnectionGate,
    *,
    sockets: Sequence[socket.socket] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until :attr:`Lifecycle.stop_serving`, then finish in-flight requests.

    The listening sockets are ours, so at the end of the drain window they are shut down:
    new connections are refused at once instead of waiting in the backlog while the server
    finishes the requests in flight (up to ``graceful_timeout``). It returns as soon as the
    last connection is done.

    ``sockets`` are listening sockets opened already (:func:`open_listeners`, perhaps in the
    parent process); without them, they are opened here. Shutting down a listening socket
    that several workers share stops all of them accepting: the drain ends as one.

    Raises:
        StartupError: the sockets cannot be opened here.
    """
    hconfig = hypercorn_config(config)
    if sockets is None:
        try:
            sockets = open_listeners(config)
        except ListenError as error:
            raise StartupError(str(error)) from None
    for sock in sockets:
        sock.listen(hconfig.backlog)  # again in a later worker: harmless

    async def shutdown_trigger() -> None:
        await lifecycle.stop_serving.wait()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    try:
        await serve(
            wrap_app(app, hconfig.wsgi_max_body_size, "asgi"),  # type: ignore[arg-type]
            hconfig,
            sockets,
            gate,
            send_timeout=config.send_timeout,
            shutdown_trigger=shutdown_trigger,
            task_status=task_status,
        )
    finally:
        for sock in sockets:
            sock.close()


async def migrate(config: Config) -> list[int]:
    """Create the database when missing and apply pending migrations.

    Raises:
        StartupError: Postgres cannot be reached, or a migration cannot be applied.
    """
    try:
        return await trio.to_thread.run_sync(migrate_database, config.database_url)
    except (DatabaseUnavailable, MigrationError) as error:
        raise StartupError(str(error)) from error


DEV_ISSUER = "urn:smartpip:dev"


async def dev_token(config: Config, sub: str) -> str:
    """An access token for the development user ``sub`` (created when missing).

    It belongs to no sign-in (no ``sid`` claim, no refresh token): only deleting the account
    revokes it before it expires (:mod:`smartpip.http.tokens`).

    Raises:
        StartupError: Postgres cannot be reached or the schema is not current.
    """
    await migrate(config)
    tokens = AccessTokens(config.jwt_keys)
    async with open_database(postgres_settings(config)) as db:
        try:
            user_id, _created = await db.run(upsert_user, DEV_ISSUER, sub)
        except DatabaseUnavailable as error:
            raise StartupError(str(error)) from error
    return tokens.issue(user_id)


async def run_service(
    resources: Resources,
    lifecycle: Lifecycle,
    *,
    extra: Sequence[Blueprint] = (),
    extra_jobs: Sequence[JobSpec] = (),
    sockets: Sequence[socket.socket] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the supervisors and the HTTP server until the server has shut down.

    Reports the bound addresses through ``task_status`` once both are running. ``extra`` and
    ``extra_jobs`` add blueprints and scheduled jobs beside the service's own (tests).
    """
    app = create_app(resources, lifecycle, extra=list(extra))
    gate = ConnectionGate(connection_limit(resources.config.max_connections))
    if gate.limit < resources.config.max_connections:
        log.warning(
            "connection limit lowered to fit the open-file limit",
            configured=resources.config.max_connections,
            limit=gate.limit,
        )
    resources.metrics.watch_connections(lambda: gate.open, lambda: gate.refused)
    children = supervision_tree(resources, extra_jobs=extra_jobs)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            partial(
                run_supervisor,
                "root",
                children,
                resources.supervision,
                on_restart=resources.metrics.on_restart,
            )
        )

        async def serve_then_stop_supervisors(
            task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
        ) -> None:
            await serve_http(
                app, resources.config, lifecycle, gate, sockets=sockets, task_status=task_status
            )
            nursery.cancel_scope.cancel()

        binds = await nursery.start(serve_then_stop_supervisors)
        log.info("serving", binds=binds)
        task_status.started(binds)
    log.info("stopped")


async def main(
    config: Config,
    *,
    extra: Sequence[Blueprint] = (),
    extra_jobs: Sequence[JobSpec] = (),
    sockets: Sequence[socket.socket] | None = None,
    parent_fd: int | None = None,
) -> int:
    """The whole process (or one worker of ``smartpip serve --workers N``). Returns the exit
    status.

    Args:
        config: the validated configuration.
        extra: additional blueprints mounted beside the API (tests use this).
        extra_jobs: additional scheduled jobs (tests use this).
        sockets: listening sockets opened already (by the parent of the workers).
        parent_fd: a worker's end of a pipe from its parent: end of file there (the parent
            is gone) drains and stops this worker as SIGTERM would.
    """
    lifecycle = Lifecycle()
    applied = await migrate(config)
    if applied:
        log.info("migrations applied", versions=applied)
    async with open_resources(config) as resources:
        await resources.health.probe()
        status = 0
        async with trio.open_nursery() as root:
            await root.start(watch_signals, lifecycle, config.drain_seconds, root.cancel_scope)
            if parent_fd is not None:
                root.start_soon(watch_parent, parent_fd)
            try:
                await run_service(
                    resources, lifecycle, extra=extra, extra_jobs=extra_jobs, sockets=sockets
                )
            except* EscalationError as group:
                for error in group.exceptions:
                    log.error(
                        "a supervised task failed beyond its restart budget",
                        child=getattr(error, "child", "?"),
                        exc_info=error,
                    )
                status = 1
            root.cancel_scope.cancel()
    if lifecycle.forced:
        log.warning("stopped by a second signal")
        return 1
    return status
