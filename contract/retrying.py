"""Riding out a Redis that went away: wait with backoff, say so once, carry on when it is back.

A worker holds prompts, leases and results in memory while Redis restarts; each
loop that talks to Redis waits here instead of crashing, logging the first error
and then one line every ``LOG_EVERY`` seconds, never a traceback per attempt. A
producer's ``wait`` rides out a restart the same way. The clients built here retry
a single blip themselves.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from arq.connections import RedisSettings
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from contract.redaction import redact_text

T = TypeVar("T")
# A blip (a dropped connection, a failover) is retried inside the client; longer outages
# reach the loops below, which wait them out.
_BLIP_RETRY = Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3)
FIRST_DELAY = 0.1
MAX_DELAY = 5.0
LOG_EVERY = 10.0
# What a restart, a failover or a network blip looks like from redis-py: worth waiting out.
# (Loading the dataset after a restart is a ConnectionError too: BusyLoadingError.)
# (Not every OSError: a TimeoutError is one too, and means something else.)
TRANSIENT = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, ConnectionError)


def _log() -> Any:
    import structlog  # here, not above: a command that never waits for Redis skips its import

    return structlog.get_logger("chatgptes.redis")


class RedisBackoff:
    """Exponential backoff with jitter between attempts of one loop, logged sparingly."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._delay = FIRST_DELAY
        self._failing_since: float | None = None
        self._logged_at = 0.0

    async def wait(self, error: BaseException) -> None:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if now - self._logged_at >= LOG_EVERY:
            self._logged_at = now
            _log().warning(
                "redis.unavailable",
                loop=self.what,
                error=redact_text(f"{type(error).__name__}: {error}"),
                failing_for=round(now - self._failing_since, 1),
            )
        await asyncio.sleep(self._delay * random.uniform(0.5, 1.0))
        self._delay = min(self._delay * 2, MAX_DELAY)

    def reset(self) -> None:
        if self._failing_since is not None:
            _log().info(
                "redis.back",
                loop=self.what,
                after=round(time.monotonic() - self._failing_since, 1),
            )
        self._delay = FIRST_DELAY
        self._failing_since = None


async def until_redis_answers(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, again and again with backoff while Redis is unreachable.

    Any other error (a script bug, bad data) is raised: waiting would not mend it.
    """
    backoff = RedisBackoff(what)
    while True:
        try:
            result = await call()
        except TRANSIENT as error:
            await backoff.wait(error)
            continue
        backoff.reset()
        return result


def redis_client(url: str) -> Redis:
    """A client that retries a command a few times across a blip before raising."""
    return Redis.from_url(
        url,
        retry=_BLIP_RETRY,
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        socket_connect_timeout=5,
        health_check_interval=30,
    )


def arq_redis_settings(url: str) -> RedisSettings:
    """arq's connection settings for ``url``, with the same short retries as ``redis_client``."""
    settings = RedisSettings.from_dsn(url)
    settings.retry = _BLIP_RETRY
    settings.retry_on_error = [RedisConnectionError, RedisTimeoutError]
    settings.conn_retries = 2  # at start-up: then a clear error, not a minute of retries
    return settings
