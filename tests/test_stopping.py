"""Stopping a batch early (cancel, expiry): crash-consistent, in bounded steps — on fakeredis
and on a real redis-server."""

from __future__ import annotations

import json

import pytest

from contract import keys
from contract.models import JobError, JobResult
from contract.stopping import BatchStopper
from producer.api import BatchQueue
from tests.batching import SETTINGS, lines


@pytest.fixture
def queue(redis) -> BatchQueue:
    return BatchQueue(redis, SETTINGS)


async def settle(queue: BatchQueue, batch_id: str, index: int, status: str = "failed") -> None:
    created = await queue.store.created_at(batch_id)
    (request,) = await queue.store.requests(batch_id, [index], created)
    error = JobError(type="ContentRefused", message="refused") if status == "failed" else None
    result = JobResult.for_request(request, status=status, error=error, content=None)
    assert await queue.store.ledger.save_results([result]) == 1


async def steps(stopper: BatchStopper, batch_id: str, why: str, limit: int) -> int:
    """Runs the stop's steps to the end; returns how many steps it took."""
    count = 0
    while True:
        count += 1
        finished, _ = await stopper.step(batch_id, why, limit)
        if finished:
            return count


async def test_cancel_settles_queued_prompts_and_keeps_every_result(queue, redis) -> None:
    await queue.enqueue(lines(5), batch_id="b1")
    await settle(queue, "b1", 1)  # refused before the cancel: a result that must stay
    assert await queue.cancel("b1") == 4
    status = await queue.status("b1")
    assert (status.state, status.cancelled, status.failed, status.done) == ("cancelled", 4, 1, True)
    refused = await queue.job("b1.1")
    assert isinstance(refused, JobResult) and refused.error.type == "ContentRefused"
    assert await redis.zcard("test:queue") == 0  # every chunk was settled: all left


async def test_a_held_prompt_is_left_to_its_worker(queue, redis) -> None:
    await queue.enqueue(lines(4), batch_id="b1")
    await queue.store.ledger.start_chunk("b1", [0])  # a worker holds prompt 0 (sending it)
    await redis.set(keys.arq_in_progress("b1:0"), "token")
    assert await queue.cancel("b1") == 3
    status = await queue.status("b1")
    assert (status.state, status.in_progress, status.cancelled) == ("cancelling", 1, 3)
    assert await redis.zscore("test:queue", "b1:0") is not None  # its chunk stays queued
    await settle(queue, "b1", 0, "succeeded")  # the worker's answer arrives
    assert (await queue.status("b1")).state == "cancelled"


async def test_an_unheld_chunk_with_an_unsettled_prompt_stays_queued(queue, redis) -> None:
    await queue.enqueue(lines(4), batch_id="b1")
    await queue.store.ledger.start_chunk("b1", [0])  # its worker died: no claim any more
    await queue.cancel("b1")
    assert await redis.zscore("test:queue", "b1:0") is not None  # the next holder ends it
    assert await redis.zscore("test:queue", "b1:1") is None


async def test_a_stop_runs_in_bounded_steps_and_resumes_after_a_crash(queue, redis) -> None:
    await queue.enqueue(lines(10), batch_id="b1")
    stopper = queue.store.stopper
    assert await stopper.begin("b1", "cancelled") == "cancelling"
    finished, settled = await stopper.step("b1", "cancelled", 4)
    assert (finished, settled) == (False, 4)
    # The process dies here. Nothing runs for the batch (no lease is granted for it) ...
    assert (await redis.hget(keys.stopped_batches(), "b1")).startswith(b"cancelled ")
    assert [s.batch_id for s in await stopper.unfinished()] == ["b1"]
    # ... and a second cancel (or the housekeeper) finishes what the first started.
    assert await queue.cancel("b1") == 6
    status = await queue.status("b1")
    assert (status.state, status.cancelled) == ("cancelled", 10)
    assert await stopper.unfinished() == []


async def test_a_big_stop_takes_as_many_steps_as_its_size_asks(queue) -> None:
    await queue.enqueue(lines(45), batch_id="b1")
    stopper = queue.store.stopper
    await stopper.begin("b1", "cancelled")
    # 45 prompts at 10 a step: 5 steps settle them, then 1 takes their chunks out.
    assert await steps(stopper, "b1", "cancelled", 10) == 6
    assert (await queue.status("b1")).cancelled == 45


async def test_an_expired_batch_ends_its_unsent_prompts_and_keeps_the_rest(queue, redis) -> None:
    await queue.enqueue(lines(3), batch_id="b1")
    await settle(queue, "b1", 0, "succeeded")
    await redis.zadd(keys.batch_deadlines(), {"b1": 1})  # its window ended long ago
    stopper = queue.store.stopper
    assert await stopper.begin_due_expiries() == ["b1"]
    assert await stopper.begin_due_expiries() == []  # swept once
    await steps(stopper, "b1", "expired", 100)
    status = await queue.status("b1")
    assert (status.state, status.succeeded, status.failed) == ("expired", 1, 2)
    assert status.expired_at is not None
    expired = await queue.job("b1.2")
    assert isinstance(expired, JobResult) and expired.error.type == "Expired"
    assert (await redis.hget(keys.stopped_batches(), "b1")).startswith(b"expired ")


