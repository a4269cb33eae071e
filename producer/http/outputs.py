"""A batch's output and error files, written from its results when they are asked for.

Nothing is stored for them: each line is ``producer.formats.openai_line`` of one
result, in input order; the output file takes the prompts that succeeded, the error
file the rest. Their size is counted the same way, so asking for a result file's
``bytes`` reads the batch's results once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from contract.models import JobResult
from producer.api import BatchQueue
from producer.formats import is_output, openai_line
from producer.http.objects import Half

WRITE_BYTES = 256 * 1024  # content is sent in pieces about this big


async def result_lines(queue: BatchQueue, batch_id: str, half: Half) -> AsyncIterator[bytes]:
    """Each line of the file (newline included), in input order."""
    async for raw in queue.iter_raw_results(batch_id):
        result = JobResult.model_validate_json(raw)
        if is_output(result) == (half == "output"):
            yield (openai_line(result) + "\n").encode()


async def result_pieces(queue: BatchQueue, batch_id: str, half: Half) -> AsyncIterator[bytes]:
    """The file's bytes, in pieces of about ``WRITE_BYTES``."""
    piece = bytearray()
    async for line in result_lines(queue, batch_id, half):
        piece += line
        if len(piece) >= WRITE_BYTES:
            yield bytes(piece)
            piece.clear()
    if piece:
        yield bytes(piece)


async def result_size(queue: BatchQueue, batch_id: str, half: Half) -> int:
    size = 0
    async for line in result_lines(queue, batch_id, half):
        size += len(line)
    return size
