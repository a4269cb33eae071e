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
- the gateway (one port, like a rotating residential proxy gateway): any
  user name with the gateway password; the user name picks the identity,
  ``gw:USER``, so every user gets its own limits, bans, quota, nonces and
  stats. A missing header or a wrong password: 407 as above, counted for
  the identity ``gateway``. Then like ``proxyN``.
- ``plain502_N``: HTTP 502 "Bad Gateway" to everything, *without* a
  ``Proxy-Status`` header, the way many real proxies answer.

Every other reply a proxy makes itself (400, 407, 501, 502) carries a
``Proxy-Status: sim-proxy[; error=...]`` header (RFC 9209), so a client can
tell a proxy's 502 from a 502 the site sent through it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware
from yarl import URL

from simulator.app import set_request_identity
from simulator.state import SimState, SiteAddress

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}

BAD_GATEWAY_BODY = (
    "<html><head><title>502 Bad Gateway</title></head><body>"
    "<h1>502 Bad Gateway</h1><p>The proxy could not reach the upstream server.</p></body></html>"
)
PLAIN_502_BODY = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)

GATEWAY_IDENTITY = "gateway"
"""Whom the gateway's 407s are counted for: no user name is trusted before the password."""
GATEWAY_PREFIX = "gw:"


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


def _basic_credentials(header: str | None) -> bytes | None:
    """The decoded ``user:password`` of a ``Basic`` authorization header, if it is one."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def credentials_match(header: str | None, expected: str) -> bool:
    """Check a ``Proxy-Authorization: Basic ...`` header against ``user:password``."""
    given = _basic_credentials(header)
    return given is not None and hmac.compare_digest(given, expected.encode())


def gateway_user(header: str | None, password: str) -> str | None:
    """The user name of a ``Basic`` header carrying ``password``; None if it does not."""
    given = _basic_credentials(header)
    if given is None:
        return None
    user, colon, given_password = given.partition(b":")
    if not colon or not user or not hmac.compare_digest(given_password, password.encode()):
        return None
    try:
        return user.decode()
    except UnicodeDecodeError:
        return None


def gateway_proxy_urls(
    gateway_url: str, password: str, count: int, *, prefix: str = "user-session-"
) -> list[str]:
    """Gateway proxy URLs for users ``{prefix}1`` … ``{prefix}{count}``: one identity each."""
    parts = urlsplit(gateway_url)
    hostport = parts.netloc.rsplit("@", 1)[-1]
    secret = quote(password, safe="")
    return [
        f"{parts.scheme}://{quote(f'{prefix}{index}', safe='')}:{secret}@{hostport}"
        for index in range(1, count + 1)
    ]


def _proxy_error(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    """A reply the proxy itself makes; ``Proxy-Status`` (RFC 9209) tells it from the site's."""
    headers = {"Proxy-Status": "sim-proxy", **(headers or {})}
    response = web.Response(text=text, status=status, headers=headers)
    response.force_close()
    return response


def _auth_required(state: SimState, identity: str) -> web.Response:
    state.stats.proxy_error(identity, "auth_required")
    return _proxy_error(
        407, "Proxy Authentication Required", {"Proxy-Authenticate": 'Basic realm="sim"'}
    )


def _forwarding_refusal(
    state: SimState, request: web.Request, identity: str
) -> web.Response | None:
    """The proxy's own reply when it will not pass the request on to the site; else None."""
    stats = state.stats
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
    return None


def forward_proxy(state: SimState, identity: str, credentials: str | None = None) -> Middleware:
    """Middleware that makes a port act as a forward proxy (with Basic auth if credentials)."""

    @web.middleware
    async def proxy(request: web.Request, handler: Any) -> web.StreamResponse:
        if credentials is not None and not credentials_match(
            request.headers.get("Proxy-Authorization"), credentials
        ):
            return _auth_required(state, identity)
        refusal = _forwarding_refusal(state, request, identity)
        if refusal is not None:
            return refusal
        response: web.StreamResponse = await handler(request)
        return response

    return proxy


def gateway(state: SimState, password: str) -> Middleware:
    """Middleware for the gateway port: the proxy user name picks the request's identity."""

    @web.middleware
    async def route(request: web.Request, handler: Any) -> web.StreamResponse:
        user = gateway_user(request.headers.get("Proxy-Authorization"), password)
        if user is None:
            return _auth_required(state, GATEWAY_IDENTITY)
        identity = GATEWAY_PREFIX + user
        refusal = _forwarding_refusal(state, request, identity)
        if refusal is not None:
            return refusal
        set_request_identity(request, identity)
        response: web.StreamResponse = await handler(request)
        return response

    return route


def _refuse_everything(
    state: SimState, identity: str, kind: str, body: str, headers: dict[str, str]
) -> Middleware:
    @web.middleware
    async def refuse(request: web.Request, handler: Any) -> web.StreamResponse:
        state.stats.proxy_error(identity, kind)
        response = web.Response(
            text=body, status=502, content_type="text/html", charset="UTF-8", headers=headers
        )
        response.force_close()
        return response

    return refuse


def bad_gateway(state: SimState, identity: str) -> Middleware:
    """Middleware that answers 502 to every request, whatever the route."""
    headers = {"Proxy-Status": "sim-proxy; error=destination_unavailable"}
    return _refuse_everything(state, identity, "bad_gateway", BAD_GATEWAY_BODY, headers)


def plain_bad_gateway(state: SimState, identity: str) -> Middleware:
    """Middleware that answers a bare 502 to everything: no Proxy-Status, no X-Squid-Error."""
    return _refuse_everything(state, identity, "plain_502", PLAIN_502_BODY, {})
