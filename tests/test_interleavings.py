"""Interleavings an adversarial review of issue 20 found on main, kept as regression tests.

Each test failed before its fix; its docstring describes the interleaving as it was found
(what used to go wrong), its name the promise it now holds."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from contract import keys
from contract.chunks import WALK_START
from contract.models import JobError, JobResult, job_id_for, utc_now
from tests.conftest import eventually
from tests.test_runtime import _payloads, harness
from worker.broker import OK
from worker.chunks import ChunkState
from worker.leases import Cooldown


def _result(batch_id: str, index: int, created: datetime, status: str, **fields: Any) -> JobResult:
    """Prompt ``index``'s result as a worker stores it (its custom ID is ``q<index>``)."""
    return JobResult(
        job_id=job_id_for(batch_id, index), batch_id=batch_id, custom_id=f"q{index}",
        status=status, model="gpt-4o", enqueued_at=created, finished_at=utc_now(), **fields,
    )  # fmt: skip


async def test_retry_while_running_sends_each_prompt_once(
    real_redis,
) -> None:
    """retry on an in_progress batch + end_chunk('done') refused -> hand_back: two chunks
    carry prompt 0 and both send it."""
    async with harness(real_redis) as h:
        batch_id = await h.enqueue("forbiddenword", *(f"p{n}" for n in range(1, 16)))  # chunks of 2
        # Worker A claims chunk 0 = [0, 1] and starts it; prompt 0 fails at once (refused),
        # prompt 1 is still on the wire.
        [claim_a] = (await h.runtime.claims.take(1, hands_free=True)).claims
        assert claim_a.key == f"{batch_id}:0"
        await h.runtime.ledger.start_chunk(batch_id, (0, 1))
        created = (await h.queue.status(batch_id)).created_at
        failed = _result(batch_id, 0, created, "failed",
                         error=JobError(type="ContentRefused", message="flagged"))  # fmt: skip
        await h.runtime.ledger.save_results([failed])
        # The user retries the batch's failures while it runs (allowed: in_progress).
        assert await h.queue.retry(batch_id) == 1
        # A's prompt 1 comes back; A ends chunk 0 "done": refused (prompt 0 is queued
        # again), so it is handed back -- and now chunk 0 AND the retry chunk carry prompt 0.
        ok = _result(batch_id, 1, created, "succeeded", content="x")
        await h.runtime.ledger.save_results([ok])
        assert await h.runtime.claims.end(claim_a, "done", batch_id=batch_id, indices=(0, 1)) == 2
        carriers = [
            m.decode()
            for m in await real_redis.zrange("test:queue", 0, -1)
            if m.decode() == f"{batch_id}:0" or ":r" in m.decode()
        ]
        print("chunks carrying prompt 0:", carriers)
        await h.run_all()
        sent = h.stats()["requests"]["ajax"]
    # 14 prompts (2..15) once, prompt 0 once more (the retry): 15 sends.
    assert sent == 15, f"{sent} ajax requests: prompt 0 was sent by both chunks"


# A damaged record (README: "a stored request this version cannot read (a newer producer's
# field, a damaged record) ends failed as BadRequestData on every path ... it never stops
# a chore or a worker"). Here the damage is a lone surrogate escape in custom_id.


async def _plant(redis, batch_id: str, index: int) -> None:
    raw = '{"custom_id":"q1\\ud800","messages":[{"role":"user","content":"x"}],"model":"gpt-4o"}'
    await redis.hset(keys.batch_requests(batch_id), index, raw)


async def test_a_damaged_custom_id_settles_as_a_failure(real_redis) -> None:
    async with harness(real_redis, chunk_lapse_limit=3) as h:
        batch_id = await h.enqueue("fine", "damaged")  # one chunk each
        await _plant(real_redis, batch_id, 1)
        outcomes = []
        for _ in range(5):  # five workers in turn claim the damaged prompt's chunk
            outcomes += await h.run_all()
        status = await h.queue.status(batch_id)
        lapses = await real_redis.hget(keys.chunk_lapses(), f"{batch_id}:1")
    print("outcomes", [o.value for o in outcomes], "lapses", lapses, status)
    assert status.failed == 1, "the damaged request never gets its BadRequestData result"


async def test_a_damaged_custom_id_fails_only_its_own_result(real_redis) -> None:
    async with harness(real_redis) as h:
        batch_id = await h.enqueue("a", "b")
        await _plant(real_redis, batch_id, 1)
        created = (await h.queue.status(batch_id)).created_at
        good = _result(batch_id, 0, created, "succeeded", content="an answer")
        [bad] = await h.runtime.ledger.requests(batch_id, [1], created)
        assert isinstance(bad, JobResult)  # BadRequestData, custom_id kept (with its surrogate)
        saved = await asyncio.gather(
            h.runtime.writer.save(good), h.runtime.writer.save(bad), return_exceptions=True
        )
        print(saved)
    assert not isinstance(saved[0], BaseException), "a good answer was lost with the bad one"


