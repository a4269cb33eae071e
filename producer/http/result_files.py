"""The files written from a batch: its output and error files, and a CLI batch's input file.

None of them is stored. The output file (``file-out-<batch>``) and the error file
(``file-err-<batch>``) exist once the batch has ended with prompts in them; each line
is ``producer.formats.openai_line`` of one result, in input order, shaped for the
batch's endpoint. A batch enqueued without an uploaded file (by the CLI) has an input
file (``file-in-<batch>``) written from its stored requests as OpenAI batch lines.

What a batch's results add up to (each result file's size, the batch's token usage, its
failures by error type)
is read in one pass once the batch has ended and cached beside it (``summary`` in the
batch's record), keyed by its counts, so a batch retried later is summed again. A
deleted result file is marked there too: it is then not found, as OpenAI answers for a
deleted file, while its batch keeps naming it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field

from contract import keys
from contract.batches import WRITE_BATCH
from contract.models import BatchStatus, JobResult, StoredRequest
from producer.formats import CHAT_COMPLETIONS, is_output, openai_line
from producer.http import objects, records
from producer.http.context import ApiContext
from producer.http.objects import Part
from producer.params import body_params

WRITE_BYTES = 256 * 1024  # content is sent in pieces about this big


@dataclass(frozen=True)
class Summary:
    """What an ended batch's results add up to."""

    output_bytes: int = 0
    error_bytes: int = 0
    input_bytes: int = 0  # its written input file's size, if it has one
    input_tokens: int = 0
    output_tokens: int = 0
    counts: str = ""  # the batch's counts it was read at
    errors: dict[str, int] = field(default_factory=dict)  # the failed ones by error type

    def size(self, part: Part) -> int:
        return {"input": self.input_bytes, "output": self.output_bytes,
                "error": self.error_bytes}[part]  # fmt: skip

    def usage(self) -> dict[str, object]:
        return objects.usage_object(self.input_tokens, self.output_tokens)


def _counts(status: BatchStatus) -> str:
    return f"{status.state}:{status.succeeded}:{status.failed}:{status.cancelled}"


def endpoint_of(extras: dict[str, str]) -> str:
    return extras.get("endpoint", CHAT_COMPLETIONS)


def has_part(status: BatchStatus, extras: dict[str, str], part: Part) -> bool:
    """Whether the batch has this file now (written from it, and not deleted)."""
    if extras.get(f"deleted_{part}"):
        return False
    if part == "input":
        return not extras.get("input_file_id") and status.state != "failed"
    if not objects.has_result_files(status):
        return False
    return status.succeeded > 0 if part == "output" else status.failed + status.cancelled > 0


def cached_summary(status: BatchStatus, extras: dict[str, str]) -> Summary | None:
    """The ended batch's summary if it was read already (and still holds), else None."""
    cached = extras.get("summary")
    if not cached or not objects.has_result_files(status):
        return None
    fields = json.loads(cached)
    if fields.get("counts") != _counts(status) or "errors" not in fields:
        return None
    return Summary(**fields)


async def summary(ctx: ApiContext, status: BatchStatus, extras: dict[str, str]) -> Summary | None:
    """The ended batch's summary, read once and cached; None while it runs."""
    if not objects.has_result_files(status):
        return None
    cached = cached_summary(status, extras)
    if cached is not None:
        return cached
    output_bytes = error_bytes = input_tokens = output_tokens = 0
    errors: Counter[str] = Counter()
    endpoint = endpoint_of(extras)
    async for raw in ctx.queue.iter_raw_results(status.batch_id):
        result = JobResult.model_validate_json(raw)
        size = len(openai_line(result, endpoint).encode()) + 1
        if is_output(result):
            output_bytes += size
            if result.usage is not None:
                input_tokens += result.usage.prompt_tokens
                output_tokens += result.usage.completion_tokens
        else:
            error_bytes += size
            errors[result.error.type if result.error else "?"] += 1
    input_bytes = 0
    if not extras.get("input_file_id"):
        async for piece in input_pieces(ctx, status):
            input_bytes += len(piece)
    found = Summary(output_bytes, error_bytes, input_bytes, input_tokens, output_tokens,
                    _counts(status), dict(errors.most_common()))  # fmt: skip
    extras["summary"] = json.dumps(asdict(found))
    await records.save_extras(ctx.redis, status.batch_id, {"summary": extras["summary"]},
                              ctx.settings.result_ttl_seconds)  # fmt: skip
    return found


async def file_object(
    ctx: ApiContext, status: BatchStatus, extras: dict[str, str], part: Part
) -> dict[str, object]:
    if part == "input" and not objects.has_result_files(status):
        size = sum([len(piece) async for piece in input_pieces(ctx, status)])
    else:
        found = await summary(ctx, status, extras)
        size = found.size(part) if found is not None else 0
    return objects.batch_file_object(status, part, size)


async def pieces(
    ctx: ApiContext, status: BatchStatus, extras: dict[str, str], part: Part
) -> AsyncIterator[bytes]:
    """The file's bytes, in pieces of about ``WRITE_BYTES``."""
    if part == "input":
        async for piece in input_pieces(ctx, status):
            yield piece
        return
    endpoint = endpoint_of(extras)
    piece = bytearray()
    async for raw in ctx.queue.iter_raw_results(status.batch_id):
        result = JobResult.model_validate_json(raw)
        if is_output(result) == (part == "output"):
            piece += (openai_line(result, endpoint) + "\n").encode()
            if len(piece) >= WRITE_BYTES:
                yield bytes(piece)
                piece.clear()
    if piece:
        yield bytes(piece)


async def input_pieces(ctx: ApiContext, status: BatchStatus) -> AsyncIterator[bytes]:
    """The batch's requests as OpenAI batch lines, in input order."""
    key = keys.batch_requests(status.batch_id)
    for start in range(0, status.total, WRITE_BATCH):
        fields = [str(index) for index in range(start, min(start + WRITE_BATCH, status.total))]
        piece = bytearray()
        for raw in await ctx.redis.hmget(key, fields):
            if raw is not None:
                piece += (_input_line(StoredRequest.model_validate_json(raw)) + "\n").encode()
        if piece:
            yield bytes(piece)


def _input_line(request: StoredRequest) -> str:
    body = {"model": request.model,
            "messages": [message.openai() for message in request.messages]}  # fmt: skip
    if request.params is not None:
        body.update(body_params(request.params))
    line = {"custom_id": request.custom_id, "method": "POST", "url": CHAT_COMPLETIONS,
            "body": body}  # fmt: skip
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


async def mark_deleted(ctx: ApiContext, batch_id: str, part: Part) -> None:
    await records.save_extras(ctx.redis, batch_id, {f"deleted_{part}": "1"},
                              ctx.settings.result_ttl_seconds)  # fmt: skip
