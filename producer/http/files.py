"""Uploaded files in Redis: one hash of facts and one string of bytes per file, with a TTL.

A file is written whole in one MULTI/EXEC (its facts and its bytes, under its own hash
tag), then listed in a registry (``keys.files_created``) that ``GET /v1/files`` pages
through newest first, never scanning the keyspace. A file whose keys expired leaves
the registry when a listing notices it.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from contract import keys

FILE_ID_PREFIX = "file-"
REGISTRY_TTL_SECONDS = 30 * 24 * 3600  # the longest a file may ask to be kept


@dataclass(frozen=True)
class StoredFile:
    id: str
    filename: str
    purpose: str
    bytes: int
    lines: int
    created_at: int  # epoch seconds
    expires_at: int


def new_file_id() -> str:
    return f"{FILE_ID_PREFIX}{secrets.token_hex(12)}"


class FileStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def save(
        self, filename: str, purpose: str, data: bytes, lines: int, ttl_seconds: int
    ) -> StoredFile:
        now = int(time.time())
        stored = StoredFile(new_file_id(), filename, purpose, len(data), lines, now,
                            now + ttl_seconds)  # fmt: skip
        meta = {"filename": filename, "purpose": purpose, "bytes": len(data), "lines": lines,
                "created_at": now, "expires_at": stored.expires_at}  # fmt: skip
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.file_content(stored.id), data, ex=ttl_seconds)
            pipe.hset(keys.file_meta(stored.id), mapping=meta)
            pipe.expire(keys.file_meta(stored.id), ttl_seconds)
            await pipe.execute()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.files_created(), {stored.id: now * 1000})
            pipe.zremrangebyscore(keys.files_created(), "-inf", (now - REGISTRY_TTL_SECONDS) * 1000)
            pipe.expire(keys.files_created(), REGISTRY_TTL_SECONDS)
            await pipe.execute()
        return stored

    async def get(self, file_id: str) -> StoredFile | None:
        (found,) = await self.get_many([file_id])
        return found

    async def get_many(self, file_ids: list[str]) -> list[StoredFile | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for file_id in file_ids:
                pipe.hgetall(keys.file_meta(file_id))
            replies = await pipe.execute()
        return [_stored(file_id, raw) for file_id, raw in zip(file_ids, replies, strict=True)]

    async def content(self, file_id: str) -> bytes | None:
        return await self.redis.get(keys.file_content(file_id))

    async def delete(self, file_id: str) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.file_meta(file_id), keys.file_content(file_id))
            pipe.zrem(keys.files_created(), file_id)
            deleted, _ = await pipe.execute()
        return int(deleted) > 0

    async def page(
        self, *, limit: int, after: str | None, newest_first: bool
    ) -> tuple[list[StoredFile], bool] | None:
        """Up to ``limit`` files after ``after`` (None: ``after`` is not listed), and whether
        more follow."""
        registry = keys.files_created()
        start = 0
        if after is not None:
            rank = await (self.redis.zrevrank if newest_first else self.redis.zrank)(
                registry, after
            )
            if rank is None:
                return None
            start = rank + 1
        read = self.redis.zrevrange if newest_first else self.redis.zrange
        found: list[StoredFile] = []
        while len(found) <= limit:
            ids = [keys.decoded(raw) for raw in await read(registry, start, start + limit)]
            if not ids:
                break
            start += len(ids)
            files = await self.get_many(ids)
            gone = [file_id for file_id, f in zip(ids, files, strict=True) if f is None]
            if gone:  # expired files leave the registry as they are noticed
                await self.redis.zrem(registry, *gone)
                start -= len(gone)
            found += [f for f in files if f is not None]
        return found[:limit], len(found) > limit


def _stored(file_id: str, raw: dict[bytes, bytes]) -> StoredFile | None:
    if not raw:
        return None
    fields = {keys.decoded(name): keys.decoded(value) for name, value in raw.items()}
    return StoredFile(
        id=file_id,
        filename=fields.get("filename", ""),
        purpose=fields.get("purpose", "batch"),
        bytes=int(fields.get("bytes", 0)),
        lines=int(fields.get("lines", 0)),
        created_at=int(fields.get("created_at", 0)),
        expires_at=int(fields.get("expires_at", 0)),
    )
