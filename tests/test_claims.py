"""Chunk claims under tokens: taken, renewed, lost, ended — on fakeredis and a real redis-server.

A queue's chunks wait in arq's queue or are held (``keys.held_chunks``); a claim takes
the queue's head wherever the held ones stood, a lapsed claim goes back to the queue
only when the fleet's heartbeats say its holder could have spoken, and a lost claim is
never renewed or taken back.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from contract import keys
from tests.beats import fleet_heard, heartbeat, no_book, redis_ms
from worker.claims import ChunkClaims, Claim, claim_margin

QUEUE = "test:queue"


async def queue_chunks(redis, count: int, first: int = 0) -> None:
    for n in range(first, first + count):
        await redis.zadd(QUEUE, {f"b:{n}": 1 + n})
        await redis.set(keys.arq_job(f"b:{n}"), b"{}")


@pytest.fixture
async def claims(redis) -> ChunkClaims:
    await queue_chunks(redis, 3)
    await fleet_heard(redis)
    return ChunkClaims(redis, queue_name=QUEUE, ttl_seconds=5, keep_seconds=60)


async def lapse(redis, *chunk_ids: str) -> None:
    """As when a holder stopped renewing past the TTL: its key expired, its time passed."""
    for chunk_id in chunk_ids:
        await redis.delete(keys.arq_in_progress(chunk_id))
        await redis.zadd(keys.held_chunks(QUEUE), {chunk_id: await redis_ms(redis) - 1})


async def test_a_claim_takes_the_head_and_holds_it_out_of_the_queue(claims, redis) -> None:
    [first] = (await claims.take(1, hands_free=True)).claims
    assert (first.key, first.lapses) == ("b:0", 0)
    assert await redis.get(keys.arq_in_progress("b:0")) == first.token.encode()
    assert 4000 < await redis.pttl(keys.arq_in_progress("b:0")) <= 5000
    assert await redis.zscore(QUEUE, "b:0") is None  # held: out of the queue
    assert await redis.zscore(keys.held_chunks(QUEUE), "b:0") is not None
    assert await redis.hget(keys.chunk_places(QUEUE), "b:0") == b"1"
    [second, third] = (await claims.take(5, hands_free=True)).claims
    assert (second.key, third.key) == ("b:1", "b:2") and second.token != first.token
    assert (await claims.take(1, hands_free=True)).claims == []


async def test_a_free_chunk_behind_many_held_ones_is_found(claims, redis) -> None:
    """Regression: the claim script looked at the first 512 queue entries only."""
    await queue_chunks(redis, 600, first=3)
    other = ChunkClaims(redis, queue_name=QUEUE, ttl_seconds=5, keep_seconds=60)
    held = (await other.take(602, hands_free=True)).claims
    assert len(held) == 602  # every chunk but the last is held by another worker
    [mine] = (await claims.take(1, hands_free=True)).claims
    assert mine.key == "b:602"


async def test_a_claim_is_valid_until_its_ttl_less_a_margin(claims) -> None:
    before = time.monotonic()
    [claim] = (await claims.take(1, hands_free=True)).claims
    assert claim.valid()
    assert claim.valid_until <= before + 5 - claim_margin(5) + 0.5
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
    assert lost == {"chunks": [taken_over.key, lapsed.key]}
    assert await redis.pttl(keys.arq_in_progress(held.key)) > 4000
    # A lost claim stays lost: the lapsed one is not taken back, even though nobody holds it.
    assert await redis.get(keys.arq_in_progress(lapsed.key)) is None
    assert await redis.get(keys.arq_in_progress(taken_over.key)) == b"another-worker"


async def test_a_lapsed_claim_is_never_revived_under_another_holder(claims, redis) -> None:
    """Regression (issue 20, 3): A is cut off past the TTL, B claims the chunk, settles and
    hands it back; A's next beat must not take it back (it would send again from its list)."""
    [a] = (await claims.take(1, hands_free=True)).claims
    await lapse(redis, a.key)
    other = ChunkClaims(redis, queue_name=QUEUE, ttl_seconds=5, keep_seconds=60)
    [b] = (await other.take(1, hands_free=True)).claims  # reaped, then claimed by B
    assert (b.key, b.lapses) == (a.key, 1)
    assert await other.end(b, "hand_back") == 1
    beat, lost = heartbeat(redis, claims=claims, book=await no_book(redis), chunks=[a])
    assert await beat.beat()
    assert lost == {"chunks": [a.key]} and a.lost
    assert await redis.get(keys.arq_in_progress(a.key)) is None
    assert await redis.zscore(QUEUE, a.key) is not None  # waiting for anyone, A included


async def test_a_live_holders_lapse_is_no_death(claims, redis) -> None:
    [claim] = (await claims.take(1, hands_free=True)).claims
    await lapse(redis, claim.key)  # a pause; nobody took the chunk meanwhile
    beat, lost = heartbeat(redis, claims=claims, book=await no_book(redis), chunks=[claim])
    assert await beat.beat()
    assert lost == {"chunks": [claim.key]}
    [again] = (await claims.take(1, hands_free=True)).claims
    assert (again.key, again.lapses) == (claim.key, 0)  # its holder was alive: no death