async def test_cancel_of_a_batch_with_a_damaged_custom_id(real_redis) -> None:
    async with harness(real_redis) as h:
        batch_id = await h.enqueue("a", "b", "c")
        await _plant(real_redis, batch_id, 1)
        try:
            await h.queue.cancel(batch_id)
        except Exception as error:
            pytest.fail(
                f"cancel raised {type(error).__name__}: {str(error)[:120]}; state "
                f"{(await h.queue.status(batch_id)).state}"
            )


async def test_a_worker_frozen_inside_confirm_running_never_sends_under_a_lost_claim(
    real_redis,
) -> None:
    """runner._exchange checks the claims (_may_send) *before* confirm_running, whose Redis
    read may take any time (a frozen process, a frozen link); nothing is checked after it."""
    async with harness(real_redis, {"latency": "fixed:600"}) as h:
        await h.enqueue(*(f"p{n}" for n in range(8)))  # 8 chunks of 1
        [claim] = await h.runtime.take_chunks(1)
        [(_, payload)] = await _payloads(h, claim)
        real_stopped = h.runtime.book.stopped
        other = {}

        async def frozen_link(*_: object) -> list:
            await asyncio.sleep(3600)  # this worker's beats get no answer (link frozen)
            return []

        async def slow_read(batch: str) -> str | None:
            # The HGET is out when the link (or the process) freezes for 2.5 s > claim TTL.
            h.runtime.heartbeat._send = frozen_link  # type: ignore[method-assign]
            await asyncio.sleep(2.6)
            # Meanwhile worker B, whose beats go on, finds the lapsed chunk and takes it.
            now = await real_redis.time()
            await real_redis.set(keys.fleet_beat(), now[0] * 1000 + now[1] // 1000)
            b = type(h.runtime.claims)(
                real_redis, queue_name="test:queue", ttl_seconds=2, keep_seconds=3600
            )
            taken = await b.take(8, hands_free=True)
            other["b"] = [c.key for c in taken.claims]
            other["sent_before"] = h.stats()["requests"]["ajax"]
            del h.runtime.heartbeat._send  # the link heals: the next beat says the chunk is lost
            return await real_stopped(batch)  # the reply: "not stopped"

        h.runtime.book.stopped = slow_read  # type: ignore[method-assign]
        outcome = await h.run(claim, payload)
        sent = h.stats()["requests"]["ajax"]
    print(outcome, other, "A sent", sent)
    assert claim.key in other["b"], "B holds the chunk now"
    assert sent == 0, f"A sent {sent} request(s) under a claim B holds (B sends it too)"


async def test_a_pause_inside_confirm_running_never_sends_after_cancel_returned(
    real_redis,
) -> None:
    """confirm_running reads the stop mark, then a 1.2 s pause (GC, swap) before the worker
    acts on the answer: the answer is stale, the claim still valid; cancel returned 0.75 s
    after its mark, and the prompt reaches the site after that."""
    async with harness(real_redis, {"latency": "fixed:600"}) as h:
        await h.enqueue(*(f"p{n}" for n in range(8)))
        [claim] = await h.runtime.take_chunks(1)
        [(_, payload)] = await _payloads(h, claim)
        real_stopped = h.runtime.book.stopped
        seen = {}

        async def read_then_pause(batch: str) -> str | None:
            why = await real_stopped(batch)  # "not stopped", read now
            await h.queue.cancel(batch)  # during the pause: the cancel, which returns...
            seen["cancel_returned_ajax"] = h.stats()["requests"]["ajax"]
            await asyncio.sleep(0.45)  # ...and the rest of the pause
            return why

        h.runtime.book.stopped = read_then_pause  # type: ignore[method-assign]
        await h.run(claim, payload)
        sent = h.stats()["requests"]["ajax"]
    print(seen, "sent", sent, "claim still valid:", not claim.lost)
    assert seen["cancel_returned_ajax"] == 0
    assert sent == 0, "a prompt of the cancelled batch reached the site after cancel returned"


async def test_a_lost_claim_is_never_beaten_again(real_redis) -> None:
    """The heartbeat keeps sending a lost claim (the chunk stays in ``runtime.held`` while a
    request of it is on the wire); renewals.lua forgives 'its' lapse at every beat."""
    async with harness(real_redis) as h:
        h.runtime.heartbeat.interval = 3600  # beats only when the test says
        batch_id = await h.enqueue(*(f"p{n}" for n in range(8)))
        chunk_id = f"{batch_id}:0"
        await real_redis.hset(keys.chunk_lapses(), chunk_id, 2)  # two holders died with it
        [claim] = await h.runtime.take_chunks(1)
        assert claim.key == chunk_id and claim.suspect
        # A Redis stall (or this worker cut off) lapses the claim; during the silence's
        # embargo nobody reaps it; this worker's request on the wire keeps it in `held`.
        await real_redis.delete(keys.arq_in_progress(chunk_id))
        for _ in range(3):
            await h.runtime.heartbeat.beat()
        lapses = await real_redis.hget(keys.chunk_lapses(), chunk_id)
    print("lapses after three beats:", lapses)
    assert lapses == b"2", "two deaths were counted; this worker's own lapse is no death"


async def test_a_prompt_handshaking_when_the_worker_drains_is_not_sent(
    real_redis,
) -> None:
    """SIGTERM: 'prompts not yet sent go back to the queue at once'. A prompt whose page GET
    is out when the worker drains goes on to POST afterwards: a new request started during
    the drain (GET + POST can take 2 x request_timeout = 120 s > the 75 s grace)."""
    async with harness(real_redis, {"latency": "fixed:800"}) as h:
        await h.enqueue(*(f"p{n}" for n in range(8)))
        [claim] = await h.runtime.take_chunks(1)
        [(_, payload)] = await _payloads(h, claim)
        running = asyncio.create_task(h.run(claim, payload))
        await eventually(lambda: h.stats()["requests"].get("page", 0) >= 1, what="the GET out")
        h.runtime.drain()
        drained_at_ajax = h.stats()["requests"]["ajax"]
        outcome = await running
        sent = h.stats()["requests"]["ajax"]
    print(outcome, h.stats()["requests"], drained_at_ajax)
    assert sent == drained_at_ajax == 0, "a POST left after the worker began to drain"


async def test_a_stale_hand_back_leaves_anothers_prompts_alone(
    real_redis,
) -> None:
    """run_chunk marks handed-back prompts 'queued' in a call of its own, with no token
    check, before end_chunk (which is checked): the split's design flaw, on the drain path."""
    async with harness(real_redis, proxy_max_inflight=1) as h:
        batch_id = await h.enqueue(*(f"p{n}" for n in range(16)))  # chunks of 2
        blocker = await h.runtime.book.acquire(1)  # no capacity: A's prompts wait
        h.runtime.heartbeat.interval = 3600
        await asyncio.sleep(0.5)  # the beat already scheduled goes; then A is deaf
        [claim] = await h.runtime.take_chunks(1)
        [(_, payload)] = await _payloads(h, claim)
        running = asyncio.create_task(h.run(claim, payload))
        await eventually(lambda: h.runtime.broker.waiting == 2, what="A's prompts waiting")
        # A froze past its claim; B took the chunk, started it, and sent prompt 0.
        await real_redis.set(keys.arq_in_progress(claim.key), "B-token", px=60_000)
        await h.runtime.ledger.start_chunk(batch_id, payload.indices)
        # A resumes to a SIGTERM: its waiting prompts are handed back.
        h.runtime.drain()
        assert await running is ChunkState.HANDED_BACK
        states = await h.queue.status(batch_id)
        await h.queue.cancel(batch_id)
        found = [r for r in await h.queue.results(batch_id) if r.job_id.endswith(".0")]
        await h.runtime.book.release([(blocker.leases[0], OK)])
    assert (states.queued, states.in_progress) == (14, 2)  # B's two stay running
    assert not found, "B's prompt on the wire was settled 'cancelled unsent'"


async def test_a_worker_winding_down_a_lost_chunk_does_not_reclaim_it(real_redis) -> None:
    """take_chunks hands back at once a chunk this worker still winds down; the hand-back
    wakes the work marker and puts it back at the head; the intake claims it again..."""
    async with harness(real_redis, {"latency": "fixed:3000"}) as h:
        await h.enqueue(*(f"p{n}" for n in range(16)))  # chunks of 2
        [claim] = await h.runtime.take_chunks(1)
        [(_, payload)] = await _payloads(h, claim)
        running = asyncio.create_task(h.run(claim, payload))
        await eventually(lambda: h.runtime.held[claim.key].sending, what="a request out")
        # The worker was cut off past its claim TTL (a request of the chunk on the wire):
        await real_redis.delete(keys.arq_in_progress(claim.key))
        await real_redis.zadd(keys.held_chunks("test:queue"), {claim.key: 0})
        await h.runtime.heartbeat.beat()  # it learns it lost the chunk; the request goes on
        assert claim.lost and not running.done()
        calls, got = [0], []
        real_take = h.runtime.claims.take

        async def counted(*args, **kwargs):
            calls[0] += 1
            return await real_take(*args, **kwargs)

        h.runtime.claims.take = counted  # type: ignore[method-assign]

        async def intake() -> None:  # jobs.ChunkWorker._intake, minus arq
            while True:
                if not h.runtime.wants_chunks():
                    await asyncio.sleep(0.02)
                    continue
                claims = await h.runtime.take_chunks(1)
                if not claims:
                    await h.runtime.wait_for_work()
                got.extend(c.key for c in claims)
                await asyncio.sleep(0)

        loop = asyncio.create_task(intake())
        await asyncio.sleep(1.0)
        loop.cancel()
        running.cancel()
    print(f"claim calls in 1 s: {calls[0]}, chunks taken: {got}")
    assert got, "in 1 s the worker took no other chunk: it spun on the one it winds down"


async def test_a_restart_that_fails_requests_two_ways_is_two_incidents(
    real_redis,
) -> None:
    """release_leases.lua keeps ONE open incident per identity: a failure of another kind
    closes it and opens a new one, so 100 failures of one restart that alternate between
    two kinds (a reset: UpstreamHiccup; a hung request: UpstreamTimeout) are 100 incidents."""
    from tests.test_leases import book, field, identity, proven

    leases = await book(real_redis, [identity("direct", cap=100)], fleet_cap=100)
    await proven(real_redis, "direct")
    out = (await leases.acquire(100)).leases
    kinds = [
        Cooldown("suspect", reason="UpstreamHiccup"),
        Cooldown("suspect", reason="UpstreamTimeout"),
    ]
    await leases.release([(lease, kinds[n % 2]) for n, lease in enumerate(out)])
    penalty = await field(real_redis, "penalty", "direct")
    cooling_s = (
        await field(real_redis, "cooldown", "direct") - (await real_redis.time())[0] * 1000
    ) / 1000
    print(f"penalty {penalty}, cooling {cooling_s:.0f}s")
    assert penalty <= 1.0, "two causes of one restart: at most two incidents"


async def test_cancel_waits_a_send_window_after_its_mark_even_when_begin_is_slow(
    real_redis,
) -> None:
    """BatchStopper.cancel sleeps until began + CANCEL_SETTLES, ``began`` taken *before* the
    begin call: when the mark reaches Redis late (the cancelling client waited for a
    connection, a slow link), cancel returns soon after the mark, while a worker that read
    'not stopped' just before the mark may still send for SEND_WINDOW seconds."""
    import time

    from contract.stopping import SEND_WINDOW_SECONDS

    async with harness(real_redis) as h:
        batch_id = await h.enqueue("a", "b")
        stopper = h.queue.store.stopper
        real_begin = stopper.begin
        marked = {}

        async def late_begin(batch: str, why: str):
            await asyncio.sleep(0.7)  # the command reaches Redis 0.7 s after cancel began
            state = await real_begin(batch, why)
            marked["at"] = time.monotonic()  # the mark is in Redis no later than this
            return state

        stopper.begin = late_begin  # type: ignore[method-assign]
        await h.queue.cancel(batch_id)
        returned = time.monotonic()
    print(f"cancel returned {returned - marked['at']:.3f}s after its mark was written")
    assert returned - marked["at"] >= SEND_WINDOW_SECONDS


async def test_a_batch_from_before_the_active_set_is_adopted_and_swept(real_redis) -> None:
    """Batches published before the upgrade (or by a not-yet-upgraded producer: README says
    upgrade workers first) are not in <queue>:active; the sweep walks only that set."""
    async with harness(real_redis) as h:
        batch_id = await h.enqueue(*(f"p{n}" for n in range(16)))
        await real_redis.zrem(keys.active_batches("test:queue"), batch_id)  # as published by 0.x
        # Its chunks left the queue with prompts unsettled (issue 20's bug 2, in the old code).
        await real_redis.delete("test:queue")
        # A worker that starts now (after the upgrade) walks the registry in its first passes.
        h.runtime.housekeeper._adopt_cursor = WALK_START
        h.runtime.housekeeper._sweep_cursor = None
        await h.runtime.housekeeper._sweep()
        # Its new chunks wait in the queue, or the runtime's intake holds them already.
        carried = await real_redis.zcard("test:queue") + await real_redis.zcard(
            keys.held_chunks("test:queue")
        )
    assert carried > 0, "the stranded batch was not queued again"
