"""A batch's end writes its webhook event in the same step, whoever ends it, where an endpoint
is configured for it and nowhere else — on fakeredis and on a real redis-server."""

from __future__ import annotations

import json
import time

import pytest

from contract import keys
from contract.models import JobError, JobResult
from contract.outbox import (
    ENDPOINT_FRESH_SECONDS,
    EVENT_KEEP_SECONDS,
    FLEET,
    announce_endpoints,
    read_outbox,
)
from producer.api import BatchQueue
from producer.http import records
from tests.batching import SETTINGS, lines


async def announce(redis, *endpoints: tuple[str, str], at_ms: int | None = None) -> None:
    """Workers deliver to these endpoints, each (project, label); FLEET for the fleet's."""
    found = [(f"k{n}", project, label) for n, (project, label) in enumerate(endpoints)]
    await announce_endpoints(redis, "w1", found, at_ms or int(time.time() * 1000))


@pytest.fixture
async def queue(redis) -> BatchQueue:
    await announce(redis, (FLEET, "https://hooks.example"))  # an endpoint for every batch
    return BatchQueue(redis, SETTINGS)


@pytest.fixture
def bare_queue(redis) -> BatchQueue:
    """No worker delivers webhooks anywhere."""
    return BatchQueue(redis, SETTINGS)


async def settle(queue: BatchQueue, batch_id: str, *indices: int, status: str = "succeeded"):
    created = await queue.store.created_at(batch_id)
    requests = await queue.store.requests(batch_id, list(indices), created)
    error = JobError(type="ContentRefused", message="refused") if status == "failed" else None
    results = [JobResult.for_request(r, status=status, error=error) for r in requests]
    return await queue.store.ledger.save_results(results)


async def events(redis) -> list[dict]:
    """The events in the outbox, oldest first, as their bodies say."""
    found = []
    for event_id in await redis.zrange(keys.webhook_outbox(), 0, -1):
        body = await redis.hget(keys.webhook_event(keys.decoded(event_id)), "body")
        found.append(json.loads(body))
    return found


async def test_the_last_result_ends_the_batch_and_writes_its_event(queue, redis) -> None:
    await queue.enqueue(lines(3), batch_id="b1")
    await settle(queue, "b1", 0, 1)
    assert await events(redis) == []  # not ended yet
    await settle(queue, "b1", 2, status="failed")
    (event,) = await events(redis)
    assert event["id"].startswith("evt_") and len(event["id"]) == 36
    assert event == {"id": event["id"], "object": "event", "type": "batch.completed",
                     "created_at": event["created_at"], "data": {"id": "b1"}}  # fmt: skip
    assert abs(event["created_at"] - (await queue.status("b1")).completed_at.timestamp()) < 2
    event_key = keys.webhook_event(event["id"])
    assert 0 < await redis.ttl(event_key) <= EVENT_KEEP_SECONDS
    assert 0 < await redis.ttl(keys.webhook_outbox()) <= EVENT_KEEP_SECONDS
    await settle(queue, "b1", 2)  # a chunk run again after a crash: nothing ends twice
    assert len(await events(redis)) == 1


async def test_a_cancel_and_an_expiry_end_with_their_events(queue, redis) -> None:
    await queue.enqueue(lines(2), batch_id="b1")
    await queue.enqueue(lines(2), batch_id="b2")
    await queue.cancel("b1")
    await queue.store.stopper.expire("b2")
    assert [(e["type"], e["data"]["id"]) for e in await events(redis)] == [
        ("batch.cancelled", "b1"), ("batch.expired", "b2"),
    ]  # fmt: skip


async def test_a_batch_that_ends_twice_makes_two_events(queue, redis) -> None:
    await queue.enqueue(lines(1), batch_id="b1")
    await settle(queue, "b1", 0, status="failed")
    assert await queue.retry("b1") == 1
    await settle(queue, "b1", 0)
    first, second = await events(redis)
    assert first["type"] == second["type"] == "batch.completed"
    assert first["id"] != second["id"]


async def test_a_refused_input_records_a_failed_batch_and_its_event_once(queue, redis) -> None:
    errors = [{"code": "invalid_request", "line": 2, "message": "bad", "param": None}]
    meta = {"created_at": "2026-01-01T00:00:00+00:00", "completion_window": "24h",
            "metadata": "{}"}  # fmt: skip
    assert await queue.store.record_failed("batch_x", meta, errors) is True
    assert await queue.store.record_failed("batch_x", meta, errors) is False
    status = await queue.status("batch_x")
    assert (status.state, status.total, status.errors) == ("failed", 0, errors)
    assert status.failed_at is not None and status.completion_window == "24h"
    assert [b.batch_id for b in await queue.batches()] == ["batch_x"]
    assert [(e["type"], e["data"]["id"]) for e in await events(redis)] == [
        ("batch.failed", "batch_x")
    ]


async def test_nothing_is_written_for_a_gone_batch(queue, redis) -> None:
    await queue.enqueue(lines(1), batch_id="b1")
    created = await queue.store.created_at("b1")
    (request,) = await queue.store.requests("b1", [0], created)
    await queue.store.discard("b1")
    result = JobResult.for_request(request, status="succeeded", content="hi")
    assert await queue.store.ledger.save_results([result]) == 0
    assert await redis.exists(keys.webhook_outbox()) == 0


async def test_an_event_id_in_a_hostile_batch_id_stays_json(queue, redis) -> None:
    meta = {"created_at": "2026-01-01T00:00:00+00:00", "metadata": "{}"}
    await queue.store.record_failed('b"}<script>\\', meta, [])
    (event,) = await events(redis)
    assert event["data"]["id"] == 'b"}<script>\\'


