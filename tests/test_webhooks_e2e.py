"""Webhooks from a worker fleet alone (no ``serve``): real worker processes, the simulator, and a
receiver that checks every delivery with the official SDK's ``unwrap``."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime

import pytest
from redis.asyncio import Redis

from contract.batches import BatchStore
from simulator.local import wait_until
from tests import webhook_receiver
from tests.chaos import enqueue, status, write_prompts
from tests.webhook_receiver import SECRET

pytestmark = pytest.mark.e2e

WEBHOOKS = {"webhook_secret": SECRET, "webhook_retry_base_seconds": 0.2,
            "webhook_retry_cap_seconds": 1}  # fmt: skip


def ended_at(fleet, batch_id: str) -> float:
    shown = status(fleet, batch_id)
    return datetime.fromisoformat(shown["completed_at"]).timestamp()


async def record_refused(redis_url: str, queue_name: str, batch_id: str) -> None:
    """A batch whose input the API refused, recorded as ``serve`` records it."""
    client = Redis.from_url(redis_url)
    try:
        store = BatchStore(client, queue_name=queue_name, ttl_seconds=3600)
        await store.record_failed(batch_id, {"created_at": "2026-01-01T00:00:00+00:00"}, [])
    finally:
        await client.aclose()


def test_each_way_a_batch_ends_is_told_within_seconds(fleet, tmp_path) -> None:
    fleet.start_simulator("--latency", "fixed:20")
    with webhook_receiver.running() as receiver:
        fleet.start_workers(1, proxy_rate_per_second=0, webhook_urls=receiver.url, **WEBHOOKS)
        done = enqueue(fleet, tmp_path, 20)
        wait_until(lambda: receiver.accepted(), timeout=60, what="batch.completed delivered")
        received_at = time.time()
        (first,) = receiver.accepted()
        assert (first.event.type, first.event.data.id) == ("batch.completed", done)
        assert first.problem == ""
        delay = received_at - ended_at(fleet, done)
        assert delay <= 5.0, f"delivered {delay:.2f}s after the batch ended"
        print(f"\nbatch.completed delivered {delay:.2f}s after the batch ended")
        # A cancelled batch, and one whose input the API refused (written as serve does).
        slow = fleet.cli("enqueue", write_prompts(tmp_path / "slow.jsonl", 1000), "--json")
        slow_id = json.loads(slow.stdout)["batch_id"]
        assert fleet.cli("cancel", slow_id).returncode == 0
        asyncio.run(record_refused(fleet.redis_url, fleet.queue_name, "batch_refused"))
        wait_until(lambda: len(receiver.accepted()) == 3, timeout=60, what="3 events delivered")
    told = {(d.event.type, d.event.data.id) for d in receiver.accepted()}
    assert told == {("batch.completed", done), ("batch.cancelled", slow_id),
                    ("batch.failed", "batch_refused")}  # fmt: skip
    assert len({d.headers["webhook-id"] for d in receiver.deliveries}) == 3
    assert "webhook.delivered" in fleet.worker_logs()


def test_a_receiver_down_for_three_attempts_gets_the_same_event_later(fleet, tmp_path) -> None:
    fleet.start_simulator("--latency", "fixed:20")
    with webhook_receiver.running(refuse_first=3) as receiver:
        fleet.start_workers(2, proxy_rate_per_second=0, webhook_urls=receiver.url, **WEBHOOKS)
        batch_id = enqueue(fleet, tmp_path, 10)
        wait_until(lambda: receiver.accepted(), timeout=60, what="the 4th attempt taken")
    assert [d.answered for d in receiver.deliveries] == [503, 503, 503, 200]
    assert {d.headers["webhook-id"] for d in receiver.deliveries} == {
        receiver.accepted()[0].event.id
    }
    assert all(d.event.data.id == batch_id for d in receiver.deliveries)
