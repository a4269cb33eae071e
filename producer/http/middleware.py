"""What wraps every route: auth first, then every failure as an OpenAI error body.

A refusal (``ApiError``, or aiohttp's own 404/405/413) keeps its status. Redis out of
reach is a 503 and is logged once, not per request, until Redis answers again. Any
other failure is a 500 with a fixed message (the traceback goes to the log, never
into the response). Every response carries an ``x-request-id`` header, as OpenAI's do
(the SDKs show it as ``_request_id``); a logged failure names it. Every response says
``nosniff``, and an error body quoting what was sent has its ``<``, ``>`` and ``&``
escaped (``producer.http.errors``).
"""

from __future__ import annotations

import secrets

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from redis.asyncio import Redis
from redis.exceptions import RedisError

from contract.redaction import redact_url
from contract.redis_errors import explain
from producer.http import console
from producer.http.context import STREAMING, context_of
from producer.http.errors import ApiError, from_http_exception, internal, unavailable
from producer.http.settings import ApiSettings

log = structlog.get_logger("chatgptes.api")

HEALTH_PATH = "/healthz"  # the one route that needs no key: it tells only up or down
REQUEST_ID: web.RequestKey[str] = web.RequestKey("chatgptes_request_id", str)


def request_id(request: web.Request) -> str:
    """This request's ID (``req_…``), made on first use."""
    found = request.get(REQUEST_ID)
    if found is None:
        found = request[REQUEST_ID] = f"req_{secrets.token_hex(16)}"
    return found


async def stamp_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Sets ``x-request-id`` on every response, streamed ones too, before it is sent, and
    ``nosniff``: no browser may read a JSON or text body (which may quote a path or a
    value sent) as HTML."""
    response.headers["x-request-id"] = request_id(request)
    response.headers["X-Content-Type-Options"] = "nosniff"


class RedisOutage:
    """Logs the first Redis failure of an outage and the first success after it."""

    def __init__(self) -> None:
        self.down = False

    def failed(self, error: BaseException, settings: ApiSettings) -> None:
        if not self.down:
            self.down = True
            log.warning("api.redis_unavailable", error=explain(error).said("Redis"),
                        redis_url=redact_url(settings.redis_url))  # fmt: skip

    async def check(self, redis: Redis) -> None:
        """After a request went well during an outage: is Redis back? (Some routes do not
        use Redis at all.)"""
        try:
            await redis.ping()
        except RedisError:
            return
        self.down = False
        log.info("api.redis_back")


def error_middleware(outage: RedisOutage) -> Middleware:
    @web.middleware
    async def openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except ApiError as error:
            return error.response()
        except web.HTTPException as error:
            if error.status < 400:
                raise
            return from_http_exception(request, error).response()
        except ConnectionResetError:
            raise  # the client went away: nobody to answer
        except RedisError as error:
            outage.failed(error, context_of(request).settings)
            if request.get(STREAMING):
                raise  # the response has begun: cut short, never passed off as whole
            # What Redis is doing, in our words: never its own, which may quote the request.
            meaning = explain(error).meaning
            return unavailable(f"The service's Redis {meaning}; try again shortly.").response()
        except Exception:
            log.exception("api.request_failed", method=request.method, path=request.path,
                          request_id=request_id(request))  # fmt: skip
            if request.get(STREAMING):
                raise
            return internal().response()
        if outage.down:
            await outage.check(context_of(request).redis)
        return response

    return openai_errors


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path != HEALTH_PATH and not console.owns(request):  # the console checks its own
        context_of(request).gate.check(request)
    return await handler(request)
