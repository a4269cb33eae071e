"""The worker's side of a batch: where each prompt stands as a worker moves it.

A chunk is started (its unsettled prompts marked running, their requests read) in
one call; results are stored (first result wins) and counted in one atomic call
per batch; held prompts are shown as waiting or handed back to queued; failed
attempts are counted per prompt across re-runs of its chunk. The states and their
exact counts are ``contract.states``'s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from redis.asyncio import Redis

from contract import keys
from contract.chunks import chunked
from contract.models import (
    JobResult,
    PromptRequest,
    iso_now,
    parse_timestamp,
    result_line,
    stored_prompt,
)
from contract.outbox import EVENT_KEEP_SECONDS, EndpointDirectory, event_keys
from contract.scripts import ScriptBook
from contract.states import CODE, PROMPT_STATES

READ_BATCH = 1000  # requests per HMGET
ATTEMPT_MESSAGE_CHARS = 160  # a failed attempt's message logged, at most
# The states a prompt may settle from: any unsettled one, or queued only.
SETTLE_FROM = {False: "0,1,2", True: str(CODE["queued"])}


@dataclass(frozen=True)
class StartedPrompt:
    """One prompt of a chunk as the worker starts it."""

    index: int
    state_before: str
    request_json: bytes | None
    attempts_json: bytes | None


@dataclass(frozen=True)
class ChunkStart:
    """What starting a chunk found: the batch's state and each prompt's."""

    batch_state: str | None  # None: the batch is gone (its record expired, or never published)
    created_at: datetime | None
    past_its_window: bool  # the completion window ended: nothing more is sent
    prompts: tuple[StartedPrompt, ...]


def state_keys(batch_id: str) -> list[str]:
    """The keys every prompt-moving script of a batch names first, in this order."""
    return [
        keys.batch_meta(batch_id),
        keys.batch_states(batch_id),
        keys.batch_counts(batch_id),
        keys.batch_results(batch_id),
        keys.batch_attempts(batch_id),
    ]


class PromptLedger:
    def __init__(self, redis: Redis, *, ttl_seconds: int) -> None:
        self.redis = redis
        self.ttl = ttl_seconds
        self.scripts = ScriptBook(
            redis, "contract", ["start_chunk", "save_results", "mark_prompts", "spend_attempt"]
        )
        # Whether a batch's end is told to a webhook: "" where no endpoint is configured.
        self.endpoints = EndpointDirectory(redis)

    async def start_chunk(self, batch_id: str, indices: Sequence[int]) -> ChunkStart:
        """Marks the chunk's unsettled prompts running and reads them, in one round trip."""
        found = await self.scripts.run(
            "start_chunk",
            [
                keys.batch_meta(batch_id),
                keys.batch_states(batch_id),
                keys.batch_counts(batch_id),
                keys.batch_attempts(batch_id),
                keys.batch_requests(batch_id),
            ],
            [int(time.time() * 1000), self.ttl, *indices],
        )
        state, created, expires_ms, *rest = found
        if not state:
            return ChunkStart(None, None, False, ())
        prompts = tuple(
            StartedPrompt(index, PROMPT_STATES[int(rest[3 * n])], rest[3 * n + 1] or None,
                          rest[3 * n + 2] or None)
            for n, index in enumerate(indices)
        )  # fmt: skip
        expired = expires_ms is not None and int(expires_ms) <= time.time() * 1000
        return ChunkStart(keys.decoded(state), parse_timestamp(created), expired, prompts)

    async def save_results(self, results: Sequence[JobResult], *, only_queued: bool = False) -> int:
        """Stores each prompt's one result and counts it, one atomic call per batch.

        A prompt that has its result keeps it. ``only_queued``: settle only prompts no
        worker holds (a stop's results never race a worker's on the wire)."""
        by_batch: dict[str, list[JobResult]] = {}
        for result in results:
            by_batch.setdefault(result.batch_id, []).append(result)
        if not by_batch:
            return 0
        now, now_ms = iso_now(), int(time.time() * 1000)
        event_ids = await self.endpoints.event_ids(list(by_batch))

        def build(pipe: object) -> None:
            for batch_id, batch_results in by_batch.items():
                # Used only if this call ends the batch: its end and its event, one step.
                event_id = event_ids[batch_id]
                args: list[str | int] = [self.ttl, now, SETTLE_FROM[only_queued], batch_id,
                                         event_id, now_ms, EVENT_KEEP_SECONDS]  # fmt: skip
                for result in batch_results:
                    index = int(result.job_id.rpartition(".")[2])
                    args += [index, CODE[result.status], result.site or "",
                             result_line(result)]  # fmt: skip
                keys_ = [*state_keys(batch_id), *event_keys(event_id), *keys.batch_keys(batch_id)]
                self.scripts.queue(pipe, "save_results", keys_, args)

        replies = await self.scripts.pipelined(build)
        return sum(int(saved) for saved, *_ in replies)

    async def mark(self, batch_id: str, indices: Iterable[int], state: str) -> int:
        """Moves unsettled prompts between queued, running and waiting."""
        indices = list(indices)
        if not indices:
            return 0
        allowed = ",".join(str(CODE[s]) for s in ("queued", "running", "waiting") if s != state)
        return int(
            await self.scripts.run(
                "mark_prompts",
                [
                    keys.batch_states(batch_id),
                    keys.batch_counts(batch_id),
                    keys.batch_meta(batch_id),
                ],
                [CODE[state], allowed, self.ttl, *indices],
            )
        )

    async def spend(
        self,
        batch_id: str,
        index: int,
        kind: str,
        started_at: datetime,
        *,
        identity: str = "",
        message: str = "",
        site: str = "",
    ) -> tuple[int, int]:
        """Counts one failed attempt of ``kind``; returns (spent of that kind, total).

        ``identity`` (its redacted name, never a credential), ``message`` (short, never a
        secret) and ``site`` (empty where there is one site) describe the attempt: the
        last few are kept for the console's page of the prompt."""
        attempt = json.dumps({"at": round(time.time(), 3), "kind": kind, "identity": identity,
                              "site": site,
                              "message": message[:ATTEMPT_MESSAGE_CHARS]})  # fmt: skip
        spent, total = await self.scripts.run(
            "spend_attempt",
            [
                keys.batch_attempts(batch_id),
                keys.batch_meta(batch_id),
                keys.batch_attempt_log(batch_id),
            ],
            [index, kind, started_at.timestamp(), self.ttl, attempt],
        )
        return int(spent), int(total)

    async def requests(
        self, batch_id: str, indices: Sequence[int], enqueued_at: datetime
    ) -> list[PromptRequest | JobResult]:
        """The requests at these indices (those still there), in their order; where one
        cannot be read, its one result instead (failed ``BadRequestData``), never an
        exception: one bad record hurts only itself."""
        found: list[PromptRequest | JobResult] = []
        for part in chunked(indices, READ_BATCH):
            raws = await self.redis.hmget(keys.batch_requests(batch_id), part)
            found += [
                stored_prompt(raw, batch_id=batch_id, index=i, enqueued_at=enqueued_at)
                for i, raw in zip(part, raws, strict=True)
                if raw
            ]
        return found


__all__ = ["ChunkStart", "PromptLedger", "StartedPrompt", "state_keys"]
