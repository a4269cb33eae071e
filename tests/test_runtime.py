"""A worker's chunks of prompts through the policy, on fakeredis against the in-process simulator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from contract import keys
from contract.config import QueueSettings
from contract.models import ChunkPayload, Message
from producer.api import BatchQueue
from producer.inputs import PromptLine
from simulator import SimConfig, run_simulator
from simulator.server import Simulator
from tests.conftest import eventually
from worker import broker as broker_module
from worker.broker import OK
from worker.chunks import ChunkState
from worker.claims import ChunkClaim
from worker.config import WorkerConfig
from worker.runtime import WorkerRuntime


@dataclass
class Harness:
    sim: Simulator
    runtime: WorkerRuntime
    queue: BatchQueue
    redis: object

    async def enqueue(self, *contents: str) -> str:
        lines = [
            PromptLine(n + 1, f"q{n}", (Message(role="user", content=c),), "gpt-4o")
            for n, c in enumerate(contents)
        ]
        return (await self.queue.enqueue(lines)).batch_id

    async def chunks(self) -> list[tuple[ChunkClaim, ChunkPayload]]:
        """The queued chunks, claimed as a worker's intake claims them."""
        found = []
        while claims := await self.runtime.take_chunks(100):
            for claim in claims:
                job = json.loads(await self.redis.get(keys.arq_job(claim.key)))
                found.append((claim, ChunkPayload.model_validate(job["a"][0])))
        return found

    async def run(self, claim: ChunkClaim, payload: ChunkPayload) -> ChunkState:
        """One chunk as arq runs it: the job, then the end of the worker's hold."""
        outcome = await self.runtime.run_chunk(payload, claim)
        await self.runtime.end_chunk(claim.key)
        return outcome

    async def run_all(self) -> list[ChunkState]:
        """Runs every queued chunk concurrently; returns each one's outcome."""
        chunks = await self.chunks()
        return await asyncio.gather(*(self.run(claim, payload) for claim, payload in chunks))

    def stats(self) -> dict:
        return self.sim.stats.snapshot()


@asynccontextmanager
async def harness(
    redis, sim_options: dict | None = None, **config: object
) -> AsyncIterator[Harness]:
    async with run_simulator(SimConfig(**(sim_options or {}))) as sim:
        proxies = config.pop("proxies", None)
        defaults = {
            "upstream_url": sim.url,
            "proxies": ",".join(proxies(sim)) if callable(proxies) else "",
            "queue_name": "test:queue",
            "proxy_rate_per_second": 0,
            "proxy_max_inflight": 8,
            "connect_timeout_seconds": 2,
            "request_timeout_seconds": 5,
            "backoff_base_seconds": 0.01,
            "cooldown_base_seconds": 0.05,
            "heartbeat_seconds": 0.2,
            "claim_ttl_seconds": 2,
        }
        settings = WorkerConfig(**{**defaults, **config})
        runtime = WorkerRuntime(settings, redis)
        await runtime.start()
        queue = BatchQueue(redis, QueueSettings(queue_name="test:queue", chunk_size=50))
        try:
            yield Harness(sim, runtime, queue, redis)
        finally:
            await runtime.stop()


async def test_a_chunk_runs_its_prompts_concurrently_to_one_result_each(fake_redis) -> None:
    async with harness(fake_redis, {"latency": "fixed:50"}) as h:
        batch_id = await h.enqueue(*(f"prompt {n}" for n in range(40)))
        outcomes = await h.run_all()
        stats = h.stats()
    assert outcomes == [ChunkState.DONE] * len(outcomes), outcomes
    results = await h.queue.results(batch_id)
    assert [r.content.rsplit(" ", 1)[-1] for r in results] == [str(n) for n in range(40)]
    assert all(r.status == "succeeded" and r.attempts == 1 for r in results)
    assert all(r.started_at <= r.finished_at for r in results)
    assert (stats["requests"]["page"], stats["requests"]["ajax"]) == (1, 40)
    assert stats["inflight_max"] > 1  # the prompts of a chunk went out together
    status = await h.queue.status(batch_id)
    assert (status.succeeded, status.state, status.done) == (40, "completed", True)


