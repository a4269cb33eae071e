"""A webhook event outlives a Redis restart: it waits in the outbox (append-only persistence),
with its receiver down, and is delivered once Redis and the receiver are back."""

from __future__ import annotations

import pytest
import redis

from contract import keys
from contract.outbox import FLEET
from simulator.local import free_port, start_redis, stop_process, wait_until
from tests import webhook_receiver
from tests.chaos import done, enqueue
from tests.webhook_receiver import SECRET
from worker.webhook_endpoints import WebhookEndpoint

pytestmark = pytest.mark.chaos


def test_an_event_pending_across_a_redis_restart_is_delivered(fleet, tmp_path) -> None:
    port, receiver_port = free_port(), free_port()
    data = tmp_path / "redis-data"
    data.mkdir()
    server = start_redis(data, port, appendonly=True)
    try:
        fleet.redis_url = f"redis://127.0.0.1:{port}/0"
        fleet.start_simulator("--latency", "fixed:20")
        url = f"http://127.0.0.1:{receiver_port}/hooks"  # nothing listens there yet
        fleet.start_workers(1, proxy_rate_per_second=0, webhook_urls=url, webhook_secret=SECRET,
                            webhook_retry_base_seconds=0.5, webhook_retry_cap_seconds=1)  # fmt: skip
        batch_id = enqueue(fleet, tmp_path, 10)
        wait_until(done(fleet, batch_id), timeout=60, what="the batch done")
        client = redis.Redis(port=port)

        queue = keys.webhook_queue(WebhookEndpoint(FLEET, url, b"").key)

        def attempted() -> bool:
            ids = client.zrange(queue, 0, -1)
            event = keys.webhook_event(keys.decoded(ids[0])) if ids else ""
            return bool(ids) and int(client.hget(event, "attempts") or 0) >= 1

        wait_until(attempted, timeout=30, what="a failed attempt, the event still pending")
        client.close()
        stop_process(server)  # a clean stop: the append-only file is complete
        wait_until(lambda: "redis.unavailable" in fleet.worker_logs(), timeout=30,
                   what="the worker to notice")  # fmt: skip
        server = start_redis(data, port, appendonly=True)
        with webhook_receiver.running(port=receiver_port) as receiver:
            wait_until(lambda: receiver.accepted(), timeout=60, what="the event delivered")
        (delivery,) = receiver.accepted()
        assert (delivery.event.type, delivery.event.data.id) == ("batch.completed", batch_id)
        assert all(worker.poll() is None for worker in fleet.workers)
        assert "Traceback" not in fleet.worker_logs()
    finally:
        fleet.stop()
        stop_process(server)
