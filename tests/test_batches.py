"""Batch bookkeeping through the public API and the store the worker uses, on fakeredis."""

from __future__ import annotations

import json
import re
import threading

import pytest

from contract import keys
from contract.batches import STAGING_IDLE_SECONDS, BatchStore, ClaimLost, RetryRefused
from contract.models import JobError, JobResult, PromptRequest, RequestParams, utc_now
from producer.api import BatchExists, BatchNotFound, BatchQueue, JobState
from producer.inputs import InputFileError, LineProblem, parse_prompt_lines
from tests.batching import SETTINGS, lines
from tests.conftest import eventually


@pytest.fixture
def queue(redis) -> BatchQueue:
    return BatchQueue(redis, SETTINGS)


async def request(queue: BatchQueue, batch_id: str, index: int) -> PromptRequest:
    created = await queue.store.created_at(batch_id)
    assert created is not None
    (found,) = await queue.store.requests(batch_id, [index], created)
    return found


async def finish(queue: BatchQueue, batch_id: str, index: int, status: str = "succeeded") -> int:
    """Stores a result the way a worker does; returns how many results were stored."""
    error = None if status == "succeeded" else JobError(type="UpstreamHiccup", message="x")
    content = "answer" if status == "succeeded" else None
    result = JobResult.for_request(
        await request(queue, batch_id, index), status=status, content=content, error=error
    )
    return await queue.store.ledger.save_results([result])


async def queued_chunks(redis) -> list[tuple[str, list[int]]]:
    found = []
    for raw in await redis.zrange("test:queue", 0, -1):
        chunk_id = raw.decode()
        job = json.loads(await redis.get(keys.arq_job(chunk_id)))  # JSON, never pickle
        assert job["f"] == "run_chunk"
        found.append((chunk_id, job["a"][0]["indices"]))
    return found


async def test_enqueue_publishes_json_chunks_in_input_order(queue, redis) -> None:
    batch = await queue.enqueue(lines(5), batch_id="b1")
    assert (batch.batch_id, batch.jobs) == ("b1", 5)
    assert await queued_chunks(redis) == [("b1:0", [0]), ("b1:1", [1]), ("b1:2", [2]),
                                              ("b1:3", [3]), ("b1:4", [4])]  # fmt: skip
    status = await queue.status("b1")
    assert (status.state, status.total, status.queued, status.done) == ("in_progress", 5, 5, False)


async def test_a_big_batch_travels_in_chunks_and_a_small_one_is_spread(redis) -> None:
    queue = BatchQueue(redis, SETTINGS.model_copy(update={"chunk_size": 50}))
    await queue.enqueue(lines(1000), batch_id="big")
    await queue.enqueue(lines(40), batch_id="small")
    chunks = dict(await queued_chunks(redis))
    assert sum(1 for c in chunks if c.startswith("big:")) == 20
    assert chunks["big:0"] == list(range(50))
    assert [len(chunks[f"small:{n}"]) for n in range(8)] == [5] * 8


async def test_a_batch_behind_a_big_one_takes_turns_with_it(redis) -> None:
    queue = BatchQueue(redis, SETTINGS.model_copy(update={"chunk_size": 10}))
    await queue.enqueue(lines(1000), batch_id="big")
    await redis.zrem("test:queue", *(f"big:{n}" for n in range(30)))  # 30 chunks done
    await queue.enqueue(lines(30), batch_id="small")
    head = [chunk_id for chunk_id, _ in await queued_chunks(redis)][:6]
    assert head == ["big:30", "small:0", "big:31", "small:1", "big:32", "small:2"]


STAGED_META = {"total": "0", "created_at": "2026-01-01T00:00:00+00:00"}


def stored(count: int) -> list[str]:
    return [
        json.dumps({"custom_id": f"q{n}", "messages": [{"role": "user", "content": "x"}],
                    "model": "gpt-4o"}) for n in range(count)
    ]  # fmt: skip


