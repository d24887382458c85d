"""Reading ``SMARTPIP_*`` variables: typed getters that collect problems instead of raising.

Used only by :mod:`smartpip.config`, which hands it the environment mapping; nothing here
reads ``os.environ`` itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from smartpip.history.model import KNOWN_PROVIDERS, select_providers
from smartpip.http.clientip import Network
from smartpip.http.ratelimit import Policy, parse_policy

__all__ = [
    "HISTORY_PROVIDERS",
    "PREFIX",
    "EnvReader",
    "check_bind",
    "check_origin",
    "check_pg_url",
    "check_prefix",
    "check_redis_url",
    "check_url",
    "checked",
    "parse_network",
]

T = TypeVar("T")
PREFIX = "SMARTPIP_"
HISTORY_PROVIDERS = tuple(KNOWN_PROVIDERS)


class EnvReader:
    """Reads variables and collects problems instead of raising at the first one."""

    def __init__(self, environ: dict[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []
        self.known: set[str] = set()

    def problem(self, name: str, message: str) -> None:
        self.problems.append(f"{PREFIX}{name} {message}")

    def raw(self, name: str) -> str | None:
        self.known.add(PREFIX + name)
        value = self.environ.get(PREFIX + name)
        return None if value is None or value.strip() == "" else value.strip()

    def get(self, name: str, default: str, check: Callable[[str], str | None]) -> str:
        value = self.raw(name)
        if value is None:
            return default
        error = check(value)
        if error:
            self.problem(name, error)
        return value

    def optional(self, name: str) -> str | None:
        return self.raw(name)

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = (self.raw(name) or default).lower()
        if value not in allowed:
            self.problem(name, f"must be one of {', '.join(allowed)} (got {value!r})")
            return default
        return value

    def number(self, name: str, default: T, kind: Callable[[str], T], low: T, high: T) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            parsed = kind(value)
        except ValueError:
            self.problem(name, f"must be a number (got {value!r})")
            return default
        if not low <= parsed <= high:  # type: ignore[operator]
            self.problem(name, f"must be between {low} and {high} (got {value})")
            return default
        return parsed

    def listing(
        self, name: str, parse: Callable[[str], Any], *, default: str = ""
    ) -> tuple[Any, ...]:
        value = self.raw(name)
        items = [item.strip() for item in (value if value is not None else default).split(",")]
        out: list[Any] = []
        for item in items:
            if not item:
                continue
            try:
                result = parse(item)
            except ValueError as error:
                self.problem(name, f"has an invalid entry {item!r}: {error}")
                continue
            out.append(result)
        return tuple(out)

    def policy(self, name: str, policy_name: str, default: str) -> Policy:
        value = self.raw(name) or default
        try:
            return parse_policy(policy_name, value)
        except ValueError as error:
            self.problem(name, f"is not a rate like 30/1m: {error}")
            return parse_policy(policy_name, default)

    def providers(self, name: str) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None:
            return HISTORY_PROVIDERS
        try:
            return tuple(select_providers(value.split(",")))
        except ValueError as error:
            self.problem(name, str(error))
            return HISTORY_PROVIDERS

    def secret(self, name: str) -> str | None:
        direct = self.raw(name)
        path = self.raw(name + "_FILE")
        if direct is not None and path is not None:
            self.problem(name, f"and {PREFIX}{name}_FILE are both set; use one")
            return None
        if path is None:
            return direct
        try:
            with open(path, encoding="utf-8") as handle:
                value = handle.read().strip()
        except OSError as error:
            self.problem(name + "_FILE", f"cannot be read: {error.strerror}")
            return None
        return value or None

    def unknown_variables(self) -> None:
        for name in sorted(self.environ):
            if (
                name.startswith(PREFIX)
                and name not in self.known
                and not name.startswith(PREFIX + "TEST_")
            ):
                self.problems.append(f"{name} is not a known setting (misspelt?)")


def checked(check: Callable[[str], str | None]) -> Callable[[str], str]:
    """Turn a ``check`` returning an error message into a parser raising ValueError."""

    def parse(value: str) -> str:
        error = check(value)
        if error:
            raise ValueError(error)
        return value

    return parse


def check_bind(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return f"must be host:port (got {value!r})"
    return None


def check_pg_url(value: str) -> str | None:
    if urlsplit(value).scheme not in {"postgresql", "postgres"}:
        return "must be a postgresql:// URL"
    return None


def check_redis_url(value: str) -> str | None:
    if urlsplit(value).scheme not in {"redis", "rediss", "unix"}:
        return "must be a redis://, rediss:// or unix:// URL"
    return None


def check_prefix(value: str) -> str | None:
    if len(value) > 64 or any(c.isspace() for c in value):
        return "must be at most 64 characters without spaces"
    return None


def check_url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        return "must be an absolute http(s) URL"
    return None


def check_origin(value: str) -> str | None:
    parts = urlsplit(value)
    if value == "*" or not parts.scheme or not parts.netloc or parts.path not in {"", "/"}:
        return "must be an exact origin such as chrome-extension://<id> (no wildcard)"
    return None


def parse_network(value: str) -> Network:
    return ipaddress.ip_network(value, strict=False)
