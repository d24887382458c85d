"""Mint access tokens for a pool of benchmark users: ``python -m bench.tokens --count 50``.

Reads the same ``SMARTPIP_*`` environment as the service (database and JWT keys), creates the
users ``bench-user-<n>`` when missing and prints one token per line. Each token names a sign-in
(``sid``) like the tokens the extension holds, so the bearer guard does the same revocation
check (user and family) as in production; the guard never reads the session row, so none is
written.
"""

from __future__ import annotations

import argparse
import uuid

import trio

from smartpip.config import Config
from smartpip.http.tokens import AccessTokens
from smartpip.runtime.main import DEV_ISSUER, migrate
from smartpip.runtime.resources import postgres_settings
from store.postgres import open_database
from store.users import upsert_user


async def mint(config: Config, count: int) -> list[str]:
    """Tokens for ``count`` users, creating them when needed."""
    await migrate(config)
    tokens = AccessTokens(config.jwt_keys)
    out = []
    async with open_database(postgres_settings(config)) as db:
        for n in range(count):
            user_id, _created = await db.run(upsert_user, DEV_ISSUER, f"bench-user-{n}")
            out.append(tokens.issue(user_id, session_id=uuid.uuid4()))
    return out


def main() -> None:
    """Print the tokens, one per line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=50)
    args = parser.parse_args()
    for token in trio.run(mint, Config.from_env(), args.count):
        print(token)


if __name__ == "__main__":
    main()
