"""Result lines out: one ``JobResult`` as one JSON line, in our own shape or OpenAI's.

The ``openai`` format is an OpenAI Batch API output line, so tools written for
OpenAI batch results read ours unchanged. chatgpt.es reports no token counts,
so ``usage`` is all zeros; failed and cancelled jobs carry ``response: null`` and
an ``error`` as in OpenAI's batch error file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from contract.models import JobResult


def native_line(result: JobResult) -> str:
    """The result exactly as stored: one JSON line, no trailing newline."""
    return result.model_dump_json()


def openai_line(result: JobResult) -> str:
    """The result as an OpenAI Batch API output line, no trailing newline."""
    succeeded = result.status == "succeeded"
    line = {
        "id": f"batch_req_{result.job_id}",
        "custom_id": result.custom_id,
        "response": _openai_response(result) if succeeded else None,
        "error": None if succeeded else _openai_error(result),
    }
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def _openai_response(result: JobResult) -> dict[str, Any]:
    return {
        "status_code": 200,
        "request_id": result.job_id,
        "body": {
            "id": f"chatcmpl-{result.job_id}",
            "object": "chat.completion",
            "created": int(result.finished_at.timestamp()),
            "model": result.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.content},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        },
    }


def _openai_error(result: JobResult) -> dict[str, str]:
    if result.status == "cancelled":
        message = result.error.message if result.error else "the job was cancelled"
        return {"code": "cancelled", "message": message}
    if result.error is None:  # the contract says a failed result has an error; never lose a line
        return {"code": "failed", "message": "the job failed without an error record"}
    return {"code": result.error.type, "message": result.error.message}


FORMATS: dict[str, Callable[[JobResult], str]] = {"native": native_line, "openai": openai_line}
