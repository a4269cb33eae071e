"""What the API keeps beside a batch (``keys.batch_openai``), and batches listed page by page.

The record holds the batch's ``input_file_id`` and ``endpoint``, and ``kind``:
``batch`` for a batch made by ``POST /v1/batches``, ``chat`` for the one-prompt
batch behind a chat completion (``chat_…``), which the batch routes do not show. A
batch enqueued another way (the CLI, the Python API) has no record and is shown
with an empty ``input_file_id`` (unless its ID starts with ``chat_``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from redis.asyncio import Redis

from contract import keys
from contract.batches import BatchStore
from contract.models import BatchStatus
from contract.outbox import CHAT_BATCH_PREFIX

Extras = dict[str, str]
CHAT_ID_PREFIX = CHAT_BATCH_PREFIX  # its end is told to no webhook either


async def save_extras(redis: Redis, batch_id: str, extras: Mapping[str, str], ttl: int) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.batch_openai(batch_id), mapping=dict(extras))
        pipe.expire(keys.batch_openai(batch_id), ttl)
        await pipe.execute()


async def extras_of(redis: Redis, batch_ids: Sequence[str]) -> list[Extras]:
    async with redis.pipeline(transaction=False) as pipe:
        for batch_id in batch_ids:
            pipe.hgetall(keys.batch_openai(batch_id))
        replies = await pipe.execute()
    return [
        {keys.decoded(name): keys.decoded(value) for name, value in reply.items()}
        for reply in replies
    ]


def shown(batch_id: str, extras: Mapping[str, str]) -> bool:
    """Whether the batch routes show this batch: a chat completion's is not (its record is
    written just after it is enqueued; until then its ``chat_`` ID tells)."""
    if extras:
        return extras.get("kind") != "chat"
    return not batch_id.startswith(CHAT_ID_PREFIX)


async def batch_page(
    redis: Redis, store: BatchStore, *, limit: int, after: str | None
) -> tuple[list[tuple[BatchStatus, Extras]], bool] | None:
    """Up to ``limit`` batches newest first, after ``after`` (None: ``after`` is not listed),
    and whether more follow."""
    registry = keys.batches_created()
    start = 0
    if after is not None:
        rank = await redis.zrevrank(registry, after)
        if rank is None:
            return None
        start = rank + 1
    found: list[tuple[BatchStatus, Extras]] = []
    while len(found) <= limit:
        ids = [keys.decoded(raw) for raw in await redis.zrevrange(registry, start, start + limit)]
        if not ids:
            break
        start += len(ids)
        statuses = await store.statuses(ids)
        extras = await extras_of(redis, ids)
        found += [
            (status, extra)
            for batch_id, status, extra in zip(ids, statuses, extras, strict=True)
            if status is not None and shown(batch_id, extra)
        ]
    return found[:limit], len(found) > limit