async def test_a_rerun_of_a_finished_chunk_sends_nothing(fake_redis) -> None:
    async with harness(fake_redis) as h:
        batch_id = await h.enqueue("once", "twice")
        [(claim, payload), *_] = await h.chunks()
        await h.runtime.run_chunk(payload, claim)
        h.runtime.held.pop(claim.key)  # as a worker that crashed before it ended the chunk
        await h.runtime.run_chunk(payload, claim)  # run again after a crash
        assert h.stats()["requests"]["ajax"] == 1
    assert (await h.queue.status(batch_id)).succeeded == 1


async def test_permanent_error_fails_at_once_with_its_type(fake_redis) -> None:
    async with harness(fake_redis) as h:
        batch_id = await h.enqueue("this has a forbiddenword in it")
        await h.run_all()
        assert h.stats()["requests"]["ajax"] == 1
    [result] = await h.queue.results(batch_id)
    assert result.status == "failed" and result.error.type == "ContentRefused"
    assert result.attempts == 1 and result.content is None


async def test_bad_proxies_are_charged_and_left_while_the_prompts_succeed(fake_redis) -> None:
    def proxies(sim: Simulator) -> list[str]:
        wrong_password = sim.auth_proxy_urls[0].replace(":secret@", ":nope@")
        return [sim.bad_gateway_proxy_urls[0], sim.plain_502_proxy_urls[0], wrong_password,
                sim.dead_proxy_urls[0], sim.proxy_urls[0]]  # fmt: skip

    options = {"proxies": 1, "bad_gateway_proxies": 1, "auth_proxies": 1,
               "plain_502_proxies": 1, "dead_proxies": 1}  # fmt: skip
    # Cooldowns long enough that a cooled exit stays out for the rest of the run (with the
    # harness's 50 ms, how often one comes back to be probed depends on the run's length).
    async with harness(fake_redis, options, proxies=proxies, proxy_max_inflight=2,
                       cooldown_base_seconds=2) as h:  # fmt: skip
        batch_id = await h.enqueue(*(f"p{n}" for n in range(30)))
        await h.run_all()
        identities = h.stats()["identities"]
    results = await h.queue.results(batch_id)
    assert [r.status for r in results] == ["succeeded"] * 30
    assert identities["proxy1"]["success"] == 30
    # Each bad proxy was tried a few times at most, then cooled out of rotation: a plain 502
    # (no Proxy-Status, so it might have been the site's) is charged to the exit all the same.
    assert identities["badgw1"]["bad_gateway"] <= 3
    assert identities["plain502_1"]["plain_502"] <= 4
    assert identities["authproxy1"]["auth_required"] <= 3


async def test_no_capacity_waits_without_spending_the_budget(fake_redis) -> None:
    async with harness(fake_redis, proxy_max_inflight=1, lease_wait_seconds=0.05) as h:
        batch_id = await h.enqueue("waits")
        blocker = await h.runtime.book.acquire(1)  # someone else's request holds the slot
        running = asyncio.create_task(h.run_all())
        await eventually(
            lambda: _waiting(h.queue, batch_id), what="status to show the prompt waiting"
        )
        assert await fake_redis.hget(keys.batch_attempts(batch_id), 0) is None
        await h.runtime.book.release([(blocker.leases[0], OK)])
        await running
    [result] = await h.queue.results(batch_id)
    assert result.status == "succeeded" and result.attempts == 1
    assert (await h.queue.status(batch_id)).waiting == 0


async def _waiting(queue: BatchQueue, batch_id: str) -> bool:
    return (await queue.status(batch_id)).waiting == 1


async def test_hiccups_back_off_then_fail_when_the_budget_is_spent(fake_redis) -> None:
    budgets = {"UpstreamHiccup": 2}
    async with harness(fake_redis, {"fault_nonjson_rate": 1.0}, retry_budgets=budgets) as h:
        batch_id = await h.enqueue("never works")
        await h.run_all()
    [result] = await h.queue.results(batch_id)
    assert result.status == "failed" and result.error.type == "UpstreamHiccup"
    assert result.attempts == 3 and "not JSON" in result.error.message


async def test_a_stale_session_is_dropped_and_retried_at_once(fake_redis) -> None:
    async with harness(fake_redis) as h:
        first = await h.enqueue("one")
        await h.run_all()
        # The nonce goes bad (as after the site rotated its secret), in Redis and in memory.
        raw = await fake_redis.hget(keys.site_sessions(), "direct")
        stale = raw.replace(b'"nonce":"', b'"nonce":"x')
        await fake_redis.hset(keys.site_sessions(), "direct", stale)
        h.runtime.sessions._local.clear()
        second = await h.enqueue("two")
        await h.run_all()
        stats = h.stats()
    assert (await h.queue.results(first))[0].attempts == 1
    [result] = await h.queue.results(second)
    assert result.status == "succeeded" and result.attempts == 2
    assert stats["requests"]["page"] == 2 and stats["replies"]["nonce_failed"] == 1


