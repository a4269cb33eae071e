"""Batches and files as OpenAI's API shows them (``Batch``, ``FileObject``, lists).

A batch that has ended names two files that are never stored: ``file-out-<batch>``
(its output file: the prompts that succeeded) and ``file-err-<batch>`` (its error
file: the rest). Their content is written from the batch's results when asked for
(``producer.http.result_files``). So is ``file-in-<batch>``, the input file of a batch
enqueued without one (by the CLI): its requests as OpenAI batch lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from contract.models import BatchStatus
from contract.states import ENDED_BATCH_STATES
from producer.formats import CHAT_COMPLETIONS
from producer.http.files import StoredFile

INPUT_PREFIX, OUTPUT_PREFIX, ERROR_PREFIX = "file-in-", "file-out-", "file-err-"
Half = Literal["output", "error"]
Part = Literal["input", "output", "error"]
_PREFIXES: dict[Part, str] = {"input": INPUT_PREFIX, "output": OUTPUT_PREFIX,
                              "error": ERROR_PREFIX}  # fmt: skip
# Our batch states in OpenAI's words: ours says "expiring" where OpenAI says "finalizing".
OPENAI_STATUS = {"expiring": "finalizing"}


def result_file_id(batch_id: str, part: Part) -> str:
    return f"{_PREFIXES[part]}{batch_id}"


def batch_file_of(file_id: str) -> tuple[str, Part] | None:
    """(batch ID, which part) of a file written from a batch, or None for any other ID."""
    for part, prefix in _PREFIXES.items():
        if file_id.startswith(prefix):
            return file_id.removeprefix(prefix), part
    return None


def has_result_files(status: BatchStatus) -> bool:
    """Result files exist once the batch has ended with prompts (not for a refused input)."""
    return status.state in ENDED_BATCH_STATES and status.state != "failed"


def epoch(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def file_object(stored: StoredFile) -> dict[str, Any]:
    return {
        "id": stored.id,
        "object": "file",
        "bytes": stored.bytes,
        "created_at": stored.created_at,
        "expires_at": stored.expires_at,
        "filename": stored.filename,
        "purpose": stored.purpose,
        "status": "processed",
        "status_details": None,
    }


def batch_file_object(status: BatchStatus, part: Part, size: int) -> dict[str, Any]:
    """A file written from a batch: its input (``purpose: batch``), output or errors."""
    ended = status.completed_at or status.cancelled_at or status.expired_at or status.created_at
    return {
        "id": result_file_id(status.batch_id, part),
        "object": "file",
        "bytes": size,
        "created_at": epoch(status.created_at if part == "input" else ended) or 0,
        "expires_at": None,  # it goes when the batch's results do
        "filename": f"{status.batch_id}_{part}.jsonl",
        "purpose": "batch" if part == "input" else "batch_output",
        "status": "processed",
        "status_details": None,
    }


def request_counts(status: BatchStatus) -> dict[str, int]:
    """What went to the output file and what to the error file."""
    return {"total": status.total, "completed": status.succeeded,
            "failed": status.failed + status.cancelled}  # fmt: skip


def usage_object(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    """A batch's ``usage``: what its succeeded prompts would have cost at OpenAI."""
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def batch_object(
    status: BatchStatus, extras: Mapping[str, str], usage: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``Batch`` object; ``extras`` is what the API kept beside the batch (its input
    file, endpoint, model), empty for a batch enqueued another way; ``usage`` its token
    counts once it has ended."""
    ended = has_result_files(status)
    output = result_file_id(status.batch_id, "output") if ended and status.succeeded else None
    errors = status.failed + status.cancelled
    error = result_file_id(status.batch_id, "error") if ended and errors else None
    finalizing = status.expiring_at
    if finalizing is None and status.state == "completed":
        finalizing = status.completed_at  # finalizing takes no time here
    return {
        "id": status.batch_id,
        "object": "batch",
        "endpoint": extras.get("endpoint", CHAT_COMPLETIONS),
        "errors": _errors(status.errors),
        "input_file_id": extras.get("input_file_id") or result_file_id(status.batch_id, "input"),
        "completion_window": status.completion_window,
        "status": OPENAI_STATUS.get(status.state, status.state),
        "output_file_id": output,
        "error_file_id": error,
        "created_at": epoch(status.created_at) or 0,
        "in_progress_at": epoch(status.in_progress_at),
        "expires_at": epoch(status.expires_at),
        "finalizing_at": epoch(finalizing),
        "completed_at": epoch(status.completed_at),
        "failed_at": epoch(status.failed_at),
        "expired_at": epoch(status.expired_at),
        "cancelling_at": epoch(status.cancelling_at),
        "cancelled_at": epoch(status.cancelled_at),
        "request_counts": request_counts(status),
        "metadata": dict(status.metadata),
        "model": extras.get("model"),
        "usage": dict(usage) if usage is not None else None,
    }


def _errors(errors: Sequence[Mapping[str, object]]) -> dict[str, Any] | None:
    if not errors:
        return None
    return {"object": "list", "data": [dict(error) for error in errors]}


def page(items: Sequence[Mapping[str, Any]], has_more: bool) -> dict[str, Any]:
    """OpenAI's cursor page: the SDK asks for the next one ``after`` the last ``id``."""
    return {
        "object": "list",
        "data": list(items),
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }
