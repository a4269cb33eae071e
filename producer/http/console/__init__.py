"""The web console, served by ``chatgptes serve`` at ``/`` beside the API, for the same keys.

=========  ======================================  ======================================
method     path                                    what
=========  ======================================  ======================================
GET        /                                       the fleet: a verdict first, the
                                                   backlog, throughput over the last hour,
                                                   every identity by state, the worst
                                                   ones, the workers, the webhooks
GET        /batches                                the batches, newest first (``?filter=``,
                                                   ``?after=`` for the next page)
GET        /batches/{id}                           one batch: progress, pace, counts, errors,
                                                   times, a page of its prompts
                                                   (``?status=``, ``?error=``, ``?q=``,
                                                   ``?start=``)
GET        /batches/{id}/prompts/{n}               one prompt: its messages, attempts, answer
GET        /batches/{id}/output.jsonl              its output file (``errors.jsonl``: its errors)
GET, POST  /batches/{id}/cancel, /retry            ask, then cancel it or retry its failures
GET, POST  /batches/{id}/prompts/{n}/cancel, ...   the same for one prompt (``/retry``)
GET, POST  /sign-in; POST /sign-out                sign in with an API key, and out
GET        /live/…                                 the live part of a page, swapped in every 2 s
GET        /static/{name}                          the console's CSS and JavaScript (htmx,
                                                   vendored)
=========  ======================================  ======================================

Its routes are named ``console.*``: the API's Bearer check leaves them to the console's
own (``access``), which also takes a sign-in cookie.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from producer.http.auth import Gate
from producer.http.console import actions, batch_pages, fleet_pages, prompt_pages, sign_in
from producer.http.console.access import ConsoleAccess
from producer.http.console.state import CONSOLE, ConsoleState

ROUTE_PREFIX = "console."
BATCH = "/batches/{batch_id}"
PROMPT = BATCH + "/prompts/{index:[0-9]{1,12}}"


def mount(
    app: web.Application, keys: Sequence[str], gate: Gate, *, open_without_keys: bool
) -> None:
    """Adds the console's routes to the API's application."""
    app[CONSOLE] = ConsoleState(ConsoleAccess(keys, gate, open_without_keys=open_without_keys))
    routes = [
        ("GET", "/", fleet_pages.fleet, "fleet"),
        ("GET", "/live/fleet", fleet_pages.fleet_live, "fleet_live"),
        ("GET", "/batches", batch_pages.batches, "batches"),
        ("GET", "/live/batches", batch_pages.batches_live, "batches_live"),
        ("GET", BATCH, batch_pages.batch, "batch"),
        ("GET", "/live" + BATCH, batch_pages.batch_live, "batch_live"),
        ("GET", BATCH + "/{half:output|errors}.jsonl", batch_pages.download, "download"),
        ("GET,POST", BATCH + "/cancel", actions.cancel_batch, "cancel"),
        ("GET,POST", BATCH + "/retry", actions.retry_batch, "retry"),
        ("GET", PROMPT, prompt_pages.prompt, "prompt"),
        ("GET,POST", PROMPT + "/cancel", actions.cancel_prompt, "cancel_prompt"),
        ("GET,POST", PROMPT + "/retry", actions.retry_prompt, "retry_prompt"),
        ("GET", "/sign-in", sign_in.sign_in_form, "sign_in_form"),
        ("POST", "/sign-in", sign_in.sign_in, "sign_in"),
        ("POST", "/sign-out", sign_in.sign_out, "sign_out"),
        ("GET", "/static/{name}", static, "static"),
    ]
    for methods, path, handler, name in routes:
        for method in methods.split(","):
            suffix = "" if method == methods.split(",")[0] else f"_{method.lower()}"
            app.router.add_route(method, path, handler, name=ROUTE_PREFIX + name + suffix)


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
