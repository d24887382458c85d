"""How the harness starts `smartpip serve`: its command and the environment it gets.

Shared by the wrk run (`bench.run`) and the quota-economy run (`bench.economy`), so both
measure the same configuration: development mode, no drain window, per-user limits lifted,
a Redis prefix of the run's own, and suggest pointed at the bench's fake YouTube.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from bench.servers import StartError

__all__ = ["LIFTED_LIMIT", "smartpip_command", "smartpip_env"]

# The largest per-user limit the configuration accepts: a few users drive thousands of
# requests, and wrk must measure the work, not 429s (the limiter still runs on every request).
LIFTED_LIMIT = "600000/1m"


def smartpip_command() -> list[str]:
    """``smartpip serve`` from this environment.

    Raises:
        StartError: ``smartpip`` is not installed here.
    """
    beside = Path(sys.executable).parent / "smartpip"
    script = str(beside) if beside.exists() else shutil.which("smartpip")
    if script is None:
        raise StartError("`smartpip` is not installed in this environment (pip install -e .)")
    return [script, "serve"]


def smartpip_env(
    *,
    bind: str,
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    jwt_keys: str,
    youtube_api_url: str,
    youtube_api_key: str,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The service's environment: this process's, plus the bench settings, plus ``extra``."""
    return {
        **os.environ,
        "SMARTPIP_BIND": bind,
        "SMARTPIP_DATABASE_URL": database_url,
        "SMARTPIP_REDIS_URL": redis_url,
        "SMARTPIP_REDIS_PREFIX": redis_prefix,
        "SMARTPIP_ENV": "development",
        "SMARTPIP_DRAIN_SECONDS": "0",
        # A fixed key per run, so the setup hooks can mint tokens the service accepts.
        "SMARTPIP_JWT_KEYS": jwt_keys,
        "SMARTPIP_RATE_LIMIT_USER": LIFTED_LIMIT,
        "SMARTPIP_RATE_LIMIT_WRITES": LIFTED_LIMIT,
        "SMARTPIP_RATE_LIMIT_SUGGEST": LIFTED_LIMIT,
        # Suggest is on only with a key; the URL is the bench's fake (http is fine outside
        # production).
        "SMARTPIP_YOUTUBE_API_KEY": youtube_api_key,
        "SMARTPIP_YOUTUBE_API_URL": youtube_api_url,
        "PYTHONUNBUFFERED": "1",
        **(extra or {}),
    }
