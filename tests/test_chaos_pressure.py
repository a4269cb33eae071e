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


@pytest.mark.parametrize("stall", ["DEBUG SLEEP", "CLIENT PAUSE WRITE"])
def test_a_whole_redis_stall_past_the_claim_ttl_sends_nothing_twice(
    fleet, tmp_path, stall: str
) -> None:
    """Redis stops answering for 5 s, longer than the claim TTL (3 s): every claim lapses at
    once. Why nothing is sent twice (README, "When things go wrong"): a worker sends only
    while its claim is known good, so nothing leaves during the stall once the claims' time
    is up; the answers it received wait in it; when Redis comes back the fleet's beat clock
    shows the silence, and for one claim TTL no claim takes a lapsed chunk back, so each
    live holder first learns it lost its chunks and stores what it had. The next holder
    finds those prompts settled, and no lapse is counted against the chunks (a stall is
    no worker's death: nothing is split or failed as WorkerCrashed for it)."""
    port = free_port()
    argv_extra = ["--enable-debug-command", "local"]
    server = start_redis(tmp_path, port, extra=argv_extra)
    fleet.redis_url = f"redis://127.0.0.1:{port}/0"
    try:
        fleet.start_simulator("--latency", "fixed:150")
        fleet.start_workers(2, proxy_rate_per_second=0, proxy_max_inflight=20,
                            fleet_max_inflight=20)  # fmt: skip
        batch_id = enqueue(fleet, tmp_path, 600)
        wait_until(finished_at_least(fleet, batch_id, 150), timeout=60, what="150 done")
        client = redis.Redis.from_url(fleet.redis_url, socket_timeout=30)
        if stall == "DEBUG SLEEP":
            client.execute_command("DEBUG", "SLEEP", 5)
        else:
            client.execute_command("CLIENT", "PAUSE", 5000, "WRITE")
            time.sleep(5)  # Redis refuses every write this long (the scenario, not a wait)
        client.close()
        final = wait_until(done(fleet, batch_id), timeout=120, what="the batch done", every=0.5)
        assert (final["succeeded"], final["failed"]) == (600, 0)
        assert_one_result_per_prompt(results(fleet, batch_id), 600)
        site = fleet.sim_stats()
        assert (site["answered_messages"], site["answered_duplicates"]) == (600, 0)
        assert all(worker.poll() is None for worker in fleet.workers)
        # The stall was nobody's death: no chunk was counted lapsed, so none was split.
        assert '"chunk.split"' not in fleet.worker_logs()
    finally:
        fleet.stop()
        stop_process(server)
