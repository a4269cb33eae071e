"""Bearer-token auth: ``Authorization: Bearer <key>`` against ``CHATGPTES_API_KEYS``.

Each key belongs to a project, as OpenAI's keys do: an entry ``team-a:sk-…`` is a key
of project ``team-a``, a bare key one of project ``default``. A request sees only its
project's files and batches (``request_project``); any other ID is not found. With no
key configured, the API is open only on a loopback address (127.0.0.1, ::1,
localhost), where just this machine can reach it, as project ``default``; bound
anywhere else it refuses every request and says which setting to set. Keys are
compared in constant time and never logged or echoed back. A key is at least
``MIN_KEY_CHARS`` long (checked at start), and wrong keys are braked per client address
and per key prefix (``producer.http.throttle``): past a few, a client waits (429,
``Retry-After``) before its next try is even looked at.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import re
from collections.abc import Sequence

from aiohttp import web

from contract.keys import DEFAULT_PROJECT
from producer.http.errors import ApiError
from producer.http.peers import Network, client_address
from producer.http.throttle import KeyThrottle

MIN_KEY_CHARS = 20
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})
PROJECT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PROJECT: web.RequestKey[str] = web.RequestKey("chatgptes_project", str)


def project_and_key(entry: str) -> tuple[str, str]:
    """(project, key) of one ``CHATGPTES_API_KEYS`` entry: ``project:key`` or a bare key.

    ``ValueError`` for a project name that is not 1-64 letters, digits, ``-`` or ``_``
    (the message never quotes the key)."""
    project, colon, key = entry.partition(":")
    if not colon:
        return DEFAULT_PROJECT, entry
    if not PROJECT_NAME.match(project) or not key:
        raise ValueError("an entry 'project:key' needs a project name of 1-64 letters, digits, "
                         "'-' or '_' and a key after the colon")  # fmt: skip
    return project, key


def request_project(request: web.Request) -> str:
    """The project of the key the request came with (``default`` on an open server)."""
    return request.get(PROJECT, DEFAULT_PROJECT)


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` exposes the server to this machine only."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name, or '' / '0.0.0.0'-like: reachable from elsewhere


class TooManyWrongKeys(Exception):
    """The client got keys wrong too often: it waits ``retry_after`` seconds first."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many wrong keys: try again in {math.ceil(retry_after)} s")
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


class Gate:
    """Decides whether a request may go on (a known key, or an open loopback server), and
    for which project; brakes whoever keeps sending wrong keys."""

    def __init__(
        self,
        keys: Sequence[str],
        *,
        open_without_keys: bool,
        trusted_proxies: Sequence[Network] = (),
        throttle: KeyThrottle | None = None,
    ) -> None:
        pairs = [project_and_key(entry) for entry in keys]
        self._keys = tuple((key.encode(), project) for project, key in pairs)
        self._open = not self._keys and open_without_keys
        self.trusted_proxies = tuple(trusted_proxies)
        self.throttle = throttle or KeyThrottle()

    def check(self, request: web.Request) -> None:
        """Sets the request's project, or raises 401."""
        if self._open:
            request[PROJECT] = DEFAULT_PROJECT
            return
        if not self._keys:
            raise _refused(
                "This server has no API key configured and listens beyond this machine, so "
                "it refuses every request: set CHATGPTES_API_KEYS (comma-separated keys) on "
                "the server, or bind it to 127.0.0.1."
            )
        given = bearer_token(request)
        if given is None:
            raise _refused(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' "
                "(the OpenAI SDK does that with api_key=...)."
            )
        try:
            project = self.authenticate(request, given)
        except TooManyWrongKeys as braked:
            raise ApiError(429, f"Too many wrong API keys from this client: {braked}.",
                           type="rate_limit_error", code="rate_limit_exceeded",
                           headers=braked.headers()) from None  # fmt: skip
        if project is None:
            raise _refused("Incorrect API key provided.")
        request[PROJECT] = project

    def authenticate(self, request: web.Request, given: str) -> str | None:
        """The project of key ``given``, or None for a wrong key (counted against the
        client). ``TooManyWrongKeys`` while the client must wait: the key is not looked at."""
        address = client_address(request, self.trusted_proxies)
        wait = self.throttle.wait(address, given)
        if wait > 0:
            raise TooManyWrongKeys(wait)
        project = self.project_of(given)
        if project is None:
            self.throttle.failed(address, given)
        return project

    def project_of(self, given: str) -> str | None:
        """The project of key ``given``, or None if it is no key of ours."""
        candidate = given.encode()
        found = None
        for key, project in self._keys:  # every key compared: the time says nothing of which
            if hmac.compare_digest(candidate, key):
                found = project
        return found


def bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _refused(message: str) -> ApiError:
    return ApiError(401, message, code="invalid_api_key")
