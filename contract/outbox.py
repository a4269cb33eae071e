"""The webhook outbox: each batch's end, kept in Redis until every endpoint it goes to is done.

The scripts that end a batch (``save_results`` when its last prompt settles, and
``record_failed`` for a refused input) write the event in the same step
(``contract/lua/batch_events.lua``): a batch never ends without its event, whoever
ended it (a worker, ``serve``, the CLI) and whatever dies next. The event is
OpenAI's object (``batch.completed``, ``batch.failed``, ``batch.expired``,
``batch.cancelled``) and its ID is drawn once, when the batch ends: every delivery
attempt sends the same ID, and a batch that ends twice (a retry, then its end again)
makes two events.

An event is written only when some endpoint is configured for the batch's project
(``EndpointDirectory.event_ids``, which chooses the ID): the endpoints are the ones
the delivering workers announce (``keys.webhook_endpoints``), a project's own if it
has any, else the fleet's (``targets_for``). A batch of a project nobody delivers
for, or a chat completion's, is told to nobody and leaves nothing behind.

Workers then route each event to the queue of each of its endpoints and deliver each
queue on its own (``worker.webhooks``); ``top`` and the console read how it goes with
``read_outbox``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

from redis.asyncio import Redis

from contract import keys

# Deliveries are tried for 72 hours (as OpenAI does); an event is kept an hour beyond.
RETRY_FOR_SECONDS = 72 * 3600
EVENT_KEEP_SECONDS = RETRY_FOR_SECONDS + 3600
FAILED_KEEP_SECONDS = 7 * 24 * 3600  # an event given up is shown this long
FAILED_KEPT = 1000  # the newest events given up that are kept
QUEUE_AT_MOST = 10_000  # events waiting for one endpoint; past it the oldest is dropped
DELIVERER_SEEN_SECONDS = 30  # a worker that looked for events this recently delivers
# An endpoint a worker announced this recently exists: events are written for it (a
# fleet restarting, or down for a while, does not lose the ends of its batches).
ENDPOINT_FRESH_SECONDS = 3600
EVENT_PREFIX = "evt_"
FLEET = ""  # the project of the fleet-wide endpoints (CHATGPTES_WEBHOOK_URLS without one)
# The one-prompt batch behind a chat completion (``chat_…``) is the API's plumbing, not a
# batch anyone created: it ends without an event.
CHAT_BATCH_PREFIX = "chat_"
DIRECTORY_CACHE_SECONDS = 2.0
PROJECTS_CACHED = 10_000


def new_event_id() -> str:
    """An event ID in OpenAI's form: ``evt_`` and 32 hex digits."""
    return f"{EVENT_PREFIX}{secrets.token_hex(16)}"


def event_keys(event_id: str) -> list[str]:
    """The keys a batch-ending script names for its event: the outbox, then the event."""
    return [keys.webhook_outbox(), keys.webhook_event(event_id or "none")]


class _Scoped(Protocol):
    @property
    def project(self) -> str: ...


E = TypeVar("E", bound=_Scoped)


def targets_for(project: str, endpoints: Iterable[E]) -> list[E]:
    """The endpoints a batch of ``project`` is told to: the project's own if it has any
    (even if those are disabled), else the fleet's."""
    every = list(endpoints)
    own = [endpoint for endpoint in every if endpoint.project == project]
    return own if own else [endpoint for endpoint in every if endpoint.project == FLEET]


@dataclass(frozen=True)
class KnownEndpoint:
    """An endpoint as the workers announce it and as its deliveries went."""

    key: str  # the endpoint key (a hash of its project and URL)
    project: str  # FLEET for a fleet-wide one
    label: str  # scheme://host[:port]: all that may be said of it
    seen_ms: int
    failing_since_ms: int = 0
    last_error: str = ""
    last_ok_ms: int = 0
    disabled_ms: int = 0
    disabled_why: str = ""
    dropped: int = 0
    pending: int = 0  # events waiting for it (read_outbox fills this in)
    next_ms: int = 0  # when its next attempt is due (0: none waits)

    @property
    def disabled(self) -> bool:
        return bool(self.disabled_ms)


