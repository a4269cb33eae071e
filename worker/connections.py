"""A worker's curl sessions: one per identity (its own connections and cookies), bounded."""

from __future__ import annotations

from collections import OrderedDict

from curl_cffi.requests import AsyncSession

from worker.client import ClientOptions, open_http_session
from worker.proxies import Identity


class HttpSessions:
    """Least-recently-used set of ``AsyncSession``s; an evicted one is closed."""

    def __init__(self, options: ClientOptions, max_sessions: int) -> None:
        self.options = options
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, tuple[str | None, AsyncSession]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    async def get(self, identity: Identity) -> AsyncSession:
        entry = self._sessions.get(identity.name)
        if entry is not None and entry[0] == identity.proxy_url:
            self._sessions.move_to_end(identity.name)
            return entry[1]
        if entry is not None:
            await self._close(identity.name)
        session = open_http_session(self.options, identity.proxy_url)
        self._sessions[identity.name] = (identity.proxy_url, session)
        while len(self._sessions) > self.max_sessions:
            await self._close(next(iter(self._sessions)))
        return session

    async def _close(self, name: str) -> None:
        _, session = self._sessions.pop(name)
        await session.close()

    async def close(self) -> None:
        while self._sessions:
            await self._close(next(iter(self._sessions)))
