"""Webhook deliveries from the outbox: signed as OpenAI signs them (checked with the official
SDK's ``unwrap``), routed to each endpoint's own queue, claimed under a token, retried with
backoff, recorded the moment they succeed, given up after their window, an endpoint
disabled by 410 Gone, per-project endpoints and secrets, and never a credential in a log
line — against receivers on 127.0.0.1 and a real Redis."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import structlog

from contract import keys
from contract.config import QueueSettings
from contract.models import JobResult, Message
from contract.outbox import FLEET, read_outbox
from producer.api import BatchQueue
from producer.http import records
from producer.inputs import PromptLine
from tests import webhook_receiver
from tests.conftest import eventually
from tests.webhook_receiver import SECRET, Receiver
from worker.metrics import WorkerMetrics
from worker.standard_webhooks import decode_secret, retry_delay, signature
from worker.webhook_endpoints import WebhookEndpoint
from worker.webhooks import Delivery, WebhookDeliverer, WebhookOptions

SETTINGS = QueueSettings(redis_url="redis://unused", queue_name="test:queue")
OTHER_SECRET = "whsec_" + "b3RoZXIgcHJvamVjdCdzIHNpZ25pbmcga2V5IQ=="


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver.running() as running:
        yield running


@pytest.fixture
def queue(real_redis) -> BatchQueue:
    return BatchQueue(real_redis, SETTINGS)


def endpoint(url: str, project: str = FLEET, secret: str = SECRET) -> WebhookEndpoint:
    return WebhookEndpoint(project, url, decode_secret(secret))


def options(*urls: str | WebhookEndpoint, **overrides: object) -> WebhookOptions:
    endpoints = tuple(u if isinstance(u, WebhookEndpoint) else endpoint(u) for u in urls)
    values: dict = {"endpoints": endpoints, "timeout_seconds": 2.0, "retry_base_seconds": 0.05,
                    "retry_cap_seconds": 0.2, "poll_seconds": 0.02, **overrides}  # fmt: skip
    return WebhookOptions(**values)


async def deliverer(redis, opts: WebhookOptions, name: str = "w1") -> WebhookDeliverer:
    """A deliverer that has announced its endpoints (so ending batches write events)."""
    made = WebhookDeliverer(redis, opts, worker_id=name, metrics=WorkerMetrics(),
                            rng=random.Random(7))  # fmt: skip
    await made._announce(int(time.time() * 1000))
    return made


@pytest.fixture
async def running_deliverers() -> AsyncIterator[list[asyncio.Task]]:
    """Deliverers started with ``tasks.append(asyncio.create_task(d.run()))``; all stopped."""
    tasks: list[asyncio.Task] = []
    yield tasks
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def end_batch(queue: BatchQueue, batch_id: str, project: str | None = None) -> None:
    line = PromptLine(1, "q0", (Message(role="user", content="hi"),), "gpt-4o")
    await queue.enqueue([line], batch_id=batch_id)
    if project is not None:
        await records.save_extras(queue.redis, batch_id, {"kind": "batch", "project": project},
                                  3600)  # fmt: skip
    queue.store.ledger.endpoints.forget()  # the test just announced: no cached view
    created = await queue.store.created_at(batch_id)
    (request,) = await queue.store.requests(batch_id, [0], created)
    await queue.store.ledger.save_results([JobResult.for_request(request, status="succeeded")])


async def routed(worker: WebhookDeliverer) -> None:
    """Routes what the outbox holds (as the routing loop does)."""
    while await worker.route_due():
        pass


async def nothing_pending(redis) -> bool:
    return (await read_outbox(redis, now_ms=int(time.time() * 1000))).pending == 0


async def test_an_ended_batch_is_delivered_signed_as_openai_signs(
    queue, real_redis, receiver, running_deliverers
) -> None:
    worker = await deliverer(real_redis, options(receiver.url))
    await end_batch(queue, "b1")
    running_deliverers.append(asyncio.create_task(worker.run()))
    await eventually(lambda: receiver.accepted(), what="a delivery")
    (delivery,) = receiver.deliveries
    assert delivery.problem == "" and delivery.path == "/hooks"
    event = delivery.event  # unwrapped by the official SDK: the signature checked out
    assert (event.type, event.data.id, event.object) == ("batch.completed", "b1", "event")
    assert delivery.headers["webhook-id"] == event.id
    assert delivery.headers["content-type"] == "application/json"
    await eventually(lambda: nothing_pending(real_redis), what="nothing pending")
    await eventually(lambda: _gone(real_redis, event.id), what="the event deleted")
    assert worker.metrics.webhooks == {"delivered": 1}
    state = await read_outbox(real_redis, now_ms=int(time.time() * 1000))
    assert (state.pending, state.failed, state.deliverers) == (0, 0, 1)
    (known,) = state.endpoints
    assert known.last_ok_ms and not known.failing_since_ms and not known.disabled


async def _gone(redis, event_id: str) -> bool:
    return await redis.exists(keys.webhook_event(event_id)) == 0


async def test_a_refusing_receiver_gets_the_same_event_id_again(
    queue, real_redis, running_deliverers
) -> None:
    with webhook_receiver.running(refuse_first=3) as receiver:
        worker = await deliverer(real_redis, options(receiver.url))
        await end_batch(queue, "b1")
        running_deliverers.append(asyncio.create_task(worker.run()))
        await eventually(lambda: receiver.accepted(), what="a delivery after 3 refusals")
        await eventually(lambda: worker.metrics.webhooks["delivered"], what="it counted")
        ids = {d.headers["webhook-id"] for d in receiver.deliveries}
        timestamps = [int(d.headers["webhook-timestamp"]) for d in receiver.deliveries]
    assert [d.answered for d in receiver.deliveries] == [503, 503, 503, 200]
    assert len(ids) == 1 and all(d.event is not None for d in receiver.deliveries)
    assert timestamps == sorted(timestamps)
    assert worker.metrics.webhooks == {"failed": 3, "delivered": 1}


async def test_each_url_gets_it_once_even_when_another_keeps_failing(
    queue, real_redis, running_deliverers
) -> None:
    with (
        webhook_receiver.running() as good,
        webhook_receiver.running(refuse_first=2) as flaky,
    ):
        worker = await deliverer(real_redis, options(good.url, flaky.url))
        await end_batch(queue, "b1")
        running_deliverers.append(asyncio.create_task(worker.run()))
        await eventually(lambda: flaky.accepted(), what="the flaky one to take it")
        await eventually(lambda: nothing_pending(real_redis), what="nothing pending")
    assert len(good.deliveries) == 1 and len(flaky.deliveries) == 3


async def test_a_hanging_endpoint_delays_only_itself(queue, real_redis, running_deliverers) -> None:
    with webhook_receiver.running() as good, webhook_receiver.running() as hanging:
        hanging.hang_seconds = 3.0
        worker = await deliverer(real_redis, options(hanging.url, good.url, timeout_seconds=2.0))
        running_deliverers.append(asyncio.create_task(worker.run()))
        await end_batch(queue, "b1")
        await eventually(lambda: hanging.deliveries, what="the first attempt at the hanging one")
        started = time.monotonic()
        await end_batch(queue, "b2")  # while the hanging endpoint holds its first attempt
        await eventually(lambda: len(good.accepted()) == 2, timeout=10, what="both at the good one")
        late = time.monotonic() - started
    assert late < 1.5, f"the healthy endpoint got b2 {late:.2f}s late"
    print(f"\nbeside a hanging endpoint, the healthy one got the event {late:.2f}s after it ended")


async def test_a_delivery_is_recorded_the_moment_it_succeeds(queue, real_redis) -> None:
    with webhook_receiver.running() as good, webhook_receiver.running() as hanging:
        hanging.hang_seconds = 5.0
        worker = await deliverer(real_redis, options(good.url, hanging.url, timeout_seconds=4.0))
        await end_batch(queue, "b1")
        running = asyncio.create_task(worker.run())
        try:
            await eventually(lambda: good.accepted() and hanging.deliveries, what="both sent")
            (event_id,) = {d.headers["webhook-id"] for d in good.deliveries}
            done = await real_redis.hget(keys.webhook_event(event_id), "delivered")
        finally:
            running.cancel()  # SIGTERM: the hanging attempt is cut short
            await asyncio.gather(running, return_exceptions=True)
    good_key = endpoint(good.url).key
    assert done is not None and done.decode() == good_key  # recorded before the round ended
    assert await real_redis.zscore(keys.webhook_queue(good_key), event_id) is None
    assert await real_redis.zscore(keys.webhook_queue(endpoint(hanging.url).key), event_id)


async def test_410_gone_disables_the_endpoint_and_says_so(
    queue, real_redis, running_deliverers
) -> None:
    with webhook_receiver.running(refuse_first=1000, refuse_status=410) as gone:
        worker = await deliverer(real_redis, options(gone.url))
        await end_batch(queue, "b1")
        running_deliverers.append(asyncio.create_task(worker.run()))
        await eventually(lambda: worker.metrics.webhooks["disabled"], what="it disabled")
        await end_batch(queue, "b2")  # told to nobody now: the only endpoint is gone
        await asyncio.sleep(0.2)  # a few turns of every loop: nothing more may be sent
    assert len(gone.deliveries) == 1
    state = await read_outbox(real_redis, now_ms=int(time.time() * 1000))
    (known,) = state.endpoints
    assert known.disabled and known.disabled_why == "HTTP 410 Gone"
    assert state.pending == 0 and state.failed == 0
    assert await real_redis.zcard(keys.webhook_outbox()) == 0


async def test_each_project_has_its_endpoint_and_secret_the_fleets_the_default(
    queue, real_redis, running_deliverers
) -> None:
    with (
        webhook_receiver.running() as fleet,
        webhook_receiver.running(secret=OTHER_SECRET) as team_a,
    ):
        opts = options(fleet.url, endpoint(team_a.url, "team-a", OTHER_SECRET))
        worker = await deliverer(real_redis, opts)
        await end_batch(queue, "batch_a", project="team-a")
        await end_batch(queue, "batch_b", project="team-b")
        await end_batch(queue, "b_cli")
        running_deliverers.append(asyncio.create_task(worker.run()))
        await eventually(lambda: len(fleet.accepted()) == 2 and team_a.accepted(),
                         what="three deliveries")  # fmt: skip
        await eventually(lambda: nothing_pending(real_redis), what="nothing pending")
    assert [e.data.id for e in team_a.events()] == ["batch_a"]  # signed with team-a's secret
    assert sorted(e.data.id for e in fleet.events()) == ["b_cli", "batch_b"]
    assert all(d.problem == "" for d in [*fleet.deliveries, *team_a.deliveries])


async def test_a_full_queue_drops_its_oldest_and_counts_them(
    queue, real_redis, receiver, monkeypatch
) -> None:
    import worker.webhooks

    monkeypatch.setattr(worker.webhooks, "QUEUE_AT_MOST", 2)
    sender = await deliverer(real_redis, options(receiver.url))
    for n in range(4):
        await end_batch(queue, f"b{n}")
    await routed(sender)
    state = await read_outbox(real_redis, now_ms=int(time.time() * 1000))
    (known,) = state.endpoints
    assert (known.pending, known.dropped, state.pending) == (2, 2, 2)


async def test_two_workers_never_deliver_the_same_attempt(queue, real_redis, receiver) -> None:
    first = await deliverer(real_redis, options(receiver.url), "a")
    second = await deliverer(real_redis, options(receiver.url), "b")
    for n in range(10):
        await end_batch(queue, f"b{n}")
    try:
        await asyncio.gather(routed(first), routed(second))
        (target,) = first.options.endpoints
        handled = await asyncio.gather(first.deliver_due(target), second.deliver_due(target))
    finally:
        await first.close()
        await second.close()
    assert sum(handled) == 10
    ids = [d.headers["webhook-id"] for d in receiver.deliveries]
    assert len(ids) == len(set(ids)) == 10


async def _claim_as(worker: WebhookDeliverer, token: str, until: int) -> str:
    """Claims the one due delivery under ``token`` (another worker's), without sending it."""
    (target,) = worker.options.endpoints
    queue_key = keys.webhook_queue(target.key)
    (event_id,) = [keys.decoded(m) for m in await worker.redis.zrange(queue_key, 0, -1)]
    await worker.scripts.run(
        "claim_deliveries",
        [queue_key, keys.webhook_health(), keys.webhook_event(event_id)],
        [10**13, until, token, target.key, event_id],
    )  # fmt: skip
    return event_id


async def test_a_worker_that_died_mid_delivery_leaves_it_to_another(
    queue, real_redis, receiver
) -> None:
    short = options(receiver.url, timeout_seconds=0.2, claim_margin_seconds=0.0)
    dead = await deliverer(real_redis, short, "dead")
    await end_batch(queue, "b1")
    await routed(dead)
    await _claim_as(dead, "dead-token", 0)  # it claimed and died before sending
    heir = await deliverer(real_redis, short, "heir")
    (target,) = heir.options.endpoints
    try:
        await eventually(lambda: heir.deliver_due(target), what="the heir to deliver")
    finally:
        await heir.close()
    assert len(receiver.accepted()) == 1


async def test_a_claim_lost_to_another_worker_records_nothing(queue, real_redis, receiver) -> None:
    slow = await deliverer(real_redis, options(receiver.url))
    await end_batch(queue, "b1")
    await routed(slow)
    event_id = await _claim_as(slow, "someone-else", 10**13 + 1)
    (target,) = slow.options.endpoints
    with structlog.testing.capture_logs() as logs:
        await slow._settle(target, Delivery(event_id, b"{}", 0, 0), 200, "")
    assert [line["event"] for line in logs] == ["webhook.claim_lost"]
    assert await real_redis.zcard(keys.webhook_queue(target.key)) == 1  # still the other's


async def test_past_its_window_an_event_is_given_up_and_shown_failed(
    queue, real_redis, running_deliverers
) -> None:
    with webhook_receiver.running(refuse_first=1000) as receiver:
        worker = await deliverer(real_redis, options(receiver.url, retry_for_seconds=0.3))
        await end_batch(queue, "b1")
        running_deliverers.append(asyncio.create_task(worker.run()))
        await eventually(lambda: worker.metrics.webhooks["given_up"], what="it given up")
    state = await read_outbox(real_redis, now_ms=10**13)
    assert (state.pending, state.failed) == (0, 1)
    (failed,) = state.last_failed
    assert (failed.type, failed.batch_id) == ("batch.completed", "b1")
    assert failed.attempts == len(receiver.deliveries) >= 2
    assert failed.last_error == f"{endpoint(receiver.url).label}: HTTP 503"
    assert await real_redis.ttl(keys.webhook_event(failed.event_id)) > 0
    assert await real_redis.ttl(keys.webhook_failed()) > 0


async def test_redirects_are_not_followed_and_hangs_time_out(queue, real_redis) -> None:
    with webhook_receiver.running(refuse_first=1, refuse_status=307) as receiver:
        worker = await deliverer(real_redis, options(receiver.url))
        await end_batch(queue, "b1")
        await routed(worker)
        (target,) = worker.options.endpoints
        try:
            assert await worker.deliver_due(target) == 1
            receiver.hang_seconds = 1.0
            worker.options = options(receiver.url, timeout_seconds=0.2)
            await eventually(lambda: worker.deliver_due(target), what="the retry, timed out")
        finally:
            await worker.close()
    assert [d.path for d in receiver.deliveries] == ["/hooks", "/hooks"]  # never /elsewhere
    (event_id,) = await real_redis.zrange(keys.webhook_queue(target.key), 0, -1)
    error = await real_redis.hget(keys.webhook_event(keys.decoded(event_id)), "last_error")
    assert error.decode().endswith("no answer within 0.2s")


async def test_no_credential_of_a_url_reaches_a_log_or_redis(queue, real_redis, receiver) -> None:
    secret_url = receiver.url.replace("http://", "http://hookuser:s3cr3t-pw@") + "?token=tok-42"
    refused = "http://user:s3cr3t-pw@127.0.0.1:9/path-tok-42"  # nothing listens on port 9
    worker = await deliverer(real_redis, options(secret_url, refused))
    await end_batch(queue, "b1")
    with structlog.testing.capture_logs() as logs:
        try:
            await routed(worker)
            for target in worker.options.endpoints:
                assert await worker.deliver_due(target) == 1
        finally:
            await worker.close()
    assert receiver.accepted()[0].headers["authorization"].startswith("Basic ")
    said = json.dumps(logs, default=str)
    (event_id,) = await real_redis.zrange(
        keys.webhook_queue(worker.options.endpoints[1].key), 0, -1
    )
    stored = await real_redis.hgetall(keys.webhook_event(keys.decoded(event_id)))
    announced = await real_redis.hgetall(keys.webhook_endpoints())
    health = await real_redis.hgetall(keys.webhook_health())
    for text in (said, repr(stored), repr(announced), repr(health)):
        assert "s3cr3t" not in text and "tok-42" not in text and "hookuser" not in text
    assert "http://127.0.0.1:9: could not connect" in stored[b"last_error"].decode()


async def test_with_no_endpoint_a_worker_delivers_nothing_and_no_event_is_written(
    queue, real_redis
) -> None:
    idle = asyncio.create_task(
        WebhookDeliverer(real_redis, WebhookOptions(), worker_id="w", metrics=WorkerMetrics()).run()
    )
    await end_batch(queue, "b1")
    await asyncio.sleep(0)  # it started, and waits
    assert not idle.done()
    idle.cancel()
    await asyncio.gather(idle, return_exceptions=True)
    assert await real_redis.zcard(keys.webhook_outbox()) == 0


def test_the_signature_is_standard_webhooks() -> None:
    # The Standard Webhooks specification's own example.
    key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert signature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected


def test_backoff_grows_with_jitter_up_to_its_cap() -> None:
    rng = random.Random(1)
    delays = [retry_delay(n, 5.0, 3600.0, rng) for n in range(1, 14)]
    assert 2.5 <= delays[0] <= 5 and 5 <= delays[1] <= 10 and 10 <= delays[2] <= 20
    assert all(1800 <= d <= 3600 for d in delays[-2:])
    assert len({round(d, 3) for d in delays}) == len(delays)
