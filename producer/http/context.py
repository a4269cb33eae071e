"""What every route needs, kept on the aiohttp application: settings, Redis, the stores."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from redis.asyncio import Redis

from producer.api import BatchQueue
from producer.http.auth import Gate
from producer.http.files import FileStore
from producer.http.settings import ApiSettings


@dataclass(frozen=True)
class ApiContext:
    settings: ApiSettings
    redis: Redis
    queue: BatchQueue
    files: FileStore
    gate: Gate


CONTEXT: web.AppKey[ApiContext] = web.AppKey("chatgptes_api", ApiContext)
# Set once a response has begun: a failure after that can only cut it short.
STREAMING: web.RequestKey[bool] = web.RequestKey("chatgptes_streaming", bool)


def context_of(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]
