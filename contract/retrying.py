"""Riding out a Redis that went away or refuses: wait with backoff, say so once, carry on.

A worker holds prompts, leases and results in memory while Redis restarts, fails
over or refuses writes; each loop that talks to Redis waits here instead of
crashing, logging the first error and then one line every ``LOG_EVERY`` seconds,
never a traceback per attempt. A producer's ``wait`` rides out a restart the same
way. The clients built here retry a single blip themselves.

What counts as an outage (``TRANSIENT``): a lost connection or a timeout; LOADING
(a restart reading its data); READONLY (a replica after a failover); OOM (at
``maxmemory``); MISCONF (a failed snapshot stops writes); BUSY (a script running
too long); MASTERDOWN, NOREPLICAS, TRYAGAIN and CLUSTERDOWN. The clients built here
raise the last five as ``RedisRefusing`` (redis-py raises a plain ResponseError).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import DefaultParser
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from contract.redis_errors import explain

T = TypeVar("T")
# A blip (a dropped connection, a failover) is retried inside the client; longer outages
# reach the loops below, which wait them out.
_BLIP_RETRY = Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3)
FIRST_DELAY = 0.1
MAX_DELAY = 2.0  # a loop tries again at least this often, so it resumes soon after an outage
LOG_EVERY = 60.0


def _log() -> Any:
    import structlog  # here, not above: a command that never waits for Redis skips its import

    return structlog.get_logger("chatgptes.redis")


class RedisRefusing(ResponseError):
    """Redis is up but refuses for now (MISCONF, BUSY, MASTERDOWN, ...): wait, then again."""


class _OutageAwareParser(DefaultParser):  # type: ignore[misc,valid-type]
    EXCEPTION_CLASSES: ClassVar[dict[str, Any]] = {
        **DefaultParser.EXCEPTION_CLASSES,
        **dict.fromkeys(
            ("MISCONF", "BUSY", "MASTERDOWN", "NOREPLICAS", "TRYAGAIN", "CLUSTERDOWN"),
            RedisRefusing,
        ),
    }


# What a restart, a failover, a full Redis or a network blip looks like from redis-py:
# worth waiting out. (Loading the dataset after a restart is a ConnectionError too:
# BusyLoadingError.) (Not every OSError: a TimeoutError is one too, and means something else.)
TRANSIENT = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    OutOfMemoryError,
    RedisRefusing,
    ConnectionError,
)


class _Episode:
    """One outage of Redis as this process sees it, whichever of its loops meet it: the
    first loop to fail says so, one reminder follows every ``LOG_EVERY`` seconds, and
    the last loop to get through says it is over. Not one line per loop per attempt."""

    def __init__(self) -> None:
        self.failing: dict[str, float] = {}  # loop → since when
        self.began: float | None = None
        self._said_at = 0.0

    def failed(self, what: str, error: BaseException) -> None:
        now = time.monotonic()
        self.failing.setdefault(what, now)
        if self.began is None:
            self.began = self._said_at = now
            _log().warning("redis.unavailable", loop=what, error=explain(error).said())
        elif now - self._said_at >= LOG_EVERY:
            self._said_at = now
            _log().warning(
                "redis.still_unavailable", loops=sorted(self.failing),
                failing_for=round(now - self.began, 1), error=explain(error).said(),
            )  # fmt: skip

    def passed(self, what: str) -> None:
        if self.failing.pop(what, None) is None or self.failing or self.began is None:
            return
        _log().info("redis.back", after=round(time.monotonic() - self.began, 1))
        self.began = None


_EPISODE = _Episode()


class RedisBackoff:
    """Exponential backoff with jitter between attempts of one loop; the outage it meets is
    logged once per episode for the whole process (``_Episode``), not once per loop."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._delay = FIRST_DELAY
        self._failing = False

    async def wait(self, error: BaseException) -> None:
        self._failing = True
        _EPISODE.failed(self.what, error)
        await asyncio.sleep(self._delay * random.uniform(0.5, 1.0))
        self._delay = min(self._delay * 2, MAX_DELAY)

    def reset(self) -> None:
        if self._failing:
            _EPISODE.passed(self.what)
        self._delay = FIRST_DELAY
        self._failing = False


async def until_redis_answers(
    what: str, call: Callable[[], Awaitable[T]], *, within: float | None = None
) -> T:
    """``call()``, again and again with backoff while Redis is unreachable; ``within``
    seconds at the most (None: as long as it takes), then its last error is raised.

    Any other error (a script bug, bad data) is raised: waiting would not mend it.
    """
    backoff = RedisBackoff(what)
    deadline = None if within is None else time.monotonic() + within
    while True:
        try:
            result = await call()
        except TRANSIENT as error:
            if deadline is not None and time.monotonic() >= deadline:
                raise
            await backoff.wait(error)
            continue
        backoff.reset()
        return result


def connection_pool(url: str, **options: object) -> ConnectionPool:
    """Connections to ``url`` that retry a command across a blip and name every outage."""
    return ConnectionPool.from_url(
        url,
        retry=_BLIP_RETRY,
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        socket_connect_timeout=5,
        health_check_interval=30,
        parser_class=_OutageAwareParser,
        **options,
    )


def redis_client(url: str) -> Redis:
    """A client that retries a command a few times across a blip before raising."""
    return Redis(connection_pool=connection_pool(url))


def arq_pool(url: str) -> ArqRedis:
    """arq's client for ``url``: the same connections, retries and outage names as
    ``redis_client``, the URL read by redis-py (a percent-encoded password included)."""
    return ArqRedis(connection_pool=connection_pool(url))
