"""Who may see the console: a signed sign-in cookie or a Bearer key, and the cross-site checks.

The console takes the API's keys (``CHATGPTES_API_KEYS``) and, as the API, shows a
visitor their key's project only (``team-a:sk-…``; a bare key is project ``default``).
Signing in with a key sets a cookie (``HttpOnly``, ``SameSite=Strict``, ``Secure`` over
HTTPS) that holds no key, only a fingerprint of it, signed and dated by
``itsdangerous`` under a secret derived from the configured keys: a key removed from
the settings ends its sessions, and so does a restart with other keys. Scripts may
send ``Authorization: Bearer <key>`` instead. With no key configured (a loopback
server), the console is open, as the API, on project ``default``.

A form that changes something (sign-out, cancel, retry) carries a token tied to the
session and is refused from another origin (``Origin``, ``Sec-Fetch-Site``): a page
elsewhere cannot make a signed-in browser cancel a batch. Bearer requests need
neither (a browser never adds that header by itself).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web
from itsdangerous import BadSignature, URLSafeTimedSerializer

from contract.keys import DEFAULT_PROJECT
from producer.http.auth import Gate, bearer_token, project_and_key

COOKIE = "chatgptes_console"
SESSION_SECONDS = 12 * 3600
CSRF_FIELD = "csrf"


def fingerprint(key: str) -> str:
    """A key's short public name: what a session cookie holds instead of the key."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Visitor:
    """Who is asking: signed in (by cookie or Bearer key), or the open console's guest."""

    project: str  # whose batches it sees
    session: str  # the cookie's value ("" by Bearer key or on an open console)

    @property
    def by_cookie(self) -> bool:
        return bool(self.session)


class ConsoleAccess:
    def __init__(self, entries: Sequence[str], gate: Gate, *, open_without_keys: bool) -> None:
        """``entries``: ``CHATGPTES_API_KEYS``'s, ``project:key`` or a bare key."""
        self.gate = gate
        self.open = not entries and open_without_keys
        pairs = [project_and_key(entry) for entry in entries]
        self._projects = {fingerprint(key): project for project, key in pairs}
        # Derived from every key: nothing to configure, and the same in every replica.
        material = "\n".join(sorted(entries)).encode() if entries else secrets.token_bytes(32)
        self._secret = hmac.new(b"chatgptes console", material, hashlib.sha256).digest()
        self._cookies = URLSafeTimedSerializer(self._secret, salt="console-session")

    def visitor(self, request: web.Request) -> Visitor | None:
        """The visitor if signed in (or the console is open), else None."""
        if self.open:
            return Visitor(DEFAULT_PROJECT, "")
        token = bearer_token(request)
        if token is not None:
            project = self.gate.project_of(token)
            return Visitor(project, "") if project is not None else None
        session = request.cookies.get(COOKIE, "")
        if not session:
            return None
        try:
            found = self._cookies.loads(session, max_age=SESSION_SECONDS)
        except BadSignature:  # forged, altered or expired
            return None
        if not isinstance(found, str) or found not in self._projects:
            return None  # its key is no longer configured
        return Visitor(self._projects[found], session)

    def sign_in(self, response: web.StreamResponse, key: str, *, secure: bool) -> bool:
        """Sets the session cookie if ``key`` is one of the keys; False if not."""
        if self.gate.project_of(key) is None:
            return False
        response.set_cookie(
            COOKIE, self._cookies.dumps(fingerprint(key)), max_age=SESSION_SECONDS,
            path="/", httponly=True, samesite="Strict", secure=secure,
        )  # fmt: skip
        return True

    def sign_out(self, response: web.StreamResponse) -> None:
        response.del_cookie(COOKIE, path="/")

    def csrf_token(self, visitor: Visitor | None) -> str:
        """The token forms carry: tied to the session (or to this server, signed out)."""
        bound = visitor.session if visitor is not None else "signed-out"
        return hmac.new(self._secret, f"csrf|{bound}".encode(), hashlib.sha256).hexdigest()[:32]

    def check_form(self, request: web.Request, visitor: Visitor | None, token: str) -> None:
        """Refuses (403) a form posted from another site, or without this session's token."""
        if not same_origin(request):
            raise web.HTTPForbidden(text="refused: this form was sent from another site")
        if visitor is not None and not visitor.by_cookie and bearer_token(request) is not None:
            return  # a script with its key: no browser adds that header by itself
        if not hmac.compare_digest(token, self.csrf_token(visitor)):
            raise web.HTTPForbidden(text="refused: the form has expired; reload the page")


def same_origin(request: web.Request) -> bool:
    """Whether a browser says the request comes from this site (absent headers: not a
    browser, or an old one; the form token still has to match)."""
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.host
