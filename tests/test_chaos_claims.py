"""Owned work, with real processes: a frozen worker, a loop that dies, a crash mid-cancel,
workers with different pools, a reloaded proxies file, a prompt that kills workers.

Marked ``chaos`` (``make chaos``): several wait out the 3 s claim TTL on purpose.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import redis

from contract import keys
from simulator.local import running, wait_until
from tests.chaos import (
    assert_one_result_per_prompt,
    batch_under_way,
    done,
    enqueue,
    finished_at_least,
    results,
    status,
    write_prompts,
)
from tests.conftest import chatgptes

pytestmark = pytest.mark.chaos


def test_a_frozen_worker_sends_nothing_it_lost_once_resumed(fleet, tmp_path) -> None:
    batch_id = batch_under_way(fleet, tmp_path, prompts=800, latency_ms=400, inflight=40, first=100)
    frozen = fleet.workers[0]
    on_the_wire = fleet.sim_stats()["inflight"]  # the frozen worker's share is at most this
    frozen.send_signal(signal.SIGSTOP)  # a GC pause, a swapped-out VM, a partition
    try:
        time.sleep(12)  # the freeze itself, well past the 3 s claim TTL (not a wait)
    finally:
        frozen.send_signal(signal.SIGCONT)
    final = wait_until(done(fleet, batch_id), timeout=120, what="the batch done", every=0.5)
    assert (final["succeeded"], final["in_progress"], final["queued"]) == (800, 0, 0)
    assert_one_result_per_prompt(results(fleet, batch_id), 800)
    site = fleet.sim_stats()
    # Only what was on the wire when it froze can have reached the site twice.
    assert site["answered_duplicates"] <= on_the_wire, (site["answered_duplicates"], on_the_wire)
    assert frozen.poll() is None and '"chunks.lost"' in fleet.worker_logs()


def test_a_loop_that_dies_is_logged_and_takes_its_worker_down(fleet, tmp_path) -> None:
    fleet.start_simulator("--latency", "fixed:50")
    [broken] = fleet.start_workers(1, fault="broker-crash", proxy_rate_per_second=0)
    batch_id = enqueue(fleet, tmp_path, 200)
    assert broken.wait(timeout=60) == 70  # EX_SOFTWARE, not a hang
    logs = fleet.worker_logs()
    died = [json.loads(line) for line in logs.splitlines() if '"worker.loop_died"' in line]
    assert died and died[0]["loop"] == "broker" and "ValueError" in died[0]["exception"]
    check = fleet.cli("workers", "--check")
    assert check.returncode == 1 and "broker loop died" in check.stderr, check.stderr
    fleet.start_workers(1, proxy_rate_per_second=0)  # a healthy worker takes its chunks
    final = wait_until(done(fleet, batch_id), timeout=60, what="the batch done", every=0.5)
    assert final["succeeded"] == 200
    assert fleet.cli("workers", "--check").returncode == 0


def test_a_crash_in_the_middle_of_cancel_is_finished_by_the_next(fleet, tmp_path) -> None:
    batch_id = enqueue(fleet, tmp_path, 60_000)  # no workers: every prompt stays queued
    client = redis.Redis.from_url(fleet.redis_url)
    env = fleet.env()
    with running(chatgptes("cancel", batch_id), log=tmp_path / "cancel.log", env=env) as cancel:
        wait_until(
            lambda: int(client.hget(keys.batch_meta(batch_id), "stop_cursor") or 0) > 0,
            timeout=60, what="the cancel under way", every=0.01,
        )  # fmt: skip
        cancel.kill()  # SIGKILL mid-way: some prompts cancelled, most not yet
        cancel.wait()
    halfway = status(fleet, batch_id)
    assert halfway["state"] == "cancelling" and 0 < halfway["cancelled"] < 60_000
    again = fleet.cli("cancel", batch_id)
    assert again.returncode == 0, again.stderr
    final = status(fleet, batch_id)
    assert (final["state"], final["cancelled"], final["queued"]) == ("cancelled", 60_000, 0)
    assert client.zcard(fleet.queue_name) == 0
    client.close()


def test_workers_with_different_pools_share_a_fleet_and_one_dies(fleet, tmp_path) -> None:
    sim = fleet.start_simulator("--proxies", "3", "--latency", "fixed:300")
    p1, p2, p3 = sim["proxies"]
    fleet.start_workers(1, proxies=f"{p1},{p2}", proxy_rate_per_second=0, proxy_max_inflight=5)
    [mortal] = fleet.start_workers(1, proxies=f"{p2},{p3}", proxy_rate_per_second=0,
                                   proxy_max_inflight=5)  # fmt: skip
    batch_id = enqueue(fleet, tmp_path, 400)
    wait_until(finished_at_least(fleet, batch_id, 60), timeout=60, what="60 prompts done")
    mortal.kill()
    wait_until(lambda: fleet.sim_stats()["identities"]["proxy3"]["inflight"] == 0,
               timeout=10, what="what it had on the wire to land")  # fmt: skip
    third_then = fleet.sim_stats()["identities"]["proxy3"]["success"]
    final = wait_until(done(fleet, batch_id), timeout=120, what="the batch done", every=0.5)
    assert final["succeeded"] == 400
    identities = fleet.sim_stats()["identities"]
    assert identities["proxy3"]["success"] == third_then  # no one else's: never used again
    assert '"leases.not_ours"' not in fleet.worker_logs()
    # The cap of the proxy both pools share held across them.
    assert identities["proxy2"]["inflight_max"] <= 5


def test_a_proxy_dropped_from_the_file_gets_no_more_requests(fleet, tmp_path) -> None:
    sim = fleet.start_simulator("--proxies", "3", "--latency", "fixed:200")
    proxies_file = tmp_path / "proxies.txt"
    proxies_file.write_text("\n".join(sim["proxies"]) + "\n")
    fleet.start_workers(1, proxies_file=proxies_file, proxy_rate_per_second=0,
                        proxy_max_inflight=4)  # fmt: skip
    batch_id = enqueue(fleet, tmp_path, 300)
    wait_until(finished_at_least(fleet, batch_id, 30), timeout=60, what="30 prompts done")
    proxies_file.write_text("\n".join(sim["proxies"][:2]) + "\n")  # proxy3 is dropped
    os.utime(proxies_file, (time.time() + 5, time.time() + 5))  # a new mtime, surely
    wait_until(lambda: '"proxies.reloaded"' in fleet.worker_logs(), timeout=30,
               what="the reload")  # fmt: skip
    wait_until(lambda: fleet.sim_stats()["identities"]["proxy3"]["inflight"] == 0,
               timeout=10, what="what proxy3 had on the wire to land")  # fmt: skip
    third_then = fleet.sim_stats()["identities"]["proxy3"]["success"]
    final = wait_until(done(fleet, batch_id), timeout=120, what="the batch done", every=0.5)
    assert final["succeeded"] == 300
    assert fleet.sim_stats()["identities"]["proxy3"]["success"] == third_then


def test_a_prompt_that_kills_workers_ends_alone_as_worker_crashed(fleet, tmp_path) -> None:
    fleet.start_simulator("--latency", "fixed:100")
    settings = {"proxy_rate_per_second": 0, "chunk_lapse_limit": 3}
    fleet.start_workers(2, fault="poison", **settings)
    path = write_prompts(tmp_path / "p.jsonl", 40, extra=("this one is POISON",))
    enqueued = fleet.cli("enqueue", path, "--json")
    batch_id = json.loads(enqueued.stdout)["batch_id"]
    deaths = 0
    deadline = time.monotonic() + 120
    while not status(fleet, batch_id)["done"]:
        assert time.monotonic() < deadline, status(fleet, batch_id)
        for worker in [w for w in fleet.workers if w.poll() is not None and w.returncode != 0]:
            fleet.workers.remove(worker)
            deaths += 1
            fleet.start_workers(1, fault="poison", **settings)  # as a supervisor would
        time.sleep(0.2)
    found = {r["custom_id"]: r for r in results(fleet, batch_id)}
    assert [found[f"q{n}"]["status"] for n in range(40)] == ["succeeded"] * 40
    assert (found["x0"]["status"], found["x0"]["error"]["type"]) == ("failed", "WorkerCrashed")
    assert deaths == 3


def test_a_worker_drains_and_exits_zero_with_sigint_ignored(fleet, tmp_path) -> None:
    """Started from a shell that ignores SIGINT (nohup, CI), SIGTERM still drains it."""
    fleet.start_simulator("--latency", "fixed:200")
    env = {**os.environ, **fleet.env(proxy_rate_per_second=0)}
    worker = subprocess.Popen(
        chatgptes("worker"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    try:
        batch_id = enqueue(fleet, tmp_path, 50)
        wait_until(finished_at_least(fleet, batch_id, 5), timeout=60, what="5 prompts done")
        worker.terminate()
        assert worker.wait(timeout=40) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