async def test_read_outbox_counts_pending_and_lists_the_next(queue, redis) -> None:
    for n in range(3):
        await queue.enqueue(lines(1), batch_id=f"b{n}")
        await settle(queue, f"b{n}", 0)
    state = await read_outbox(redis, now_ms=int(time.time() * 1000), shown=2)
    assert (state.pending, state.failed, state.deliverers) == (3, 0, 1)
    assert [(e.project, e.label) for e in state.endpoints] == [(FLEET, "https://hooks.example")]
    shown = [(e.type, e.batch_id, e.attempts) for e in state.next_pending]
    # (the first due; events of the same millisecond come in their IDs' order)
    assert len(shown) == 2 and set(shown) <= {("batch.completed", f"b{n}", 0) for n in range(3)}
    assert state.last_failed == []


async def test_a_chat_completions_batch_ends_without_an_event(queue, redis) -> None:
    await queue.enqueue(lines(1), batch_id="chat_0123")
    await settle(queue, "chat_0123", 0)
    assert (await queue.status("chat_0123")).state == "completed"
    assert await redis.exists(keys.webhook_outbox()) == 0


# -- where an endpoint is configured, and nowhere else ---------------------------------


async def test_with_no_endpoint_anywhere_a_batch_ends_without_an_event(bare_queue, redis) -> None:
    await bare_queue.enqueue(lines(1), batch_id="b1")
    await settle(bare_queue, "b1", 0)
    meta = {"created_at": "2026-01-01T00:00:00+00:00", "metadata": "{}"}
    await bare_queue.store.record_failed("batch_x", meta, [])
    assert (await bare_queue.status("b1")).state == "completed"
    assert await redis.exists(keys.webhook_outbox()) == 0
    assert not (await read_outbox(redis, now_ms=int(time.time() * 1000))).configured


async def test_an_endpoint_announced_over_an_hour_ago_is_gone(bare_queue, redis) -> None:
    stale = int(time.time() * 1000) - (ENDPOINT_FRESH_SECONDS + 60) * 1000
    await announce(redis, (FLEET, "https://hooks.example"), at_ms=stale)
    await bare_queue.enqueue(lines(1), batch_id="b1")
    await settle(bare_queue, "b1", 0)
    assert await redis.exists(keys.webhook_outbox()) == 0


async def test_a_projects_own_endpoint_tells_its_batches_only(bare_queue, redis) -> None:
    await announce(redis, ("team-a", "https://a.example"))
    for batch_id, project in (("batch_a", "team-a"), ("batch_b", "team-b"), ("b_cli", None)):
        await bare_queue.enqueue(lines(1), batch_id=batch_id)
        if project:
            await records.save_extras(redis, batch_id, {"kind": "batch", "project": project}, 60)
        await settle(bare_queue, batch_id, 0)
    assert [e["data"]["id"] for e in await events(redis)] == ["batch_a"]


async def test_the_fleets_endpoint_is_the_default_a_projects_own_replaces(
    bare_queue, redis
) -> None:
    await announce(redis, (FLEET, "https://fleet.example"), ("team-a", "https://a.example"))
    for batch_id, project in (("batch_a", "team-a"), ("batch_b", "team-b")):
        await bare_queue.enqueue(lines(1), batch_id=batch_id)
        await records.save_extras(redis, batch_id, {"kind": "batch", "project": project}, 60)
        await settle(bare_queue, batch_id, 0)
    assert sorted(e["data"]["id"] for e in await events(redis)) == ["batch_a", "batch_b"]


async def test_a_disabled_endpoint_is_told_nothing(bare_queue, redis) -> None:
    await announce(redis, (FLEET, "https://gone.example"))
    await redis.hset(keys.webhook_health(), "k0:disabled", int(time.time() * 1000))
    await bare_queue.enqueue(lines(1), batch_id="b1")
    await settle(bare_queue, "b1", 0)
    assert await redis.exists(keys.webhook_outbox()) == 0


async def test_the_outbox_holds_at_most_its_bound(queue, redis) -> None:
    from contract.scripts import source

    assert "local OUTBOX_AT_MOST = 100000" in source("contract", "save_results")
    now_ms = int(time.time() * 1000)
    await redis.zadd(keys.webhook_outbox(), {f"evt_old{n}": now_ms - 1000 + n for n in range(5)})
    script = source("contract", "batch_events").replace("100000", "3")
    run = redis.register_script(script + "\nannounce_end(KEYS[1], KEYS[2], ARGV[1], 'b', "
                                "'completed', ARGV[2], 60)")  # fmt: skip
    await run(keys=[keys.webhook_outbox(), keys.webhook_event("evt_new")],
              args=["evt_new", now_ms])  # fmt: skip
    kept = [keys.decoded(m) for m in await redis.zrange(keys.webhook_outbox(), 0, -1)]
    assert kept == ["evt_old3", "evt_old4", "evt_new"]  # the oldest went first


async def test_a_refused_input_of_a_project_is_told_to_that_projects_endpoint(
    bare_queue, redis
) -> None:
    await announce(redis, ("team-a", "https://a.example"))
    meta = {"created_at": "2026-01-01T00:00:00+00:00", "metadata": "{}"}
    # The API records the refusal before it writes the batch's record (with the project).
    await bare_queue.store.record_failed("batch_a", meta, [], project="team-a")
    await bare_queue.store.record_failed("batch_b", meta, [], project="team-b")
    assert [e["data"]["id"] for e in await events(redis)] == ["batch_a"]
