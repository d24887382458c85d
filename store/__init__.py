"""All persistence of the service: Postgres (query functions, pool, migrations) and Redis.

Modules: ``store.postgres`` (settings, ``Database``, ``open_database``), ``store.bootstrap``
(``ensure_database``, ``migrate_database``), ``store.migrations`` (numbered SQL files and their
application), ``store.redis`` (settings,
``RedisStore``, ``open_redis``), ``store.errors`` (the exception hierarchy), ``store.backup``,
``store.backup_pg``, ``store.backup_restore`` and ``store.backup_s3`` (backups: pg_dump,
pg_restore and the S3 bucket, blocking, run in a worker thread). Query functions
live in further modules as plain sync ``verb_noun(conn, ...)`` functions, SQL beside them.

``store`` imports nothing from ``smartpip``, ``tasks`` or ``supervisors`` and never reads the
environment: settings are passed in.
"""

__all__: list[str] = []
