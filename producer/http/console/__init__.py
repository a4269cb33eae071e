"""The web console, served by ``chatgptes serve`` at ``/`` beside the API, for the same keys.

=======  ==============================  =============================================
method   path                            what
=======  ==============================  =============================================
GET      /                               the fleet: throughput over the last hour, every
                                         identity by state, the worst ones, the workers,
                                         the webhook deliveries
GET      /batches                        the batches, newest first (``?state=``)
GET      /batches/{id}                   one batch: timestamps, counts, a page of its
                                         results (``?start=``), a search (``?q=``)
GET      /batches/{id}/output.jsonl      its output file (``errors.jsonl``: its errors)
POST     /batches/{id}/cancel, /retry    cancel it, retry its failed prompts
GET      /sign-in, POST /sign-in         sign in with an API key; POST /sign-out
GET      /live/…                         the live part of a page, swapped in every 2 s
GET      /static/{name}                  the console's CSS and JavaScript (htmx, vendored)
=======  ==============================  =============================================

Its routes are named ``console.*``: the API's Bearer check leaves them to the console's
own (``access``), which also takes a sign-in cookie.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from producer.http.auth import Gate
from producer.http.console import pages, sign_in
from producer.http.console.access import ConsoleAccess
from producer.http.console.state import CONSOLE, ConsoleState

ROUTE_PREFIX = "console."


def mount(
    app: web.Application, keys: Sequence[str], gate: Gate, *, open_without_keys: bool
) -> None:
    """Adds the console's routes to the API's application."""
    app[CONSOLE] = ConsoleState(ConsoleAccess(keys, gate, open_without_keys=open_without_keys))
    routes = [
        ("GET", "/", pages.fleet, "fleet"),
        ("GET", "/live/fleet", pages.fleet_live, "fleet_live"),
        ("GET", "/batches", pages.batches, "batches"),
        ("GET", "/live/batches", pages.batches_live, "batches_live"),
        ("GET", "/batches/{batch_id}", pages.batch, "batch"),
        ("GET", "/live/batches/{batch_id}", pages.batch_live, "batch_live"),
        ("GET", "/batches/{batch_id}/{half:output|errors}.jsonl", pages.download, "download"),
        ("POST", "/batches/{batch_id}/cancel", pages.cancel, "cancel"),
        ("POST", "/batches/{batch_id}/retry", pages.retry, "retry"),
        ("GET", "/sign-in", sign_in.sign_in_form, "sign_in_form"),
        ("POST", "/sign-in", sign_in.sign_in, "sign_in"),
        ("POST", "/sign-out", sign_in.sign_out, "sign_out"),
        ("GET", "/static/{name}", static, "static"),
    ]
    for method, path, handler, name in routes:
        app.router.add_route(method, path, handler, name=ROUTE_PREFIX + name)


def owns(request: web.Request) -> bool:
    """Whether the console answers this request (and checks who asks itself)."""
    return (request.match_info.route.name or "").startswith(ROUTE_PREFIX)


async def static(request: web.Request) -> web.Response:
    found = request.app[CONSOLE].files.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    response = web.Response(body=found.body, content_type=found.content_type)
    response.headers["Cache-Control"] = "public, max-age=86400"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
