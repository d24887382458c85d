"""Which address is the client: forwarded headers are believed only from trusted proxies."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from smartpip.http.clientip import UNKNOWN_CLIENT, Headers, client_ip, parse_ip

TRUSTED = [ip_network("127.0.0.1/32"), ip_network("::1/128"), ip_network("10.0.0.0/8")]
PROXY = "127.0.0.1"


def asgi(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in pairs]


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        # Straight from an untrusted peer: headers are never believed (spoofing attempts).
        ("203.0.113.9", {"X-Forwarded-For": "198.51.100.1"}, "203.0.113.9"),
        ("203.0.113.9", {"CF-Connecting-IP": "198.51.100.1"}, "203.0.113.9"),
        ("203.0.113.9", {"X-Forwarded-For": "127.0.0.1"}, "203.0.113.9"),
        # Through the trusted proxy: its own hop is the right-most entry.
        (PROXY, {"X-Forwarded-For": "198.51.100.1"}, "198.51.100.1"),
        # The client pre-filled X-Forwarded-For; the proxy appended the real address.
        (PROXY, {"X-Forwarded-For": "1.2.3.4, 198.51.100.1"}, "198.51.100.1"),
        (PROXY, {"X-Forwarded-For": "garbage, 198.51.100.1"}, "198.51.100.1"),
        # The client claims to be a trusted proxy itself: still its real address.
        (PROXY, {"X-Forwarded-For": "10.0.0.1, 198.51.100.1"}, "198.51.100.1"),
        # Several trusted hops are skipped, right to left.
        (PROXY, {"X-Forwarded-For": "6.6.6.6, 198.51.100.1, 10.1.1.1, 10.2.2.2"}, "198.51.100.1"),
        # Only trusted hops: the left-most one reached is the nearest to the client.
        (PROXY, {"X-Forwarded-For": "10.3.3.3, 10.1.1.1"}, "10.3.3.3"),
        # An invalid entry ends the walk: nothing to its left was vouched for.
        (PROXY, {"X-Forwarded-For": "6.6.6.6, unknown, 10.1.1.1"}, "10.1.1.1"),
        (PROXY, {"X-Forwarded-For": "6.6.6.6, unknown"}, PROXY),
        (PROXY, {"X-Forwarded-For": ""}, PROXY),
        # No header: the trusted peer itself (e.g. a health check from the proxy host).
        (PROXY, {}, PROXY),
        # CF-Connecting-IP from a trusted peer wins over X-Forwarded-For, when valid.
        (PROXY, {"CF-Connecting-IP": "198.51.100.7", "X-Forwarded-For": "1.1.1.1"}, "198.51.100.7"),
        (PROXY, {"CF-Connecting-IP": "nonsense", "X-Forwarded-For": "1.1.1.1"}, "1.1.1.1"),
        # Ports and brackets in entries; header names in any case.
        (PROXY, {"x-forwarded-for": "198.51.100.1:4711"}, "198.51.100.1"),
        (PROXY, {"X-FORWARDED-FOR": "[2001:db8::1]:443"}, "2001:db8::1"),
        (PROXY, {"X-Forwarded-For": "2001:db8::1"}, "2001:db8::1"),
        # Normalisation: IPv4-mapped IPv6 is IPv4, for the peer and for entries.
        ("::ffff:203.0.113.9", {"X-Forwarded-For": "1.1.1.1"}, "203.0.113.9"),
        ("::ffff:127.0.0.1", {"X-Forwarded-For": "198.51.100.1"}, "198.51.100.1"),
        (PROXY, {"X-Forwarded-For": "::ffff:198.51.100.1"}, "198.51.100.1"),
        (PROXY, {"X-Forwarded-For": "::ffff:10.1.1.1"}, "10.1.1.1"),
        (PROXY, {"X-Forwarded-For": "2001:DB8:0:0::1"}, "2001:db8::1"),
        (PROXY, {"X-Forwarded-For": "fe80::1%eth0"}, "fe80::1"),
        ("::1", {"X-Forwarded-For": "198.51.100.1"}, "198.51.100.1"),
        # No usable peer.
        (None, {"X-Forwarded-For": "198.51.100.1"}, UNKNOWN_CLIENT),
        ("not-an-ip", {"X-Forwarded-For": "198.51.100.1"}, UNKNOWN_CLIENT),
    ],
)
def test_client_ip(peer: str | None, headers: dict[str, str], expected: str) -> None:
    assert client_ip(peer, headers, TRUSTED) == expected


def test_repeated_headers_in_the_asgi_list_are_one_list() -> None:
    # A client-sent header first, the proxy's appended one second: read in order as one list.
    headers = asgi(("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-For", "198.51.100.1"))
    assert client_ip(PROXY, headers, TRUSTED) == "198.51.100.1"
    headers = asgi(("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-For", "10.9.9.9"))
    assert client_ip(PROXY, headers, TRUSTED) == "198.51.100.1"


def test_text_pairs_are_accepted() -> None:
    # What iterating werkzeug's Headers (Quart's request.headers) yields.
    pairs: Headers = [("X-Forwarded-For", "1.2.3.4, 198.51.100.1")]
    assert client_ip(PROXY, pairs, TRUSTED) == "198.51.100.1"


def test_two_cf_connecting_ip_headers_are_both_ignored() -> None:
    headers = asgi(
        ("CF-Connecting-IP", "6.6.6.6"),
        ("CF-Connecting-IP", "198.51.100.7"),
        ("X-Forwarded-For", "198.51.100.1"),
    )
    assert client_ip(PROXY, headers, TRUSTED) == "198.51.100.1"


def test_cf_connecting_ip_can_be_ignored() -> None:
    headers = {"CF-Connecting-IP": "6.6.6.6", "X-Forwarded-For": "198.51.100.1"}
    assert client_ip(PROXY, headers, TRUSTED, cf_connecting_ip=False) == "198.51.100.1"


def test_nothing_trusted_means_the_peer_always() -> None:
    headers = {"CF-Connecting-IP": "6.6.6.6", "X-Forwarded-For": "198.51.100.1"}
    assert client_ip(PROXY, headers, []) == PROXY


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", "192.0.2.1"),
        (" 192.0.2.1 ", "192.0.2.1"),
        ("192.0.2.1:80", "192.0.2.1"),
        ("[::1]", "::1"),
        ("[::1]:80", "::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("unknown", None),
        ("", None),
        ("192.0.2.256", None),
        ("_hidden", None),
        ("192.0.2.1:80:90", None),
    ],
)
def test_parse_ip(text: str, expected: str | None) -> None:
    ip = parse_ip(text)
    assert (None if ip is None else str(ip)) == expected