def known_endpoints(
    announced: dict[bytes, bytes], health: dict[bytes, bytes], now_ms: int
) -> list[KnownEndpoint]:
    """The endpoints announced within ``ENDPOINT_FRESH_SECONDS``, with their health."""
    said = {keys.decoded(k): keys.decoded(v) for k, v in health.items()}
    found = []
    for raw_key, raw in announced.items():
        key = keys.decoded(raw_key)
        try:
            entry = json.loads(raw)
            project, label, seen_ms = (
                str(entry["project"]),
                str(entry["label"]),
                int(entry["seen_ms"]),
            )
        except (ValueError, KeyError, TypeError):
            continue  # not one of ours: skipped, never fatal
        if now_ms - seen_ms > ENDPOINT_FRESH_SECONDS * 1000:
            continue

        def number(what: str, key: str = key) -> int:
            text = said.get(f"{key}:{what}", "0")
            return int(text) if text.isdigit() else 0

        found.append(KnownEndpoint(
            key=key, project=project, label=label, seen_ms=seen_ms,
            failing_since_ms=number("failing_since"), last_error=said.get(f"{key}:last_error", ""),
            last_ok_ms=number("last_ok"), disabled_ms=number("disabled"),
            disabled_why=said.get(f"{key}:disabled_why", ""), dropped=number("dropped"),
        ))  # fmt: skip
    return sorted(found, key=lambda e: (e.project, e.label, e.key))


async def read_endpoints(redis: Redis, now_ms: int) -> list[KnownEndpoint]:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.webhook_endpoints())
        pipe.hgetall(keys.webhook_health())
        announced, health = await pipe.execute()
    return known_endpoints(announced, health, now_ms)


@dataclass
class EndpointDirectory:
    """Chooses each ending batch's event ID: a new one where some endpoint is configured
    for the batch's project, "" (told to nobody) elsewhere.

    Reads the announced endpoints at most every ``DIRECTORY_CACHE_SECONDS``; a batch's
    project (in its API record) is read only when it matters, once per batch."""

    redis: Redis
    clock: Callable[[], float] = time.monotonic
    _endpoints: list[KnownEndpoint] = field(default_factory=list)
    _read_at: float = float("-inf")
    _projects: OrderedDict[str, str] = field(default_factory=OrderedDict)

    async def event_ids(
        self, batch_ids: Sequence[str], *, projects: dict[str, str] | None = None
    ) -> dict[str, str]:
        """``projects``: the projects of batches whose record is not written yet."""
        self._projects.update(projects or {})
        chosen = dict.fromkeys(batch_ids, "")
        told = [b for b in batch_ids if not b.startswith(CHAT_BATCH_PREFIX)]
        known = await self._known() if told else []
        if not any(not endpoint.disabled for endpoint in known):
            return chosen
        if all(endpoint.project == FLEET for endpoint in known):
            return {**chosen, **{batch_id: new_event_id() for batch_id in told}}
        for batch_id, project in zip(told, await self._projects_of(told), strict=True):
            if any(not endpoint.disabled for endpoint in targets_for(project, known)):
                chosen[batch_id] = new_event_id()
        return chosen

    async def _known(self) -> list[KnownEndpoint]:
        if self.clock() - self._read_at >= DIRECTORY_CACHE_SECONDS:
            self._endpoints = await read_endpoints(self.redis, int(time.time() * 1000))
            self._read_at = self.clock()
        return self._endpoints

    async def _projects_of(self, batch_ids: Sequence[str]) -> list[str]:
        unknown = [b for b in batch_ids if b not in self._projects]
        if unknown:
            async with self.redis.pipeline(transaction=False) as pipe:
                for batch_id in unknown:
                    pipe.hget(keys.batch_openai(batch_id), "project")
                found = await pipe.execute()
            for batch_id, project in zip(unknown, found, strict=True):
                self._projects[batch_id] = (
                    keys.decoded(project) if project else keys.DEFAULT_PROJECT
                )
                while len(self._projects) > PROJECTS_CACHED:
                    self._projects.popitem(last=False)
        return [self._projects[b] for b in batch_ids]

    def forget(self) -> None:
        """Reads the endpoints again at the next ending, not from its cache."""
        self._read_at = float("-inf")


