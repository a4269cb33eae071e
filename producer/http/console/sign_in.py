"""Signing in to the console with a key, and out; and where a sign-in leads after.

``next`` (where to go once signed in) is taken only when it is a path of this console:
anything else, a scheme, a host, a control character or a backslash (which browsers
and URL parsers read differently), leads to ``/``.
"""

from __future__ import annotations

import re

from aiohttp import web

from contract.retrying import TRANSIENT
from producer.http.auth import TooManyWrongKeys
from producer.http.console.access import Visitor
from producer.http.console.rendering import (
    braked,
    console_of,
    form_checked,
    render,
    signed_in,
)
from producer.http.context import context_of

# The console's own pages, with a query: /, /batches, /batches/<id>, /batches/<id>/prompts/<n>.
_SEGMENT = r"[A-Za-z0-9._~%!$'()*+,;=:@-]+"
CONSOLE_PATH = re.compile(
    rf"/(?:batches(?:/{_SEGMENT}(?:/prompts/[0-9]+)?)?)?(?:\?[A-Za-z0-9._~%!$'()*+,;=:@/?&-]*)?"
)


def console_path(raw: object) -> str:
    """Where to go after signing in: ``raw`` if it is a page of this console, else ``/``."""
    if isinstance(raw, str) and CONSOLE_PATH.fullmatch(raw):
        return raw
    return "/"


async def sign_in_form(request: web.Request) -> web.StreamResponse:
    target = console_path(request.query.get("next"))
    try:
        visitor = await console_of(request).access.visitor(request, context_of(request).redis)
    except (TooManyWrongKeys, *TRANSIENT):
        visitor = None
    if visitor is not None:
        raise web.HTTPSeeOther(target)
    return render(request, "sign_in.html", visitor=None, title="Sign in", next=target,
                  refused=False)  # fmt: skip


async def sign_in(request: web.Request) -> web.StreamResponse:
    access = console_of(request).access
    form = await request.post()
    token, key = form.get("csrf", ""), form.get("key", "")
    try:
        access.check_form(request, None, token if isinstance(token, str) else "")
    except web.HTTPForbidden as refused:
        return render(request, "message.html", visitor=None, http_status=403, title="Refused",
                      message=refused.text, back="/sign-in")  # fmt: skip
    target = console_path(form.get("next"))
    response = web.HTTPSeeOther(target)
    try:
        if isinstance(key, str) and await access.sign_in(
            request, context_of(request).redis, response, key.strip()
        ):
            raise response
    except TooManyWrongKeys as error:
        return braked(request, None, error)
    return render(request, "sign_in.html", visitor=None, http_status=401, title="Sign in",
                  next=target, refused=True)  # fmt: skip


@signed_in
async def sign_out(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    await form_checked(request, visitor)
    response = web.HTTPSeeOther("/sign-in")
    await console_of(request).access.sign_out(visitor, context_of(request).redis, response)
    raise response
