"""What the API keeps beside a batch (``keys.batch_openai``), and batches listed page by page.

The record holds the batch's ``project``, ``input_file_id``, ``endpoint``, ``model``,
and ``kind``: ``batch`` for a batch made by ``POST /v1/batches``, ``chat`` for the
one-prompt batch behind a chat completion or a response (``chat_…``), which the batch
routes do not show. Once the batch has ended it also caches what its results add up
to (``producer.http.result_files``). A batch enqueued another way (the CLI, the Python
API) has no record: it belongs to project ``default``, and its input file is written
from its requests when asked for (``file-in-<batch>``).

Batches of project ``default`` are listed from the registry every batch is in
(``keys.batches_created``); the API batches of any other project from that project's
own (``keys.project_batches``), so a listing never wades through other projects'.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from redis.asyncio import Redis

from contract import keys
from contract.batches import BatchStore
from contract.models import BatchStatus
from contract.outbox import CHAT_BATCH_PREFIX

Extras = dict[str, str]
CHAT_ID_PREFIX = CHAT_BATCH_PREFIX  # its end is told to no webhook either
REGISTRY_TTL_SECONDS = 30 * 24 * 3600


async def save_extras(redis: Redis, batch_id: str, extras: Mapping[str, str], ttl: int) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.batch_openai(batch_id), mapping=dict(extras))
        pipe.expire(keys.batch_openai(batch_id), ttl)
        await pipe.execute()


async def register(redis: Redis, project: str, batch_id: str) -> None:
    """Lists an API batch of a project other than ``default`` in that project's registry."""
    if project == keys.DEFAULT_PROJECT:
        return  # the registry of every batch lists it
    registry = keys.project_batches(project)
    now_ms = int(time.time() * 1000)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zadd(registry, {batch_id: now_ms})
        pipe.zremrangebyscore(registry, "-inf", now_ms - REGISTRY_TTL_SECONDS * 1000)
        pipe.expire(registry, REGISTRY_TTL_SECONDS)
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


def project_of(extras: Mapping[str, str]) -> str:
    return extras.get("project", keys.DEFAULT_PROJECT)


def shown(batch_id: str, extras: Mapping[str, str], project: str) -> bool:
    """Whether the batch routes of ``project`` show this batch: one of another project is
    not; nor is a chat completion's (its record is written just after it is enqueued;
    until then its ``chat_`` ID tells)."""
    if project_of(extras) != project:
        return False
    if extras.get("kind"):
        return extras["kind"] != "chat"
    return not batch_id.startswith(CHAT_ID_PREFIX)


async def batch_page(
    redis: Redis, store: BatchStore, project: str, *, limit: int, after: str | None
) -> tuple[list[tuple[BatchStatus, Extras]], bool] | None:
    """Up to ``limit`` of the project's batches newest first, after ``after`` (None:
    ``after`` is not listed), and whether more follow."""
    registry = (
        keys.batches_created() if project == keys.DEFAULT_PROJECT else keys.project_batches(project)
    )
    start = 0
    if after is not None:
        rank = await redis.zrevrank(registry, after)
        (after_extras,) = await extras_of(redis, [after])
        # Another project's batch is unknown here, as an ID never made is: no oracle.
        if rank is None or not shown(after, after_extras, project):
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
            if status is not None and shown(batch_id, extra, project)
        ]
    return found[:limit], len(found) > limit
