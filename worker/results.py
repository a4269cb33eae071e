"""Results and state marks go to Redis in batches: one atomic call per batch per flush.

A prompt's result is durable when ``save`` returns. Results that arrive while a
flush is on its way wait for the next one, so under load a flush carries many
results and the cost per result falls; when idle a result is written at once.
While Redis is away or refuses writes (a restart, a failover, ``maxmemory``), the
results stay here, the flush is tried again with backoff, and ``holding`` says so:
the broker takes no new lease meanwhile, so the worker does not send what it could
not store.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import structlog

from contract.ledger import PromptLedger
from contract.models import JobResult
from contract.retrying import TRANSIENT, RedisBackoff

log = structlog.get_logger("chatgptes.results")


class ResultWriter:
    def __init__(self, ledger: PromptLedger) -> None:
        self.ledger = ledger
        self.saved = 0
        self.holding = False  # Redis refused the last flush: answers wait here
        self._pending: list[tuple[JobResult, asyncio.Future[None]]] = []
        self._marks: dict[tuple[str, str], set[int]] = defaultdict(set)
        self._wake = asyncio.Event()
        self._backoff = RedisBackoff("results")

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def save(self, result: JobResult) -> None:
        """Stores the prompt's one result (a result already there is kept); waits till durable."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((result, done))
        self._wake.set()
        await asyncio.shield(done)

    def mark(self, batch_id: str, index: int, state: str) -> None:
        """Shows a held prompt as ``waiting``, ``running`` or back to ``queued`` (sent soon)."""
        for (batch, other), indices in self._marks.items():
            if batch == batch_id and other != state:
                indices.discard(index)
        self._marks[(batch_id, state)].add(index)
        self._wake.set()

    async def flush_marks(self) -> None:
        """Writes the marks made so far and waits until they are in Redis."""
        while self._marks:
            marks, self._marks = self._marks, defaultdict(set)
            try:
                for (batch_id, state), indices in marks.items():
                    if indices:
                        await self.ledger.mark(batch_id, indices, state)
            except TRANSIENT as error:
                for key, indices in marks.items():  # kept: written when Redis takes them
                    self._marks[key] |= indices
                await self._backoff.wait(error)

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._marks:
                await self.flush_marks()
            if self._pending:
                await self._flush_results()

    async def _flush_results(self) -> None:
        batch, self._pending = self._pending, []
        while True:
            try:
                await self.ledger.save_results([result for result, _ in batch])
            except TRANSIENT as error:
                self.holding = True
                await self._backoff.wait(error)
                batch += self._pending  # what arrived meanwhile goes in the same call
                self._pending = []
                continue
            except Exception:  # a bug, not Redis: only the results that cause it fail
                log.exception("results.save_failed", results=len(batch))
                await self._one_by_one(batch)
                return
            break
        if self.holding:
            self.holding = False
        self._backoff.reset()
        self.saved += len(batch)
        for _, done in batch:
            if not done.done():
                done.set_result(None)

    async def _one_by_one(self, batch: list[tuple[JobResult, asyncio.Future[None]]]) -> None:
        """After a flush failed with a bug: each result alone, so that one bad result fails
        its own prompt's task and no answer stored beside it is lost."""
        for result, done in batch:
            try:
                await self.ledger.save_results([result])
            except TRANSIENT:
                self._pending.append((result, done))  # the next flush, with its backoff
                self._wake.set()
                continue
            except Exception as error:
                if not done.done():
                    done.set_exception(error)
                continue
            self.saved += 1
            if not done.done():
                done.set_result(None)
