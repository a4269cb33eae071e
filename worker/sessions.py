"""Site sessions: the nonce, post id and cookies one handshake yields, reused by many POSTs."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace

from redis.asyncio import Redis

from contract import keys
from worker.errors import HandshakeFailed


@dataclass(frozen=True)
class SiteSession:
    """A plain value the caller may cache; its lifetime is the policy's business."""

    nonce: str
    post_id: str
    cookies: dict[str, str] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    uses: int = 0

    def used(self) -> SiteSession:
        return replace(self, uses=self.uses + 1)

    def age(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.created_at

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> SiteSession:
        data = json.loads(raw)
        return cls(
            nonce=str(data["nonce"]),
            post_id=str(data["post_id"]),
            cookies={str(k): str(v) for k, v in data.get("cookies", {}).items()},
            created_at=float(data["created_at"]),
            uses=int(data.get("uses", 0)),
        )


# Hands out the cached session and counts the use; a worn-out session is dropped.
_TAKE = """
local raw = redis.call('GET', KEYS[1])
if not raw then return nil end
local uses = redis.call('INCR', KEYS[2])
if uses > tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1], KEYS[2])
  return nil
end
return {raw, uses}
"""
# Drops the session only if it is still the one that failed (not a fresh replacement).
_DROP = """
local raw = redis.call('GET', KEYS[1])
if raw and cjson.decode(raw)['nonce'] == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
"""
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class SessionStore:
    """Site sessions shared by every worker through Redis, one per identity.

    Refreshing is single-flight: one worker holds the lock and does the page GET
    while the others wait for its session instead of fetching the page themselves.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        ttl_seconds: float,
        max_uses: int,
        wait_seconds: float,
        poll_seconds: float = 0.05,
    ) -> None:
        self.redis = redis
        self.ttl_ms = int(ttl_seconds * 1000)
        self.max_uses = max_uses
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        self._take = redis.register_script(_TAKE)
        self._drop = redis.register_script(_DROP)
        self._unlock = redis.register_script(_UNLOCK)

    async def get(
        self, identity: str, handshake: Callable[[], Awaitable[SiteSession]]
    ) -> SiteSession:
        """The identity's session, made by ``handshake`` here or by another worker."""
        deadline = time.monotonic() + self.wait_seconds
        while True:
            session = await self._take_cached(identity)
            if session is not None:
                return session
            token = secrets.token_hex(8)
            lock = keys.site_session_lock(identity)
            if await self.redis.set(lock, token, nx=True, px=int(self.wait_seconds * 1000)):
                try:
                    return await self._refresh(identity, handshake)
                finally:
                    await self._unlock(keys=[lock], args=[token])
            if time.monotonic() >= deadline:
                raise HandshakeFailed(f"no session for {identity} within {self.wait_seconds:.0f}s")
            await asyncio.sleep(self.poll_seconds)

    async def _take_cached(self, identity: str) -> SiteSession | None:
        keys_ = [keys.site_session(identity), keys.site_session_uses(identity)]
        found = await self._take(keys=keys_, args=[self.max_uses])
        if not found:
            return None
        raw, uses = found
        return replace(SiteSession.from_json(raw), uses=int(uses))

    async def _refresh(
        self, identity: str, handshake: Callable[[], Awaitable[SiteSession]]
    ) -> SiteSession:
        session = (await handshake()).used()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.site_session(identity), session.to_json(), px=self.ttl_ms)
            pipe.set(keys.site_session_uses(identity), session.uses, px=self.ttl_ms)
            await pipe.execute()
        return session

    async def drop(self, identity: str, session: SiteSession) -> bool:
        keys_ = [keys.site_session(identity), keys.site_session_uses(identity)]
        return bool(await self._drop(keys=keys_, args=[session.nonce]))
