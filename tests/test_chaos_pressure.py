"""Nothing lost under pressure, with real processes: a full Redis, an emptied Redis.

Marked ``chaos`` (``make chaos``).
"""

from __future__ import annotations

import time

import pytest
import redis

from simulator.local import free_port, start_redis, stop_process, wait_until
from tests.chaos import (
    assert_one_result_per_prompt,
    batch_under_way,
    done,
    enqueue,
    finished_at_least,
    results,
    status,
)

pytestmark = pytest.mark.chaos


def test_a_full_redis_is_waited_out_and_nothing_is_lost(fleet, tmp_path) -> None:
    batch_id = batch_under_way(
        fleet, tmp_path, prompts=2000, latency_ms=100, inflight=40, first=300
    )
    client = redis.Redis.from_url(fleet.redis_url)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used + 64 * 1024)  # just above what it holds now
    try:
        wait_until(lambda: "out of memory (maxmemory)" in fleet.worker_logs(), timeout=30,
                   what="the workers to meet a full Redis")  # fmt: skip
        shown = fleet.cli("status", batch_id)
        assert "Redis refuses writes, at maxmemory" in shown.stderr, shown.stderr
        time.sleep(20)  # Redis stays full this long (the scenario, not a wait)
    finally:
        client.config_set("maxmemory", 0)
        client.close()
    final = wait_until(done(fleet, batch_id), timeout=120, what="the batch done", every=0.5)
    assert (final["succeeded"], final["failed"], final["in_progress"]) == (2000, 0, 0)
    assert_one_result_per_prompt(results(fleet, batch_id), 2000)
    site = fleet.sim_stats()
    assert (site["answered_messages"], site["answered_duplicates"]) == (2000, 0)
    assert all(worker.poll() is None for worker in fleet.workers)  # both rode it out
    assert "Traceback" not in fleet.worker_logs()


def test_an_emptied_redis_is_noticed_and_leaves_no_debris(fleet, tmp_path) -> None:
    port = free_port()
    server = start_redis(tmp_path, port)  # no persistence: a restart comes back empty
    fleet.redis_url = f"redis://127.0.0.1:{port}/0"
    try:
        fleet.start_simulator("--latency", "fixed:100")
        fleet.start_workers(2, proxy_rate_per_second=0, proxy_max_inflight=20)
        lost = enqueue(fleet, tmp_path, 400)
        wait_until(finished_at_least(fleet, lost, 100), timeout=60, what="100 prompts done")
        server.kill()  # SIGKILL: everything it held is gone
        server.wait()
        server = start_redis(tmp_path, port)
        began = time.monotonic()
        fresh = enqueue(fleet, tmp_path, 20)
        final = wait_until(done(fleet, fresh), timeout=60, what="a new batch done", every=0.2)
        took = time.monotonic() - began
        assert final["succeeded"] == 20
        assert took < 10, took  # not at the next 60 s registration: the empty pool was noticed
        assert all(worker.poll() is None for worker in fleet.workers)
        client = redis.Redis.from_url(fleet.redis_url)
        debris = sorted(key.decode() for key in client.scan_iter(match=f"*{lost}*"))
        forever = [key.decode() for key in client.scan_iter() if client.ttl(key) == -1]
        client.close()
        assert debris == []  # nothing written for a batch that no longer exists
        assert set(forever) <= {fleet.queue_name}, forever  # arq's queue alone has no TTL
        assert status(fleet, fresh)["done"]
    finally:
        fleet.stop()
        stop_process(server)
