"""The heartbeat: renews chunk claims and leases in one round trip, and tells what was lost."""

from __future__ import annotations

from contract import keys
from tests.beats import heartbeat
from worker.claims import ChunkClaims
from worker.leases import LeaseBook
from worker.proxies import Identity

QUEUE = "test:queue"


async def setup(redis):
    for n in range(2):
        await redis.zadd(QUEUE, {f"b:{n}": 1 + n})
    claims = ChunkClaims(redis, queue_name=QUEUE, ttl_seconds=5, keep_seconds=60)
    book = LeaseBook(redis, fleet_cap=10, burst=1, ttl_seconds=5, backoff_base_seconds=1,
                     backoff_cap_seconds=60)  # fmt: skip
    await book.register([Identity("p1", "http://p1:1", max_inflight=5, rate_per_second=0)])
    await redis.hset(keys.identity_field("probe"), "p1", 0)
    chunks = (await claims.take(2, hands_free=True)).claims
    leases = (await book.acquire(2)).leases
    beat, lost = heartbeat(redis, claims=claims, book=book, chunks=chunks, leases=leases)
    return beat, chunks, leases, lost


async def test_a_beat_renews_everything_held_and_reports_the_worker(redis) -> None:
    beat, chunks, leases, lost = await setup(redis)
    for claim in [*chunks, *(lease.claim for lease in leases)]:
        claim.valid_until = 0  # as if the last renewal was long ago
    assert await beat.beat()
    assert all(claim.valid() for claim in chunks) and all(lease.claim.valid() for lease in leases)
    assert lost == {}
    assert await redis.hget(keys.worker_info("host:1"), "pid") == b"1"
    assert await redis.zscore(keys.workers_seen(), "host:1") is not None


async def test_a_beat_tells_which_chunks_and_leases_were_lost(redis) -> None:
    beat, chunks, leases, lost = await setup(redis)
    await redis.set(keys.arq_in_progress(chunks[0].key), "another-worker")
    await redis.zrem(keys.lease_tokens(), leases[1].token)  # reaped while it looked dead
    assert await beat.beat()
    assert lost == {"chunks": [chunks[0].key], "leases": [leases[1].token]}
    assert chunks[0].lost and not chunks[0].valid() and chunks[1].valid()
    assert leases[1].claim.lost and not leases[0].claim.lost


async def test_a_beat_after_redis_forgot_its_scripts_loads_them_again(redis) -> None:
    beat, chunks, _, _ = await setup(redis)
    await redis.script_flush()
    assert await beat.beat()
    assert all(claim.valid() for claim in chunks)


async def test_a_beat_without_redis_renews_nothing(redis, monkeypatch) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    beat, chunks, _, _ = await setup(redis)
    chunks[0].valid_until = 0

    async def refused(*_: object) -> list:
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(beat, "_send", refused)
    assert not await beat.beat()
    assert not chunks[0].valid() and not chunks[0].lost  # unknown: nothing is sent under it
    assert beat.missed == 1
