"""Forward-proxy ports in front of the site, each with its own exit identity.

A client talking to the http:// site through an http:// proxy sends
absolute-form requests (``GET http://HOST:SITEPORT/ HTTP/1.1``) to the proxy
port. aiohttp routes those by their path, so a proxy port is the site's own
application plus one middleware that behaves like the proxy; the request is
served in-process under the port's identity instead of being forwarded.

- ``proxyN``: serves absolute-form requests for the site; anything else:
  origin-form → 400, another host → 502, ``CONNECT`` → 501 (the site is plain
  http, so no tunnel is needed).
- ``badgwN``: HTTP 502 to everything.
- ``authproxyN``: HTTP 407 with ``Proxy-Authenticate: Basic realm="sim"``
  unless ``Proxy-Authorization: Basic base64(user:password)`` matches; then
  like ``proxyN``.

Every reply a proxy makes itself (400, 407, 501, 502) carries a
``Proxy-Status: sim-proxy[; error=...]`` header (RFC 9209), so a client can
tell a proxy's 502 from a 502 the site sent through it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from yarl import URL

from simulator.state import SimState, SiteAddress

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}

BAD_GATEWAY_BODY = (
    "<html><head><title>502 Bad Gateway</title></head><body>"
    "<h1>502 Bad Gateway</h1><p>The proxy could not reach the upstream server.</p></body></html>"
)


def targets_site(raw_target: str, site: SiteAddress) -> bool:
    """True if an absolute-form request target names the simulated site."""
    try:
        url = URL(raw_target)
    except ValueError:
        return False
    if url.scheme != "http" or url.port != site.port or url.host is None:
        return False
    host = url.host.strip("[]")
    return host == site.host or (host in _LOOPBACK and site.host in _LOOPBACK)


def credentials_match(header: str | None, expected: str) -> bool:
    """Check a ``Proxy-Authorization: Basic ...`` header against ``user:password``."""
    if not header:
        return False
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(given, expected.encode())


def _proxy_error(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    """A reply the proxy itself makes; ``Proxy-Status`` (RFC 9209) tells it from the site's."""
    headers = {"Proxy-Status": "sim-proxy", **(headers or {})}
    response = web.Response(text=text, status=status, headers=headers)
    response.force_close()
    return response


def forward_proxy(state: SimState, identity: str, credentials: str | None = None) -> Middleware:
    """Middleware that makes a port act as a forward proxy (with Basic auth if credentials)."""

    @web.middleware
    async def proxy(request: web.Request, handler: Any) -> web.StreamResponse:
        stats = state.stats
        if credentials is not None and not credentials_match(
            request.headers.get("Proxy-Authorization"), credentials
        ):
            stats.proxy_error(identity, "auth_required")
            return _proxy_error(
                407,
                "Proxy Authentication Required",
                {"Proxy-Authenticate": 'Basic realm="sim"'},
            )
        if request.method == "CONNECT":
            stats.proxy_error(identity, "connect_refused")
            return _proxy_error(501, "CONNECT is not supported by this proxy")
        if not request.raw_path.lower().startswith("http://"):
            stats.proxy_error(identity, "not_absolute")
            return _proxy_error(400, "A proxy request needs an absolute-form target")
        if not targets_site(request.raw_path, state.site):
            stats.proxy_error(identity, "wrong_target")
            return _proxy_error(
                502, BAD_GATEWAY_BODY, {"Proxy-Status": "sim-proxy; error=destination_not_found"}
            )
        response: web.StreamResponse = await handler(request)
        return response

    return proxy


def bad_gateway(state: SimState, identity: str) -> Middleware:
    """Middleware that answers 502 to every request, whatever the route."""

    @web.middleware
    async def refuse(request: web.Request, handler: Any) -> web.StreamResponse:
        state.stats.proxy_error(identity, "bad_gateway")
        response = web.Response(
            text=BAD_GATEWAY_BODY,
            status=502,
            content_type="text/html",
            charset="UTF-8",
            headers={"Proxy-Status": "sim-proxy; error=destination_unavailable"},
        )
        response.force_close()
        return response

    return refuse
