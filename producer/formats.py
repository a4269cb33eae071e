"""Result lines out: one ``JobResult`` as one JSON line, in our own shape or OpenAI's.

The OpenAI shapes are those of the Batch API's two files, so code written for them
reads ours unchanged:

- the **output file** holds the prompts that succeeded: ``response.status_code`` 200
  and a ``chat.completion`` body, with ``usage`` counted as OpenAI would bill it;
- the **error file** holds the rest. A prompt the site refused, or that failed on the
  way, is an HTTP error ``response`` (its ``status_code`` and an OpenAI error body:
  ``message``, ``type``, ``param``, ``code``) with ``error: null``. A prompt the batch
  never sent (cancelled, or its window ended) or that ran out of time has
  ``response: null`` and a batch-level ``error``: ``batch_cancelled``,
  ``batch_expired`` or ``request_timeout``.

``ERROR_CODES`` maps each of our error types to what an OpenAI client expects.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

from contract.models import JobResult


class HttpError(NamedTuple):
    """How an error type is written as an HTTP error response."""

    status_code: int
    type: str
    code: str


# Our error types that OpenAI would have answered as an HTTP error.
ERROR_CODES: dict[str, HttpError] = {
    "ContentRefused": HttpError(400, "invalid_request_error", "content_policy_violation"),
    "UpstreamRejected": HttpError(400, "invalid_request_error", "invalid_request"),
    "UnknownModel": HttpError(404, "invalid_request_error", "model_not_found"),
    "RateLimited": HttpError(429, "rate_limit_error", "rate_limit_exceeded"),
    "QuotaExceeded": HttpError(429, "insufficient_quota", "insufficient_quota"),
    "Blocked": HttpError(403, "permission_error", "upstream_blocked"),
    "ProxyFault": HttpError(502, "server_error", "bad_gateway"),
    "HandshakeFailed": HttpError(502, "server_error", "bad_gateway"),
    "UpstreamHiccup": HttpError(502, "server_error", "bad_gateway"),
    "UpstreamTimeout": HttpError(504, "server_error", "gateway_timeout"),
    "SessionStale": HttpError(502, "server_error", "bad_gateway"),
    "NoCapacity": HttpError(503, "server_error", "service_unavailable"),
    "ConsentMissing": HttpError(500, "server_error", "server_misconfigured"),
    "AnswerNotJson": HttpError(500, "server_error", "json_output_invalid"),
    "WorkerError": HttpError(500, "server_error", "server_error"),
    "BadRequestData": HttpError(500, "server_error", "server_error"),
    "BadResultData": HttpError(500, "server_error", "server_error"),
}
# Our error types that OpenAI writes as a batch-level error, with no response.
BATCH_ERRORS: dict[str, str] = {
    "Cancelled": "batch_cancelled",
    "Expired": "batch_expired",
    "JobTimeout": "request_timeout",
}


def native_line(result: JobResult) -> str:
    """The result exactly as stored: one JSON line, no trailing newline."""
    return result.model_dump_json()


def openai_line(result: JobResult) -> str:
    """The result as a line of OpenAI's output file (succeeded) or error file (the rest)."""
    if result.status == "succeeded":
        line = {"id": _id(result), "custom_id": result.custom_id,
                "response": _completion(result), "error": None}  # fmt: skip
    else:
        line = _error_line(result)
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def is_output(result: JobResult) -> bool:
    """Whether the result belongs in OpenAI's output file (else in its error file)."""
    return result.status == "succeeded"


def _id(result: JobResult) -> str:
    return f"batch_req_{result.job_id}"


def _completion(result: JobResult) -> dict[str, Any]:
    usage = result.usage.model_dump() if result.usage is not None else _no_usage()
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
                    "message": {"role": "assistant", "content": result.content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        },
    }


def _no_usage() -> dict[str, int]:
    return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def _error_line(result: JobResult) -> dict[str, Any]:
    kind = result.error.type if result.error else ("Cancelled" if result.status == "cancelled"
                                                   else "WorkerError")  # fmt: skip
    message = result.error.message if result.error else f"the prompt ended {result.status}"
    base = {"id": _id(result), "custom_id": result.custom_id}
    if kind in BATCH_ERRORS:
        return {**base, "response": None, "error": {"code": BATCH_ERRORS[kind], "message": message}}
    http = ERROR_CODES.get(kind, ERROR_CODES["WorkerError"])
    body = {"error": {"message": message, "type": http.type, "param": None, "code": http.code}}
    response = {"status_code": http.status_code, "request_id": result.job_id, "body": body}
    return {**base, "response": response, "error": None}


FORMATS: dict[str, Callable[[JobResult], str]] = {"native": native_line, "openai": openai_line}
