"""Site sessions: a page's profile and cookies, from one handshake, reused by many POSTs.

One session per identity, shared by the whole fleet through Redis and cached in
each worker's memory, so a POST costs no Redis call for its session. Refreshing
is single-flight across the fleet: one worker holds the identity's lock and does
the page GET; it looks again after taking the lock (another worker may have just
finished), and the others wait for its session instead of fetching the page.
Uses are counted in memory and added up in Redis now and then; a session worn
past ``max_uses`` is dropped at the next count.

A session has its own random ID, so dropping a stale one never deletes the fresh
session that replaced it, even when both carry the same nonce (logged-out
WordPress visitors share one).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis

from contract import keys
from contract.scripts import ScriptBook
from worker.errors import HandshakeFailed
from worker.metrics import WorkerMetrics
from worker.page import SiteProfile


@dataclass(frozen=True)
class SiteSession:
    """A plain value the caller may cache; its lifetime is the policy's business.

    ``profile`` is what the page said (nonce, post id, bot, type, stream mode…); the
    cookies are those the page set, which belong with its nonce.
    """

    profile: SiteProfile
    cookies: dict[str, str] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: secrets.token_hex(8))

    @property
    def nonce(self) -> str:
        return self.profile.nonce

    @property
    def post_id(self) -> str:
        return self.profile.post_id

    def age(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.created_at

    def to_json(self) -> str:
        data = {
            "profile": self.profile.to_dict(),
            "cookies": self.cookies,
            "created_at": self.created_at,
            "id": self.id,
        }
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> SiteSession:
        """The session ``to_json`` wrote; KeyError, TypeError or ValueError for anything else
        (a session an older worker stored without its profile, say: a handshake replaces it)."""
        data = json.loads(raw)
        return cls(
            profile=SiteProfile.from_dict(data["profile"]),
            cookies={str(k): str(v) for k, v in data.get("cookies", {}).items()},
            created_at=float(data["created_at"]),
            id=str(data["id"]),
        )


SESSIONS_TTL_SECONDS = 7 * 24 * 3600

Handshake = Callable[[], Awaitable[SiteSession]]


class SessionCache:
    def __init__(
        self,
        redis: Redis,
        *,
        ttl_seconds: float,
        max_uses: int,
        wait_seconds: float,
        poll_seconds: float = 0.05,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.redis = redis
        self.ttl_seconds = ttl_seconds
        self.max_uses = max_uses
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        self.metrics = metrics or WorkerMetrics()
        self._local: dict[str, SiteSession] = {}
        self._fetching: dict[str, asyncio.Task[SiteSession]] = {}
        self._uses: Counter[str] = Counter()
        self.scripts = ScriptBook(redis, "worker", ["drop_session", "unlock"])

    def ready(self, identity: str) -> bool:
        """Whether a ``get`` for ``identity`` would answer at once, from memory."""
        session = self._local.get(identity)
        return session is not None and session.age() < self.ttl_seconds

    async def get(self, identity: str, handshake: Handshake) -> SiteSession:
        """The identity's session: from memory, from Redis, or made by ``handshake``."""
        session = self._local.get(identity)
        if session is not None and session.age() < self.ttl_seconds:
            self._uses[identity] += 1
            return session
        # One fetch per identity in this worker, however many prompts need it at once.
        task = self._fetching.get(identity)
        if task is None:
            task = asyncio.ensure_future(self._fetch(identity, handshake))
            self._fetching[identity] = task
            task.add_done_callback(lambda done: self._fetched(identity, done))
        session = await asyncio.shield(task)
        self._uses[identity] += 1
        return session

    def _fetched(self, identity: str, task: asyncio.Task[SiteSession]) -> None:
        self._fetching.pop(identity, None)
        if not task.cancelled():
            task.exception()  # its waiters may all have gone: the error is theirs, not a leak

    async def _fetch(self, identity: str, handshake: Handshake) -> SiteSession:
        deadline = time.monotonic() + self.wait_seconds
        while True:
            session = await self._shared(identity)
            if session is not None:
                return session
            token = secrets.token_hex(8)
            lock = keys.site_session_lock(identity)
            if await self.redis.set(lock, token, nx=True, px=int(self.wait_seconds * 1000)):
                try:
                    # Someone may have finished a handshake between our look and the lock.
                    return await self._shared(identity) or await self._refresh(identity, handshake)
                finally:
                    await self.scripts.run("unlock", [lock], [token])
            if time.monotonic() >= deadline:
                raise HandshakeFailed(f"no session for {identity} within {self.wait_seconds:.0f}s")
            await asyncio.sleep(self.poll_seconds)

    async def _shared(self, identity: str) -> SiteSession | None:
        raw = await self.redis.hget(keys.site_sessions(), identity)
        if raw is None:
            return None
        try:
            session = SiteSession.from_json(raw)
        except (ValueError, KeyError, TypeError):
            return None  # bad data is no session: a fresh handshake replaces it
        if session.age() >= self.ttl_seconds:
            return None
        self._local[identity] = session
        return session

    async def _refresh(self, identity: str, handshake: Handshake) -> SiteSession:
        session = await handshake()
        self.metrics.session_refreshed()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.site_sessions(), identity, session.to_json())
            pipe.hset(keys.site_session_uses(), identity, 0)
            pipe.expire(keys.site_sessions(), SESSIONS_TTL_SECONDS)
            pipe.expire(keys.site_session_uses(), SESSIONS_TTL_SECONDS)
            await pipe.execute()
        self._local[identity] = session
        return session

    async def drop(self, identity: str, session: SiteSession) -> bool:
        """Forgets a session the site rejected, unless it was already replaced."""
        if (current := self._local.get(identity)) is not None and current.id == session.id:
            del self._local[identity]
        dropped = await self.scripts.run(
            "drop_session", [keys.site_sessions(), keys.site_session_uses()], [identity, session.id]
        )
        return bool(dropped)

    async def count_uses(self) -> None:
        """Adds this worker's uses since last time; drops the sessions worn past ``max_uses``."""
        counted, self._uses = self._uses, Counter()
        if not counted:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for identity, uses in counted.items():
                pipe.hincrby(keys.site_session_uses(), identity, uses)
            pipe.expire(keys.site_session_uses(), SESSIONS_TTL_SECONDS)
            *totals, _ = await pipe.execute()
        for identity, total in zip(counted, totals, strict=True):
            session = self._local.get(identity)
            if int(total) >= self.max_uses and session is not None:
                await self.drop(identity, session)
