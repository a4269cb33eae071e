"""Results and state marks go to Redis in batches: one atomic call per batch per flush.

A prompt's result is durable when ``save`` returns. Results that arrive while a
flush is on its way wait for the next one, so under load a flush carries many
results and the cost per result falls; when idle a result is written at once.
While Redis is away the results stay here and the flush is tried again.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import structlog

from contract.ledger import PromptLedger
from contract.models import JobResult
from contract.retrying import until_redis_answers

log = structlog.get_logger("chatgptes.results")


class ResultWriter:
    def __init__(self, ledger: PromptLedger) -> None:
        self.ledger = ledger
        self.saved = 0
        self._pending: list[tuple[JobResult, asyncio.Future[None]]] = []
        self._marks: dict[tuple[str, str], set[int]] = defaultdict(set)
        self._wake = asyncio.Event()

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
        marks, self._marks = self._marks, defaultdict(set)
        for (batch_id, state), indices in marks.items():
            if indices:
                await until_redis_answers(
                    "marks", lambda b=batch_id, i=indices, s=state: self.ledger.mark(b, i, s)
                )

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._marks:
                await self.flush_marks()
            if not self._pending:
                continue
            batch, self._pending = self._pending, []
            try:
                await until_redis_answers(
                    "results", lambda b=batch: self.ledger.save_results([r for r, _ in b])
                )
            except Exception as error:  # a bug, not Redis: the prompts' tasks get it
                log.exception("results.save_failed")
                for _, done in batch:
                    if not done.done():
                        done.set_exception(error)
                continue
            self.saved += len(batch)
            for _, done in batch:
                if not done.done():
                    done.set_result(None)