async def test_after_a_fleet_silence_lapsed_chunks_wait_for_their_holders(claims, redis) -> None:
    """A stalled Redis lapses every claim at once: for one claim TTL after the heartbeats
    come back, no claim takes a lapsed chunk, so that each live holder speaks first."""
    [claim] = (await claims.take(1, hands_free=True)).claims
    await lapse(redis, claim.key)
    await redis.set(keys.fleet_beat(), await redis_ms(redis) - 60_000)  # silent for a minute
    other = ChunkClaims(redis, queue_name=QUEUE, ttl_seconds=5, keep_seconds=60)
    taken = await other.take(5, hands_free=True)
    assert [c.key for c in taken.claims] == ["b:1", "b:2"]  # not the lapsed one
    assert taken.next_lapse_seconds is not None
    beat, lost = heartbeat(redis, claims=claims, book=await no_book(redis), chunks=[claim])
    assert await beat.beat()  # the silence ends: the holder hears it lost the chunk
    assert lost == {"chunks": [claim.key]}
    assert await redis.get(keys.fleet_quiet_end()) is not None
    assert (await other.take(1, hands_free=True)).claims == []  # still its holder's turn
    await redis.set(keys.fleet_quiet_end(), await redis_ms(redis) - 6000)  # a TTL later
    [later] = (await other.take(1, hands_free=True)).claims
    assert (later.key, later.lapses) == (claim.key, 0)


async def test_only_the_holder_ends_a_chunk(claims, redis) -> None:
    [claim] = (await claims.take(1, hands_free=True)).claims
    await redis.set(keys.arq_in_progress(claim.key), "another-worker")
    assert await claims.end(claim, "done") == 0
    assert await redis.zscore(keys.held_chunks(QUEUE), claim.key) is not None  # untouched
    await redis.set(keys.arq_in_progress(claim.key), claim.token)
    assert await claims.end(claim, "done") == 1
    assert await redis.zscore(QUEUE, claim.key) is None
    assert await redis.zscore(keys.held_chunks(QUEUE), claim.key) is None
    assert await redis.exists(keys.arq_job(claim.key), keys.arq_in_progress(claim.key)) == 0


async def test_a_chunk_with_an_unsettled_prompt_is_never_ended_done(claims, redis) -> None:
    """Regression (issue 20, 2): ``done`` is checked against the prompts' states in the step
    that ends the chunk; with one unsettled, the chunk goes back to the queue."""
    [claim] = (await claims.take(1, hands_free=True)).claims
    await redis.hset(keys.batch_meta("b"), "state", "in_progress")
    await redis.setrange(keys.batch_states("b"), 0, b"\x30")  # prompt 0 succeeded, 1 queued
    assert await claims.end(claim, "done", batch_id="b", indices=[0, 1]) == 2
    assert await redis.zscore(QUEUE, claim.key) is not None
    [again] = (await claims.take(1, hands_free=True)).claims
    await redis.setrange(keys.batch_states("b"), 0, b"\x33")  # both settled now
    assert await claims.end(again, "done", batch_id="b", indices=[0, 1]) == 1
    assert await redis.zscore(QUEUE, again.key) is None


async def test_a_hand_back_is_a_clean_end_and_a_lapse_is_counted(claims, redis) -> None:
    [claim] = (await claims.take(1, hands_free=True)).claims
    assert await claims.end(claim, "hand_back") == 1
    [again] = (await claims.take(1, hands_free=True)).claims
    assert (again.key, again.lapses) == (claim.key, 0)  # handed back: nobody lapsed
    await lapse(redis, again.key)  # its holder died: the claim expired
    [third] = (await claims.take(1, hands_free=True)).claims
    assert (third.key, third.lapses) == (claim.key, 1)
    assert await claims.end(third, "lapse") == 1  # its job crashed: a lapse too
    [fourth] = (await claims.take(1, hands_free=True)).claims
    assert fourth.lapses == 2
    assert await claims.end(fourth, "done") == 1
    assert await redis.hget(keys.chunk_lapses(), claim.key) is None


async def test_a_defer_moves_a_handed_back_chunk_later(claims, redis) -> None:
    [claim] = (await claims.take(1, hands_free=True)).claims
    score = float(await redis.hget(keys.chunk_places(QUEUE), claim.key))
    assert await claims.end(claim, "lapse", defer_ms=5000) == 1
    assert await redis.zscore(QUEUE, claim.key) == score + 5000


async def test_a_claimable_chunk_wakes_an_idle_worker(claims, redis) -> None:
    [claim] = (await claims.take(1, hands_free=True)).claims
    await redis.delete(keys.work_marker(QUEUE))
    waiting = asyncio.create_task(claims.wait_for_work(5))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    assert await claims.end(claim, "hand_back") == 1
    assert await asyncio.wait_for(waiting, 2) is True


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
    await redis.hset(keys.chunk_lapses(), "b:0", 2)  # two holders lapsed with it
    busy = await claims.take(5, hands_free=False)
    assert [claim.key for claim in busy.claims] == ["b:1", "b:2"] and busy.suspect_waiting
    for claim in busy.claims:
        await claims.end(claim, "hand_back")
    free = await claims.take(5, hands_free=True)
    assert [(claim.key, claim.suspect) for claim in free.claims] == [("b:0", True)]
    assert not free.suspect_waiting
