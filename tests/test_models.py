"""The job contract (``contract.models``): tool calls in messages, requests and results, and
requests and results without tools stored exactly as they were before tools existed."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from contract.models import (
    NO_PARAMS,
    JobResult,
    Message,
    NamedTool,
    PromptRequest,
    RequestParams,
    StoredRequest,
    ToolCall,
    utc_now,
)

CALL = ToolCall(id="call_1", name="get_weather", arguments='{"city":"Paris"}')


def request(params: RequestParams = NO_PARAMS, *messages: Message) -> PromptRequest:
    return PromptRequest(job_id="b.0", batch_id="b", custom_id="c", index=0, model="gpt-4o",
                         messages=messages or (Message(role="user", content="hi"),),
                         enqueued_at=utc_now(), params=params)  # fmt: skip


def test_a_request_without_tools_is_stored_as_before() -> None:
    assert request().stored_json() == (
        '{"custom_id":"c","messages":[{"role":"user","content":"hi"}],"model":"gpt-4o"}'
    )
    stop = request(RequestParams(stop=("END",))).stored_json()
    assert json.loads(stop)["params"] == {"stop": ["END"], "json_object": False}


def test_a_result_without_tools_is_shown_as_before() -> None:
    result = JobResult.for_request(request(), status="succeeded", content="hello")
    shown = json.loads(result.model_dump_json())
    assert "tool_calls" not in shown and shown["finish_reason"] == "stop"
    assert "tool_calls" not in result.model_dump()


def test_a_result_with_calls_has_no_content_and_finishes_with_tool_calls() -> None:
    result = JobResult.for_request(request(), status="succeeded", content='{"tool_calls": []}',
                                   tool_calls=(CALL,))  # fmt: skip
    assert (result.content, result.finish_reason, result.tool_calls) == (
        None,
        "tool_calls",
        (CALL,),
    )
    assert JobResult.model_validate_json(result.model_dump_json()) == result


def test_a_tool_history_is_stored_and_read_back() -> None:
    params = RequestParams(tools='[{"name":"get_weather","parameters":{}}]',
                           tool_choice=NamedTool(name="get_weather"), parallel_tool_calls=False)  # fmt: skip
    history = (Message(role="user", content="Weather?"),
               Message(role="assistant", content="", tool_calls=(CALL,)),
               Message(role="tool", content="18 C", tool_call_id="call_1"))  # fmt: skip
    stored = request(params, *history).stored_json()
    read = StoredRequest.model_validate_json(stored)
    assert read.messages == history and read.params == params
    assert history[1].openai() == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}  # fmt: skip
    assert history[2].openai() == {"role": "tool", "content": "18 C", "tool_call_id": "call_1"}


@pytest.mark.parametrize(
    "fields",
    [{"role": "user", "content": "x", "tool_calls": [CALL]},
     {"role": "assistant", "content": "", "tool_calls": []},
     {"role": "tool", "content": "x"},
     {"role": "user", "content": "x", "tool_call_id": "call_1"},
     {"role": "assistant", "content": " "}],
)  # fmt: skip
def test_a_message_out_of_shape_is_refused(fields: dict) -> None:
    with pytest.raises(ValidationError):
        Message(**fields)


def test_tool_choice_reads_a_mode_or_a_name() -> None:
    assert RequestParams.model_validate({"tool_choice": "required"}).tool_choice == "required"
    named = RequestParams.model_validate({"tool_choice": {"name": "f"}})
    assert named.tool_choice == NamedTool(name="f")
    with pytest.raises(ValidationError):
        RequestParams.model_validate({"tool_choice": "sometimes"})
    with pytest.raises(ValidationError):  # extra="forbid": an older worker's refusal, as before
        RequestParams.model_validate({"tools_given": True})
