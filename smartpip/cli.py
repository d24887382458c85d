"""The ``smartpip`` command: ``serve``, ``migrate``, ``config check``, ``token``, ``jobs``,
``quota history``, ``backup``, ``playlist rotate-keys``.

Configuration problems are printed as a list naming each variable and exit with status 2,
without a traceback; a dependency that stops startup exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from functools import partial

import attrs
import trio

from smartpip.config import Config, ConfigError
from smartpip.logs import configure_logging, get_logger

__all__ = ["main"]

EXIT_CONFIG = 2
EXIT_STARTUP = 1
# ``smartpip jobs run``: the period was run elsewhere, or could not be claimed, or failed.
EXIT_JOB_NOT_RUN = 3
EXIT_JOB_FAILED = 4
# ``smartpip backup``: 2 backups not configured, 4 a backup step failed (storage, tools,
# verification), 5 a restore refused (the target exists, or is the live database).
EXIT_RESTORE_REFUSED = 5


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smartpip",
        description="Smart PiP backend. Configured by SMARTPIP_* environment variables "
        "(see the README).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="migrate, then serve HTTP and run the supervised tasks until SIGTERM",
        description="Apply pending migrations, then serve HTTP on SMARTPIP_BIND beside the "
        "supervised background tasks. SIGTERM or SIGINT drains and stops gracefully; "
        "a second signal stops at once. A busy address exits with status 2.",
    )
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="worker processes sharing one listening socket, each a full replica "
        "(default 1; 'auto': one per CPU this process may use)",
    )
    # A worker of --workers N, started by the parent: the inherited listening socket(s), the
    # pipe that ends when the parent is gone, and the worker's number.
    serve.add_argument("--listen-fd", type=int, action="append", help=argparse.SUPPRESS)
    serve.add_argument("--parent-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    commands.add_parser(
        "migrate",
        help="create the database if missing and apply pending migrations",
        description="Create the database when missing (if the role may) and apply pending "
        "migrations under an advisory lock, then exit.",
    )
    token = commands.add_parser(
        "token",
        help="print an access token for a development user",
        description="Create the user (issuer urn:smartpip:dev, the given subject) if needed and "
        "print a 15-minute access token signed with SMARTPIP_JWT_KEYS, for calling the API "
        "with curl. Refused in production unless --force.",
    )
    token.add_argument("--sub", required=True, help="the development user's subject")
    token.add_argument("--force", action="store_true", help="allow in production")
    jobs = commands.add_parser("jobs", help="the scheduled jobs (docs/jobs.md)")
    jobs_commands = jobs.add_subparsers(dest="jobs_command", required=True, metavar="CMD")
    jobs_commands.add_parser(
        "list",
        help="every job: period, kind, paused, who holds the current period, latest runs",
        description="Print every scheduled job as JSON: its schedule and kind, whether it is "
        "enabled and paused, the current period and who holds it, and for lease jobs the "
        "latest runs.",
    )
    run = jobs_commands.add_parser(
        "run",
        help="run a job's current period now, through its claim",
        description="Claim the job's current period and run it now, as a replica would. If "
        "another replica already has the period, say who and exit 3; a run that does not "
        "succeed exits 4.",
    )
    run.add_argument("name", help="the job (see `smartpip jobs list`)")
    quota = commands.add_parser("quota", help="the YouTube quota (docs/jobs.md)")
    quota_commands = quota.add_subparsers(dest="quota_command", required=True, metavar="CMD")
    history = quota_commands.add_parser(
        "history",
        help="today's live YouTube quota usage and the saved usage per Pacific day",
        description="Print as JSON today's live quota counter (Redis), the budget in "
        "searches and units, and the usage the quota job saved for each Pacific day "
        "(Postgres), newest first.",
    )
    history.add_argument("--days", type=_positive, default=30, help="how many days (default 30)")
    _backup_parser(commands)
    _playlist_parser(commands)
    config = commands.add_parser("config", help="configuration commands")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="CMD")
    config_commands.add_parser(
        "check",
        help="validate the configuration and print it with secrets redacted",
        description="Validate the SMARTPIP_* environment; print the effective configuration "
        "as JSON with secrets redacted, or every problem found.",
    )
    return parser


def _workers(text: str) -> int:
    if text == "auto":
        from smartpip.runtime.workers import cpu_count

        return cpu_count()
    return _positive(text)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"at least 1, not {value}")
    return value


def _playlist_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    playlist = commands.add_parser("playlist", help="the playlist feature's stored Google grants")
    playlist_commands = playlist.add_subparsers(
        dest="playlist_command", required=True, metavar="CMD"
    )
    rotate = playlist_commands.add_parser(
        "rotate-keys",
        help="re-seal every stored refresh token under the newest token key",
        description="Re-seal every stored Google refresh token not sealed under the first key "
        "of SMARTPIP_TOKEN_ENCRYPTION_KEYS, in batches (one transaction each); idempotent. "
        "Prints the counts as JSON. Rows no configured key opens are left alone and counted "
        "(exit 4).",
    )
    rotate.add_argument(
        "--batch-size", type=_positive, default=500, help="rows per transaction (default 500)"
    )


def _backup_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = commands.add_parser("backup", help="database backups in S3 (docs/backups.md)")
    backup_commands = backup.add_subparsers(dest="backup_command", required=True, metavar="CMD")
    backup_commands.add_parser(
        "run",
        help="back up now, through the backup job's lease",
        description="Run tonight's backup job now (dump, upload, verify, manifest, retention, "
        "drill when due), through the same lease as the replicas: if a replica has the "
        "period, say who and exit 3; a failed run exits 4.",
    )
    backup_commands.add_parser(
        "list",
        help="the backups in the bucket: time, size, verified, drill",
        description="Print every dump of this database in the bucket as JSON, newest first: "
        "time, size, whether it is verified (has a manifest) and its last restore drill.",
    )
    verify = backup_commands.add_parser(
        "verify",
        help="download a backup, check its SHA-256 and read it whole with pg_restore",
        description="Download the backup (default: the newest), check its SHA-256 against "
        "the manifest and read every block with pg_restore; exit 4 if it does not check out.",
    )
    verify.add_argument("key", nargs="?", help="the dump's key (see `smartpip backup list`)")
    restore = backup_commands.add_parser(
        "restore",
        help="restore a backup into a new database",
        description="Restore the backup KEY into the database DBNAME, created for it. An "
        "existing database, and the live one, are refused (exit 5) unless --force, which "
        "drops their objects first (pg_restore --clean).",
    )
    restore.add_argument("key", help="the dump's key (see `smartpip backup list`)")
    restore.add_argument("--into", required=True, metavar="DBNAME", help="target database")
    restore.add_argument(
        "--force", action="store_true", help="restore over an existing (or the live) database"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        config = Config.from_env()
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "config":
        for line in config.summary():  # what is on and off, for people; the JSON for tools
            print(line, file=sys.stderr)
        print(json.dumps(config.redacted(), indent=2))
        return 0
    configure_logging(config.log_level, config.log_format)
    log = get_logger("smartpip.cli")
    if config.jwt_keys_generated:
        log.warning("SMARTPIP_JWT_KEYS unset: using a random development key")
    from smartpip.runtime.main import StartupError, dev_token, migrate

    try:
        if args.command == "jobs":
            return trio.run(_jobs, config, args)
        if args.command == "quota":
            return trio.run(_quota, config, args)
        if args.command == "backup":
            return trio.run(_backup, config, args)
        if args.command == "playlist":
            return trio.run(_rotate_keys, config, args)
        if args.command == "token":
            if config.production and not args.force:
                log.error("refusing to mint a development token in production (use --force)")
                return EXIT_CONFIG
            if config.jwt_keys_generated:
                log.error("set SMARTPIP_JWT_KEYS to the server's keys; a random key is useless")
                return EXIT_CONFIG
            print(trio.run(dev_token, config, args.sub))
            return 0
        if args.command == "migrate":
            applied = trio.run(migrate, config)
            log.info("migrations applied" if applied else "no pending migrations", versions=applied)
            return 0
        return _serve(config, args)
    except StartupError as error:
        log.error("cannot start", reason=str(error))
        return EXIT_STARTUP


def _serve(config: Config, args: argparse.Namespace) -> int:
    import socket

    from smartpip.runtime.main import ListenError, open_listeners
    from smartpip.runtime.main import main as serve_main

    log = get_logger("smartpip.cli")
    if args.listen_fd:  # a worker: the parent opened the socket
        sockets = [socket.socket(fileno=fd) for fd in args.listen_fd]
        if args.worker is not None and config.replica_name is not None:
            config = attrs.evolve(config, replica_name=f"{config.replica_name}-{args.worker}")
        return trio.run(partial(serve_main, config, sockets=sockets, parent_fd=args.parent_fd))
    try:
        sockets = open_listeners(config)
    except ListenError as error:
        log.error("cannot start", reason=str(error))
        return EXIT_CONFIG
    log.info("configuration", parts=config.summary())
    if args.workers == 1:
        return trio.run(partial(serve_main, config, sockets=sockets))
    from smartpip.runtime.workers import run_workers

    log.info("starting workers", workers=args.workers, binds=config.bind)
    return trio.run(run_workers, args.workers, sockets)


async def _jobs(config: Config, args: argparse.Namespace) -> int:
    from smartpip.runtime.jobs import jobs_report, run_job_now
    from smartpip.runtime.main import migrate
    from smartpip.runtime.resources import open_resources

    log = get_logger("smartpip.cli")
    await migrate(config)  # the job tables must exist; idempotent, under an advisory lock
    async with open_resources(config) as resources:
        if args.jobs_command == "list":
            print(json.dumps(await jobs_report(resources), indent=2))
            return 0
        try:
            record = await run_job_now(resources, args.name)
        except KeyError:
            log.error("no such job enabled here", job=args.name)
            return EXIT_CONFIG
    print(
        json.dumps(
            {
                "job": record.job,
                "period": record.period.key,
                "outcome": record.outcome.value,
                "seconds": round(record.seconds, 3),
                "holder": record.holder,
                "fence": record.fence,
                "error": record.error,
            },
            indent=2,
        )
    )
    if record.outcome.value in ("held", "unclaimed"):
        return EXIT_JOB_NOT_RUN
    return 0 if record.outcome.value == "succeeded" else EXIT_JOB_FAILED


async def _quota(config: Config, args: argparse.Namespace) -> int:
    from smartpip.runtime.main import migrate
    from smartpip.runtime.quota import quota_history
    from smartpip.runtime.resources import open_resources

    await migrate(config)  # the quota_days table must exist; idempotent
    async with open_resources(config) as resources:
        print(json.dumps(await quota_history(resources, args.days), indent=2))
    return 0


async def _rotate_keys(config: Config, args: argparse.Namespace) -> int:
    from smartpip.playlist.rotation import reseal_all
    from smartpip.runtime.main import migrate
    from smartpip.runtime.resources import postgres_settings
    from store.postgres import open_database

    keyring = config.token_encryption_keys
    if keyring is None:
        print("smartpip playlist: SMARTPIP_TOKEN_ENCRYPTION_KEYS is not set", file=sys.stderr)
        return EXIT_CONFIG
    await migrate(config)  # the oauth_accounts table must exist; idempotent
    async with open_database(postgres_settings(config)) as db:
        report = await reseal_all(db, keyring, batch_size=args.batch_size)
    print(json.dumps(attrs.asdict(report), indent=2))
    return EXIT_JOB_FAILED if report.unopenable else 0


def _fail(message: str, status: int) -> int:
    print(f"smartpip backup: {message}", file=sys.stderr)
    return status


async def _backup(config: Config, args: argparse.Namespace) -> int:
    from smartpip.runtime.resources import open_backups
    from store.errors import BackupError
    from tasks.backup import RestoreRefused

    backups = open_backups(config)
    if backups is None:
        return _fail("backups are disabled: SMARTPIP_BACKUP_S3_BUCKET is not set", EXIT_CONFIG)
    try:
        if args.backup_command == "run":
            await backups.preflight()
            return await _jobs(config, argparse.Namespace(jobs_command="run", name="backup"))
        if args.backup_command == "list":
            result: object = [entry.describe() for entry in await backups.entries()]
        elif args.backup_command == "verify":
            result = await backups.verify(args.key)
        else:
            result = await backups.restore(args.key, args.into, force=args.force)
    except RestoreRefused as error:
        return _fail(str(error), EXIT_RESTORE_REFUSED)
    except BackupError as error:
        return _fail(str(error), EXIT_JOB_FAILED)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
