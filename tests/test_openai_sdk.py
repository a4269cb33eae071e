"""The official ``openai`` SDK against ``chatgptes serve``, real workers and the simulator.

Code written for OpenAI's Batch API must run here by changing ``base_url`` only.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletion

from producer.http.client import answers_health, run_batch_via_api
from simulator.local import free_port, running, wait_until

pytestmark = pytest.mark.e2e
KEY = "sk-e2e-key"
BAD_WORD = "forbiddenword"  # the simulator refuses prompts holding it (ContentRefused)


def serve(fleet, tmp_path: Path) -> Iterator[OpenAI]:
    """``chatgptes serve`` on a free port, stopped whatever happens; an SDK client for it."""
    port = free_port()
    argv = [sys.executable, "-m", "chatgptes.serve", "--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path / "api.log"
    base_url = f"http://127.0.0.1:{port}/v1"
    with running(argv, log=log, env=fleet.env(api_keys=KEY)) as process:

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"chatgptes serve exited: {log.read_text()}")
            return answers_health(base_url)

        wait_until(answers, timeout=30, what="chatgptes serve to answer")
        with OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=60) as client:
            yield client


@pytest.fixture
def sdk_with_workers(fleet, tmp_path: Path) -> Iterator[OpenAI]:
    fleet.start_simulator("--latency", "fixed:40")
    fleet.start_workers(1, proxy_rate_per_second=0)
    yield from serve(fleet, tmp_path)


@pytest.fixture
def sdk(fleet, tmp_path: Path) -> Iterator[OpenAI]:
    yield from serve(fleet, tmp_path)


def batch_file(contents: list[str]) -> bytes:
    lines = [
        {"custom_id": f"r{n}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}}
        for n, text in enumerate(contents)
    ]  # fmt: skip
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def wait_for(client: OpenAI, batch_id: str, statuses: tuple[str, ...], timeout: float = 90):
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.status}: {batch}"
        time.sleep(0.3)


def test_a_batch_as_openai_sdk_code_runs_it(sdk_with_workers: OpenAI) -> None:
    client = sdk_with_workers
    prompts = [f"question {n}" for n in range(5)] + [f"say {BAD_WORD} please"]
    uploaded = client.files.create(file=("prompts.jsonl", batch_file(prompts)), purpose="batch")
    assert (uploaded.purpose, uploaded.bytes) == ("batch", len(batch_file(prompts)))
    assert client.files.retrieve(uploaded.id).filename == "prompts.jsonl"
    assert client.files.content(uploaded.id).content == batch_file(prompts)

    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"run": "e2e"})  # fmt: skip
    assert batch.id.startswith("batch_") and batch.status in ("validating", "in_progress")
    done = wait_for(client, batch.id, ("completed", "failed", "expired", "cancelled"))
    assert done.status == "completed", done
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed,
            done.request_counts.failed) == (6, 5, 1)  # fmt: skip
    assert done.metadata == {"run": "e2e"} and done.completed_at is not None

    output = client.files.content(done.output_file_id).text.splitlines()
    assert [json.loads(line)["custom_id"] for line in output] == [f"r{n}" for n in range(5)]
    for n, line in enumerate(map(json.loads, output)):
        completion = ChatCompletion.model_validate(line["response"]["body"])
        assert completion.choices[0].message.content.endswith(f"question {n}")
        assert completion.usage is not None and completion.usage.prompt_tokens > 0
    (error_line,) = map(json.loads, client.files.content(done.error_file_id).text.splitlines())
    assert error_line["custom_id"] == "r5" and error_line["error"] is None
    assert error_line["response"]["status_code"] == 400
    assert error_line["response"]["body"]["error"]["code"] == "content_policy_violation"
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"

    many = client.files.create(file=("many.jsonl", batch_file([f"q{n}" for n in range(300)])),
                               purpose="batch")  # fmt: skip
    second = client.batches.create(input_file_id=many.id, endpoint="/v1/chat/completions",
                                   completion_window="24h")  # fmt: skip
    stopping = client.batches.cancel(second.id)
    assert stopping.status in ("cancelling", "cancelled")
    cancelled = wait_for(client, second.id, ("cancelled",), timeout=60)
    assert cancelled.request_counts is not None and cancelled.request_counts.failed > 0
    assert cancelled.cancelled_at is not None
    codes = {json.loads(line)["error"]["code"]
             for line in client.files.content(cancelled.error_file_id).text.splitlines()}  # fmt: skip
    assert codes == {"batch_cancelled"}

    first_page = client.batches.list(limit=1)
    assert [b.id for b in first_page.data] == [second.id] and first_page.has_more
    assert [b.id for b in client.batches.list(limit=1)] == [second.id, batch.id]  # auto-paging

    # The same, without the SDK (what `chatgptes demo --via-api` runs).
    lines = asyncio.run(run_batch_via_api(str(client.base_url), KEY, batch_file(prompts), 60))
    assert [line["custom_id"] for line in lines] == [f"r{n}" for n in range(6)]
    assert [line["error"] is None and line["response"]["status_code"] for line in lines] == [
        200, 200, 200, 200, 200, 400]  # fmt: skip


def test_chat_completions_as_openai_sdk_code_asks_them(sdk_with_workers: OpenAI) -> None:
    client = sdk_with_workers
    messages = [{"role": "user", "content": "What is Redis?"}]
    completion = client.chat.completions.create(model="gpt-4o", messages=messages)
    assert isinstance(completion, ChatCompletion) and completion.model == "gpt-4o"
    answer = completion.choices[0].message.content
    assert answer is not None and answer.endswith("What is Redis?")

    stream = client.chat.completions.create(model="gpt-4o", messages=messages, stream=True,
                                            stream_options={"include_usage": True})  # fmt: skip
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == answer
    assert len(chunks) > 3 and chunks[-1].usage is not None

    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="gpt-4o",
                                       messages=[{"role": "user", "content": BAD_WORD}])  # fmt: skip
    assert refused.value.code == "content_policy_violation"
    assert client.batches.list().data == []  # chat completions are not batches


def test_bad_requests_raise_the_sdks_typed_errors(sdk: OpenAI) -> None:
    client = sdk
    wrong_key = client.with_options(api_key="sk-wrong")
    with pytest.raises(openai.AuthenticationError):
        wrong_key.batches.list()
    with pytest.raises(openai.BadRequestError) as wrong_purpose:
        client.files.create(file=("p.jsonl", batch_file(["hi"])), purpose="fine-tune")
    assert wrong_purpose.value.param == "purpose"
    malformed = batch_file(["fine"]) + b'{"custom_id": "x", "mesages": []}\n'
    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=("bad.jsonl", malformed), purpose="batch")
    assert "line 2" in refused.value.message and "mesages" in refused.value.message
    assert client.files.list().data == []
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nothere")
    with pytest.raises(openai.NotFoundError):
        client.files.content("file-nothere")
    uploaded = client.files.create(file=("ok.jsonl", batch_file(["hi"])), purpose="batch")
    with pytest.raises(openai.BadRequestError) as bad_endpoint:
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings",
                              completion_window="24h")  # fmt: skip
    assert bad_endpoint.value.param == "endpoint"
    assert client.files.delete(uploaded.id).deleted
    assert client.batches.list().data == []
