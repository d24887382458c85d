"""The client's IP address, believing forwarded-for headers only from trusted proxies.

Rules, in order:

1. The socket peer is the answer unless it lies inside a trusted network: headers from anyone
   else are ignored, whatever they say (a client talking to us directly cannot pick its IP).
2. From a trusted peer, ``CF-Connecting-IP`` wins when it holds exactly one valid address.
3. Else ``X-Forwarded-For`` (all such headers, in order, as one list) is walked from the
   right: trusted hops are skipped, the first untrusted valid address is the client. An
   invalid entry (``unknown``, garbage) ends the walk, because nothing to its left was written
   by a proxy we trust; nor is it ever returned.
4. When the walk finds no untrusted address, the answer is the left-most trusted hop reached
   (the nearest point we can vouch for), or the peer itself.

Addresses are normalised: IPv4-mapped IPv6 (``::ffff:192.0.2.1``) becomes IPv4, an IPv6 zone
(``%eth0``) is dropped, and ``ip:port`` / ``[ipv6]:port`` forms are accepted in headers.

``CF-Connecting-IP`` is only as trustworthy as the proxy in front of us: if the service is not
reachable solely through Cloudflare, the trusted proxy must clear that header
(nginx: ``proxy_set_header CF-Connecting-IP "";``) or the caller passes ``cf_connecting_ip=False``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["UNKNOWN_CLIENT", "Headers", "Network", "TrustedNetworks", "client_ip", "parse_ip"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: A network of trusted proxies (``SMARTPIP_TRUSTED_PROXIES`` entries).
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
TrustedNetworks = Sequence[Network]
# A header mapping (names in any case), the ASGI scope's raw ``[(name, value), ...]`` list, or
# ``(name, value)`` text pairs (iterating werkzeug's ``Headers``). Prefer the ASGI list: it
# keeps repeated headers, which a plain mapping has merged or dropped.
Headers = Mapping[str, str] | Iterable[tuple[bytes, bytes]] | Iterable[tuple[str, str]]

# The answer when the peer is not an IP address (a Unix socket, or no peer at all).
UNKNOWN_CLIENT = "unknown"
_CF = "cf-connecting-ip"
_XFF = "x-forwarded-for"


def parse_ip(text: str) -> IPAddress | None:
    """``text`` as a normalised address, or None when it is not one.

    Accepts ``ip``, ``ip:port`` (IPv4) and ``[ipv6]`` / ``[ipv6]:port``.
    """
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.scope_id is not None:
            return ipaddress.IPv6Address(text.partition("%")[0])
    return ip


def _is_trusted(ip: IPAddress, trusted: TrustedNetworks) -> bool:
    # `in` across IP versions is simply False.
    return any(ip in network for network in trusted)


def _values(headers: Headers, name: str) -> list[str]:
    """Every value of header ``name`` (lower case), in the order received."""
    pairs: Iterable[tuple[bytes | str, bytes | str]]
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [_text(v) for k, v in pairs if _text(k).lower() == name]


def _text(value: bytes | str) -> str:
    return value if isinstance(value, str) else bytes(value).decode("latin-1")


def client_ip(
    peer: str | None,
    headers: Headers,
    trusted: TrustedNetworks,
    *,
    cf_connecting_ip: bool = True,
) -> str:
    """The client's address for rate limiting and logs (see the module docstring).

    Args:
        peer: The socket peer's address (``scope["client"][0]``), None if unknown.
        headers: The request headers, as a mapping or the ASGI ``scope["headers"]`` list.
        trusted: Networks of proxies whose forwarding headers are believed.
        cf_connecting_ip: Whether ``CF-Connecting-IP`` from a trusted peer is believed.

    Returns:
        The normalised address as text, or ``UNKNOWN_CLIENT`` when the peer is not an IP.
    """
    peer_ip = parse_ip(peer) if peer else None
    if peer_ip is None:
        return UNKNOWN_CLIENT
    if not _is_trusted(peer_ip, trusted):
        return str(peer_ip)
    if cf_connecting_ip:
        cf = _values(headers, _CF)
        # Several values: someone added one besides the edge; believe none of them.
        if len(cf) == 1 and (ip := parse_ip(cf[0])) is not None:
            return str(ip)
    hops = [h for value in _values(headers, _XFF) for h in value.split(",")]
    nearest = peer_ip
    for hop in reversed(hops):
        ip = parse_ip(hop)
        if ip is None:
            break
        if not _is_trusted(ip, trusted):
            return str(ip)
        nearest = ip
    return str(nearest)
