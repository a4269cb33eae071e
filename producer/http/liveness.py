"""Whether anyone runs what this server queues, and whether Redis takes its writes.

Workers report themselves in Redis every heartbeat (``contract.keys.workers_seen``,
``worker_info``, with the queue they take from); this reads those reports, by queue.
Three readers: ``/healthz`` (``degraded``, and why), the console (a banner when nothing
runs its batches) and a chat completion or response, refused at once with a 503
``no_workers`` instead of waiting its whole timeout for nobody. Batches are still
accepted: they wait in the queue for a worker, and their window says how long.
"""

from __future__ import annotations

import time
import weakref
from typing import TypedDict

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from producer.fleet import live_workers, writes_refused
from producer.http.context import ApiContext
from producer.http.errors import SERVER_ERROR, ApiError

NO_WORKERS = "no_workers"
REDIS_REFUSING_WRITES = "redis_refusing_writes"


class Problem(TypedDict):
    code: str
    message: str


def nobody_runs(queue_name: str) -> str:
    """What a user is told when no worker takes from ``queue_name``, and what to do."""
    return (
        f"no live worker takes prompts from queue {queue_name!r}: start one with "
        "`chatgptes worker` (with this server's CHATGPTES_REDIS_URL and CHATGPTES_QUEUE_NAME), "
        "or a local fleet with `chatgptes up`"
    )


SEEN_ALIVE_SECONDS = 1.0  # a live worker seen is taken as still there this long
# By client (a server's), then by queue: until when a live worker was last seen there.
_seen_alive: weakref.WeakKeyDictionary[Redis, dict[str, float]] = weakref.WeakKeyDictionary()


async def has_workers(redis: Redis, queue_name: str) -> bool:
    """Whether a live worker takes from ``queue_name``. Reading the reports costs a
    pipeline as long as the fleet: a yes is kept a second, so a burst of chats costs one
    read a second (a no is read again every time, so a worker that starts is seen at once)."""
    seen = _seen_alive.setdefault(redis, {})
    if seen.get(queue_name, 0.0) > time.monotonic():
        return True
    alive = bool(await live_workers(redis, queue_name))
    if alive:
        seen[queue_name] = time.monotonic() + SEEN_ALIVE_SECONDS
    else:
        seen.pop(queue_name, None)
    return alive


async def require_workers(ctx: ApiContext) -> None:
    """503 ``no_workers`` (not retried by the SDKs) unless a live worker takes from the
    server's queue: the prompt would otherwise wait ``CHATGPTES_CHAT_TIMEOUT_SECONDS``."""
    if not await has_workers(ctx.redis, ctx.settings.queue_name):
        message = f"The request was not queued: {nobody_runs(ctx.settings.queue_name)}."
        raise ApiError(503, message, type=SERVER_ERROR, code=NO_WORKERS,
                       headers={"x-should-retry": "false"})  # fmt: skip


async def problems(ctx: ApiContext) -> list[Problem]:
    """What keeps the fleet from doing its work though the server is up: no workers on its
    queue, Redis refusing writes."""
    found: list[Problem] = []
    if not await has_workers(ctx.redis, ctx.settings.queue_name):
        found.append(Problem(code=NO_WORKERS, message=nobody_runs(ctx.settings.queue_name)))
    try:
        refused = await writes_refused(ctx.redis)
    except ResponseError:  # INFO refused (an ACL without it): nothing to tell, not an outage
        refused = None
    if refused:
        message = f"Redis refuses writes, {refused}"
        found.append(Problem(code=REDIS_REFUSING_WRITES, message=message))
    return found
