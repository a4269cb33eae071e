"""The aiohttp application: the routes, the middleware and the Redis client they share.

=======  ====================================  ==========================================
method   path                                  what
=======  ====================================  ==========================================
POST     /v1/files                             upload a batch input file (stored as sent)
GET      /v1/files                             list uploaded files (``limit``, ``after``,
                                               ``order``, ``purpose``)
GET      /v1/files/{id}                        one file, or a file written from a batch
GET      /v1/files/{id}/content                its bytes
DELETE   /v1/files/{id}                        delete a file
POST     /v1/batches                           run an uploaded file as a batch
GET      /v1/batches                           list batches, newest first (``limit``,
                                               ``after``)
GET      /v1/batches/{id}                      one batch
POST     /v1/batches/{id}/cancel               cancel it
POST     /v1/chat/completions                  one prompt, answered (``stream`` too)
POST     /v1/responses                         one prompt, answered as the Responses API
                                               does (``stream`` too)
GET      /v1/models, /v1/models/{id}           the model names answered for
GET      /healthz                              200 while Redis answers (``ok``, or
                                               ``degraded`` and why), else 503; needs no
                                               key (for load balancers, compose)
GET      /, /batches, ...                      the web console (``producer.http.console``)
=======  ====================================  ==========================================
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from contract.retrying import redis_client
from producer.api import BatchQueue
from producer.http import batch_routes, chat, console, file_routes, liveness, models, responses
from producer.http.auth import Gate
from producer.http.context import CONTEXT, ApiContext, context_of
from producer.http.files import FileStore
from producer.http.middleware import (
    HEALTH_PATH,
    RedisOutage,
    auth_middleware,
    error_middleware,
    stamp_headers,
)
from producer.http.settings import ApiSettings


def make_app(
    settings: ApiSettings, *, open_without_keys: bool, redis: Redis | None = None
) -> web.Application:
    """The API. ``open_without_keys``: answer without a key when none is configured (only
    for a server bound to a loopback address). ``redis``: a client to use (and not close)."""
    outage = RedisOutage()
    app = web.Application(middlewares=[error_middleware(outage), auth_middleware])
    client = redis if redis is not None else redis_client(settings.redis_url)
    app[CONTEXT] = ApiContext(
        settings=settings,
        redis=client,
        queue=BatchQueue(client, settings),
        files=FileStore(client),
        gate=Gate(
            settings.api_key_list(),
            open_without_keys=open_without_keys,
            trusted_proxies=settings.trusted_networks(),
        ),
    )
    app.on_response_prepare.append(stamp_headers)
    app.cleanup_ctx.append(_redis_lifetime(client, settings, outage, owned=redis is None))
    add_routes(app)
    console.mount(app, settings.api_key_list(), app[CONTEXT].gate,
                  open_without_keys=open_without_keys)  # fmt: skip
    return app


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/files", file_routes.upload_file)
    app.router.add_get("/v1/files", file_routes.list_files)
    app.router.add_get("/v1/files/{file_id}", file_routes.retrieve_file)
    app.router.add_delete("/v1/files/{file_id}", file_routes.delete_file)
    app.router.add_get("/v1/files/{file_id}/content", file_routes.file_content)
    app.router.add_post("/v1/batches", batch_routes.create_batch)
    app.router.add_get("/v1/batches", batch_routes.list_batches)
    app.router.add_get("/v1/batches/{batch_id}", batch_routes.retrieve_batch)
    app.router.add_post("/v1/batches/{batch_id}/cancel", batch_routes.cancel_batch)
    app.router.add_post("/v1/chat/completions", chat.chat_completions)
    app.router.add_post("/v1/responses", responses.create_response)
    app.router.add_get("/v1/models", models.list_models)
    app.router.add_get("/v1/models/{model}", models.retrieve_model)
    app.router.add_get(HEALTH_PATH, health)


async def health(request: web.Request) -> web.Response:
    """503 while Redis does not answer; else 200, ``ok``, or ``degraded`` with the problems
    that keep the fleet from working (no workers on the queue, Redis refusing writes): this
    server still takes requests then, so a load balancer keeps it. No key needed."""
    ctx = context_of(request)
    try:
        await ctx.redis.ping()
        found = await liveness.problems(ctx)
    except RedisError:
        return web.json_response({"status": "redis unreachable"}, status=503)
    if found:
        return web.json_response({"status": "degraded", "problems": found})
    return web.json_response({"status": "ok"})


def _redis_lifetime(
    client: Redis, settings: ApiSettings, outage: RedisOutage, *, owned: bool
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Checks Redis at start (logged if away: requests get 503 until it answers); closes
    the client at the end if it is ours."""

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        try:
            await client.ping()
        except RedisError as error:
            outage.failed(error, settings)
        yield
        if owned:
            await client.aclose()

    return lifetime