async def test_a_bug_frees_the_lease_and_still_leaves_one_result(fake_redis, monkeypatch) -> None:
    async with harness(fake_redis) as h:
        batch_id = await h.enqueue("boom")

        async def broken(*_: object) -> str:
            raise RuntimeError("not the site's doing")

        monkeypatch.setattr(h.runtime.client, "ask", broken)
        await h.run_all()
        await eventually(lambda: not h.runtime.broker._returns, what="the lease returned")
        await eventually(lambda: h.runtime.broker.held == {}, what="no lease held")
    [result] = await h.queue.results(batch_id)
    assert result.status == "failed" and result.error.type == "WorkerError"
    assert result.error.message == "RuntimeError: not the site's doing"
    assert (await h.queue.status(batch_id)).in_progress == 0


async def test_redis_errors_are_waited_out_not_failed(fake_redis, monkeypatch) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    async with harness(fake_redis) as h:
        batch_id = await h.enqueue("later")
        real_start = h.runtime.ledger.start_chunk
        failures = []

        async def flaky_start(*args: object):
            if len(failures) < 2:
                failures.append(1)
                raise RedisConnectionError("Error 111 connecting to redis://:s3cret@10.0.0.9:6379")
            return await real_start(*args)

        monkeypatch.setattr(h.runtime.ledger, "start_chunk", flaky_start)
        await h.run_all()
    [result] = await h.queue.results(batch_id)
    assert result.status == "succeeded" and len(failures) == 2


async def test_draining_hands_unsent_prompts_back_and_lets_sent_ones_finish(fake_redis) -> None:
    async with harness(fake_redis, {"latency": "fixed:300"}, proxy_max_inflight=2) as h:
        batch_id = await h.enqueue(*(f"p{n}" for n in range(6)))
        running = asyncio.create_task(h.run_all())
        await eventually(lambda: h.stats()["inflight"] == 2, what="two requests in flight")
        h.runtime.drain()
        outcomes = await running  # six chunks of one prompt (a small batch is spread)
        stats = h.stats()
    sent = stats["requests"]["ajax"]
    assert 2 <= sent < 6  # what was on the wire finished; nothing more went out
    # Each chunk with an unsent prompt goes back where it was.
    assert outcomes.count(ChunkState.HANDED_BACK) == 6 - sent
    status = await h.queue.status(batch_id)
    assert (status.succeeded, status.queued, status.in_progress) == (sent, 6 - sent, 0)


async def test_cancel_reaches_prompts_a_worker_holds(fake_redis) -> None:
    async with harness(fake_redis, proxy_max_inflight=1) as h:
        batch_id = await h.enqueue("a", "b", "c")
        blocker = await h.runtime.book.acquire(1)  # no capacity: the prompts wait in the worker
        running = asyncio.create_task(h.run_all())
        await eventually(lambda: h.runtime.broker.waiting == 3, what="three prompts waiting")
        await h.queue.cancel(batch_id)
        await h.runtime.book.release([(blocker.leases[0], OK)])  # capacity is back: too late
        await running
        sent = h.stats()["requests"]["ajax"]
    assert sent == 0
    status = await h.queue.status(batch_id)
    assert (status.state, status.cancelled) == ("cancelled", 3)


async def test_unreadable_request_data_is_a_failed_result_not_a_crash(fake_redis) -> None:
    async with harness(fake_redis) as h:
        batch_id = await h.enqueue("fine", "planted")
        # Someone with write access plants a pickle where a request was.
        await fake_redis.hset(keys.batch_requests(batch_id), 1, b"\x80\x04\x95\x10cos\nsystem\n")
        await h.run_all()
    results = await h.queue.results(batch_id)
    assert [r.status for r in results] == ["succeeded", "failed"]
    assert results[1].error.type == "BadRequestData"


async def test_the_heartbeat_reports_the_worker(fake_redis) -> None:
    async with harness(fake_redis) as h:
        worker_id = h.runtime.worker_id

        async def reported() -> bool:
            return bool(await fake_redis.hget(keys.worker_info(worker_id), "pid"))

        await eventually(reported, what="the worker's report")
        assert await fake_redis.zscore(keys.workers_seen(), worker_id) is not None
    assert await fake_redis.zscore(keys.workers_seen(), worker_id) is None  # said goodbye


