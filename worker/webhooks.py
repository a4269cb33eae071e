"""Delivering the webhook events of ended batches, at least once, each endpoint on its own.

Every worker configured with endpoints runs a ``WebhookDeliverer`` (no ``serve`` needed):

- **Routing.** New events wait in the outbox (written with the batch's end). A worker
  claims them under a token (``worker/lua/claim_webhooks.lua``) and routes each to the
  queue of every endpoint it goes to (``route_webhook.lua``): the project's own
  endpoints if it has any, else the fleet's (``contract.outbox.targets_for``).
- **Delivering.** Each endpoint has a loop of its own: it claims the events due in its
  queue (``claim_deliveries.lua``: under a token and for a visibility timeout, so two
  workers never send the same attempt, and one that dies mid-delivery leaves it to
  another once its claim lapses), POSTs each, signed (``worker.standard_webhooks``),
  with a timeout, following no redirects, reading no reply, and records the outcome
  the moment it is known (``settle_webhook.lua``): taken, due again after an
  exponential backoff with jitter, or given up once the next attempt would fall past
  72 hours. A hanging endpoint delays only its own queue, and a delivery that went
  through is never sent again because a neighbour was slow or the worker stopped.
- **Gone.** An endpoint that answers ``410 Gone`` is disabled: nothing more is sent
  there, and ``top`` and the console say so.

The worker also announces its endpoints (by their labels) every few seconds, so that
batches end with an event only where an endpoint exists (``contract.outbox``). The
event ID is the ``webhook-id`` of every attempt, so a receiver drops the duplicates
that at-least-once delivery allows. Redis going away is waited out.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp
import structlog
from redis.asyncio import Redis

from contract import keys
from contract.outbox import (
    EVENT_KEEP_SECONDS,
    FAILED_KEEP_SECONDS,
    FAILED_KEPT,
    QUEUE_AT_MOST,
    RETRY_FOR_SECONDS,
    announce_endpoints,
    targets_for,
)
from contract.retrying import TRANSIENT, RedisBackoff
from contract.scripts import ScriptBook
from worker.config import WorkerConfig
from worker.metrics import WorkerMetrics
from worker.standard_webhooks import delivery_headers, retry_delay
from worker.webhook_endpoints import WebhookEndpoint

log = structlog.get_logger("chatgptes.webhooks")

CLAIM_AT_MOST = 20  # events claimed per turn (routed, or delivered to one endpoint)
MAX_BODY_BYTES = 64 * 1024  # an event is some 150 bytes; nothing bigger is ever sent
ANNOUNCE_EVERY_SECONDS = 10.0  # how often a deliverer says it is there (for top, writers)
ERROR_CHARS = 300  # the last error kept with an event, at most
GONE = 410


@dataclass(frozen=True)
class WebhookOptions:
    """Where and how events are delivered (from the worker's settings)."""

    endpoints: tuple[WebhookEndpoint, ...] = ()
    timeout_seconds: float = 10.0
    retry_base_seconds: float = 5.0
    retry_cap_seconds: float = 3600.0
    retry_for_seconds: float = RETRY_FOR_SECONDS
    poll_seconds: float = 1.0
    claim_margin_seconds: float = 5.0  # beyond the attempt itself, to record its outcome

    @classmethod
    def from_config(cls, config: WorkerConfig) -> WebhookOptions:
        return cls(
            endpoints=config.webhook_endpoints(),
            timeout_seconds=config.webhook_timeout_seconds,
            retry_base_seconds=config.webhook_retry_base_seconds,
            retry_cap_seconds=config.webhook_retry_cap_seconds,
        )

    @property
    def claim_seconds(self) -> float:
        """How long a claim hides an event: one attempt, with room to record it."""
        return self.timeout_seconds + self.claim_margin_seconds


@dataclass(frozen=True)
class Delivery:
    """One event claimed for one endpoint."""

    event_id: str
    body: bytes
    attempts: int  # failed attempts at this endpoint before this one
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
        self.scripts = ScriptBook(
            redis, "worker",
            ["claim_webhooks", "route_webhook", "claim_deliveries", "settle_webhook"],
        )  # fmt: skip
        self._rng = rng or random.Random()
        self._token = f"{worker_id}:{secrets.token_hex(6)}"
        self._session: aiohttp.ClientSession | None = None
        self._announced = float("-inf")

    async def run(self) -> None:
        """Routes and delivers until cancelled, one loop per endpoint; with no endpoint
        configured, idles (the fleet writes no event for nobody)."""
        if not self.options.endpoints:
            await asyncio.Event().wait()
        try:
            async with asyncio.TaskGroup() as loops:  # one dying takes the others down
                loops.create_task(self._loop("routing", self.route_due))
                for endpoint in self.options.endpoints:
                    loops.create_task(self._loop(endpoint.label, self._deliverer(endpoint)))
        finally:
            await self.close()

    def _deliverer(self, endpoint: WebhookEndpoint) -> Callable[[], Awaitable[int]]:
        async def turn() -> int:
            return await self.deliver_due(endpoint)

        return turn

    async def _loop(self, what: str, turn: Callable[[], Awaitable[int]]) -> None:
        backoff = RedisBackoff(f"webhooks {what}")
        while True:
            try:
                handled = await turn()
            except TRANSIENT as error:
                await backoff.wait(error)
                continue
            backoff.reset()
            if not handled:
                await asyncio.sleep(self.options.poll_seconds)

    async def close(self) -> None:
        """Closes the HTTP connections (a later delivery opens new ones)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- routing ---------------------------------------------------------------------

    async def route_due(self) -> int:
        """One routing turn: claims new events and puts each in its endpoints' queues."""
        now_ms = int(time.time() * 1000)
        await self._announce(now_ms)
        due = [
            keys.decoded(event_id)
            for event_id in await self.redis.zrangebyscore(
                keys.webhook_outbox(), "-inf", now_ms, start=0, num=CLAIM_AT_MOST
            )
        ]
        if not due:
            return 0
        claimed = await self.scripts.run(
            "claim_webhooks",
            [keys.webhook_outbox(), *(keys.webhook_event(event_id) for event_id in due)],
            [now_ms, now_ms + int(self.options.claim_seconds * 1000), self._token, *due],
        )
        events = [(keys.decoded(i), keys.decoded(b)) for i, b, _ in claimed]
        projects = await self._projects([batch_id for _, batch_id in events])
        for (event_id, _), project in zip(events, projects, strict=True):
            targets = [e.key for e in targets_for(project, self.options.endpoints)]
            routed = await self.scripts.run(
                "route_webhook",
                [keys.webhook_outbox(), keys.webhook_event(event_id), keys.webhook_health(),
                 *(keys.webhook_queue(target) for target in targets)],
                [event_id, self._token, now_ms, EVENT_KEEP_SECONDS, QUEUE_AT_MOST, *targets],
            )  # fmt: skip
            if routed and int(routed[1]):
                log.warning("webhook.queue_full", dropped=int(routed[1]), event_id=event_id)
        return len(events)

    async def _projects(self, batch_ids: Sequence[str]) -> list[str]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for batch_id in batch_ids:
                pipe.hget(keys.batch_openai(batch_id), "project")
            found = await pipe.execute()
        return [keys.decoded(p) if p else keys.DEFAULT_PROJECT for p in found]

    async def _announce(self, now_ms: int) -> None:
        if time.monotonic() - self._announced < ANNOUNCE_EVERY_SECONDS:
            return
        await announce_endpoints(self.redis, self.worker_id,
                                 [(e.key, e.project, e.label) for e in self.options.endpoints],
                                 now_ms)  # fmt: skip
        self._announced = time.monotonic()

    # -- delivering ------------------------------------------------------------------

    async def deliver_due(self, endpoint: WebhookEndpoint) -> int:
        """One turn at one endpoint: claims its due events and delivers them at once,
        recording each outcome as it comes; returns how many."""
        now_ms = int(time.time() * 1000)
        queue = keys.webhook_queue(endpoint.key)
        due = [
            keys.decoded(event_id)
            for event_id in await self.redis.zrangebyscore(
                queue, "-inf", now_ms, start=0, num=CLAIM_AT_MOST
            )
        ]
        if not due:
            return 0
        claimed = await self.scripts.run(
            "claim_deliveries",
            [queue, keys.webhook_health(), *(keys.webhook_event(event_id) for event_id in due)],
            [now_ms, now_ms + int(self.options.claim_seconds * 1000), self._token, endpoint.key,
             *due],
        )  # fmt: skip
        deliveries = [
            Delivery(keys.decoded(event_id), bytes(body), int(attempts), int(created))
            for event_id, body, attempts, created in claimed
        ]
        await asyncio.gather(*(self.deliver(endpoint, d) for d in deliveries))
        return len(deliveries)

    async def deliver(self, endpoint: WebhookEndpoint, delivery: Delivery) -> None:
        """Sends one event to one endpoint, then records how it went."""
        status, error = await self._post(endpoint, delivery)
        await self._settle(endpoint, delivery, status, error)

    async def _post(self, endpoint: WebhookEndpoint, delivery: Delivery) -> tuple[int, str]:
        """(HTTP status or 0, "" if the endpoint took the event (a 2xx) else what went wrong)."""
        fields = {"event_id": delivery.event_id, "endpoint": endpoint.label,
                  "attempt": delivery.attempts + 1}  # fmt: skip
        if len(delivery.body) > MAX_BODY_BYTES:
            return 0, "the event is too big to send"
        timestamp = int(time.time())
        headers = delivery_headers(endpoint.signing_key, delivery.event_id, timestamp,
                                   delivery.body)  # fmt: skip
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self.options.timeout_seconds)
        status = 0
        try:
            async with self._session.post(
                endpoint.url, data=delivery.body, headers=headers, allow_redirects=False,
                timeout=timeout,
            ) as reply:  # fmt: skip
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
                return status, ""
            error = f"HTTP {status}" + (" (redirects are not followed)" if status < 400 else "")
            error += " Gone" if status == GONE else ""
        self.metrics.webhook_delivery("failed")
        log.warning("webhook.attempt_failed", error=error, **fields)
        return status, error

    async def _settle(
        self, endpoint: WebhookEndpoint, delivery: Delivery, status: int, error: str
    ) -> None:
        now_ms = int(time.time() * 1000)
        next_ms = 0
        if not error:
            how = "delivered"
        elif status == GONE:
            how = "gone"
        else:
            delay = retry_delay(delivery.attempts + 1, self.options.retry_base_seconds,
                                self.options.retry_cap_seconds, self._rng)  # fmt: skip
            next_ms = now_ms + int(delay * 1000)
            give_up_ms = delivery.created_ms + int(self.options.retry_for_seconds * 1000)
            how = "give_up" if next_ms > give_up_ms else "retry"
        recorded = await self.scripts.run(
            "settle_webhook",
            [keys.webhook_queue(endpoint.key), keys.webhook_event(delivery.event_id),
             keys.webhook_failed(), keys.webhook_health()],
            [delivery.event_id, endpoint.key, self._token, how, next_ms, error[:ERROR_CHARS],
             now_ms, FAILED_KEEP_SECONDS, FAILED_KEPT, endpoint.label],
        )  # fmt: skip
        fields = {"event_id": delivery.event_id, "endpoint": endpoint.label}
        if not recorded:
            log.info("webhook.claim_lost", **fields)  # another worker has it
        elif how == "gone":
            self.metrics.webhook_delivery("disabled")
            log.error("webhook.endpoint_gone", **fields)
        elif how == "give_up":
            self.metrics.webhook_delivery("given_up")
            log.error("webhook.given_up", attempts=delivery.attempts + 1, **fields)
        elif how == "retry":
            retry_in = round((next_ms - now_ms) / 1000, 1)
            log.info("webhook.retry_scheduled", attempt=delivery.attempts + 1,
                     retry_in=retry_in, **fields)  # fmt: skip
