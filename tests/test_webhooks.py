"""Webhook deliveries from the outbox: signed as OpenAI signs them (checked with the official
SDK's ``unwrap``), claimed under a token, retried with backoff, given up after their window,
and never a credential in a log line — against a receiver on 127.0.0.1 and a real Redis."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import structlog
from pydantic import ValidationError

from contract import keys
from contract.config import QueueSettings
from contract.models import JobResult, Message
from contract.outbox import read_outbox
from producer.api import BatchQueue
from producer.inputs import PromptLine
from tests import webhook_receiver
from tests.conftest import eventually
from tests.webhook_receiver import SECRET, Receiver
from worker.config import WorkerConfig
from worker.metrics import WorkerMetrics
from worker.standard_webhooks import (
    decode_secret,
    endpoint_label,
    parse_urls,
    retry_delay,
    signature,
)
from worker.webhooks import WebhookDeliverer, WebhookOptions

SETTINGS = QueueSettings(redis_url="redis://unused", queue_name="test:queue")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver.running() as running:
        yield running


@pytest.fixture
def queue(real_redis) -> BatchQueue:
    return BatchQueue(real_redis, SETTINGS)


def options(*urls: str, **overrides: object) -> WebhookOptions:
    values: dict = {"urls": urls, "key": decode_secret(SECRET), "timeout_seconds": 2.0,
                    "retry_base_seconds": 0.05, "retry_cap_seconds": 0.2,
                    "poll_seconds": 0.02, **overrides}  # fmt: skip
    return WebhookOptions(**values)


def deliverer(redis, opts: WebhookOptions, name: str = "w1") -> WebhookDeliverer:
    return WebhookDeliverer(redis, opts, worker_id=name, metrics=WorkerMetrics(),
                            rng=random.Random(7))  # fmt: skip


@pytest.fixture
async def running_deliverers() -> AsyncIterator[list[asyncio.Task]]:
    """Deliverers started with ``tasks.append(asyncio.create_task(d.run()))``; all stopped."""
    tasks: list[asyncio.Task] = []
    yield tasks
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def end_batch(queue: BatchQueue, batch_id: str) -> None:
    line = PromptLine(1, "q0", (Message(role="user", content="hi"),), "gpt-4o")
    await queue.enqueue([line], batch_id=batch_id)
    created = await queue.store.created_at(batch_id)
    (request,) = await queue.store.requests(batch_id, [0], created)
    await queue.store.ledger.save_results([JobResult.for_request(request, status="succeeded")])


async def test_an_ended_batch_is_delivered_signed_as_openai_signs(
    queue, real_redis, receiver, running_deliverers
) -> None:
    await end_batch(queue, "b1")
    worker = deliverer(real_redis, options(receiver.url))
    running_deliverers.append(asyncio.create_task(worker.run()))
    await eventually(lambda: receiver.accepted(), what="a delivery")
    (delivery,) = receiver.deliveries
    assert delivery.problem == "" and delivery.path == "/hooks"
    event = delivery.event  # unwrapped by the official SDK: the signature checked out
    assert (event.type, event.data.id, event.object) == ("batch.completed", "b1", "event")
    assert delivery.headers["webhook-id"] == event.id
    assert delivery.headers["content-type"] == "application/json"
    await eventually(lambda: _outbox_empty(real_redis), what="the outbox emptied")
    assert await real_redis.exists(keys.webhook_event(event.id)) == 0
    assert worker.metrics.webhooks == {"delivered": 1}
    state = await read_outbox(real_redis, now_ms=int(time.time() * 1000))
    assert (state.pending, state.failed, state.deliverers) == (0, 0, 1)


async def _outbox_empty(redis) -> bool:
    return await redis.zcard(keys.webhook_outbox()) == 0


async def test_a_refusing_receiver_gets_the_same_event_id_again(
    queue, real_redis, running_deliverers
) -> None:
    with webhook_receiver.running(refuse_first=3) as receiver:
        await end_batch(queue, "b1")
        worker = deliverer(real_redis, options(receiver.url))
        running_deliverers.append(asyncio.create_task(worker.run()))
        await eventually(lambda: receiver.accepted(), what="a delivery after 3 refusals")
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
        await end_batch(queue, "b1")
        worker = deliverer(real_redis, options(good.url, flaky.url))
        running_deliverers.append(asyncio.create_task(worker.run()))
        await eventually(lambda: flaky.accepted(), what="the flaky one to take it")
        await eventually(lambda: _outbox_empty(real_redis), what="the outbox emptied")
    assert len(good.deliveries) == 1 and len(flaky.deliveries) == 3


async def test_two_workers_never_deliver_the_same_attempt(queue, real_redis, receiver) -> None:
    for n in range(10):
        await end_batch(queue, f"b{n}")
    first, second = (deliverer(real_redis, options(receiver.url), name) for name in ("a", "b"))
    try:
        handled = await asyncio.gather(first.deliver_due(), second.deliver_due())
    finally:
        await first.close()
        await second.close()
    assert sum(handled) == 10
    ids = [d.headers["webhook-id"] for d in receiver.deliveries]
    assert len(ids) == len(set(ids)) == 10


async def test_a_worker_that_died_mid_delivery_leaves_it_to_another(
    queue, real_redis, receiver
) -> None:
    await end_batch(queue, "b1")
    short = options(receiver.url, timeout_seconds=0.2, claim_margin_seconds=0.0)
    dead = deliverer(real_redis, short, "dead")
    # It claims the event and dies before sending (its claim is all that is left).
    due = await dead._due(10**13)
    await dead.scripts.run(
        "claim_webhooks", [keys.webhook_outbox(), keys.webhook_event(due[0])],
        [10**13, 0, "dead-token", *due],
    )  # fmt: skip
    heir = deliverer(real_redis, short, "heir")
    try:
        await eventually(heir.deliver_due, what="the claim to lapse and the heir to deliver")
    finally:
        await heir.close()
    assert len(receiver.accepted()) == 1


async def test_a_claim_lost_to_another_worker_records_nothing(queue, real_redis, receiver) -> None:
    await end_batch(queue, "b1")
    slow = deliverer(real_redis, options(receiver.url))
    due = await slow._due(10**13)
    await slow.scripts.run(
        "claim_webhooks", [keys.webhook_outbox(), keys.webhook_event(due[0])],
        [10**13, 10**13 + 1, "someone-else", *due],
    )  # fmt: skip
    with structlog.testing.capture_logs() as logs:
        await slow._settle(_claimed(due[0]), set(), [])
    assert [line["event"] for line in logs] == ["webhook.claim_lost"]
    assert await real_redis.zcard(keys.webhook_outbox()) == 1  # still the other's to settle


def _claimed(event_id: str):
    from worker.webhooks import ClaimedEvent

    return ClaimedEvent(event_id, b"{}", 0, frozenset(), 0)


async def test_past_its_window_an_event_is_given_up_and_shown_failed(
    queue, real_redis, running_deliverers
) -> None:
    with webhook_receiver.running(refuse_first=1000) as receiver:
        await end_batch(queue, "b1")
        worker = deliverer(real_redis, options(receiver.url, retry_for_seconds=0.3))
        running_deliverers.append(asyncio.create_task(worker.run()))
        await eventually(lambda: worker.metrics.webhooks["given_up"], what="it given up")
    state = await read_outbox(real_redis, now_ms=10**13)
    assert (state.pending, state.failed) == (0, 1)
    (failed,) = state.last_failed
    assert (failed.type, failed.batch_id) == ("batch.completed", "b1")
    assert failed.attempts == len(receiver.deliveries) >= 2
    assert failed.last_error == f"{endpoint_label(receiver.url)}: HTTP 503"
    assert await real_redis.ttl(keys.webhook_event(failed.event_id)) > 0
    assert await real_redis.ttl(keys.webhook_failed()) > 0


async def test_redirects_are_not_followed_and_hangs_time_out(queue, real_redis) -> None:
    with webhook_receiver.running(refuse_first=1, refuse_status=307) as receiver:
        await end_batch(queue, "b1")
        worker = deliverer(real_redis, options(receiver.url))
        try:
            assert await worker.deliver_due() == 1
            receiver.hang_seconds = 1.0
            worker.options = options(receiver.url, timeout_seconds=0.2)
            await eventually(worker.deliver_due, what="the retry, timed out")
        finally:
            await worker.close()
    assert [d.path for d in receiver.deliveries] == ["/hooks", "/hooks"]  # never /elsewhere
    (event_id,) = await real_redis.zrange(keys.webhook_outbox(), 0, -1)
    error = await real_redis.hget(keys.webhook_event(keys.decoded(event_id)), "last_error")
    assert error.decode().endswith("no answer within 0.2s")


async def test_no_credential_of_a_url_reaches_a_log_or_redis(queue, real_redis, receiver) -> None:
    secret_url = receiver.url.replace("http://", "http://hookuser:s3cr3t-pw@") + "?token=tok-42"
    refused = "http://user:s3cr3t-pw@127.0.0.1:9/path-tok-42"  # nothing listens on port 9
    await end_batch(queue, "b1")
    worker = deliverer(real_redis, options(secret_url, refused))
    with structlog.testing.capture_logs() as logs:
        try:
            assert await worker.deliver_due() == 1
        finally:
            await worker.close()
    assert receiver.accepted()[0].headers["authorization"].startswith("Basic ")
    said = json.dumps(logs, default=str)
    (event_id,) = await real_redis.zrange(keys.webhook_outbox(), 0, -1)
    stored = await real_redis.hgetall(keys.webhook_event(keys.decoded(event_id)))
    for text in (said, repr(stored)):
        assert "s3cr3t" not in text and "tok-42" not in text and "hookuser" not in text
    assert "http://127.0.0.1:9: could not connect" in stored[b"last_error"].decode()


async def test_with_no_url_a_worker_delivers_nothing(queue, real_redis, receiver) -> None:
    await end_batch(queue, "b1")
    idle = asyncio.create_task(deliverer(real_redis, WebhookOptions()).run())
    await asyncio.sleep(0)  # it started, and waits: events are left for workers that deliver
    assert not idle.done()
    idle.cancel()
    await asyncio.gather(idle, return_exceptions=True)
    assert await real_redis.zcard(keys.webhook_outbox()) == 1


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


@pytest.mark.parametrize(
    ("urls", "secret", "problem"),
    [
        ("https://h.example/x", "", "needs CHATGPTES_WEBHOOK_SECRET"),
        ("https://h.example/x", "sk-notawhsec", "must start with 'whsec_'"),
        ("https://h.example/x", "whsec_!!!not-base64!!!", "is not base64"),
        ("https://h.example/x", "whsec_c2hvcnQ=", "at least 16 bytes"),
        ("ftp://u:hunter2@h.example/x", SECRET, "URL 1 (ftp://h.example) must be http(s)"),
        ("https://a.example, https://u:hunter2@b.example:x/", SECRET, "URL 2 is not a URL"),
    ],
)
def test_bad_webhook_settings_say_why_without_quoting_a_secret(
    urls: str, secret: str, problem: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        WorkerConfig(_env_file=None, webhook_urls=urls, webhook_secret=secret)
    said = str(raised.value)
    assert problem in said
    assert "hunter2" not in said and "notawhsec" not in said and "not-base64" not in said


def test_config_shows_endpoints_by_their_labels_only() -> None:
    config = WorkerConfig(_env_file=None, webhook_secret=SECRET,
                          webhook_urls="https://u:pw@a.example/t0k, http://b.example:8080/x")  # fmt: skip
    described = config.describe()
    assert described["webhook_urls"] == "https://a.example/***, http://b.example:8080/***"
    assert described["webhook_secret"] == "***"
    assert parse_urls(" https://a.example/x ,, ") == ("https://a.example/x",)


def test_a_workers_settings_make_its_options() -> None:
    config = WorkerConfig(_env_file=None, webhook_urls="https://a.example/x", webhook_secret=SECRET,
                          webhook_timeout_seconds=3, webhook_retry_base_seconds=0.5)  # fmt: skip
    made = WebhookOptions.from_config(config)
    assert (made.urls, made.key, made.timeout_seconds) == (
        ("https://a.example/x",), decode_secret(SECRET), 3,
    )  # fmt: skip
    assert made.retry_base_seconds == 0.5 and made.claim_seconds == 11
    assert WebhookOptions.from_config(WorkerConfig(_env_file=None)).urls == ()
