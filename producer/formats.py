"""Result lines out: one ``JobResult`` as one JSON line, in our own shape or OpenAI's.

The OpenAI shapes are those of the Batch API's two files, so code written for them
reads ours unchanged:

- the **output file** holds the prompts that succeeded: ``response.status_code`` 200
  and a ``chat.completion`` body (a ``response`` object for a batch of the Responses
  API's endpoint), with ``usage`` counted as OpenAI would bill it;
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

from contract.models import JobResult, call_json

CHAT_COMPLETIONS = "/v1/chat/completions"
RESPONSES = "/v1/responses"
ENDPOINTS = (CHAT_COMPLETIONS, RESPONSES)
# What a chat completion says of the system that made it: one fixed configuration here.
SYSTEM_FINGERPRINT = "fp_chatgptes"
SERVICE_TIER = "default"


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
    "AnswerOffSchema": HttpError(500, "server_error", "json_output_invalid"),
    "ToolCallOffSchema": HttpError(500, "server_error", "tool_call_invalid"),
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


def openai_line(result: JobResult, endpoint: str = CHAT_COMPLETIONS) -> str:
    """The result as a line of OpenAI's output file (succeeded) or error file (the rest),
    for a batch of ``endpoint`` (its output bodies are that endpoint's objects)."""
    if result.status == "succeeded":
        body = response_body(result) if endpoint == RESPONSES else completion_body(result)
        response = {"status_code": 200, "request_id": result.job_id, "body": body}
        line = {"id": _id(result), "custom_id": result.custom_id, "response": response,
                "error": None}  # fmt: skip
    else:
        line = _error_line(result)
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def is_output(result: JobResult) -> bool:
    """Whether the result belongs in OpenAI's output file (else in its error file)."""
    return result.status == "succeeded"


def _id(result: JobResult) -> str:
    return f"batch_req_{result.job_id}"


def completion_body(result: JobResult) -> dict[str, Any]:
    """A succeeded result as a ``chat.completion`` object (its ``message.tool_calls`` the
    calls it made, if it made any)."""
    usage = result.usage.model_dump() if result.usage is not None else _no_usage()
    message = {"role": "assistant", "content": result.content, "refusal": None,
               "annotations": []}  # fmt: skip
    if result.tool_calls:
        message["tool_calls"] = [call_json(call) for call in result.tool_calls]
    return {
        "id": f"chatcmpl-{result.job_id}",
        "object": "chat.completion",
        "created": int(result.finished_at.timestamp()),
        "model": result.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": result.finish_reason or "stop",
            }
        ],
        "usage": usage,
        "service_tier": SERVICE_TIER,
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def response_body(result: JobResult, **request: Any) -> dict[str, Any]:
    """A succeeded result as the Responses API's ``response`` object; ``request`` holds
    what the request set that the object echoes (``instructions``, ``text``, ...)."""
    cut = result.finish_reason == "length"
    usage = result.usage
    return {
        "id": f"resp_{result.job_id}",
        "object": "response",
        "created_at": int(result.finished_at.timestamp()),
        "status": "incomplete" if cut else "completed",
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "instructions": None,
        "max_output_tokens": None,
        "model": result.model,
        "output": _output_items(result),
        "parallel_tool_calls": False,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": SERVICE_TIER,
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "none",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": usage.prompt_tokens if usage else 0,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": usage.completion_tokens if usage else 0,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.total_tokens if usage else 0,
        },
        "user": None,
        "metadata": {},
        **request,
    }


def _output_items(result: JobResult) -> list[dict[str, Any]]:
    """A response's ``output``: one ``function_call`` item per call, or one message."""
    if result.tool_calls:
        return [{"type": "function_call", "id": f"fc_{call.id.removeprefix('call_')}",
                 "call_id": call.id, "name": call.name, "arguments": call.arguments,
                 "status": "completed"} for call in result.tool_calls]  # fmt: skip
    text = result.content or ""
    return [{"type": "message", "id": f"msg_{result.job_id}", "status": "completed",
             "role": "assistant",
             "content": [{"type": "output_text", "text": text, "annotations": [],
                          "logprobs": []}]}]  # fmt: skip


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
