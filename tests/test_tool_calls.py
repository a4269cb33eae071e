"""Tools on a site that has none (``worker.tool_calls``, through ``worker.prompt``): the
functions described in the prompt, a history shown, the answer read back as calls and
each call checked against its function's schema."""

from __future__ import annotations

import json

import pytest

from contract.models import Message, NamedTool, RequestParams, ToolCall
from worker.errors import AnswerOffSchema, ToolCallOffSchema
from worker.prompt import format_prompt, shape_answer

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
FUNCTIONS = [{"name": "get_weather", "description": "The weather now", "parameters": WEATHER},
             {"name": "get_time", "parameters": {"type": "object", "properties": {}}}]  # fmt: skip
TOOLS = json.dumps(FUNCTIONS)


def params(**more: object) -> RequestParams:
    return RequestParams(tools=TOOLS, **more)


def calls(answer: str, **more: object) -> list[tuple[str, dict]]:
    shaped = shape_answer(answer, params(**more))
    assert shaped.tool_calls is not None, shaped
    assert json.loads(shaped.text) == {"tool_calls": [
        {"name": call.name, "arguments": json.loads(call.arguments)} for call in shaped.tool_calls
    ]}  # fmt: skip
    return [(call.name, json.loads(call.arguments)) for call in shaped.tool_calls]


def test_the_prompt_lists_the_functions_and_how_to_call_them() -> None:
    prompt = format_prompt([Message(role="user", content="Weather?")], "", params())
    lines = prompt.split("\n")
    assert lines[0] == "Weather?" and lines[2].startswith("You can call functions.")
    assert [json.loads(line) for line in lines[3:5]] == FUNCTIONS
    assert lines[5].startswith("To call functions, respond with only this JSON object")
    assert lines[6:] == ["If no function is needed, answer in plain text instead, without any JSON.",
                         "You may call several functions at once."]  # fmt: skip


@pytest.mark.parametrize(
    ("more", "rules"),
    [({"tool_choice": "required"}, ["You must call at least one function: do not answer in "
                                    "plain text.", "You may call several functions at once."]),
     ({"tool_choice": NamedTool(name="get_time")},
      ["You must call the function get_time, and no other: do not answer in plain text."]),
     ({"parallel_tool_calls": False}, ["If no function is needed, answer in plain text instead, "
                                       "without any JSON.", "Call one function at most."])],
)  # fmt: skip
def test_tool_choice_is_said_in_the_prompt(more: dict, rules: list[str]) -> None:
    prompt = format_prompt([Message(role="user", content="x")], "", params(**more))
    assert prompt.split("\n")[6:] == rules


def test_tool_choice_none_leaves_the_functions_out() -> None:
    prompt = format_prompt([Message(role="user", content="x")], "", params(tool_choice="none"))
    assert prompt == "x"
    assert shape_answer('{"tool_calls": [{"name": "get_time"}]}', params(tool_choice="none")) \
        == ('{"tool_calls": [{"name": "get_time"}]}', False, None)  # fmt: skip


def test_a_history_shows_its_calls_and_their_results() -> None:
    call = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')
    history = [Message(role="user", content="Weather in Paris?"),
               Message(role="assistant", content="", tool_calls=(call,)),
               Message(role="tool", content="18 C", tool_call_id="call_1")]  # fmt: skip
    text = format_prompt(history, "Lang:", RequestParams()).split("\n")
    assert text == ["Lang: User: Weather in Paris?",
                    'Assistant: {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}',
                    "Tool (get_weather): 18 C", "Assistant:"]  # fmt: skip


@pytest.mark.parametrize(
    "answer",
    ['{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}',
     'Sure! ```json\n{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}\n```',
     '{"name": "get_weather", "arguments": {"city": "Paris"}}',
     '{"tool_calls": [{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}]}'],
)  # fmt: skip
def test_calls_are_read_in_the_shapes_models_write(answer: str) -> None:
    assert calls(answer) == [("get_weather", {"city": "Paris"})]


def test_each_call_gets_an_id_and_compact_arguments() -> None:
    answer = '{"tool_calls": [{"name": "get_time"}, {"name": "get_weather", "arguments": {"city": "Köln"}}]}'
    shaped = shape_answer(answer, params())
    first, second = shaped.tool_calls or ()
    assert first.id != second.id and all(c.id.startswith("call_") and len(c.id) == 29
                                         for c in (first, second))  # fmt: skip
    assert (first.arguments, second.arguments) == ("{}", '{"city":"Köln"}')
    assert calls(answer, parallel_tool_calls=False) == [("get_time", {})]


def test_a_plain_answer_stays_plain_when_no_call_is_required() -> None:
    for answer in ("It is 18 C in Paris.", 'The object {"name": "Ada"} is a person.'):
        assert shape_answer(answer, params()) == (answer, False, None)
    assert shape_answer("It is sunny. END more", params(stop=("END",))).text == "It is sunny. "


@pytest.mark.parametrize(
    ("answer", "more", "where"),
    [('{"tool_calls": [{"name": "get_weather", "arguments": {"city": 5}}]}', {},
      "tool_calls[0] (get_weather): the arguments do not match its schema at city: 5 is not of type 'string'"),
     ('{"tool_calls": [{"name": "get_weather", "arguments": {}}]}', {},
      "tool_calls[0] (get_weather): the arguments do not match its schema at (the object): 'city' is a required property"),
     ('{"tool_calls": [{"name": "launch", "arguments": {}}]}', {},
      "tool_calls[0]: 'launch' is not a function offered (get_time, get_weather)"),
     ('{"tool_calls": [{"name": "get_time", "arguments": [1]}]}', {},
      "tool_calls[0] (get_time): the arguments must be a JSON object"),
     ('{"tool_calls": []}', {}, "tool_calls: must be a non-empty list of calls, got []"),
     ("It is sunny.", {"tool_choice": "required"},
      "tool_choice: the answer must call a function but makes no call: 'It is sunny.'"),
     ('{"tool_calls": [{"name": "get_weather", "arguments": {"city": "P"}}]}',
      {"tool_choice": NamedTool(name="get_time")},
      "tool_calls[0]: tool_choice names get_time; this calls get_weather")],
)  # fmt: skip
def test_a_call_off_its_schema_says_where(answer: str, more: dict, where: str) -> None:
    with pytest.raises(ToolCallOffSchema) as off:
        shape_answer(answer, params(**more))
    assert off.value.message == where
    assert isinstance(off.value, AnswerOffSchema) and off.value.retryable
    assert off.value.kind == "ToolCallOffSchema"  # its own retry budget


def test_a_json_schema_applies_to_a_plain_answer_beside_tools() -> None:
    schema = json.dumps({"type": "object", "properties": {"a": {"type": "integer"}}})
    both = params(json_schema=schema)
    prompt = format_prompt([Message(role="user", content="x")], "", both)
    assert prompt.endswith(f"If you answer in plain text, respond with one valid JSON object "
                           f"that matches the JSON Schema below and nothing else: no prose, no "
                           f"code fences. JSON Schema: {schema}")  # fmt: skip
    assert shape_answer('Here: {"a": 1}', both).text == '{"a": 1}'
    with pytest.raises(AnswerOffSchema):
        shape_answer('{"a": "one"}', both)
