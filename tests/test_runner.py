"""One prompt's way through the policy, on fakeredis against the in-process simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from arq.worker import Retry

from contract import keys
from contract.models import Message, PromptRequest
from producer.api import BatchQueue
from producer.inputs import PromptLine
from simulator import SimConfig, run_simulator
from worker.config import WorkerConfig
from worker.health import OK
from worker.jobs import build_runner
from worker.runner import PromptRunner


@asynccontextmanager
async def harness(
    redis, sim_options: dict | None = None, **config: object
) -> AsyncIterator[tuple[object, PromptRunner, BatchQueue]]:
    async with run_simulator(SimConfig(**(sim_options or {}))) as sim:
        proxies = config.pop("proxies", None)
        defaults = {
            "upstream_url": sim.url,
            "proxies": ",".join(proxies(sim)) if callable(proxies) else "",
            "queue_name": "test:queue",
            "proxy_rate_per_second": 0,
            "lease_wait_seconds": 0.2,
            "connect_timeout_seconds": 2,
            "request_timeout_seconds": 5,
        }
        settings = WorkerConfig(**{**defaults, **config})
        runner = build_runner(settings, redis)
        try:
            yield sim, runner, BatchQueue(redis, settings)
        finally:
            await runner.http.close()


async def enqueue(queue: BatchQueue, *contents: str) -> list[PromptRequest]:
    lines = [
        PromptLine(n + 1, f"q{n}", (Message(role="user", content=c),), "gpt-4o")
        for n, c in enumerate(contents)
    ]
    batch = await queue.enqueue(lines)
    return [
        await queue.store.request(batch.batch_id, job_id)
        for job_id in await queue.store.job_ids(batch.batch_id)
    ]


async def test_success_stores_one_result_and_counts_it(fake_redis) -> None:
    async with harness(fake_redis) as (sim, runner, queue):
        requests = await enqueue(queue, "first", "second", "third")
        for request in requests:
            await runner.run(request)
        stats = sim.stats.snapshot()
    results = await queue.results(requests[0].batch_id)
    assert [r.status for r in results] == ["succeeded"] * 3
    assert [r.content.rsplit(" ", 1)[-1] for r in results] == ["first", "second", "third"]
    assert all(r.attempts == 1 and r.started_at <= r.finished_at for r in results)
    assert (stats["requests"]["page"], stats["requests"]["ajax"]) == (1, 3)
    status = await queue.status(requests[0].batch_id)
    assert status.succeeded == 3 and status.done


async def test_a_rerun_of_a_finished_job_does_nothing(fake_redis) -> None:
    async with harness(fake_redis) as (sim, runner, queue):
        [request] = await enqueue(queue, "once")
        await runner.run(request)
        await runner.run(request)  # arq ran it again
        assert sim.stats.snapshot()["requests"]["ajax"] == 1
    assert (await queue.status(request.batch_id)).succeeded == 1


async def test_permanent_error_fails_at_once_with_its_type(fake_redis) -> None:
    async with harness(fake_redis) as (_sim, runner, queue):
        [request] = await enqueue(queue, "this has a forbiddenword in it")
        await runner.run(request)
    result = await queue.store.result(request.job_id)
    assert result.status == "failed" and result.error.type == "ContentRefused"
    assert result.attempts == 1 and result.content is None


async def test_bad_proxies_are_skipped_and_the_job_succeeds(fake_redis) -> None:
    def proxies(sim) -> list[str]:
        wrong_password = sim.auth_proxy_urls[0].replace(":secret@", ":nope@")
        return [sim.bad_gateway_proxy_urls[0], wrong_password, sim.proxy_urls[0]]

    options = {"proxies": 1, "bad_gateway_proxies": 1, "auth_proxies": 1}
    async with harness(fake_redis, options, proxies=proxies) as (sim, runner, queue):
        requests = await enqueue(queue, *(f"p{n}" for n in range(6)))
        for request in requests:
            await runner.run(request)
        identities = sim.stats.snapshot()["identities"]
    results = await queue.results(requests[0].batch_id)
    assert [r.status for r in results] == ["succeeded"] * 6
    assert identities["proxy1"]["success"] == 6
    # Each bad proxy was tried at most once or twice, then cooled out of rotation.
    assert identities["badgw1"]["bad_gateway"] <= 2
    assert identities["authproxy1"]["auth_required"] <= 2


async def test_no_capacity_defers_without_spending_the_budget(fake_redis) -> None:
    async with harness(fake_redis, proxy_max_inflight=1, lease_wait_seconds=0.05) as (
        _s,
        runner,
        queue,
    ):
        [request] = await enqueue(queue, "waits")
        lease = await runner.policy.leases.try_acquire(
            runner.policy.pool.identities
        )  # someone else's
        with pytest.raises(Retry):
            await runner.run(request)
        await runner.policy.leases.release(lease, OK)
        assert await fake_redis.sismember(
            keys.batch_set(request.batch_id, "waiting"), request.job_id
        )
        assert (await queue.status(request.batch_id)).waiting == 1
        events = await fake_redis.hgetall(keys.policy_events())
        assert int(events[b"deferred_for_capacity"]) == 1
        assert await fake_redis.hget(keys.attempts(request.job_id), "total") is None
        await runner.run(request)  # capacity is back
    result = await queue.store.result(request.job_id)
    assert result.status == "succeeded" and result.attempts == 1


async def test_hiccups_back_off_then_fail_when_the_budget_is_spent(fake_redis) -> None:
    budgets = {"UpstreamHiccup": 2}
    async with harness(fake_redis, {"fault_nonjson_rate": 1.0}, retry_budgets=budgets) as (
        _s,
        runner,
        queue,
    ):
        [request] = await enqueue(queue, "never works")
        for _ in range(2):
            with pytest.raises(Retry):
                await runner.run(request)
        await runner.run(request)
    result = await queue.store.result(request.job_id)
    assert result.status == "failed" and result.error.type == "UpstreamHiccup"
    assert result.attempts == 3 and "not JSON" in result.error.message


async def test_stale_session_is_dropped_and_retried_at_once(fake_redis) -> None:
    async with harness(fake_redis) as (sim, runner, queue):
        first, second = await enqueue(queue, "one", "two")
        await runner.run(first)
        # The cached nonce goes bad (as after the site rotated its secret).
        raw = await fake_redis.get(keys.site_session("direct"))
        await fake_redis.set(keys.site_session("direct"), raw.replace(b'"nonce":"', b'"nonce":"x'))
        await runner.run(second)
        stats = sim.stats.snapshot()
    result = await queue.store.result(second.job_id)
    assert result.status == "succeeded" and result.attempts == 2
    assert stats["requests"]["page"] == 2 and stats["replies"]["nonce_failed"] == 1


async def test_a_bug_frees_the_lease_and_still_leaves_one_result(fake_redis, monkeypatch) -> None:
    async with harness(fake_redis) as (_sim, runner, queue):
        [request] = await enqueue(queue, "boom")

        async def broken(*_: object) -> str:
            raise RuntimeError("not the site's doing")

        monkeypatch.setattr(runner.client, "ask", broken)
        await runner.run(request)
        assert await fake_redis.zcard(keys.lease_fleet()) == 0
        assert await fake_redis.zcard(keys.lease_identity("direct")) == 0
    result = await queue.store.result(request.job_id)
    assert result.status == "failed" and result.error.type == "WorkerError"
    assert result.error.message == "RuntimeError: not the site's doing"
    assert (await queue.status(request.batch_id)).in_progress == 0


async def test_a_redis_error_defers_the_job_instead_of_failing_it(fake_redis, monkeypatch) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    async with harness(fake_redis) as (_sim, runner, queue):
        [request] = await enqueue(queue, "later")

        async def redis_down(*_: object) -> None:
            raise RedisConnectionError("Error 111 connecting to redis://:s3cret@10.0.0.9:6379")

        monkeypatch.setattr(runner.policy.sessions, "get", redis_down)
        with pytest.raises(Retry):
            await runner.run(request)
        assert await queue.store.result(request.job_id) is None
        assert await fake_redis.zcard(keys.lease_fleet()) == 0
