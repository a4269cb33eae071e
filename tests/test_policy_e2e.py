"""The shared policy with two or more worker processes and the simulator's proxy ports."""

from __future__ import annotations

import asyncio
import json

import pytest

from contract.models import Message
from simulator.local import free_port
from worker.client import ChatGptEsClient, ClientOptions
from worker.proxies import Identity

pytestmark = pytest.mark.e2e


def write_prompts(tmp_path, count: int) -> str:
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        "".join(
            json.dumps({"custom_id": f"c{n}", "messages": [{"role": "user", "content": f"q{n}"}]})
            + "\n"
            for n in range(count)
        )
    )
    return str(path)


def run_batch(fleet, tmp_path, count: int, timeout: int = 120) -> dict:
    enqueued = fleet.cli("enqueue", write_prompts(tmp_path, count), "--json")
    assert enqueued.returncode == 0, enqueued.stderr
    batch_id = json.loads(enqueued.stdout)["batch_id"]
    waited = fleet.cli("wait", batch_id, "--timeout", str(timeout))
    assert waited.returncode == 0, waited.stderr + fleet.worker_logs()[-4000:]
    status = json.loads(fleet.cli("status", batch_id, "--json").stdout)
    results = [json.loads(line) for line in fleet.cli("results", batch_id).stdout.splitlines()]
    return {"batch_id": batch_id, "status": status, "results": results}


def test_caps_hold_across_workers_and_one_page_per_proxy(fleet, tmp_path) -> None:
    fleet.start_simulator("--proxies", "3", "--latency", "uniform:20,60")
    fleet.start_workers(
        2,
        proxies=",".join(fleet.sim["proxies"]),
        proxy_max_inflight=2,
        fleet_max_inflight=5,
        max_jobs=10,
        proxy_rate_per_second=0,
    )
    batch = run_batch(fleet, tmp_path, 150)
    assert batch["status"]["succeeded"] == 150
    stats = fleet.sim_stats()
    per_identity = {name: s["inflight_max"] for name, s in stats["identities"].items()}
    assert set(per_identity) == {"proxy1", "proxy2", "proxy3"}
    assert max(per_identity.values()) <= 2, per_identity
    assert stats["inflight_max"] <= 5
    assert stats["inflight_max"] >= 3  # the caps were reached, not just respected by idling
    pages = {name: s["page"] for name, s in stats["identities"].items()}
    assert pages == {"proxy1": 1, "proxy2": 1, "proxy3": 1}


def test_retry_after_is_honoured_and_no_identity_is_banned(fleet, tmp_path) -> None:
    # The site allows 4 requests/s per identity and bans at the first violation; the
    # workers are configured to push 10/s, so only honouring Retry-After keeps them in.
    fleet.start_simulator(
        "--proxies", "2", "--rate-per-second", "4", "--burst", "2",
        "--ban-after-violations", "1", "--latency", "fixed:10",
    )  # fmt: skip
    fleet.start_workers(
        2,
        proxies=",".join(fleet.sim["proxies"]),
        proxy_max_inflight=1,
        proxy_rate_per_second=10,
        proxy_burst=2,
        retry_budgets=json.dumps({"RateLimited": 100}),
    )
    batch = run_batch(fleet, tmp_path, 24)
    assert batch["status"]["succeeded"] == 24
    stats = fleet.sim_stats()
    assert stats["replies"]["rate_limited"] > 0  # the site did push back
    assert stats["replies"]["banned"] == 0 and stats["replies"]["refused"] == 0
    assert all(s["violations"] == 0 for s in stats["identities"].values())


