"""Who may see the console: a session signed in with a key, or a Bearer key; and the
cross-site checks.

The console takes the API's keys (``CHATGPTES_API_KEYS``) and, as the API, shows a
visitor their key's project only (``team-a:sk-…``; a bare key is project ``default``).
Signing in with a key starts a session kept in Redis for ``SESSION_SECONDS`` (so every
replica of ``serve`` knows it, and signing out ends it everywhere); the cookie
(``HttpOnly``, ``SameSite=Strict``, ``Secure`` when the request came over TLS, directly
or through a trusted proxy) holds only the session's random ID. Redis holds a digest of
that ID (a copy of Redis signs nobody in) and a tag of the key: a key removed from
the settings ends its sessions. Wrong keys are braked as the API's are
(``producer.http.throttle``). Scripts may send ``Authorization: Bearer <key>`` instead.
With no key configured (a loopback server), the console is open, as the API, on
project ``default``.

A form that changes something (sign-out, cancel, retry) carries a token tied to the
session and is refused from another origin (``Origin``, ``Sec-Fetch-Site``): a page
elsewhere cannot make a signed-in browser cancel a batch. Bearer requests need
neither (a browser never adds that header by itself).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web
from redis.asyncio import Redis

from contract import keys
from contract.keys import DEFAULT_PROJECT
from producer.http.auth import Gate, bearer_token, project_and_key
from producer.http.peers import came_over_tls

COOKIE = "chatgptes_console"
SESSION_SECONDS = 12 * 3600
CSRF_FIELD = "csrf"
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)


def key_tag(key: str) -> str:
    """What a session keeps of the key it was opened with: enough to tell whether that key
    is still configured, in Redis only (never in the cookie)."""
    return hmac.new(b"chatgptes console session", key.encode(), hashlib.sha256).hexdigest()


def _session_key(session: str) -> str:
    return keys.console_session(hashlib.sha256(session.encode()).hexdigest())


@dataclass(frozen=True)
class Visitor:
    """Who is asking: signed in (by cookie or Bearer key), or the open console's guest."""

    project: str  # whose batches it sees
    session: str  # the cookie's session ID ("" by Bearer key or on an open console)

    @property
    def by_cookie(self) -> bool:
        return bool(self.session)


class ConsoleAccess:
    def __init__(self, entries: Sequence[str], gate: Gate, *, open_without_keys: bool) -> None:
        """``entries``: ``CHATGPTES_API_KEYS``'s, ``project:key`` or a bare key."""
        self.gate = gate
        self.open = not entries and open_without_keys
        pairs = [project_and_key(entry) for entry in entries]
        self._projects = {key_tag(key): project for project, key in pairs}
        # Derived from every key: nothing to configure, and the same in every replica.
        material = "\n".join(sorted(entries)).encode() if entries else secrets.token_bytes(32)
        self._secret = hmac.new(b"chatgptes console", material, hashlib.sha256).digest()

    async def visitor(self, request: web.Request, redis: Redis) -> Visitor | None:
        """The visitor if signed in (or the console is open), else None.

        ``TooManyWrongKeys`` for a Bearer key from a client that must wait."""
        if self.open:
            return Visitor(DEFAULT_PROJECT, "")
        token = bearer_token(request)
        if token is not None:
            project = self.gate.authenticate(request, token)
            return Visitor(project, "") if project is not None else None
        session = request.cookies.get(COOKIE, "")
        if not SESSION_ID.match(session):
            return None
        tag = await redis.hget(_session_key(session), "key")
        project = self._projects.get(keys.decoded(tag)) if tag is not None else None
        return Visitor(project, session) if project is not None else None  # key removed?

    async def sign_in(
        self, request: web.Request, redis: Redis, response: web.StreamResponse, key: str
    ) -> bool:
        """Opens a session and sets its cookie if ``key`` is one of the keys; False if not.

        ``TooManyWrongKeys`` while this client must wait (the key is not looked at)."""
        if self.gate.authenticate(request, key) is None:
            return False
        session = secrets.token_urlsafe(32)
        stored = _session_key(session)
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hset(stored, mapping={"key": key_tag(key), "at_ms": int(time.time() * 1000)})
            pipe.expire(stored, SESSION_SECONDS)
            await pipe.execute()
        response.set_cookie(
            COOKIE, session, max_age=SESSION_SECONDS, path="/", httponly=True,
            samesite="Strict", secure=came_over_tls(request, self.gate.trusted_proxies),
        )  # fmt: skip
        return True

    async def sign_out(self, visitor: Visitor, redis: Redis, response: web.StreamResponse) -> None:
        """Ends the session in Redis (a copied cookie stops working too) and drops the cookie."""
        if visitor.session:
            await redis.delete(_session_key(visitor.session))
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