@pytest.mark.parametrize("state", ["cancelling", "cancelled"])
async def test_a_chunk_of_a_cancelled_batch_is_cancelled_unsent(fake_redis, state: str) -> None:
    async with harness(fake_redis) as h:
        batch_id = await h.enqueue("x", "y")
        await fake_redis.hset(keys.batch_meta(batch_id), "state", state)
        await h.run_all()
        assert h.stats()["requests"]["ajax"] == 0
    assert [r.status for r in await h.queue.results(batch_id)] == ["cancelled"] * 2


async def test_prompts_held_when_the_window_ends_end_expired_unsent(fake_redis) -> None:
    async with harness(fake_redis, proxy_max_inflight=1) as h:
        batch_id = await h.enqueue("a", "b")
        blocker = await h.runtime.book.acquire(1)  # no capacity: the prompts wait in the worker
        running = asyncio.create_task(h.run_all())
        await eventually(lambda: h.runtime.broker.waiting == 2, what="two prompts waiting")
        await h.queue.store.stopper.expire(batch_id)
        await h.runtime.book.release([(blocker.leases[0], OK)])
        await running
        assert h.stats()["requests"]["ajax"] == 0
    results = await h.queue.results(batch_id)
    assert [(r.status, r.error.type) for r in results] == [("failed", "Expired")] * 2
    assert (await h.queue.status(batch_id)).state == "expired"


async def test_usage_is_counted_as_openai_would_bill_it(fake_redis) -> None:
    async with harness(fake_redis) as h:
        batch_id = await h.enqueue("hello world")
        await h.run_all()
    [result] = await h.queue.results(batch_id)
    # 3 (message) + "user" (1) + "hello world" (2) + 3 (reply primer) = 9 tokens of o200k_base
    assert result.usage is not None and result.usage.prompt_tokens == 9
    assert result.usage.completion_tokens > 0
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens


async def test_a_lost_chunks_unsent_prompts_are_dropped_and_the_sent_one_kept(fake_redis) -> None:
    async with harness(fake_redis, {"latency": "fixed:300"}, proxy_max_inflight=1) as h:
        batch_id = await h.enqueue(*(f"p{n}" for n in range(40)))  # 8 chunks of 5
        [claim] = await h.runtime.take_chunks(1)
        job = json.loads(await fake_redis.get(keys.arq_job(claim.key)))
        running = asyncio.create_task(h.run(claim, ChunkPayload.model_validate(job["a"][0])))
        held = h.runtime.held[claim.key]
        await eventually(lambda: held.sending, what="one prompt on the wire")
        # Another worker took the chunk (this one looked dead): the next beat says so.
        await fake_redis.set(keys.arq_in_progress(claim.key), "another-worker")
        await h.runtime.heartbeat.beat()
        assert await running is ChunkState.LOST
        sent = h.stats()["requests"]["ajax"]
    assert sent == 1  # the one on the wire; the four waiting were never sent
    status = await h.queue.status(batch_id)
    assert status.succeeded == 1  # its answer was kept
    assert await fake_redis.get(keys.arq_in_progress(claim.key)) == b"another-worker"


async def test_a_frozen_worker_sends_nothing_under_a_claim_it_lost(fake_redis) -> None:
    async with harness(fake_redis, proxy_max_inflight=1, lease_wait_seconds=0.05) as h:
        await h.enqueue(*(f"p{n}" for n in range(16)))
        blocker = await h.runtime.book.acquire(1)  # no capacity: the prompts wait
        [claim] = await h.runtime.take_chunks(1)
        job = json.loads(await fake_redis.get(keys.arq_job(claim.key)))
        running = asyncio.create_task(h.run(claim, ChunkPayload.model_validate(job["a"][0])))
        await eventually(lambda: h.runtime.broker.waiting == 2, what="two prompts waiting")
        # The process is frozen past the claim's TTL: it no longer knows it holds the chunk,
        # and meanwhile another worker took it.
        h.runtime.heartbeat.interval = 3600
        claim.valid_until = 0
        await fake_redis.set(keys.arq_in_progress(claim.key), "another-worker")
        await h.runtime.book.release([(blocker.leases[0], OK)])  # capacity is back
        await h.runtime.heartbeat.beat()  # it wakes up, and learns it lost the chunk
        assert await running is ChunkState.LOST
        assert h.stats()["requests"]["ajax"] == 0


