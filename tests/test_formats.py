from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from openai.types.responses import Response

from contract.models import JobError, JobResult, JobStatus, Usage
from producer.formats import BATCH_ERRORS, ERROR_CODES, FORMATS, RESPONSES, native_line, openai_line

FINISHED = datetime(2024, 5, 1, 12, 0, 30, 900_000, tzinfo=UTC)


def result(status: JobStatus, **fields: Any) -> JobResult:
    return JobResult(
        job_id="j1",
        batch_id="b1",
        custom_id="q1",
        status=status,
        model="gpt-4o",
        attempts=1,
        enqueued_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        finished_at=FINISHED,
        **fields,
    )


def test_native_line_round_trips() -> None:
    done = result("succeeded", content="¡hola!")
    line = native_line(done)
    assert "\n" not in line
    assert JobResult.model_validate_json(line) == done


def test_openai_output_line_for_a_succeeded_result() -> None:
    usage = Usage(prompt_tokens=9, completion_tokens=4, total_tokens=13)
    line = openai_line(result("succeeded", content="¡hola!\nbye", usage=usage))
    assert "\n" not in line
    assert json.loads(line) == {
        "id": "batch_req_j1",
        "custom_id": "q1",
        "response": {
            "status_code": 200,
            "request_id": "j1",
            "body": {
                "id": "chatcmpl-j1",
                "object": "chat.completion",
                "created": int(FINISHED.timestamp()),
                "model": "gpt-4o",
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": "¡hola!\nbye",
                            "refusal": None,
                            "annotations": [],
                        },
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
                "service_tier": "default",
                "system_fingerprint": "fp_chatgptes",
            },
        },
        "error": None,
    }
    assert json.loads(line)["response"]["body"]["created"] == 1714564830


def test_a_refusal_is_an_http_error_response_with_openais_code() -> None:
    failed = result("failed", error=JobError(type="ContentRefused", message="prohibited words"))
    assert json.loads(openai_line(failed)) == {
        "id": "batch_req_j1",
        "custom_id": "q1",
        "response": {
            "status_code": 400,
            "request_id": "j1",
            "body": {"error": {"message": "prohibited words", "type": "invalid_request_error",
                               "param": None, "code": "content_policy_violation"}},
        },
        "error": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [("cancelled", "Cancelled", "batch_cancelled"), ("failed", "Expired", "batch_expired"),
     ("failed", "JobTimeout", "request_timeout")],
)  # fmt: skip
def test_what_the_batch_never_sent_is_a_batch_level_error(status, kind, code) -> None:
    line = json.loads(openai_line(result(status, error=JobError(type=kind, message="why"))))
    assert line["response"] is None and line["error"] == {"code": code, "message": "why"}


def test_every_error_type_of_the_worker_has_an_openai_code() -> None:
    from worker import errors

    kinds = {cls.__name__ for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.UpstreamError)}  # fmt: skip
    kinds -= {"UpstreamError", "RetryableError", "PermanentError"}
    assert kinds <= set(ERROR_CODES) | set(BATCH_ERRORS)


def test_a_result_without_an_error_record_still_gets_an_error_line() -> None:
    assert json.loads(openai_line(result("cancelled")))["error"]["code"] == "batch_cancelled"
    assert json.loads(openai_line(result("failed")))["response"]["status_code"] == 500


@pytest.mark.parametrize("name", ["native", "openai"])
def test_formats_by_name(name: str) -> None:
    line = FORMATS[name](result("succeeded", content="x"))
    assert json.loads(line)["custom_id"] == "q1"


def test_a_result_cut_at_max_tokens_finishes_with_length() -> None:
    cut = result("succeeded", content="cut", usage=Usage(completion_tokens=5)).model_copy(
        update={"finish_reason": "length"}
    )
    body = json.loads(openai_line(cut))["response"]["body"]
    assert body["choices"][0]["finish_reason"] == "length"
    response = json.loads(openai_line(cut, RESPONSES))["response"]["body"]
    assert (response["object"], response["status"]) == ("response", "incomplete")
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["content"][0]["text"] == "cut"
    Response.model_validate(response)