async def announce_endpoints(
    redis: Redis, worker_id: str, endpoints: Iterable[tuple[str, str, str]], now_ms: int
) -> None:
    """A delivering worker says which endpoints it delivers to, each (key, project,
    label), and that it is there (kept a week past the last word of any worker)."""
    entries = {key: json.dumps({"project": project, "label": label, "seen_ms": now_ms})
               for key, project, label in endpoints}  # fmt: skip
    async with redis.pipeline(transaction=False) as pipe:
        if entries:
            pipe.hset(keys.webhook_endpoints(), mapping=entries)
        pipe.zadd(keys.webhook_deliverers(), {worker_id: now_ms})
        pipe.zremrangebyscore(
            keys.webhook_deliverers(), "-inf", now_ms - FAILED_KEEP_SECONDS * 1000
        )
        pipe.expire(keys.webhook_deliverers(), FAILED_KEEP_SECONDS)
        pipe.expire(keys.webhook_endpoints(), FAILED_KEEP_SECONDS)
        pipe.expire(keys.webhook_health(), FAILED_KEEP_SECONDS)
        await pipe.execute()


@dataclass(frozen=True)
class OutboxEvent:
    """One event as the outbox holds it."""

    event_id: str
    type: str  # batch.completed, ...
    batch_id: str
    attempts: int  # failed attempts, at every endpoint
    last_error: str  # "<endpoint label>: <what went wrong>"
    at_ms: int  # when its next attempt is due (pending), or when it was given up (failed)


@dataclass(frozen=True)
class OutboxState:
    """What ``top`` and the console show of the webhooks."""

    pending: int  # deliveries not yet done (an event waits once per endpoint)
    failed: int  # events given up (after 72 hours of attempts), the newest kept
    deliverers: int  # workers that looked for events lately (0: nobody delivers)
    next_pending: list[OutboxEvent]  # the first few due
    last_failed: list[OutboxEvent]  # the latest few given up
    endpoints: list[KnownEndpoint] = field(default_factory=list)

    @property
    def configured(self) -> bool:
        """Whether any worker delivers to any endpoint (else there is nothing to tell)."""
        return bool(self.endpoints)


async def read_outbox(redis: Redis, now_ms: int, *, shown: int = 5) -> OutboxState:
    """The outbox in one round trip, two with endpoints configured, three while events wait."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.webhook_endpoints())
        pipe.hgetall(keys.webhook_health())
        pipe.zcard(keys.webhook_outbox())
        pipe.zrange(keys.webhook_outbox(), 0, shown - 1, withscores=True)
        pipe.zcard(keys.webhook_failed())
        pipe.zrevrange(keys.webhook_failed(), 0, shown - 1, withscores=True)
        pipe.zcount(keys.webhook_deliverers(), now_ms - DELIVERER_SEEN_SECONDS * 1000, "+inf")
        announced, health, unrouted, first, failed, last, deliverers = await pipe.execute()
    endpoints = known_endpoints(announced, health, now_ms)
    queues: list = []
    if endpoints:
        async with redis.pipeline(transaction=False) as pipe:
            for endpoint in endpoints:
                pipe.zcard(keys.webhook_queue(endpoint.key))
                pipe.zrange(keys.webhook_queue(endpoint.key), 0, shown - 1, withscores=True)
            queues = await pipe.execute()
    heads = [first]
    counted = []
    for n, endpoint in enumerate(endpoints):
        count, head = queues[2 * n], queues[2 * n + 1]
        heads.append(head)
        next_ms = int(head[0][1]) if head else 0
        counted.append(replace(endpoint, pending=int(count), next_ms=next_ms))
    due: dict[str, int] = {}  # each event once, at its earliest due attempt
    for head in heads:
        for member, at in head:
            event_id = keys.decoded(member)
            due[event_id] = min(int(at), due.get(event_id, int(at)))
    next_due = sorted(due.items(), key=lambda pair: (pair[1], pair[0]))[:shown]
    listed = [*next_due, *((keys.decoded(m), int(at)) for m, at in last)]
    events = await _events(redis, listed)
    return OutboxState(
        pending=int(unrouted) + sum(e.pending for e in counted if not e.disabled),
        failed=int(failed),
        deliverers=int(deliverers),
        next_pending=events[: len(next_due)],
        last_failed=events[len(next_due) :],
        endpoints=counted,
    )


async def _events(redis: Redis, listed: list[tuple[str, int]]) -> list[OutboxEvent]:
    if not listed:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for event_id, _ in listed:
            pipe.hmget(keys.webhook_event(event_id), "type", "batch", "attempts", "last_error")
        details = await pipe.execute()
    return [
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