def test_bad_proxies_leave_rotation_and_the_batch_completes(fleet, tmp_path) -> None:
    fleet.start_simulator(
        "--proxies", "2", "--bad-gateway-proxies", "1", "--auth-proxies", "1",
        "--latency", "fixed:10",
    )  # fmt: skip
    wrong_password = fleet.sim["auth_proxies"][0].replace(":secret@", ":wrong-password@")
    dead = f"http://127.0.0.1:{free_port()}"
    proxies = [*fleet.sim["proxies"], fleet.sim["bad_gateway_proxies"][0], wrong_password, dead]
    fleet.start_workers(2, proxies=",".join(proxies), proxy_rate_per_second=0)
    batch = run_batch(fleet, tmp_path, 60)
    assert batch["status"]["succeeded"] == 60
    stats = fleet.sim_stats()["identities"]
    assert stats["badgw1"]["bad_gateway"] <= 3
    assert stats["authproxy1"]["auth_required"] <= 3
    health = {i["name"]: i for i in batch["status"]["identities"]}
    dead_name = dead.removeprefix("http://")
    assert 1 <= health[dead_name]["failures"] <= 3
    auth_host = wrong_password.rsplit("@", 1)[1]
    [auth_name] = [name for name in health if name.startswith(auth_host + "~")]
    for name in (dead_name, auth_name):
        assert health[name]["reason"] == "ProxyFault" and health[name]["penalty"] >= 1
    logs = fleet.worker_logs()
    assert "wrong-password" not in logs and "ProxyFault" in logs


def test_a_proxy_at_its_quota_is_rested_and_work_moves_on(fleet, tmp_path) -> None:
    fleet.start_simulator("--proxies", "2", "--quota", "2", "--latency", "fixed:5")
    exhausted = fleet.sim["proxies"][0]
    asyncio.run(use_up_quota(fleet.sim["url"], exhausted, 2))
    fleet.start_workers(2, proxies=",".join(fleet.sim["proxies"]), proxy_rate_per_second=0,
                        quota_cooldown_seconds=3600)  # fmt: skip
    batch = run_batch(fleet, tmp_path, 2)
    assert [r["status"] for r in batch["results"]] == ["succeeded"] * 2
    stats = fleet.sim_stats()["identities"]
    assert stats["proxy1"]["token_limited"] >= 1 and stats["proxy2"]["success"] == 2
    health = {i["name"]: i for i in batch["status"]["identities"]}
    rested = health[exhausted.removeprefix("http://")]
    assert rested["reason"] == "QuotaExceeded" and rested["cooling_for"] > 3000


async def use_up_quota(site: str, proxy: str, count: int) -> None:
    client = ChatGptEsClient(ClientOptions(base_url=site))
    exit_ = Identity("quota", proxy, max_inflight=1, rate_per_second=0)
    try:
        session = await client.handshake(exit_)
        for _ in range(count):
            await client.ask(exit_, session, (Message(role="user", content="hi"),), "gpt-4o")
    finally:
        await client.close()


def test_all_proxies_down_jobs_wait_and_say_why(fleet, tmp_path) -> None:
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    fleet.start_workers(1, proxies=",".join(dead), upstream_url="http://127.0.0.1:9",
                        lease_wait_seconds=0.2, cooldown_base_seconds=30)  # fmt: skip
    enqueued = fleet.cli("enqueue", write_prompts(tmp_path, 5), "--json")
    batch_id = json.loads(enqueued.stdout)["batch_id"]

    def waiting() -> dict | None:
        # The fleet's counters are added up at each worker heartbeat: wait for those too.
        status = json.loads(fleet.cli("status", batch_id, "--json").stdout)
        counted = status["policy_events"].get("waited_for_capacity", 0)
        return status if status["waiting"] >= 4 and counted >= 4 else None

    from simulator.local import wait_until

    status = wait_until(waiting, timeout=60, what="jobs waiting for capacity", every=0.5)
    assert status["failed"] == 0 and not status["done"]
    assert all(i["cooling_for"] > 0 for i in status["identities"])
    assert status["policy_events"].get("waited_for_capacity", 0) >= 4
    human = fleet.cli("status", batch_id).stdout
    assert "waiting for capacity" in human and "cooling" in human
    logs = fleet.worker_logs()
    assert logs.count('"capacity.waiting"') <= 3  # logged once per interval, not per job
