"""Batch bookkeeping through the public API, on fakeredis."""

from __future__ import annotations

import json

import pytest

from contract import keys
from contract.config import QueueSettings
from contract.models import JobError, JobResult, Message
from producer.api import BatchNotFound, BatchQueue, JobState
from producer.inputs import PromptLine

SETTINGS = QueueSettings(redis_url="redis://unused", queue_name="test:queue")


def lines(count: int) -> list[PromptLine]:
    return [
        PromptLine(n + 1, f"q{n}", (Message(role="user", content=f"prompt {n}"),), "gpt-4o")
        for n in range(count)
    ]


@pytest.fixture
def queue(fake_redis) -> BatchQueue:
    return BatchQueue(fake_redis, SETTINGS)


async def finish(queue: BatchQueue, job_id: str, status: str = "succeeded") -> JobResult:
    request = await queue.store.request(job_id.rsplit(".", 1)[0], job_id)
    assert request is not None
    error = None if status == "succeeded" else JobError(type="UpstreamHiccup", message="x")
    content = "answer" if status == "succeeded" else None
    result = JobResult.for_request(request, status=status, content=content, error=error, attempts=1)
    await queue.store.save_result(result)
    return result


async def test_enqueue_keeps_order_and_writes_json_jobs(queue, fake_redis) -> None:
    batch = await queue.enqueue(lines(5), batch_id="b1")
    assert (batch.batch_id, batch.jobs) == ("b1", 5)
    job_ids = await queue.store.job_ids("b1")
    assert job_ids == [f"b1.{n}" for n in range(5)]
    queued = [m.decode() for m in await fake_redis.zrange("test:queue", 0, -1)]
    assert queued == job_ids  # scores keep input order
    raw = await fake_redis.get(keys.arq_job("b1.0"))
    job = json.loads(raw)  # JSON, never pickle
    assert job["f"] == "run_prompts"
    assert job["a"][0]["prompts"][0]["custom_id"] == "q0"
    assert 0 < await fake_redis.ttl(keys.batch_jobs("b1")) <= SETTINGS.result_ttl_seconds


async def test_status_counts_each_state(queue) -> None:
    await queue.enqueue(lines(4), batch_id="b1")
    request = await queue.store.request("b1", "b1.1")
    assert await queue.store.start(request) is not None
    await finish(queue, "b1.2")
    await finish(queue, "b1.3", "failed")
    status = await queue.status("b1")
    assert (status.total, status.queued, status.in_progress) == (4, 1, 1)
    assert (status.succeeded, status.failed, status.done) == (1, 1, False)


async def test_a_job_counted_twice_counts_once(queue) -> None:
    await queue.enqueue(lines(2), batch_id="b1")
    await finish(queue, "b1.0", "failed")
    await finish(queue, "b1.0", "succeeded")  # arq ran it again after a crash
    await finish(queue, "b1.0", "succeeded")
    status = await queue.status("b1")
    assert (status.succeeded, status.failed, status.queued) == (1, 0, 1)


async def test_done_when_every_job_has_a_result(queue) -> None:
    await queue.enqueue(lines(2), batch_id="b1")
    for job_id in ("b1.0", "b1.1"):
        await finish(queue, job_id)
    assert (await queue.wait("b1", timeout=1)).done


async def test_wait_times_out(queue) -> None:
    await queue.enqueue(lines(1), batch_id="b1")
    with pytest.raises(TimeoutError, match="0/1 finished"):
        await queue.wait("b1", timeout=0, poll_seconds=0.01)


async def test_results_in_input_order(queue) -> None:
    await queue.enqueue(lines(3), batch_id="b1")
    for job_id in ("b1.2", "b1.0", "b1.1"):
        await finish(queue, job_id)
    assert [r.custom_id for r in await queue.results("b1")] == ["q0", "q1", "q2"]
    assert [r.custom_id async for r in queue.iter_results("b1")] == ["q0", "q1", "q2"]


async def test_cancel_removes_queued_jobs_only(queue, fake_redis) -> None:
    await queue.enqueue(lines(3), batch_id="b1")
    await fake_redis.set(keys.arq_in_progress("b1.0"), b"1")  # a worker is running it
    await finish(queue, "b1.1")
    assert await queue.cancel("b1") == 1
    status = await queue.status("b1")
    assert (status.cancelled, status.succeeded, status.queued) == (1, 1, 1)
    cancelled = await queue.store.result("b1.2")
    assert cancelled.status == "cancelled" and cancelled.error.type == "Cancelled"
    assert not await fake_redis.exists(keys.arq_job("b1.2"))
    assert await fake_redis.zscore("test:queue", "b1.0") is not None


async def test_retry_requeues_only_failed_jobs(queue, fake_redis) -> None:
    await queue.enqueue(lines(3), batch_id="b1")
    await fake_redis.delete("test:queue")  # as if workers took them all
    await finish(queue, "b1.0")
    await finish(queue, "b1.1", "failed")
    await finish(queue, "b1.2", "failed")
    assert await queue.retry("b1") == 2
    assert sorted(m.decode() for m in await fake_redis.zrange("test:queue", 0, -1)) == [
        "b1.1",
        "b1.2",
    ]
    status = await queue.status("b1")
    assert (status.succeeded, status.failed, status.queued) == (1, 0, 2)
    assert await queue.store.result("b1.1") is None


async def test_job_without_result_says_where_it_is(queue) -> None:
    await queue.enqueue(lines(1), batch_id="b1")
    state = await queue.job("b1.0")
    assert isinstance(state, JobState) and state.status == "queued" and state.custom_id == "q0"
    await finish(queue, "b1.0")
    assert (await queue.job("b1.0")).status == "succeeded"


async def test_batch_ids_are_checked(queue) -> None:
    await queue.enqueue(lines(1), batch_id="b1")
    with pytest.raises(ValueError, match="already exists"):
        await queue.enqueue(lines(1), batch_id="b1")
    with pytest.raises(ValueError, match="must be 1-64"):
        await queue.enqueue(lines(1), batch_id="bad id!")


async def test_unknown_batch_is_a_clear_error(queue) -> None:
    with pytest.raises(BatchNotFound, match="no batch 'nope'"):
        await queue.status("nope")
    with pytest.raises(BatchNotFound):
        await queue.cancel("nope")
