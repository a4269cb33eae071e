"""Tools through the OpenAI-compatible HTTP API, on fakeredis: chat completions (plain and
streamed), the Responses API and batches, with function tools.

A worker is played by ``answer_as_a_worker``: it writes the prompt as a worker does
(``worker.prompt``), takes the simulator's answer to it (``simulator.app.echoed``) and
shapes it as a worker does, so the prompt, the simulator and the parsing meet here in
milliseconds; real processes run the same in ``test_openai_tools.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter
from redis.asyncio import Redis

from contract import keys
from contract.batches import BatchStore
from contract.models import JobError, JobResult, PromptRequest
from producer.http.app import make_app
from simulator.app import echoed
from tests.test_http_api import (  # a_live_worker: the worker played here reports itself
    AUTH,
    QUEUE,
    a_live_worker,  # noqa: F401
    assert_error,
    form,
    jsonl,
    nothing_enqueued,
    settings,
)
from worker.errors import UpstreamError
from worker.prompt import format_prompt, shape_answer
from worker.tokens import usage_of

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
           "additionalProperties": False}  # fmt: skip
TIME = {"type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}}}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "The weather now",
                                      "parameters": WEATHER, "strict": True}},
    {"type": "function", "function": {"name": "get_time", "parameters": TIME}},
]  # fmt: skip
ASK = [{"role": "user", "content": "Weather in Paris? Use get_weather."}]


def worker_result(request: PromptRequest) -> JobResult:
    """What a worker stores for the request, against the simulator's answer."""
    prompt = format_prompt(request.messages, "", request.params)
    try:
        shaped = shape_answer("Echo: " + echoed(prompt), request.params, request.model)
    except UpstreamError as error:
        return JobResult.for_request(request, status="failed",
                                     error=JobError(type=error.kind, message=error.message))  # fmt: skip
    return JobResult.for_request(
        request, status="succeeded", content=shaped.text, usage=usage_of(request, shaped.text),
        cut=shaped.cut, tool_calls=shaped.tool_calls,
    )  # fmt: skip


async def answer_as_a_worker(redis: Redis, seen: list[PromptRequest]) -> None:
    """Answers every chat completion waiting, forever (cancel the task to stop)."""
    store = BatchStore(redis, queue_name=QUEUE, ttl_seconds=3600)
    while True:
        for raw in await redis.zrange(keys.batches_created(), 0, -1):
            batch_id = raw.decode()
            created = await store.created_at(batch_id)
            if created is None or (await store.raw_results(batch_id, [0]))[0] is not None:
                continue
            status = await store.status(batch_id)
            requests = await store.requests(batch_id, list(range(status.total)), created)
            seen.extend(requests)
            await store.ledger.save_results([worker_result(request) for request in requests])
        await asyncio.sleep(0.01)


@pytest.fixture
async def client(fake_redis: Redis) -> AsyncIterator[TestClient]:
    app = make_app(settings(), open_without_keys=False, redis=fake_redis)
    async with TestClient(TestServer(app), headers=AUTH) as test_client:
        yield test_client


@pytest.fixture
async def seen(fake_redis: Redis) -> AsyncIterator[list[PromptRequest]]:
    """The requests the played worker answered, as it read them."""
    requests: list[PromptRequest] = []
    task = asyncio.create_task(answer_as_a_worker(fake_redis, requests))
    yield requests
    task.cancel()


async def chat(client: TestClient, **body: Any) -> ChatCompletion:
    reply = await client.post("/v1/chat/completions", json={"model": "gpt-4o", **body})
    assert reply.status == 200, await reply.text()
    return ChatCompletion.model_validate(await reply.json())


async def test_a_tool_call_is_answered_in_openais_shape(client: TestClient, seen) -> None:
    completion = await chat(client, messages=ASK, tools=TOOLS)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.id.startswith("call_") and len(call.id) == 29 and call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "echo"}
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    (request,) = seen
    assert json.loads(request.params.tools or "")[0]["parameters"] == WEATHER


async def test_the_tools_result_sent_back_gets_the_final_answer(client: TestClient, seen) -> None:
    first = await chat(client, messages=ASK, tools=TOOLS)
    called = first.choices[0].message
    result = {"role": "tool", "tool_call_id": called.tool_calls[0].id, "content": "18 C, sunny"}
    history = [*ASK, called.model_dump(exclude_unset=True), result]
    final = await chat(client, messages=history, tools=TOOLS)
    assert final.choices[0].finish_reason == "stop" and not final.choices[0].message.tool_calls
    assert final.choices[0].message.content == "Echo: Weather in Paris? Use get_weather. " \
        "(get_weather: 18 C, sunny)"  # fmt: skip
    assert seen[-1].messages[1].tool_calls == first_calls(first)
    assert seen[-1].messages[2].tool_call_id == called.tool_calls[0].id


