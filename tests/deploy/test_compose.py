"""compose.yaml: valid Compose, the deployment's rules, and `make secrets`.

``compose-spec.json`` beside this file is the Compose Specification's JSON schema (draft-07),
vendored so that the check needs no network: the copy bundled in the npm package dclint 3.1.0
(``schemas/compose.schema.json``). Replace it with a newer copy of the specification's
``schema/compose-spec.json`` when Compose adds keys this file uses.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from smartpip.config import Config, ConfigError

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).with_name("compose-spec.json")
API_REPLICAS = ("api-1", "api-2")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def test_compose_yaml_is_valid_compose() -> None:
    validator = jsonschema_rs.validator_for(json.loads(SCHEMA.read_text()))
    errors = [f"{list(e.instance_path)}: {e.message}" for e in validator.iter_errors(compose())]
    assert errors == []
    broken = compose()
    broken["services"]["nginx"]["stop_grace"] = "20s"  # a misspelt key is caught
    assert not validator.is_valid(broken)


def test_networks_keep_the_data_away_from_nginx() -> None:
    services = compose()["services"]
    networks = compose()["networks"]
    assert networks["data"]["internal"] is True
    assert set(services["postgres"]["networks"]) == {"data"}
    assert set(services["redis"]["networks"]) == {"data"}
    assert set(services["nginx"]["networks"]) == {"edge"}
    nginx_ip = services["nginx"]["networks"]["edge"]["ipv4_address"]
    for name in API_REPLICAS:
        api = services[name]
        assert api["networks"]["edge"]["aliases"] == ["api"]  # nginx's upstream name
        assert {"edge", "data", "metrics"} <= set(api["networks"])
        # The api believes forwarded addresses from exactly nginx.
        assert api["environment"]["SMARTPIP_TRUSTED_PROXIES"] == f"{nginx_ip}/32"
        assert "ports" not in api  # only through nginx (and the internal metrics network)


def test_postgres_needs_a_password_and_every_service_is_bounded() -> None:
    services = compose()["services"]
    postgres = services["postgres"]["environment"]
    assert "POSTGRES_HOST_AUTH_METHOD" not in postgres
    assert postgres["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "scram-sha-256" in postgres["POSTGRES_INITDB_ARGS"]
    total = 0
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        assert service["logging"]["options"]["max-size"], name  # rotated
        assert "healthcheck" in service, name
        limit = service["deploy"]["resources"]["limits"]["memory"]
        if "profiles" not in service:  # the optional monitoring profile is sized apart
            total += int(limit.rstrip("M"))
    assert total <= 1536, "leave the 2 GiB box at least 512 MiB for the system and Docker"
    redis = services["redis"]["command"]
    assert redis[redis.index("--maxmemory") + 1] == "128mb"


def make_secrets(where: Path) -> Path:
    (where / "deploy").mkdir()
    shutil.copy(ROOT / "deploy" / "make-secrets", where / "deploy" / "make-secrets")
    result = subprocess.run(
        ["sh", str(where / "deploy" / "make-secrets")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return where / "secrets"


def _interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ``${NAME:-default}``, enough for compose.yaml."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: variables.get(m.group(1), m.group(2)), value)


def api_environment(secrets: Path, **variables: str) -> dict[str, str]:
    """api-1's environment as compose would give it, with /run/secrets/ at ``secrets``."""
    env = compose()["services"]["api-1"]["environment"]
    out = {}
    for name, value in env.items():
        text = _interpolate(str(value), variables)
        out[name] = text.replace("/run/secrets/", f"{secrets}/")
    return out


def test_make_secrets_writes_every_secret_compose_reads(tmp_path: Path) -> None:
    secrets = make_secrets(tmp_path)
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    wanted = {Path(s["file"]).name for s in compose()["secrets"].values()}
    mounted = {
        Path(volume.split(":")[0]).name
        for volume in compose()["services"]["nginx"]["volumes"]
        if volume.startswith("./secrets/")
    }
    assert {p.name for p in secrets.iterdir()} == wanted | mounted
    for path in secrets.iterdir():
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o400 if path.name == "origin.key" else 0o444), path.name
    password = (secrets / "postgres_password").read_text().strip()
    assert len(password) >= 32
    assert f"smartpip:{password}@postgres:5432/smartpip" in (secrets / "database_url").read_text()
    before = {p.name: p.read_text() for p in secrets.iterdir()}
    make_secrets_again = subprocess.run(
        ["sh", str(tmp_path / "deploy" / "make-secrets")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "kept" in make_secrets_again.stdout
    assert {p.name: p.read_text() for p in secrets.iterdir()} == before  # never overwritten


def test_the_api_environment_is_a_valid_production_configuration(tmp_path: Path) -> None:
    secrets = make_secrets(tmp_path)
    # Out of the box: a clear refusal naming what is missing.
    with pytest.raises(ConfigError) as refused:
        Config.from_env(api_environment(secrets))
    assert refused.value.problems == [
        "SMARTPIP_OIDC_CLIENT_ID is required in production: nobody can sign in without it "
        "(set SMARTPIP_SIGN_IN=disabled to run without sign-in)"
    ]
    # With the Google client from docs/deploy.md it starts, sign-in on.
    (secrets / "oidc_client_secret").chmod(0o644)
    (secrets / "oidc_client_secret").write_text("GOCSPX-" + "x" * 32)
    config = Config.from_env(
        api_environment(
            secrets,
            SMARTPIP_OIDC_CLIENT_ID="1234.apps.googleusercontent.com",
            SMARTPIP_OIDC_REDIRECT_URIS="https://abcdefghijklmnopabcdefghijklmnop.chromiumapp.org/",
        )
    )
    assert config.production and config.sign_in_enabled
    # make-secrets wrote a strong token key: the playlist is on.
    assert config.playlist_enabled and config.token_encryption_keys is not None
    assert not config.token_encryption_keys.current.weak
    assert config.database_url.startswith("postgresql://smartpip:")
    assert config.youtube_api_key is None  # the empty file: suggest disabled
    assert (
        config.redacted()["database_url"]
        == "postgresql://smartpip:<redacted>@postgres:5432/smartpip"
    )
