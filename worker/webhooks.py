"""Delivering the webhook events of ended batches, from the outbox, at least once.

Every worker runs a ``WebhookDeliverer`` (no ``serve`` needed). Each turn it claims
the events whose delivery is due (``worker/lua/claim_webhooks.lua``): under a token
and for a visibility timeout, so two workers never deliver the same attempt at
once, and a worker that dies mid-delivery leaves the event to another once its
claim lapses. It POSTs each to every configured URL not yet reached, signed
(``worker.standard_webhooks``), with a timeout, following no redirects, sending a
small body and reading no reply. Then it records the outcome under its claim
(``settle_webhook.lua``): delivered everywhere, due again after an exponential
backoff with jitter, or given up once the next attempt would fall past 72 hours.

The event ID is the ``webhook-id`` of every attempt, so a receiver drops the
duplicates that at-least-once delivery allows (a worker that died after a POST
and before recording it). Redis going away is waited out; an event claimed then
is delivered again once its claim lapses.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import structlog
from redis.asyncio import Redis

from contract import keys
from contract.outbox import FAILED_KEEP_SECONDS, FAILED_KEPT, RETRY_FOR_SECONDS
from contract.retrying import TRANSIENT, RedisBackoff
from contract.scripts import ScriptBook
from worker.config import WorkerConfig
from worker.metrics import WorkerMetrics
from worker.standard_webhooks import (
    decode_secret,
    delivery_headers,
    endpoint_key,
    endpoint_label,
    parse_urls,
    retry_delay,
)

log = structlog.get_logger("chatgptes.webhooks")

CLAIM_AT_MOST = 20  # events claimed per turn
MAX_BODY_BYTES = 64 * 1024  # an event is some 150 bytes; nothing bigger is ever sent
ANNOUNCE_EVERY_SECONDS = 10.0  # how often a deliverer says it is there (for top)
DELIVERERS_KEEP_SECONDS = 3600
ERROR_CHARS = 300  # the last error kept with an event, at most


@dataclass(frozen=True)
class WebhookOptions:
    """Where and how events are delivered (from the worker's settings)."""

    urls: tuple[str, ...] = ()
    key: bytes = b""  # the signing key (the secret, decoded)
    timeout_seconds: float = 10.0
    retry_base_seconds: float = 5.0
    retry_cap_seconds: float = 3600.0
    retry_for_seconds: float = RETRY_FOR_SECONDS
    poll_seconds: float = 1.0
    claim_margin_seconds: float = 5.0  # beyond the attempt itself, to record its outcome

    @classmethod
    def from_config(cls, config: WorkerConfig) -> WebhookOptions:
        secret = config.webhook_secret.get_secret_value()
        return cls(
            urls=parse_urls(config.webhook_urls.get_secret_value()),
            key=decode_secret(secret) if secret else b"",
            timeout_seconds=config.webhook_timeout_seconds,
            retry_base_seconds=config.webhook_retry_base_seconds,
            retry_cap_seconds=config.webhook_retry_cap_seconds,
        )

    @property
    def claim_seconds(self) -> float:
        """How long a claim hides an event: one attempt at every URL (they run at once),
        with room to record it."""
        return 2 * self.timeout_seconds + self.claim_margin_seconds


@dataclass(frozen=True)
class ClaimedEvent:
    event_id: str
    body: bytes
    attempts: int  # failed attempts before this one
    delivered: frozenset[str]  # endpoint keys that took it already
    created_ms: int


class WebhookDeliverer:
    def __init__(
        self,
        redis: Redis,
        options: WebhookOptions,
        *,
        worker_id: str,
        metrics: WorkerMetrics,
        rng: random.Random | None = None,
    ) -> None:
        self.redis = redis
        self.options = options
        self.worker_id = worker_id
        self.metrics = metrics
        self.scripts = ScriptBook(redis, "worker", ["claim_webhooks", "settle_webhook"])
        self._rng = rng or random.Random()
        self._token = f"{worker_id}:{secrets.token_hex(6)}"
        self._session: aiohttp.ClientSession | None = None
        self._announced = 0.0
        self._backoff = RedisBackoff("webhooks")

    async def run(self) -> None:
        """Delivers due events until cancelled; with no URL configured, idles (another
        worker may have some: the events wait for it)."""
        if not self.options.urls or not self.options.key:
            await asyncio.Event().wait()
        try:
            while True:
                try:
                    handled = await self.deliver_due()
                except TRANSIENT as error:
                    await self._backoff.wait(error)
                    continue
                self._backoff.reset()
                if not handled:
                    await asyncio.sleep(self.options.poll_seconds)
        finally:
            await self.close()

    async def close(self) -> None:
        """Closes the HTTP connections (a later delivery opens new ones)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def deliver_due(self) -> int:
        """One turn: claims the due events and delivers them; returns how many."""
        now_ms = int(time.time() * 1000)
        due = await self._due(now_ms)
        if not due:
            return 0
        claimed = await self.scripts.run(
            "claim_webhooks",
            [keys.webhook_outbox(), *(keys.webhook_event(event_id) for event_id in due)],
            [now_ms, now_ms + int(self.options.claim_seconds * 1000), self._token, *due],
        )
        events = [
            ClaimedEvent(
                event_id=keys.decoded(event_id),
                body=bytes(body),
                attempts=int(attempts),
                delivered=frozenset(keys.decoded(done).split()),
                created_ms=int(created),
            )
            for event_id, body, attempts, done, created in claimed
        ]
        await asyncio.gather(*(self.deliver(event) for event in events))
        return len(events)

    async def _due(self, now_ms: int) -> list[str]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(keys.webhook_outbox(), "-inf", now_ms, start=0, num=CLAIM_AT_MOST)
            if time.monotonic() - self._announced >= ANNOUNCE_EVERY_SECONDS:
                deliverers = keys.webhook_deliverers()
                pipe.zadd(deliverers, {self.worker_id: now_ms})
                pipe.zremrangebyscore(deliverers, "-inf", now_ms - DELIVERERS_KEEP_SECONDS * 1000)
                pipe.expire(deliverers, DELIVERERS_KEEP_SECONDS)
                self._announced = time.monotonic()
            due, *_ = await pipe.execute()
        return [keys.decoded(event_id) for event_id in due]

    async def deliver(self, event: ClaimedEvent) -> None:
        """Sends the event to every URL it has not reached, then records how it went."""
        targets = [url for url in self.options.urls if endpoint_key(url) not in event.delivered]
        errors = await asyncio.gather(*(self._post(url, event) for url in targets))
        reached = set(event.delivered)
        failures: list[str] = []
        for url, error in zip(targets, errors, strict=True):
            if error is None:
                reached.add(endpoint_key(url))
            else:
                failures.append(f"{endpoint_label(url)}: {error}")
        await self._settle(event, reached, failures)

    async def _post(self, url: str, event: ClaimedEvent) -> str | None:
        """None if the endpoint took the event (a 2xx), else what went wrong."""
        fields = {"event_id": event.event_id, "endpoint": endpoint_label(url),
                  "attempt": event.attempts + 1}  # fmt: skip
        if len(event.body) > MAX_BODY_BYTES:
            return "the event is too big to send"
        timestamp = int(time.time())
        headers = delivery_headers(self.options.key, event.event_id, timestamp, event.body)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self.options.timeout_seconds)
        try:
            async with self._session.post(
                url, data=event.body, headers=headers, allow_redirects=False, timeout=timeout
            ) as reply:
                status = reply.status  # the reply's body is never read
        except TimeoutError:
            error = f"no answer within {self.options.timeout_seconds:g}s"
        except aiohttp.ClientConnectionError:
            error = "could not connect, or the connection was cut"
        except aiohttp.ClientError as failure:  # its text may quote the URL: only its type
            error = f"refused by the HTTP client ({type(failure).__name__})"
        else:
            if 200 <= status < 300:
                self.metrics.webhook_delivery("delivered")
                log.info("webhook.delivered", status=status, **fields)
                return None
            error = f"HTTP {status}" + (" (redirects are not followed)" if status < 400 else "")
        self.metrics.webhook_delivery("failed")
        log.warning("webhook.attempt_failed", error=error, **fields)
        return error

    async def _settle(
        self, event: ClaimedEvent, reached: set[str], failures: Sequence[str]
    ) -> None:
        now_ms = int(time.time() * 1000)
        next_ms = 0
        if not failures:
            how = "delivered"
        else:
            delay = retry_delay(event.attempts + 1, self.options.retry_base_seconds,
                                self.options.retry_cap_seconds, self._rng)  # fmt: skip
            next_ms = now_ms + int(delay * 1000)
            give_up_ms = event.created_ms + int(self.options.retry_for_seconds * 1000)
            how = "give_up" if next_ms > give_up_ms else "retry"
        recorded = await self.scripts.run(
            "settle_webhook",
            [keys.webhook_outbox(), keys.webhook_event(event.event_id), keys.webhook_failed()],
            [event.event_id, self._token, how, next_ms, " ".join(sorted(reached)),
             "; ".join(failures)[:ERROR_CHARS], now_ms, FAILED_KEEP_SECONDS, FAILED_KEPT],
        )  # fmt: skip
        if not recorded:
            log.info("webhook.claim_lost", event_id=event.event_id)  # another worker has it
        elif how == "give_up":
            self.metrics.webhook_delivery("given_up")
            log.error("webhook.given_up", event_id=event.event_id, attempts=event.attempts + 1)
        elif how == "retry":
            retry_in = round((next_ms - now_ms) / 1000, 1)
            log.info("webhook.retry_scheduled", event_id=event.event_id,
                     attempt=event.attempts + 1, retry_in=retry_in)  # fmt: skip