def first_calls(completion: ChatCompletion) -> tuple:
    from contract.models import ToolCall

    return tuple(ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments)
                 for c in completion.choices[0].message.tool_calls or [])  # fmt: skip


@pytest.mark.parametrize(
    ("options", "names"),
    [({}, ["get_weather"]),
     ({"tool_choice": {"type": "function", "function": {"name": "get_time"}}}, ["get_time"]),
     ({"tool_choice": "required"}, ["get_weather"]),
     ({"parallel_tool_calls": False}, ["get_weather"])],
)  # fmt: skip
async def test_tool_choice_decides_what_is_called(
    client: TestClient, seen, options: dict[str, Any], names: list[str]
) -> None:
    completion = await chat(client, messages=ASK, tools=TOOLS, **options)
    assert [c.function.name for c in completion.choices[0].message.tool_calls or []] == names


async def test_parallel_calls_and_none(client: TestClient, seen) -> None:
    both = [{"role": "user", "content": "Use get_weather and get_time."}]
    parallel = await chat(client, messages=both, tools=TOOLS)
    calls = parallel.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert len({c.id for c in calls}) == 2
    one = await chat(client, messages=both, tools=TOOLS, parallel_tool_calls=False)
    assert len(one.choices[0].message.tool_calls or []) == 1
    none = await chat(client, messages=both, tools=TOOLS, tool_choice="none")
    assert none.choices[0].finish_reason == "stop" and none.choices[0].message.tool_calls is None
    assert "You can call functions" not in (none.choices[0].message.content or "")


async def test_a_call_off_its_schema_is_a_typed_error(client: TestClient, seen) -> None:
    ask = [{"role": "user", "content": "Use get_weather, offschema."}]
    reply = await client.post("/v1/chat/completions",
                              json={"model": "gpt-4o", "messages": ask, "tools": TOOLS})  # fmt: skip
    error = await assert_error(reply, 500, code="tool_call_invalid")
    assert error["message"] == ("tool_calls[0] (get_weather): the arguments do not match its "
                                "schema at city: 0 is not of type 'string'")  # fmt: skip


async def test_streamed_tool_calls_add_up_to_the_completion(client: TestClient, seen) -> None:
    both = [{"role": "user", "content": "Use get_weather and get_time."}]
    whole = await chat(client, messages=both, tools=TOOLS)
    reply = await client.post("/v1/chat/completions", json={
        "model": "gpt-4o", "messages": both, "tools": TOOLS, "stream": True})  # fmt: skip
    events = [line.removeprefix("data: ") for line in (await reply.text()).split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate_json(event) for event in events[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[1].choices[0].delta.tool_calls[0].id is not None  # the id and name come first
    state = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(chunk)
    streamed = state.get_final_completion().choices[0]
    assert streamed.finish_reason == "tool_calls"
    assert [(c.function.name, c.function.arguments) for c in streamed.message.tool_calls or []] \
        == [(c.function.name, c.function.arguments) for c in whole.choices[0].message.tool_calls or []]  # fmt: skip


async def test_bad_tool_histories_enqueue_nothing(client: TestClient, fake_redis: Redis) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                             "arguments": "{}"}}  # fmt: skip
    cases = [
        ([*ASK, {"role": "tool", "tool_call_id": "call_9", "content": "x"}],
         "messages[1].tool_call_id"),
        ([*ASK, {"role": "assistant", "content": None, "tool_calls": [{**call, "id": 5}]},
          {"role": "user", "content": "and?"}], "messages[1].tool_calls[0].id"),
        ([*ASK, {"role": "assistant", "content": None}, {"role": "user", "content": "and?"}],
         "messages[1].content"),
        ([*ASK, {"role": "assistant", "content": None, "tool_calls": [call]}],
         "messages[1].role"),
    ]  # fmt: skip
    for messages, param in cases:
        reply = await client.post("/v1/chat/completions",
                                  json={"model": "gpt-4o", "messages": messages, "tools": TOOLS})  # fmt: skip
        await assert_error(reply, 400, param=param)
    assert await nothing_enqueued(fake_redis)


# --- the Responses API -------------------------------------------------------------------

RESPONSE_TOOLS = [{"type": "function", "name": "get_weather", "description": "The weather now",
                   "parameters": WEATHER, "strict": True}]  # fmt: skip


async def respond(client: TestClient, **body: Any) -> Response:
    reply = await client.post("/v1/responses", json={"model": "gpt-4o", **body})
    assert reply.status == 200, await reply.text()
    return Response.model_validate(await reply.json())