async def test_cancel_of_an_ended_batch_changes_nothing(queue) -> None:
    await queue.enqueue(lines(1), batch_id="b1")
    await settle(queue, "b1", 0, "succeeded")
    assert await queue.cancel("b1") == 0
    assert (await queue.status("b1")).state == "completed"


async def test_nothing_is_written_for_a_batch_that_is_gone(queue, redis) -> None:
    await queue.enqueue(lines(2), batch_id="b1")
    created = await queue.store.created_at("b1")
    (request,) = await queue.store.requests("b1", [0], created)
    await redis.flushdb()  # Redis restarted empty
    result = JobResult.for_request(request, status="succeeded", content="late")
    assert await queue.store.ledger.save_results([result]) == 0
    assert await queue.store.ledger.mark("b1", [1], "waiting") == 0
    await queue.store.ledger.spend("b1", 1, "UpstreamHiccup", created)
    assert await redis.keys("*") == []  # no orphan counts, states or attempts


async def poison(redis, batch_id: str, *indices: int) -> None:
    """As a newer producer writes a request during a rolling upgrade: a field this version
    does not know (``extra_forbidden``)."""
    for index in indices:
        raw = await redis.hget(keys.batch_requests(batch_id), index)
        stored = json.loads(raw)
        stored["service_tier"] = "flex"
        await redis.hset(keys.batch_requests(batch_id), index, json.dumps(stored))


@pytest.mark.parametrize("why", ["cancelled", "expired"])
async def test_an_unreadable_request_is_settled_once_by_a_stop(queue, redis, why: str) -> None:
    """Regression (issue 20, 1): the stop step raised ValidationError, the housekeeping loop
    died with it, and every worker after it; ``cancel`` printed a pydantic trace."""
    await queue.enqueue(lines(6), batch_id="b1")
    await poison(redis, "b1", 1, 3, 4)
    await queue.store.stopper.stop("b1", why)
    status = await queue.status("b1")
    assert status.state == why and status.done
    results = {r.custom_id: r for r in await queue.results("b1")}
    assert sorted(results) == [f"q{n}" for n in range(6)]  # joined back by custom_id
    for n in (1, 3, 4):
        bad = results[f"q{n}"]
        assert (bad.status, bad.error.type, bad.model) == ("failed", "BadRequestData", "gpt-4o")
        assert "service_tier" in bad.error.message and "extra_forbidden" in bad.error.message
    stopped = "cancelled" if why == "cancelled" else "failed"
    assert {results[f"q{n}"].status for n in (0, 2, 5)} == {stopped}


async def test_an_unreadable_request_shows_as_a_job_without_a_trace(queue, redis) -> None:
    await queue.enqueue(lines(2), batch_id="b1")
    await poison(redis, "b1", 1)
    job = await queue.job("b1.1")
    assert job.custom_id == "q1"  # still queued: the request is only read, never trusted


async def test_a_stop_of_a_batch_that_expired_meanwhile_writes_nothing(queue, redis) -> None:
    """The stop's cursor is moved only while the batch is there: no record is made again
    without its TTL (an HSET after the key expired)."""
    await queue.enqueue(lines(4), batch_id="b1")
    await queue.store.stopper.begin("b1", "cancelled")
    await redis.delete(keys.batch_meta("b1"))  # its record expired between two steps
    await queue.store.stopper._move_cursor("b1", "2")
    assert await redis.exists(keys.batch_meta("b1")) == 0
    assert await queue.store.stopper.unfinished() == []


async def test_only_unfinished_stops_are_read(queue, redis, monkeypatch) -> None:
    """Regression: every stop mark of the last 7 days was read every 2 s."""
    for n in range(3):
        await queue.enqueue(lines(2), batch_id=f"done{n}")
        await queue.store.stopper.stop(f"done{n}", "cancelled")
    await queue.enqueue(lines(4), batch_id="b1")
    await queue.store.stopper.begin("b1", "cancelled")

    async def every_mark(*_: object) -> None:
        raise AssertionError("read every stop mark")

    monkeypatch.setattr(redis, "hgetall", every_mark)
    assert [s.batch_id for s in await queue.store.stopper.unfinished()] == ["b1"]
    assert await redis.zcard(keys.unfinished_stops()) == 1


async def test_old_stop_marks_are_forgotten_on_redis_clock(queue, redis, monkeypatch) -> None:
    await queue.enqueue(lines(2), batch_id="b1")
    await queue.store.stopper.stop("b1", "cancelled")
    monkeypatch.setattr("time.time", lambda: 4_000_000_000.0)  # this host's clock is off
    assert await queue.store.stopper.forget_old_marks() == 0
    await redis.zadd(keys.stop_marks_by_age(), {"b1": 1})  # dated long ago, by Redis
    assert await queue.store.stopper.forget_old_marks() == 1
    assert await redis.hget(keys.stopped_batches(), "b1") is None
