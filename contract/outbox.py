"""The webhook outbox: each batch's end, kept in Redis until a worker has delivered it.

The scripts that end a batch (``save_results`` when its last prompt settles, and
``record_failed`` for a refused input) write the event in the same step
(``contract/lua/batch_events.lua``): a batch never ends without its event, whoever
ended it (a worker, ``serve``, the CLI) and whatever dies next. The event is
OpenAI's object (``batch.completed``, ``batch.failed``, ``batch.expired``,
``batch.cancelled``) and its ID is drawn once, when the batch ends: every delivery
attempt sends the same ID, and a batch that ends twice (a retry, then its end again)
makes two events.

Workers deliver the events (``worker.webhooks``); ``top`` and the console read how
many wait, and the deliveries given up, with ``read_outbox``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from redis.asyncio import Redis

from contract import keys

# Deliveries are tried for 72 hours (as OpenAI does); an event is kept an hour beyond.
RETRY_FOR_SECONDS = 72 * 3600
EVENT_KEEP_SECONDS = RETRY_FOR_SECONDS + 3600
FAILED_KEEP_SECONDS = 7 * 24 * 3600  # an event given up is shown this long
FAILED_KEPT = 1000  # the newest events given up that are kept
DELIVERER_SEEN_SECONDS = 30  # a worker that looked for events this recently delivers
EVENT_PREFIX = "evt_"
# The one-prompt batch behind a chat completion (``chat_…``) is the API's plumbing, not a
# batch anyone created: it ends without an event.
CHAT_BATCH_PREFIX = "chat_"


def new_event_id(batch_id: str) -> str:
    """An event ID in OpenAI's form (``evt_`` and 32 hex digits), or "" for a batch whose
    end is told to nobody."""
    return (
        "" if batch_id.startswith(CHAT_BATCH_PREFIX) else f"{EVENT_PREFIX}{secrets.token_hex(16)}"
    )


def event_keys(event_id: str) -> list[str]:
    """The keys a batch-ending script names for its event: the outbox, then the event."""
    return [keys.webhook_outbox(), keys.webhook_event(event_id or "none")]


@dataclass(frozen=True)
class OutboxEvent:
    """One event as the outbox holds it."""

    event_id: str
    type: str  # batch.completed, ...
    batch_id: str
    attempts: int
    last_error: str
    at_ms: int  # when its next attempt is due (pending), or when it was given up (failed)


@dataclass(frozen=True)
class OutboxState:
    """What ``top`` and the console show of the webhooks."""

    pending: int  # events not yet delivered to every URL
    failed: int  # events given up (after 72 hours of attempts), the newest kept
    deliverers: int  # workers that looked for events lately (0: nobody delivers)
    next_pending: list[OutboxEvent]  # the first few due
    last_failed: list[OutboxEvent]  # the latest few given up


async def read_outbox(redis: Redis, now_ms: int, *, shown: int = 5) -> OutboxState:
    """The outbox in two round trips (the second only when it holds events)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(keys.webhook_outbox())
        pipe.zrange(keys.webhook_outbox(), 0, shown - 1, withscores=True)
        pipe.zcard(keys.webhook_failed())
        pipe.zrevrange(keys.webhook_failed(), 0, shown - 1, withscores=True)
        pipe.zcount(keys.webhook_deliverers(), now_ms - DELIVERER_SEEN_SECONDS * 1000, "+inf")
        pending, first, failed, last, deliverers = await pipe.execute()
    listed = [(keys.decoded(m), int(at)) for m, at in [*first, *last]]
    details: list[list[bytes | None]] = []
    if listed:
        async with redis.pipeline(transaction=False) as pipe:
            for event_id, _ in listed:
                pipe.hmget(keys.webhook_event(event_id), "type", "batch", "attempts", "last_error")
            details = await pipe.execute()
    events = [
        OutboxEvent(
            event_id=event_id,
            type=keys.decoded(kind or b""),
            batch_id=keys.decoded(batch or b""),
            attempts=int(attempts or 0),
            last_error=keys.decoded(error or b""),
            at_ms=at,
        )
        for (event_id, at), (kind, batch, attempts, error) in zip(listed, details, strict=True)
    ]
    return OutboxState(
        pending=int(pending),
        failed=int(failed),
        deliverers=int(deliverers),
        next_pending=events[: len(first)],
        last_failed=events[len(first) :],
    )