async def test_a_response_calls_a_function_and_takes_its_output(client: TestClient, seen) -> None:
    asked = "Weather in Paris? Use get_weather."
    response = await respond(client, input=asked, tools=RESPONSE_TOOLS)
    (call,) = response.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "echo"} and call.call_id.startswith("call_")
    assert response.tools[0].name == "get_weather" and response.tool_choice == "auto"
    output = {"type": "function_call_output", "call_id": call.call_id, "output": "18 C"}
    history = [{"role": "user", "content": asked}, call.model_dump(), output]
    final = await respond(client, input=history, tools=RESPONSE_TOOLS)
    assert final.output_text == f"Echo: {asked} (get_weather: 18 C)"
    assert seen[-1].messages[1].tool_calls[0].id == call.call_id


async def test_a_streamed_response_with_function_calls(client: TestClient, seen) -> None:
    body = {"model": "gpt-4o", "input": "Use get_weather.", "tools": RESPONSE_TOOLS,
            "tool_choice": {"type": "function", "name": "get_weather"}, "stream": True}  # fmt: skip
    reply = await client.post("/v1/responses", json=body)
    blocks = [block for block in (await reply.text()).split("\n\n") if block]
    adapter = TypeAdapter(ResponseStreamEvent)
    events = [adapter.validate_json(block.split("data: ", 1)[1]) for block in blocks]
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert deltas == done.arguments and json.loads(deltas) == {"city": "echo"}
    assert [e.sequence_number for e in events] == list(range(len(events)))


# --- batches -----------------------------------------------------------------------------


async def test_a_batch_line_may_use_tools(client: TestClient, fake_redis: Redis, seen) -> None:
    lines = [{"custom_id": f"t{n}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "gpt-4o-mini", "messages": ASK, "tools": TOOLS,
                       "tool_choice": choice}}
             for n, choice in enumerate(["auto", "none"])]  # fmt: skip
    uploaded = await (await client.post("/v1/files", data=form(jsonl(lines)))).json()
    reply = await client.post("/v1/batches", json={"input_file_id": uploaded["id"],
                              "endpoint": "/v1/chat/completions", "completion_window": "24h"})  # fmt: skip
    batch = await reply.json()
    assert reply.status == 200 and batch["status"] != "failed", batch

    async def output() -> str | None:
        done = await (await client.get(f"/v1/batches/{batch['id']}")).json()
        return done.get("output_file_id") if done["status"] == "completed" else None

    deadline = asyncio.get_running_loop().time() + 5
    while (file_id := await output()) is None:
        assert asyncio.get_running_loop().time() < deadline, "the batch did not complete"
        await asyncio.sleep(0.02)
    content = await (await client.get(f"/v1/files/{file_id}/content")).text()
    bodies = [ChatCompletion.model_validate(json.loads(line)["response"]["body"])
              for line in content.splitlines()]  # fmt: skip
    assert [b.choices[0].finish_reason for b in bodies] == ["tool_calls", "stop"]
    assert bodies[0].choices[0].message.tool_calls[0].function.name == "get_weather"
    given = await (await client.get(f"/v1/files/{uploaded['id']}/content")).text()
    assert [json.loads(line)["body"]["tools"] for line in given.splitlines()] == [TOOLS, TOOLS]


async def test_a_cli_batchs_input_file_gives_its_tools_back(client: TestClient, fake_redis) -> None:
    from producer.api import BatchQueue
    from producer.inputs import parse_prompt_lines

    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}  # fmt: skip
    body = {"model": "gpt-4o", "tools": TOOLS, "tool_choice": "required",
            "parallel_tool_calls": False,
            "messages": [*ASK, {"role": "assistant", "content": None, "tool_calls": [call]},
                         {"role": "tool", "tool_call_id": "call_1", "content": "18 C"}]}  # fmt: skip
    line = {"custom_id": "t", "method": "POST", "url": "/v1/chat/completions", "body": body}
    prompts = parse_prompt_lines([json.dumps(line)], default_model="gpt-4o", max_prompt_chars=999)
    await BatchQueue(fake_redis, settings()).enqueue(prompts, batch_id="cli-tools")
    content = await (await client.get("/v1/files/file-in-cli-tools/content")).text()
    given = json.loads(content)["body"]
    normalized = [{"type": "function", "function": {"name": "get_weather", "description":
                   "The weather now", "parameters": WEATHER, "strict": True}}, TOOLS[1]]  # fmt: skip
    assert given == {**body, "tools": normalized, "model": "gpt-4o"}
