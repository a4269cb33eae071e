"""How every console page is answered: whole HTML from a template, with strict headers; who
may see it; and every refusal as a readable page.

Everything shown is escaped by Jinja2 (custom_ids, answers and batch IDs come from users
and a third-party site), and every answer carries a Content-Security-Policy that allows
no inline script or style and no other origin.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from contract.retrying import TRANSIENT
from producer.http.auth import TooManyWrongKeys
from producer.http.console.access import Visitor
from producer.http.console.state import CONSOLE, ConsoleState
from producer.http.context import context_of
from producer.http.liveness import has_workers, nobody_runs

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

Handler = Callable[[web.Request, Visitor], Awaitable[web.StreamResponse]]
Route = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Why nothing runs the batches (no live worker on the queue), for a whole page's banner.
NOBODY_RUNS: web.RequestKey[str | None] = web.RequestKey("chatgptes_nobody_runs", str)


class Refused(Exception):
    """An action the console will not take, said on a page of its own (never raw JSON)."""

    def __init__(self, status: int, title: str, message: str, *, back: str = "/batches") -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.back = back  # where the page's link leads


def secured(response: web.StreamResponse) -> web.StreamResponse:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def console_of(request: web.Request) -> ConsoleState:
    return request.app[CONSOLE]


def render(
    request: web.Request,
    template: str,
    *,
    visitor: Visitor | None,
    http_status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> web.Response:
    console = console_of(request)
    html = console.templates.get_template(template).render(
        visitor=visitor, csrf=console.access.csrf_token(visitor),
        nobody_runs=request.get(NOBODY_RUNS), **context,
    )  # fmt: skip
    response = web.Response(text=html, status=http_status, content_type="text/html",
                            headers=headers)  # fmt: skip
    secured(response)
    return response


def refusal(request: web.Request, visitor: Visitor | None, refused: Refused) -> web.Response:
    return render(request, "message.html", visitor=visitor, http_status=refused.status,
                  title=refused.title, message=refused.message, back=refused.back)  # fmt: skip


def braked(request: web.Request, visitor: Visitor | None, error: TooManyWrongKeys) -> web.Response:
    return render(request, "message.html", visitor=visitor, http_status=429,
                  headers=error.headers(), title="Too many wrong keys", back="/sign-in",
                  message=f"This client sent too many wrong keys: {error}.")  # fmt: skip


def signed_in(handler: Handler) -> Route:
    """Runs ``handler`` for a signed-in visitor; sends anyone else to the sign-in form.
    A ``Refused`` action, Redis away or a braked key each answer a page saying so."""

    @functools.wraps(handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        try:
            visitor = await console_of(request).access.visitor(request, context_of(request).redis)
        except TooManyWrongKeys as error:
            return braked(request, None, error)
        except TRANSIENT:
            return _redis_away(request, None)
        if visitor is None:
            if request.headers.get("HX-Request"):
                return secured(web.Response(status=401, headers={"HX-Redirect": "/sign-in"}))
            target = quote(request.path_qs, safe="/?=&")
            raise web.HTTPSeeOther(f"/sign-in?next={target}")
        try:
            if not request.path.startswith("/live/"):  # a whole page, with its banner
                request[NOBODY_RUNS] = await _nobody_runs(request)
            return await handler(request, visitor)
        except Refused as refused:
            return refusal(request, visitor, refused)
        except web.HTTPForbidden as forbidden:
            return refusal(request, visitor, Refused(403, "Refused", forbidden.text or ""))
        except TRANSIENT:
            return _redis_away(request, visitor)

    return checked


async def _nobody_runs(request: web.Request) -> str | None:
    ctx = context_of(request)
    if await has_workers(ctx.redis, ctx.settings.queue_name):
        return None
    return nobody_runs(ctx.settings.queue_name)


def _redis_away(request: web.Request, visitor: Visitor | None) -> web.Response:
    return render(request, "message.html", visitor=visitor, http_status=503,
                  title="Redis unreachable", back=request.path,
                  message="The console cannot reach its Redis right now; it will answer again "
                  "once Redis does.")  # fmt: skip


async def form_checked(request: web.Request, visitor: Visitor) -> dict[str, str]:
    """The posted form's fields, once its token and origin are checked (403 else)."""
    form = await request.post()
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    console_of(request).access.check_form(request, visitor, fields.get("csrf", ""))
    return fields
