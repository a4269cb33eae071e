"""Uploaded files in Redis: one hash of facts and one string of bytes per file, with a TTL.

An upload is written as it arrives (``StagedFile``: a megabyte at a time appended to a
staging key), so the server holds a piece of it, never the whole: four 50 MB uploads
at once cost the server a few megabytes. Once whole, the staging key becomes the file
in one MULTI/EXEC (its facts and its bytes, under its own hash tag). Each file belongs
to a project (``producer.http.auth``) and is listed in that project's registry
(``keys.files_created``), which ``GET /v1/files`` pages through newest first, never
scanning the keyspace. The registry also holds the result files of the project's
batches (``file-out-…``, ``file-err-…``: written from results when asked for, see
``producer.http.objects``). A file whose keys expired leaves the registry when a
listing notices it.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from contract import keys

log = structlog.get_logger("chatgptes.api")

FILE_ID_PREFIX = "file-"
REGISTRY_TTL_SECONDS = 30 * 24 * 3600  # the longest a file may ask to be kept
STAGING_TTL_SECONDS = 3600  # an upload that stops arriving is gone within the hour
APPEND_BYTES = 1024 * 1024  # an upload reaches Redis in pieces about this big
READ_BYTES = 1024 * 1024  # and is read back in ranges this big


@dataclass(frozen=True)
class StoredFile:
    id: str
    filename: str
    purpose: str
    bytes: int
    lines: int
    created_at: int  # epoch seconds
    expires_at: int
    project: str = keys.DEFAULT_PROJECT


def new_file_id() -> str:
    return f"{FILE_ID_PREFIX}{secrets.token_hex(12)}"


class StagedFile:
    """An upload on its way into Redis: buffered up to ``APPEND_BYTES``, then appended."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.id = new_file_id()
        self.size = 0
        self.lines = 0
        self._buffer = bytearray()
        self._ends_with_newline = True

    async def write(self, piece: bytes) -> None:
        if not piece:
            return
        self.size += len(piece)
        self.lines += piece.count(b"\n")
        self._ends_with_newline = piece.endswith(b"\n")
        self._buffer += piece
        if len(self._buffer) >= APPEND_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        if not self._buffer:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.append(keys.file_upload(self.id), bytes(self._buffer))
            pipe.expire(keys.file_upload(self.id), STAGING_TTL_SECONDS)
            await pipe.execute()
        self._buffer.clear()

    async def finish(self) -> None:
        """Everything written reaches Redis."""
        await self._flush()
        if not self._ends_with_newline:
            self.lines += 1  # a last line without its newline

    async def discard(self) -> None:
        """What was written goes (quietly: the staging key's TTL ends it otherwise)."""
        self._buffer.clear()
        try:
            await self.redis.delete(keys.file_upload(self.id))
        except RedisError as error:
            log.warning("api.upload_discard_failed", file_id=self.id, error=type(error).__name__)


class FileStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    @contextlib.asynccontextmanager
    async def staging(self) -> AsyncIterator[StagedFile]:
        """A file to write; whatever was written goes if the block fails."""
        staged = StagedFile(self.redis)
        try:
            yield staged
        except BaseException:
            await staged.discard()
            raise

    async def publish(
        self, staged: StagedFile, *, project: str, filename: str, purpose: str, ttl_seconds: int
    ) -> StoredFile:
        """The staged bytes become a stored file of ``project``."""
        await staged.finish()
        now = int(time.time())
        stored = StoredFile(staged.id, filename, purpose, staged.size, staged.lines, now,
                            now + ttl_seconds, project)  # fmt: skip
        meta = {"filename": filename, "purpose": purpose, "bytes": stored.bytes,
                "lines": stored.lines, "created_at": now, "expires_at": stored.expires_at,
                "project": project}  # fmt: skip
        async with self.redis.pipeline(transaction=True) as pipe:
            if staged.size:
                pipe.rename(keys.file_upload(stored.id), keys.file_content(stored.id))
                pipe.expire(keys.file_content(stored.id), ttl_seconds)
            pipe.hset(keys.file_meta(stored.id), mapping=meta)
            pipe.expire(keys.file_meta(stored.id), ttl_seconds)
            await pipe.execute()
        await self.register(project, stored.id, now * 1000)
        return stored

    async def register(self, project: str, file_id: str, created_ms: int) -> None:
        """Lists ``file_id`` among ``project``'s files."""
        registry = keys.files_created(project)
        now_ms = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(registry, {file_id: created_ms})
            pipe.zremrangebyscore(registry, "-inf", now_ms - REGISTRY_TTL_SECONDS * 1000)
            pipe.expire(registry, REGISTRY_TTL_SECONDS)
            await pipe.execute()

    async def get(self, file_id: str, project: str) -> StoredFile | None:
        """The file, if it exists and belongs to ``project``."""
        (found,) = await self.get_many([file_id])
        return found if found is not None and found.project == project else None

    async def get_many(self, file_ids: list[str]) -> list[StoredFile | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for file_id in file_ids:
                pipe.hgetall(keys.file_meta(file_id))
            replies = await pipe.execute()
        return [_stored(file_id, raw) for file_id, raw in zip(file_ids, replies, strict=True)]

    async def pieces(self, file_id: str) -> AsyncIterator[bytes]:
        """The file's bytes in ranges of ``READ_BYTES``, so a big file is never held whole."""
        key = keys.file_content(file_id)
        start = 0
        while True:
            piece = await self.redis.getrange(key, start, start + READ_BYTES - 1)
            if piece:
                yield piece
            if len(piece) < READ_BYTES:
                return
            start += READ_BYTES

    async def delete(self, file_id: str, project: str) -> bool:
        if await self.get(file_id, project) is None:
            return False
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.file_meta(file_id), keys.file_content(file_id))
            pipe.zrem(keys.files_created(project), file_id)
            deleted, _ = await pipe.execute()
        return int(deleted) > 0

    async def page_ids(
        self, project: str, *, start: int, count: int, newest_first: bool
    ) -> list[str]:
        """File IDs of ``project``'s registry from rank ``start`` on."""
        read = self.redis.zrevrange if newest_first else self.redis.zrange
        registry = keys.files_created(project)
        return [keys.decoded(raw) for raw in await read(registry, start, start + count - 1)]

    async def rank(self, project: str, file_id: str, *, newest_first: bool) -> int | None:
        rank_of = self.redis.zrevrank if newest_first else self.redis.zrank
        return await rank_of(keys.files_created(project), file_id)

    async def forget(self, project: str, file_ids: list[str]) -> None:
        """Takes files that are gone out of the project's registry."""
        if file_ids:
            await self.redis.zrem(keys.files_created(project), *file_ids)


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
        project=fields.get("project", keys.DEFAULT_PROJECT),
    )