async def idle_for(redis, batch_id: str, seconds: float) -> None:
    """As if the staging of ``batch_id`` was last written ``seconds`` ago."""
    (now_s, now_us) = await redis.time()
    touched = int(now_s * 1000 + now_us // 1000 - seconds * 1000)
    await redis.hset(keys.batch_meta(batch_id), "touched_ms", touched)


async def test_an_interrupted_enqueue_leaves_nothing_to_run(queue, redis) -> None:
    assert await queue.store.claim("b1", "dead", STAGED_META) is None
    await queue.store.stage("b1", "dead", 0, stored(3))
    # ... and then the producer died before publishing.
    assert await redis.zcard("test:queue") == 0
    status = await queue.status("b1")
    assert (status.state, status.total, status.done) == ("validating", 3, False)
    assert 0 < await redis.ttl(keys.batch_meta("b1")) <= 3600
    assert 0 < await redis.ttl(keys.batch_requests("b1")) <= 3600
    # Its ID is not free while the staging may still be under way ...
    with pytest.raises(BatchExists, match="batch b1 already exists"):
        await queue.enqueue(lines(2), batch_id="b1")
    # ... and is once nothing was staged for a minute: a re-run takes it, whole.
    await idle_for(redis, "b1", STAGING_IDLE_SECONDS + 1)
    await queue.enqueue(lines(2), batch_id="b1")
    assert [c for c, _ in await queued_chunks(redis)] == ["b1:0", "b1:1"]
    assert (await queue.status("b1")).total == 2
    assert await redis.hlen(keys.batch_requests("b1")) == 2


async def test_an_enqueue_that_lost_its_claim_writes_nothing_more(queue, redis) -> None:
    assert await queue.store.claim("b1", "slow", STAGED_META) is None
    await queue.store.stage("b1", "slow", 0, stored(3))
    await idle_for(redis, "b1", STAGING_IDLE_SECONDS + 1)
    await queue.enqueue(lines(2), batch_id="b1")  # took the abandoned ID
    with pytest.raises(ClaimLost):
        await queue.store.stage("b1", "slow", 3, stored(5)[3:])
    with pytest.raises(ClaimLost):
        await queue.store.publish("b1", "slow", 5, 2)
    assert not await queue.store.release("b1", "slow")
    assert await redis.hlen(keys.batch_requests("b1")) == 2
    assert (await queue.status("b1")).total == 2


async def test_a_published_batch_is_never_claimed_again(queue, redis) -> None:
    await queue.enqueue(lines(1), batch_id="b1")
    await idle_for(redis, "b1", 10 * STAGING_IDLE_SECONDS)
    assert await queue.store.claim("b1", "other", STAGED_META) == "in_progress"
    with pytest.raises(BatchExists, match=r"batch b1 already exists \(in_progress\)"):
        await queue.enqueue(lines(3), batch_id="b1")
    assert (await queue.status("b1")).total == 1


async def test_a_bad_block_after_staged_ones_takes_them_back(queue, redis) -> None:
    def blocks():
        yield lines(3)
        raise InputFileError("f", [LineProblem(4, "bad")])

    with pytest.raises(InputFileError):
        await queue._enqueue_blocks(blocks(), "b1", "24h", None, None)
    assert await redis.keys("*") == []
    await queue.enqueue(lines(1), batch_id="b1")  # the ID is free at once


async def test_a_file_is_staged_in_blocks_and_published_once(queue, redis, tmp_path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text("".join(
        json.dumps({"messages": [{"role": "user", "content": f"p{n}"}]}) + "\n"
        for n in range(12_345)))  # fmt: skip
    seen: list[int] = []
    batch = await queue.enqueue_file(str(path), batch_id="big", progress=seen.append)
    assert batch.jobs == 12_345 and seen == [5000, 10_000, 12_345]
    status = await queue.status("big")
    assert (status.state, status.total, status.queued) == ("in_progress", 12_345, 12_345)
    assert await redis.zcard("test:queue") == await redis.scard(keys.batch_chunks("big"))
    request = (await queue.store.requests("big", [12_344], utc_now()))[0]
    assert (request.custom_id, request.messages[0].content) == ("12345", "p12344")
    for chunk_id, _ in await queued_chunks(redis):
        assert await redis.ttl(keys.arq_job(chunk_id)) > 3600


async def test_the_next_block_is_read_while_one_is_staged(queue, redis, monkeypatch) -> None:
    taken = []  # block numbers, as the reader takes them
    second_taken = threading.Event()

    def blocks():
        for number in range(3):
            taken.append(number)
            if number == 1:
                second_taken.set()
            yield lines(2)

    real_stage = queue.store.stage

    async def stage(batch_id, owner, start, requests):  # type: ignore[no-untyped-def]
        if start == 0:  # Redis is "still staging" block 0 until block 1 has been read
            await eventually(second_taken.is_set, what="block 1 read during block 0's staging")
        await real_stage(batch_id, owner, start, requests)

    monkeypatch.setattr(queue.store, "stage", stage)
    assert await queue._enqueue_blocks(blocks(), "b1", "24h", None, None) == 6
    assert taken == [0, 1, 2] and (await queue.status("b1")).total == 6


async def test_a_bad_line_late_in_a_file_enqueues_nothing(queue, redis, tmp_path) -> None:
    good = json.dumps({"messages": [{"role": "user", "content": "x"}]})
    path = tmp_path / "p.jsonl"
    path.write_text((good + "\n") * 7000 + "{oops\n" + (good + "\n") * 10 + "[]\n")
    with pytest.raises(InputFileError) as caught:
        await queue.enqueue_file(str(path), batch_id="b1")
    assert [p.line_number for p in caught.value.problems] == [7001, 7012]
    assert await redis.keys("*") == []


async def test_every_key_written_has_a_ttl(queue, redis) -> None:
    await queue.enqueue(lines(3), batch_id="b1")
    await finish(queue, "b1", 0)
    await queue.store.ledger.spend("b1", 1, "UpstreamHiccup", (await queue.store.created_at("b1")))
    for key in keys.batch_keys("b1"):
        if await redis.exists(key):
            assert 0 < await redis.ttl(key) <= SETTINGS.result_ttl_seconds, key


async def test_status_counts_each_state(queue) -> None:
    await queue.enqueue(lines(5), batch_id="b1")
    started = await queue.store.ledger.start_chunk("b1", [0, 1])
    assert started.batch_state == "in_progress"
    assert [p.state_before for p in started.prompts] == ["queued", "queued"]
    await queue.store.ledger.mark("b1", [1], "waiting")
    await finish(queue, "b1", 2)
    await finish(queue, "b1", 3, "failed")
    status = await queue.status("b1")
    assert (status.total, status.queued, status.in_progress, status.waiting) == (5, 1, 1, 1)
    assert (status.succeeded, status.failed, status.done) == (1, 1, False)


async def test_a_prompt_run_twice_is_counted_once_and_keeps_its_first_result(queue) -> None:
    await queue.enqueue(lines(2), batch_id="b1")
    assert await finish(queue, "b1", 0, "failed") == 1
    assert await finish(queue, "b1", 0, "succeeded") == 0  # a chunk re-run after a crash
    status = await queue.status("b1")
    assert (status.succeeded, status.failed, status.queued) == (0, 1, 1)
    restarted = await queue.store.ledger.start_chunk("b1", [0, 1])
    assert [p.state_before for p in restarted.prompts] == ["failed", "queued"]


async def test_done_when_every_prompt_has_a_result(queue) -> None:
    await queue.enqueue(lines(2), batch_id="b1")
    for index in (0, 1):
        await finish(queue, "b1", index)
    status = await queue.wait("b1", timeout=1)
    assert status.done and status.state == "completed" and status.completed_at is not None


async def test_wait_times_out(queue) -> None:
    await queue.enqueue(lines(1), batch_id="b1")
    with pytest.raises(TimeoutError, match="0/1 finished"):
        await queue.wait("b1", timeout=0, poll_seconds=0.01)


async def test_results_in_input_order(queue) -> None:
    await queue.enqueue(lines(3), batch_id="b1")
    for index in (2, 0, 1):
        await finish(queue, "b1", index)
    assert [r.custom_id for r in await queue.results("b1")] == ["q0", "q1", "q2"]
    raws = [json.loads(raw) async for raw in queue.iter_raw_results("b1")]
    assert [r["job_id"] for r in raws] == ["b1.0", "b1.1", "b1.2"]


async def test_cancel_takes_back_queued_chunks_and_leaves_held_ones(queue, redis) -> None:
    await queue.enqueue(lines(3), batch_id="b1")
    await redis.set(keys.arq_in_progress("b1:0"), b"1")  # a worker holds chunk 0
    await queue.store.ledger.start_chunk("b1", [0])
    await finish(queue, "b1", 1)
    assert await queue.cancel("b1") == 1
    status = await queue.status("b1")
    assert (status.state, status.cancelled, status.succeeded, status.in_progress) == (
        "cancelling", 1, 1, 1,
    )  # fmt: skip
    cancelled = await queue.job("b1.2")
    assert isinstance(cancelled, JobResult) and cancelled.error.type == "Cancelled"
    assert not await redis.exists(keys.arq_job("b1:2"))
    assert await redis.zscore("test:queue", "b1:0") is not None
    # Workers are refused leases for it from now on; when the held prompt settles, it ends.
    assert (await redis.hget(keys.stopped_batches(), "b1")).startswith(b"cancelled ")
    await queue.store.ledger.save_results([
        JobResult.for_request(await request(queue, "b1", 0), status="cancelled")
    ])  # fmt: skip
    assert (await queue.status("b1")).state == "cancelled"


async def test_cancel_of_a_finished_batch_changes_nothing(queue) -> None:
    await queue.enqueue(lines(1), batch_id="b1")
    await finish(queue, "b1", 0)
    assert await queue.cancel("b1") == 0
    assert (await queue.status("b1")).state == "completed"


async def test_retry_requeues_only_failed_prompts(queue, redis) -> None:
    await queue.enqueue(lines(3), batch_id="b1")
    await redis.delete("test:queue")  # as if workers took every chunk
    await finish(queue, "b1", 0)
    await finish(queue, "b1", 1, "failed")
    await finish(queue, "b1", 2, "failed")
    assert (await queue.status("b1")).state == "completed"
    assert await queue.retry("b1") == 2
    [(first, one), (second, two)] = await queued_chunks(redis)
    assert (one, two) == ([1], [2])
    assert re.fullmatch(r"b1:r[0-9a-f]{6}:0", first) and second == first[:-1] + "1"
    status = await queue.status("b1")
    assert (status.state, status.succeeded, status.failed, status.queued) == (
        "in_progress", 1, 0, 2,
    )  # fmt: skip
    assert isinstance(await queue.job("b1.1"), JobState)
    assert await queue.retry("b1") == 0


@pytest.mark.parametrize("stop", ["cancel", "expire"])
async def test_retry_of_a_stopped_batch_is_refused_and_rewrites_nothing(queue, redis, stop) -> None:
    await queue.enqueue(lines(3), batch_id="b1")
    await queue.store.ledger.mark("b1", [1, 2], "running")  # a worker holds two prompts ...
    await finish(queue, "b1", 0, "failed")  # ... and the site refused one
    if stop == "cancel":
        await queue.cancel("b1")
    else:
        await queue.store.stopper.expire("b1")
    held = await queue.store.raw_results("b1", [0])
    before = await queue.status("b1")
    assert before.state in ("cancelling", "expiring")  # two prompts still held by a worker
    with pytest.raises(RetryRefused, match=f"batch b1 is {before.state}: retry is refused"):
        await queue.retry("b1")
    await finish(queue, "b1", 1)
    await finish(queue, "b1", 2)
    after = await queue.status("b1")
    assert after.state == {"cancel": "cancelled", "expire": "expired"}[stop]
    with pytest.raises(RetryRefused, match=f"is {after.state}"):
        await queue.retry("b1")
    assert await queue.store.raw_results("b1", [0]) == held
    assert [c for c, _ in await queued_chunks(redis) if ":r" in c] == []  # no retry chunk
    assert (await queue.status("b1")).failed == 1


async def test_a_batch_stopped_while_its_retry_is_built_is_left_alone(queue, redis) -> None:
    """The state is read by the script that moves the prompts: a stop in between wins."""
    await queue.enqueue(lines(2), batch_id="b1")
    await redis.delete("test:queue")
    await finish(queue, "b1", 0, "failed")
    await finish(queue, "b1", 1, "failed")
    real_state = queue.store.state

    async def stopped_after_reading(batch_id: str) -> str | None:
        state = await real_state(batch_id)
        await redis.hset(keys.batch_meta(batch_id), "state", "cancelled")
        return state

    queue.store.state = stopped_after_reading
    with pytest.raises(RetryRefused, match="is cancelled"):
        await queue.retry("b1")
    status = await queue.status("b1")
    assert (status.failed, status.queued) == (2, 0)
    assert await queued_chunks(redis) == []


async def test_job_without_result_says_where_it_is(queue) -> None:
    await queue.enqueue(lines(2), batch_id="b1")
    state = await queue.job("b1.0")
    assert isinstance(state, JobState) and state.status == "queued" and state.custom_id == "q0"
    await queue.store.ledger.start_chunk("b1", [0])
    await queue.store.ledger.spend("b1", 0, "UpstreamHiccup", (await queue.store.created_at("b1")))
    state = await queue.job("b1.0")
    assert isinstance(state, JobState) and (state.status, state.attempts) == ("in_progress", 1)
    await finish(queue, "b1", 0)
    assert (await queue.job("b1.0")).status == "succeeded"


async def test_batch_ids_are_checked(queue) -> None:
    await queue.enqueue(lines(1), batch_id="b1")
    with pytest.raises(ValueError, match="already exists"):
        await queue.enqueue(lines(1), batch_id="b1")
    with pytest.raises(ValueError, match="must be 1-64"):
        await queue.enqueue(lines(1), batch_id="bad id!")


async def test_unknown_batch_and_job_are_clear_errors(queue) -> None:
    with pytest.raises(BatchNotFound, match="no batch 'nope'"):
        await queue.status("nope")
    with pytest.raises(BatchNotFound):
        await queue.cancel("nope")
    await queue.enqueue(lines(1), batch_id="b1")
    for job_id in ("b1.7", "b1", "nope.0", "b1.x"):
        with pytest.raises(LookupError):
            await queue.job(job_id)


async def test_a_gone_batch_starts_nothing(redis) -> None:
    store = BatchStore(redis, queue_name="test:queue", ttl_seconds=60)
    started = await store.ledger.start_chunk("expired", [0, 1])
    assert started.batch_state is None and started.prompts == ()


PICKLE = b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94."


async def test_a_planted_result_is_refused_as_bad_data(queue, redis) -> None:
    await queue.enqueue(lines(2), batch_id="b1")
    await finish(queue, "b1", 0)
    await redis.hset(keys.batch_results("b1"), 1, PICKLE)  # someone wrote a pickle
    shown = [json.loads(raw) async for raw in queue.iter_raw_results("b1")]
    assert [(r["custom_id"], r["status"]) for r in shown] == [("q0", "succeeded"), ("q1", "failed")]
    assert shown[1]["error"]["type"] == "BadResultData"
    parsed = await queue.results("b1")
    assert parsed[1].error is not None and parsed[1].error.type == "BadResultData"
    job = await queue.job("b1.1")
    assert isinstance(job, JobResult) and job.error.type == "BadResultData"


async def test_a_batch_carries_its_window_metadata_and_timestamps(queue) -> None:
    await queue.enqueue(lines(2), batch_id="b1", completion_window="90m",
                        metadata={"project": "atlas"})  # fmt: skip
    status = await queue.status("b1")
    assert (status.completion_window, status.metadata) == ("90m", {"project": "atlas"})
    assert status.in_progress_at is not None and status.created_at is not None
    assert (status.expires_at - status.created_at).total_seconds() == 90 * 60


@pytest.mark.parametrize(
    ("window", "metadata"),
    [("24", None), ("0s", None), ("31d", None), ("24h", {"k": 1}),
     ("24h", {f"k{n}": "v" for n in range(17)}), ("24h", {"k": "v" * 513})],
)  # fmt: skip
async def test_a_bad_window_or_metadata_enqueues_nothing(queue, redis, window, metadata) -> None:
    with pytest.raises(ValueError):
        await queue.enqueue(lines(1), batch_id="b1", completion_window=window, metadata=metadata)
    assert await redis.keys("*") == []


async def test_a_chunk_started_after_the_window_sends_nothing(queue, redis) -> None:
    await queue.enqueue(lines(2), batch_id="b1")
    await redis.hset(keys.batch_meta("b1"), "expires_ms", 1)
    started = await queue.store.ledger.start_chunk("b1", [0, 1])
    assert started.past_its_window and started.batch_state == "in_progress"
    assert (await queue.status("b1")).in_progress == 0  # not marked running


async def test_a_failed_batch_keeps_its_errors(queue) -> None:
    errors = [{"code": "invalid_json", "line": 3, "message": "not valid JSON"}]
    await queue.store.record_failed("bad", {"created_at": "2026-01-01T00:00:00+00:00"}, errors)
    status = await queue.status("bad")
    assert (status.state, status.total, status.done, status.errors) == ("failed", 0, True, errors)
    assert [b.batch_id for b in await queue.batches()] == ["bad"]


async def test_honoured_parameters_reach_the_worker_and_others_are_not_stored(queue, redis) -> None:
    openai_lines = [
        {"custom_id": "json", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
                  "response_format": {"type": "json_object"}, "stop": "END",
                  "temperature": 0.2}},
        {"custom_id": "plain", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}},
    ]  # fmt: skip
    parsed = parse_prompt_lines(
        [json.dumps(line) for line in openai_lines], default_model="gpt-4o", max_prompt_chars=100
    )
    await queue.enqueue(parsed, batch_id="p1")
    honoured, plain = (await request(queue, "p1", 0)), (await request(queue, "p1", 1))
    assert honoured.params == RequestParams(stop=("END",), json_object=True)
    assert plain.params == RequestParams()
    stored = await redis.hmget(keys.batch_requests("p1"), ["0", "1"])
    assert json.loads(stored[0])["params"] == {"stop": ["END"], "json_object": True}
    assert "params" not in json.loads(stored[1])  # nothing given, nothing stored