async def test_a_frozen_worker_that_still_holds_its_chunk_goes_on(fake_redis) -> None:
    async with harness(fake_redis) as h:
        batch_id = await h.enqueue("a", "b")
        [claim, other] = await h.runtime.take_chunks(2)
        claim.valid_until = other.valid_until = 0  # frozen; nobody took its chunks meanwhile
        outcomes = await asyncio.gather(*(h.run(c, p) for c, p in await _payloads(h, claim, other)))
    assert outcomes == [ChunkState.DONE] * 2
    assert (await h.queue.status(batch_id)).succeeded == 2


async def _payloads(h: Harness, *claims: ChunkClaim) -> list[tuple[ChunkClaim, ChunkPayload]]:
    found = []
    for claim in claims:
        job = json.loads(await h.redis.get(keys.arq_job(claim.key)))
        found.append((claim, ChunkPayload.model_validate(job["a"][0])))
    return found


async def test_a_chunk_whose_workers_keep_dying_ends_as_worker_crashed(fake_redis) -> None:
    async with harness(fake_redis, chunk_lapse_limit=3) as h:
        batch_id = await h.enqueue("poison")
        await fake_redis.hset(keys.chunk_lapses(), f"{batch_id}:0", 3)  # three holders died
        outcomes = await h.run_all()
        sent = h.stats()["requests"]["ajax"]
    assert outcomes == [ChunkState.DONE] and sent == 0
    [result] = await h.queue.results(batch_id)
    assert (result.status, result.error.type) == ("failed", "WorkerCrashed")
    assert "died or was cut off 3 times" in result.error.message
    assert await fake_redis.hget(keys.chunk_lapses(), f"{batch_id}:0") is None


async def test_a_loop_that_dies_takes_the_worker_down(fake_redis, monkeypatch) -> None:
    async with harness(fake_redis) as h:
        downed: list[bool] = []
        h.runtime.on_failure = lambda: downed.append(True)

        async def broken(*_: object, **__: object) -> None:
            raise ValueError("not the kind of reply the broker knows")

        monkeypatch.setattr(broker_module, "exchange_all", broken)
        await h.enqueue("x")
        task = asyncio.create_task(h.run_all())
        await eventually(lambda: downed, what="the worker to be told")
        assert h.runtime.supervisor.failed == "broker loop died (ValueError)"
        task.cancel()
    info = await fake_redis.hget(keys.worker_info(h.runtime.worker_id), "went_down")
    assert info == b"broker loop died (ValueError)"


async def test_a_chunk_whose_worker_died_is_split_one_prompt_a_chunk(fake_redis) -> None:
    async with harness(fake_redis) as h:
        batch_id = await h.enqueue(*(f"p{n}" for n in range(16)))  # 8 chunks of 2
        await fake_redis.hset(keys.chunk_lapses(), f"{batch_id}:0", 1)  # its worker died once
        [claim] = await h.runtime.take_chunks(1)
        assert (claim.key, claim.lapses) == (f"{batch_id}:0", 1)
        [(_, payload)] = await _payloads(h, claim)
        assert await h.run(claim, payload) is ChunkState.SPLIT
        assert h.stats()["requests"]["ajax"] == 0
        runs = {
            k.decode(): int(v) for k, v in (await fake_redis.hgetall(keys.chunk_lapses())).items()
        }
        assert runs == {f"{batch_id}:0/0": 1, f"{batch_id}:0/1": 1}  # each inherits the death
        assert await fake_redis.zscore("test:queue", f"{batch_id}:0") is None
        outcomes = await h.run_all()
    assert outcomes == [ChunkState.DONE] * 9  # the 7 others and the 2 halves
    assert (await h.queue.status(batch_id)).succeeded == 16


