"""Who is on the other end of a request: its address, and whether it came over TLS.

``serve`` often runs behind a reverse proxy that ends TLS and connects over plain HTTP.
Such a proxy says what it saw in ``X-Forwarded-For`` / ``X-Forwarded-Proto`` or in the
standard ``Forwarded`` header; those headers are believed only from the proxies named in
``CHATGPTES_TRUSTED_PROXIES``, since anyone else can write them. The address is what
wrong keys are counted against (``producer.http.throttle``); TLS decides whether the
console's cookie is ``Secure``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
UNKNOWN = "unknown"


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as a forwarding header writes it (``1.2.3.4``, ``"[::1]:443"``), or None."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]  # an IPv4 address with its port
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: str | None, trusted: Sequence[Network]) -> bool:
    found = _address(address or "")
    return found is not None and any(found in network for network in trusted)


def _forwarded_pairs(request: web.Request, name: str) -> list[str]:
    """The ``name=`` values of every ``Forwarded`` element, in order (RFC 7239)."""
    found = []
    for header in request.headers.getall("Forwarded", []):
        for element in header.split(","):
            for pair in element.split(";"):
                key, _, value = pair.strip().partition("=")
                if key.strip().lower() == name:
                    found.append(value.strip().strip('"'))
    return found


def client_address(request: web.Request, trusted: Sequence[Network]) -> str:
    """The client's address: the connection's, or, through trusted proxies, the nearest
    address in the forwarding chain that is not one of them."""
    peer = request.remote or UNKNOWN
    if not _trusted(peer, trusted):
        return peer
    chain = _forwarded_pairs(request, "for") or [
        hop for header in request.headers.getall("X-Forwarded-For", []) for hop in header.split(",")
    ]
    for hop in reversed(chain):
        if not _trusted(hop, trusted):
            found = _address(hop)
            return str(found) if found is not None else UNKNOWN
    return peer


def came_over_tls(request: web.Request, trusted: Sequence[Network]) -> bool:
    """Whether the client's connection was TLS: this one, or the one a trusted proxy ended."""
    if request.transport is not None and request.transport.get_extra_info("sslcontext"):
        return True
    if not _trusted(request.remote, trusted):
        return False
    said = _forwarded_pairs(request, "proto") or [
        request.headers.get("X-Forwarded-Proto", "").split(",")[0]
    ]
    return said[0].strip().lower() == "https"
