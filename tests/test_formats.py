from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from contract.models import JobError, JobResult, JobStatus
from producer.formats import FORMATS, native_line, openai_line

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


def test_openai_line_for_a_succeeded_result() -> None:
    line = openai_line(result("succeeded", content="¡hola!\nbye"))
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
                        "message": {"role": "assistant", "content": "¡hola!\nbye"},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            },
        },
        "error": None,
    }
    assert json.loads(line)["response"]["body"]["created"] == 1714564830


def test_openai_line_for_a_failed_result() -> None:
    failed = result("failed", error=JobError(type="ContentRefused", message="prohibited words"))
    assert json.loads(openai_line(failed)) == {
        "id": "batch_req_j1",
        "custom_id": "q1",
        "response": None,
        "error": {"code": "ContentRefused", "message": "prohibited words"},
    }


def test_openai_line_for_a_cancelled_result() -> None:
    cancelled = result("cancelled", error=JobError(type="Cancelled", message="cancelled by user"))
    assert json.loads(openai_line(cancelled))["error"] == {
        "code": "cancelled",
        "message": "cancelled by user",
    }
    assert json.loads(openai_line(result("cancelled")))["error"]["code"] == "cancelled"


def test_openai_line_for_a_failed_result_without_error_still_says_failed() -> None:
    assert json.loads(openai_line(result("failed")))["error"]["code"] == "failed"


@pytest.mark.parametrize("name", ["native", "openai"])
def test_formats_by_name(name: str) -> None:
    line = FORMATS[name](result("succeeded", content="x"))
    assert json.loads(line)["custom_id"] == "q1"


def test_importing_producer_formats_does_not_import_the_worker() -> None:
    import subprocess
    import sys

    code = (
        "import sys, producer.formats, producer.inputs; "
        "assert not {'worker', 'curl_cffi'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