async def test_a_lease_that_waited_for_anothers_handshake_is_taken_again(
    fake_redis, monkeypatch
) -> None:
    async with harness(fake_redis, {"latency": "fixed:200"}) as h:
        await h.enqueue(*(f"p{n}" for n in range(16)))  # 8 chunks of 2
        await fake_redis.hset(keys.identity_field("probe"), "direct", 0)  # past its probe
        granted = []
        real = broker_module.exchange_all

        async def counted(*args: object, **kwargs: object):
            replies = await real(*args, **kwargs)  # type: ignore[arg-type]
            for grants in replies:
                granted.extend(grants.leases if grants is not None else [])
            return replies

        monkeypatch.setattr(broker_module, "exchange_all", counted)
        [claim] = await h.runtime.take_chunks(1)
        [(_, payload)] = await _payloads(h, claim)
        assert await h.run(claim, payload) is ChunkState.DONE
    # The second prompt's first lease waited out the first one's page GET: it was given
    # back and a fresh one taken, so that the two did not leave on the old one's time.
    assert len(granted) == 3


async def test_an_unreadable_request_keeps_its_custom_id_and_model(fake_redis) -> None:
    """Regression: such a result had ``custom_id: ""`` and ``model: ""``: its line in the
    output could not be joined back to its input."""
    async with harness(fake_redis) as h:
        batch_id = await h.enqueue("fine", "newer")
        raw = json.loads(await fake_redis.hget(keys.batch_requests(batch_id), 1))
        raw["service_tier"] = "flex"  # a field a newer producer writes
        await fake_redis.hset(keys.batch_requests(batch_id), 1, json.dumps(raw))
        await h.run_all()
    fine, bad = await h.queue.results(batch_id)
    assert fine.status == "succeeded"
    assert (bad.custom_id, bad.model, bad.status, bad.error.type) == (
        "q1", "gpt-4o", "failed", "BadRequestData",
    )  # fmt: skip


async def test_a_chunk_cut_short_goes_back_to_the_queue(fake_redis) -> None:
    """Regression (issue 20, 2): arq's job timeout cancels the chunk and calls its end with
    ``finish=True``; the chunk was ended done with its prompts unsettled."""
    async with harness(fake_redis, {"latency": "fixed:5000"}) as h:
        batch_id = await h.enqueue(*(f"p{n}" for n in range(16)))
        [claim] = await h.runtime.take_chunks(1)
        [(_, payload)] = await _payloads(h, claim)
        running = asyncio.create_task(h.runtime.run_chunk(payload, claim))
        await eventually(lambda: h.stats()["inflight"] >= 1, what="a prompt on the wire")
        running.cancel()  # as arq's job_timeout does
        with pytest.raises(asyncio.CancelledError):
            await running
        await h.runtime.end_chunk(claim.key)
        assert await fake_redis.zscore("test:queue", claim.key) is not None  # back in line
        assert await fake_redis.hget(keys.chunk_lapses(), claim.key) == b"1"  # a lapse
    status = await h.queue.status(batch_id)
    assert status.succeeded + status.failed == 0


async def test_a_split_refused_loses_the_chunk_and_ends_nothing(fake_redis) -> None:
    """Regression (issue 20, 2): a split refused after the claim lapsed returned LOST
    without losing the claim, and the chunk was then ended done."""
    async with harness(fake_redis) as h:
        batch_id = await h.enqueue(*(f"p{n}" for n in range(16)))
        await fake_redis.hset(keys.chunk_lapses(), f"{batch_id}:0", 1)
        [claim] = await h.runtime.take_chunks(1)
        [(_, payload)] = await _payloads(h, claim)
        await fake_redis.set(keys.arq_in_progress(claim.key), "another-worker")
        assert await h.run(claim, payload) is ChunkState.LOST
        assert claim.lost
        assert await fake_redis.get(keys.arq_in_progress(claim.key)) == b"another-worker"
        assert await fake_redis.zscore(keys.held_chunks("test:queue"), claim.key) is not None
        assert h.stats()["requests"]["ajax"] == 0


async def test_a_split_shows_its_prompts_queued_in_the_same_step(fake_redis) -> None:
    """Regression: the queued marks came in a second call, and a cancel in between ended
    as "cancelled before sent" a prompt that was on the wire."""
    async with harness(fake_redis) as h:
        batch_id = await h.enqueue(*(f"p{n}" for n in range(16)))
        await fake_redis.hset(keys.chunk_lapses(), f"{batch_id}:0", 1)
        [claim] = await h.runtime.take_chunks(1)
        [(_, payload)] = await _payloads(h, claim)
        await h.runtime.ledger.start_chunk(batch_id, payload.indices)  # shown running
        assert await h.runtime.claims.split(claim, batch_id, list(payload.indices)) == 2
        status = await h.queue.status(batch_id)
        assert (status.queued, status.in_progress) == (16, 0)
