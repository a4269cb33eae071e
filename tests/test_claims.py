"""Chunk claims under tokens: taken, renewed, lost, ended — on fakeredis and a real redis-server."""

from __future__ import annotations

import asyncio
import time

import pytest

from contract import keys
from tests.beats import heartbeat, no_book
from worker.claims import ChunkClaims, Claim, margin_for

QUEUE = "test:queue"


@pytest.fixture
async def claims(redis) -> ChunkClaims:
    for n in range(3):
        await redis.zadd(QUEUE, {f"b:{n}": 1 + n})
        await redis.set(keys.arq_job(f"b:{n}"), b"{}")
    return ChunkClaims(redis, queue_name=QUEUE, ttl_seconds=5, keep_seconds=60)


async def test_a_claim_takes_the_first_chunk_no_worker_holds(claims, redis) -> None:
    await redis.set(keys.arq_in_progress("b:0"), "someone-else")
    [first] = (await claims.take(1, hands_free=True)).claims
    assert (first.key, first.lapses) == ("b:1", 0)
    assert await redis.get(keys.arq_in_progress("b:1")) == first.token.encode()
    assert 4000 < await redis.pttl(keys.arq_in_progress("b:1")) <= 5000
    [second] = (await claims.take(5, hands_free=True)).claims  # b:2 is the only one left free
    assert second.key == "b:2" and second.token != first.token
    assert (await claims.take(1, hands_free=True)).claims == []


async def test_a_claim_is_valid_until_its_ttl_less_a_margin(claims) -> None:
    before = time.monotonic()
    [claim] = (await claims.take(1, hands_free=True)).claims
    assert claim.valid()
    assert claim.valid_until <= before + 5 - margin_for(5) + 0.5
    claim.valid_until = time.monotonic() - 1  # as after a freeze longer than the TTL
    assert not claim.valid()


async def test_renewal_extends_what_is_held_and_names_what_was_lost(claims, redis) -> None:
    held, taken_over, lapsed = (await claims.take(3, hands_free=True)).claims
    await redis.set(keys.arq_in_progress(taken_over.key), "another-worker")  # after a freeze
    await redis.delete(keys.arq_in_progress(lapsed.key))  # expired, nobody took it
    await redis.pexpire(keys.arq_in_progress(held.key), 100)
    beat, lost = heartbeat(redis, claims=claims, book=await no_book(redis),
                           chunks=[held, taken_over, lapsed])  # fmt: skip
    assert await beat.beat()
    assert lost == {"chunks": [taken_over.key]}
    assert await redis.pttl(keys.arq_in_progress(held.key)) > 4000
    # Nobody held the lapsed one: it is taken back under the same token.
    assert await redis.get(keys.arq_in_progress(lapsed.key)) == lapsed.token.encode()


async def test_a_chunk_that_left_the_queue_is_lost(claims, redis) -> None:
    [claim] = (await claims.take(1, hands_free=True)).claims
    await redis.delete(keys.arq_in_progress(claim.key))
    await redis.zrem(QUEUE, claim.key)
    beat, lost = heartbeat(redis, claims=claims, book=await no_book(redis), chunks=[claim])
    assert await beat.beat()
    assert lost == {"chunks": [claim.key]}


async def test_only_the_holder_ends_a_chunk(claims, redis) -> None:
    [claim] = (await claims.take(1, hands_free=True)).claims
    await redis.set(keys.arq_in_progress(claim.key), "another-worker")
    assert not await claims.end(claim, "done")
    assert await redis.zscore(QUEUE, claim.key) is not None  # untouched
    await redis.set(keys.arq_in_progress(claim.key), claim.token)
    assert await claims.end(claim, "done")
    assert await redis.zscore(QUEUE, claim.key) is None
    assert await redis.exists(keys.arq_job(claim.key), keys.arq_in_progress(claim.key)) == 0


async def test_a_hand_back_is_a_clean_end_and_a_death_is_counted(claims, redis) -> None:
    [claim] = (await claims.take(1, hands_free=True)).claims
    assert await claims.end(claim, "hand_back", defer_ms=0)
    [again] = (await claims.take(1, hands_free=True)).claims
    assert (again.key, again.lapses) == (claim.key, 0)  # handed back: nobody died
    await redis.delete(keys.arq_in_progress(again.key))  # its holder died: the claim expired
    [third] = (await claims.take(1, hands_free=True)).claims
    assert (third.key, third.lapses) == (claim.key, 1)
    assert await claims.end(third, "lapse", defer_ms=0)  # its job crashed: a death too
    [fourth] = (await claims.take(1, hands_free=True)).claims
    assert fourth.lapses == 2
    assert await claims.end(fourth, "done")
    assert await redis.hget(keys.chunk_runs(), claim.key) is None


async def test_a_defer_moves_a_handed_back_chunk_later(claims, redis) -> None:
    [claim] = (await claims.take(1, hands_free=True)).claims
    score = await redis.zscore(QUEUE, claim.key)
    assert await claims.end(claim, "lapse", defer_ms=5000)
    assert await redis.zscore(QUEUE, claim.key) == score + 5000


async def test_settle_waits_for_the_next_renewal_or_loss() -> None:
    claim = Claim("c", "t", valid_until=time.monotonic() - 1)
    waiting = asyncio.create_task(claim.settle())
    await asyncio.sleep(0)
    assert not waiting.done()
    claim.renewed(time.monotonic() + 5)
    assert await waiting is True
    claim.valid_until = time.monotonic() - 1
    waiting = asyncio.create_task(claim.settle())
    await asyncio.sleep(0)
    claim.lose()
    assert await waiting is False


async def test_a_suspect_is_taken_only_by_free_hands_and_alone(claims, redis) -> None:
    await redis.hset(keys.chunk_runs(), "b:0", 2)  # two holders died with it
    busy = await claims.take(5, hands_free=False)
    assert [claim.key for claim in busy.claims] == ["b:1", "b:2"] and busy.suspect_waiting
    for claim in busy.claims:
        await claims.end(claim, "hand_back")
    free = await claims.take(5, hands_free=True)
    assert [(claim.key, claim.suspect) for claim in free.claims] == [("b:0", True)]
    assert not free.suspect_waiting
