"""A heartbeat over given chunk claims and leases: the one way a worker renews them."""

from __future__ import annotations

import time
from collections.abc import Sequence

from redis.asyncio import Redis

from contract import keys
from worker.claims import ChunkClaim, ChunkClaims
from worker.heartbeat import Heartbeat
from worker.leases import Lease, LeaseBook
from worker.proxies import Identity


def heartbeat(
    redis: Redis,
    *,
    claims: ChunkClaims,
    book: LeaseBook,
    chunks: Sequence[ChunkClaim] = (),
    leases: Sequence[Lease] = (),
) -> tuple[Heartbeat, dict[str, list[str]]]:
    """A heartbeat of worker ``host:1`` holding ``chunks`` and ``leases``, and what its
    beats said was lost (``{"chunks": [...], "leases": [...]}``, a key once something was)."""
    lost: dict[str, list[str]] = {}
    beat = Heartbeat(
        redis, chunks=claims, book=book, worker_id="host:1", interval=1,
        ttl=claims.ttl_seconds,
        held_chunks=lambda: chunks, held_leases=lambda: leases,
        report=lambda: {"host": "host", "pid": "1", "last_seen": int(time.time() * 1000)},
        lost_chunks=lambda ids: lost.setdefault("chunks", []).extend(ids),
        lost_leases=lambda tokens: lost.setdefault("leases", []).extend(tokens),
    )  # fmt: skip
    return beat, lost


async def no_book(redis: Redis) -> LeaseBook:
    """A lease book for a heartbeat that holds no leases (registered, as at a worker's start)."""
    book = LeaseBook(redis, fleet_cap=10, burst=1, ttl_seconds=5, backoff_base_seconds=1,
                     backoff_cap_seconds=60)  # fmt: skip
    await book.register([Identity("p1", "http://p1:1", max_inflight=1, rate_per_second=0)])
    return book


def no_claims(redis: Redis, ttl_seconds: float = 5) -> ChunkClaims:
    """Chunk claims for a heartbeat that holds no chunks."""
    return ChunkClaims(redis, queue_name="test:queue", ttl_seconds=ttl_seconds, keep_seconds=60)


async def redis_ms(redis: Redis) -> int:
    """Redis's own clock, in ms (what the scripts compare times with)."""
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def fleet_heard(redis: Redis) -> None:
    """As in a fleet whose heartbeats are coming in: lapsed chunks may be taken back."""
    await redis.set(keys.fleet_beat(), await redis_ms(redis) + 3_600_000)
    await redis.delete(keys.fleet_quiet_end())
