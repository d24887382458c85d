"""Re-sealing every stored grant under the newest token key (``smartpip playlist rotate-keys``).

Rotation: put a new key first in ``SMARTPIP_TOKEN_ENCRYPTION_KEYS`` (every replica), run the
command, then remove the old key. Rows are read in batches by user ID, each batch in its own
short transaction; each row is re-sealed only if it still holds what was read (a reconnect or
disconnect in between wins). Idempotent: a second run finds nothing to do.
"""

from __future__ import annotations

import uuid
from typing import Any

import attrs
import psycopg

from smartpip.logs import get_logger
from smartpip.playlist.crypto import Keyring, SealedToken, Unsealable
from store.oauth_accounts import reseal_oauth_account, select_rows_to_reseal
from store.postgres import Database

__all__ = ["DEFAULT_BATCH", "Rotation", "reseal_all"]

# Why 500: a batch is one transaction of that many small updates, well under a second.
DEFAULT_BATCH = 500

log = get_logger(__name__)


@attrs.frozen
class Rotation:
    """What a run did (counts only).

    Attributes:
        key_id: The key every row is now sealed under.
        resealed: Rows re-sealed under it.
        changed: Rows that changed between read and write (left as the writer left them).
        unopenable: Rows no configured key opens (their key was removed, or tampered);
            left as they are: the user must connect again unless the old key comes back.
        batches: Transactions run.
    """

    key_id: str
    resealed: int = 0
    changed: int = 0
    unopenable: int = 0
    batches: int = 0


def _batch(
    conn: psycopg.Connection[Any], keyring: Keyring, after: uuid.UUID, limit: int
) -> tuple[int, int, int, uuid.UUID | None]:
    rows = select_rows_to_reseal(conn, keyring.current.kid, after=after, limit=limit)
    resealed = changed = unopenable = 0
    for row in rows:
        try:
            token = keyring.open(row.user_id, SealedToken(row.key_id, row.token_sealed))
        except Unsealable:
            unopenable += 1
            continue
        sealed = keyring.seal(row.user_id, token)
        if reseal_oauth_account(conn, row, key_id=sealed.kid, token_sealed=sealed.blob):
            resealed += 1
        else:
            changed += 1
    return resealed, changed, unopenable, (rows[-1].user_id if len(rows) == limit else None)


async def reseal_all(
    db: Database, keyring: Keyring, *, batch_size: int = DEFAULT_BATCH
) -> Rotation:
    """Re-seal every grant not sealed under ``keyring``'s current key."""
    report = Rotation(keyring.current.kid)
    after: uuid.UUID | None = uuid.UUID(int=0)
    while after is not None:
        resealed, changed, unopenable, after = await db.run(_batch, keyring, after, batch_size)
        report = attrs.evolve(
            report,
            resealed=report.resealed + resealed,
            changed=report.changed + changed,
            unopenable=report.unopenable + unopenable,
            batches=report.batches + 1,
        )
    if report.unopenable:
        log.warning(
            "stored YouTube grants no configured key opens; left as they are",
            rows=report.unopenable,
        )
    return report
