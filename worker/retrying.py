"""Riding out a Redis that went away: wait with backoff, say so once, carry on when it is back.

A worker holds prompts, leases and results in memory while Redis restarts; each
loop that talks to Redis waits here instead of crashing, logging the first error
and then one line every ``LOG_EVERY`` seconds, never a traceback per attempt.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from contract.redaction import redact_text

log = structlog.get_logger("chatgptes.redis")
T = TypeVar("T")
FIRST_DELAY = 0.1
MAX_DELAY = 5.0
LOG_EVERY = 10.0
# What a restart, a failover or a network blip looks like from redis-py: worth waiting out.
# (Loading the dataset after a restart is a ConnectionError too: BusyLoadingError.)
TRANSIENT = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, ConnectionError, OSError)


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
            log.warning(
                "redis.unavailable",
                loop=self.what,
                error=redact_text(f"{type(error).__name__}: {error}"),
                failing_for=round(now - self._failing_since, 1),
            )
        await asyncio.sleep(self._delay * random.uniform(0.5, 1.0))
        self._delay = min(self._delay * 2, MAX_DELAY)

    def reset(self) -> None:
        if self._failing_since is not None:
            log.info(
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
