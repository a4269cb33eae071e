"""The official ``openai`` SDK against ``chatgptes serve``, real workers and the simulator.

Code written for OpenAI's Batch API must run here by changing ``base_url`` only.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletion
from openai.types.responses import Response
from pydantic import BaseModel

from producer.http.client import run_batch_via_api

pytestmark = pytest.mark.e2e
KEY = "sk-e2e-key-0123456789"
BAD_WORD = "forbiddenword"  # the simulator refuses prompts holding it (ContentRefused)


KEY_B = "sk-e2e-team-b-0123456789"


def client_for(base_url: str, key: str = KEY) -> OpenAI:
    return OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=60)


@pytest.fixture
def sdk_with_workers(fleet) -> Iterator[OpenAI]:
    fleet.start_simulator("--latency", "fixed:40")
    fleet.start_workers(1, proxy_rate_per_second=0)
    with client_for(fleet.start_api(api_keys=f"{KEY},team-b:{KEY_B}")) as client:
        yield client


@pytest.fixture
def sdk(fleet) -> Iterator[OpenAI]:
    with client_for(fleet.start_api(api_keys=KEY)) as client:
        yield client


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
    wrong_key = client.with_options(api_key="sk-wrong-key-0123456789")
    with pytest.raises(openai.AuthenticationError):
        wrong_key.batches.list()
    with pytest.raises(openai.BadRequestError) as wrong_purpose:
        client.files.create(file=("p.jsonl", batch_file(["hi"])), purpose="fine-tune")
    assert wrong_purpose.value.param == "purpose"
    malformed = batch_file(["fine"]) + b'{"custom_id": "x", "mesages": []}\n'
    stored = client.files.create(file=("bad.jsonl", malformed), purpose="batch")  # as OpenAI
    failed = client.batches.create(input_file_id=stored.id, endpoint="/v1/chat/completions",
                                   completion_window="24h")  # fmt: skip
    assert failed.status == "failed" and failed.errors is not None and failed.errors.data
    error = failed.errors.data[0]
    assert (error.line, error.code) == (2, "invalid_request") and "mesages" in (error.message or "")
    assert [f.id for f in client.files.list()] == [stored.id]
    client.files.delete(stored.id)
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
    assert [b.id for b in client.batches.list()] == [failed.id]
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert unknown.value.code == "model_not_found" and "CHATGPTES_MODELS" in unknown.value.message
    with pytest.raises(openai.BadRequestError) as tools:  # function tools are emulated; no other
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}],
                                       tools=[{"type": "custom", "custom": {"name": "f"}}])  # fmt: skip
    assert tools.value.param == "tools[0].type" and "only 'function' tools" in tools.value.message


class Person(BaseModel):
    name: str
    age: int


class Steps(BaseModel):
    steps: list[Person]
    final_answer: str


def test_structured_outputs_and_length_as_sdk_code_asks_them(sdk_with_workers: OpenAI) -> None:
    client = sdk_with_workers
    ask = [{"role": "developer", "content": "Extract the person."},
           {"role": "user", "content": "Ada is 36."}]  # fmt: skip
    parsed = client.chat.completions.parse(model="gpt-4o", messages=ask, response_format=Person)
    assert parsed.choices[0].message.parsed == Person(name="echo", age=1)
    assert parsed._request_id is not None and parsed._request_id.startswith("req_")
    nested = client.chat.completions.parse(model="gpt-4o-mini", messages=ask,
                                           response_format=Steps)  # fmt: skip
    assert nested.choices[0].message.parsed == Steps(steps=[Person(name="echo", age=1)],
                                                     final_answer="echo")  # fmt: skip

    cut = client.chat.completions.create(model="gpt-4o", messages=ask, max_tokens=5)
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage is not None and 0 < cut.usage.completion_tokens <= 5
    assert cut.system_fingerprint and cut.service_tier == "default"

    unsatisfiable = {"type": "object", "properties": {"code": {"type": "string",
                     "pattern": "^[0-9]{6}$"}}, "required": ["code"]}  # fmt: skip
    fmt = {"type": "json_schema", "json_schema": {"name": "code", "schema": unsatisfiable}}
    with pytest.raises(openai.InternalServerError) as off_schema:
        client.chat.completions.create(model="gpt-4o", messages=ask, response_format=fmt)
    assert off_schema.value.code == "json_output_invalid"
    assert "does not match" in off_schema.value.message
    # Final: the worker spent the prompt's budget already, so the SDK sends it no more.
    assert off_schema.value.response.headers["x-should-retry"] == "false"


def test_the_responses_api_as_sdk_code_calls_it(sdk_with_workers: OpenAI) -> None:
    client = sdk_with_workers
    response = client.responses.create(model="gpt-4o", instructions="Be brief.",
                                       input="What is Redis?")  # fmt: skip
    assert response.status == "completed" and "User: What is Redis?" in response.output_text
    assert response.usage is not None and response.usage.input_tokens > 0
    events = list(
        client.responses.create(
            model="gpt-4o", instructions="Be brief.", input="What is Redis?", stream=True
        )
    )
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == response.output_text
    parsed = client.responses.parse(model="gpt-4o", input="Ada is 36.", text_format=Person)
    assert parsed.output_parsed == Person(name="echo", age=1)
    short = client.responses.create(model="gpt-4o", input="What is Redis?", max_output_tokens=16)
    assert short.status == "incomplete" and short.incomplete_details is not None
    with pytest.raises(openai.BadRequestError) as stateful:
        client.responses.create(model="gpt-4o", input="And?", previous_response_id=response.id)
    assert stateful.value.param == "previous_response_id"

    lines = [{"custom_id": f"r{n}", "method": "POST", "url": "/v1/responses",
              "body": {"model": "gpt-4o", "input": f"question {n}"}} for n in range(3)]  # fmt: skip
    uploaded = client.files.create(
        file=("r.jsonl", "".join(json.dumps(line) + "\n" for line in lines).encode()),
        purpose="batch",
    )
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/responses",
                                  completion_window="24h")  # fmt: skip
    done = wait_for(client, batch.id, ("completed", "failed"))
    assert done.status == "completed" and done.output_file_id is not None
    bodies = [json.loads(line)["response"]["body"]
              for line in client.files.content(done.output_file_id).text.splitlines()]  # fmt: skip
    assert [Response.model_validate(b).output_text.endswith(f"question {n}")
            for n, b in enumerate(bodies)] == [True] * 3  # fmt: skip


def test_projects_are_apart_and_files_are_files(sdk_with_workers: OpenAI) -> None:
    client = sdk_with_workers
    other = client.with_options(api_key=KEY_B)
    uploaded = client.files.create(file=("p.jsonl", batch_file(["one", "two"])), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")  # fmt: skip
    for read in (lambda: other.files.retrieve(uploaded.id), lambda: other.batches.retrieve(batch.id),
                 lambda: other.batches.cancel(batch.id), lambda: other.files.content(uploaded.id)):  # fmt: skip
        with pytest.raises(openai.NotFoundError):
            read()
    assert other.batches.list().data == [] and other.files.list().data == []
    done = wait_for(client, batch.id, ("completed",))
    assert done.model == "gpt-4o-mini" and done.usage is not None and done.usage.output_tokens > 0
    outputs = client.files.list(purpose="batch_output").data
    assert [f.id for f in outputs] == [done.output_file_id]
    assert client.files.retrieve(done.output_file_id).bytes == len(
        client.files.content(done.output_file_id).content)  # fmt: skip
    assert client.files.delete(done.output_file_id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.content(done.output_file_id)
    assert client.files.list(purpose="batch_output").data == []


def test_a_cli_batch_has_a_retrievable_input_file(fleet, sdk: OpenAI) -> None:
    lines = batch_file(["from the cli"]).decode()
    enqueued = fleet.cli("enqueue", "-", "--batch-id", "cli-made", input=lines)
    assert enqueued.returncode == 0, enqueued.stderr
    batch = sdk.batches.retrieve("cli-made")
    assert batch.input_file_id == "file-in-cli-made"
    assert sdk.files.retrieve(batch.input_file_id).purpose == "batch"
    (line,) = map(json.loads, sdk.files.content(batch.input_file_id).text.splitlines())
    assert line["body"]["messages"] == [{"role": "user", "content": "from the cli"}]


def test_a_chat_timeout_is_not_retried_by_the_sdk(fleet) -> None:
    fleet.report_worker()  # a worker that never answers
    base_url = fleet.start_api(api_keys=KEY, chat_timeout_seconds=1)
    with OpenAI(base_url=base_url, api_key=KEY, timeout=30) as client:  # default: 2 retries
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as timed_out:
            client.chat.completions.create(model="gpt-4o",
                                           messages=[{"role": "user", "content": "hi"}])  # fmt: skip
        assert timed_out.value.status_code == 504
        assert time.monotonic() - started < 2.5  # one wait, not three


def test_with_no_worker_a_chat_is_refused_at_once_not_retried(fleet) -> None:
    base_url = fleet.start_api(api_keys=KEY, chat_timeout_seconds=300)
    with OpenAI(base_url=base_url, api_key=KEY, timeout=30) as client:  # default: 2 retries
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as refused:
            client.chat.completions.create(model="gpt-4o",
                                           messages=[{"role": "user", "content": "hi"}])  # fmt: skip
        assert time.monotonic() - started < 2.5  # at once, and not retried
    assert refused.value.status_code == 503
    assert refused.value.code == "no_workers" and "chatgptes worker" in refused.value.message
