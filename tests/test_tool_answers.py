"""What the simulator answers to prompts that offer functions (``simulator.tool_answers``),
to schemas written in a prompt, and to the magic word that puts answers off their schema
(``simulator.schema_answers``). Prompts are written by the worker's own ``format_prompt``,
so the two cannot drift apart unseen."""

from __future__ import annotations

import json

import pytest

from contract.models import Message, NamedTool, RequestParams, ToolCall
from simulator.app import echoed
from simulator.schema_answers import off_instance_of, schema_written_in
from simulator.tool_answers import tool_prompt
from worker.prompt import DEFAULT_LANGUAGE_INSTRUCTION, format_prompt

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TIME = {"type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}}}
TOOLS = json.dumps([{"name": "get_weather", "parameters": WEATHER},
                    {"name": "get_time", "parameters": TIME}])  # fmt: skip


def answer(messages: list[Message], **params: object) -> str:
    prompt = format_prompt(
        messages, DEFAULT_LANGUAGE_INSTRUCTION, RequestParams(tools=TOOLS, **params)
    )
    return echoed(prompt)


def called(text: str) -> list[tuple[str, object]]:
    return [(call["name"], call["arguments"]) for call in json.loads(text)["tool_calls"]]


def user(text: str) -> Message:
    return Message(role="user", content=text)


def results(*names: str) -> list[Message]:
    """An assistant's calls of ``names`` and a result for each."""
    calls = tuple(
        ToolCall(id=f"call_{n}", name=name, arguments="{}") for n, name in enumerate(names)
    )
    return [Message(role="assistant", content="", tool_calls=calls),
            *(Message(role="tool", content=f"{name} says hi", tool_call_id=call.id)
              for name, call in zip(names, calls, strict=True))]  # fmt: skip


def test_the_worker_prompt_is_read_back() -> None:
    prompt = format_prompt([user("x")], "", RequestParams(tools=TOOLS, parallel_tool_calls=False))
    read = tool_prompt(prompt)
    assert read is not None and read.conversation == "x"
    assert read.functions == {"get_weather": WEATHER, "get_time": TIME}
    assert (read.named, read.required, read.one_call) == (None, False, True)
    named = tool_prompt(format_prompt([user("x")], "", RequestParams(
        tools=TOOLS, tool_choice=NamedTool(name="get_time"))))  # fmt: skip
    assert named is not None and named.named == "get_time"
    assert tool_prompt("You can call functions, but not here.") is None


def test_the_functions_a_request_names_are_called_then_answered() -> None:
    ask = [user("Use get_weather and get_time.")]
    assert called(answer(ask)) == [("get_weather", {"city": "echo"}), ("get_time", {"zone": "UTC"})]
    assert answer([*ask, *results("get_weather", "get_time")]) == \
        "Use get_weather and get_time. (get_weather: get_weather says hi; get_time: get_time says hi)"  # fmt: skip


def test_one_call_at_a_time_goes_on_until_every_function_answered() -> None:
    ask = [user("Use get_weather and get_time.")]
    assert called(answer(ask, parallel_tool_calls=False)) == [("get_weather", {"city": "echo"})]
    after_one = [*ask, *results("get_weather")]
    assert called(answer(after_one, parallel_tool_calls=False)) == [("get_time", {"zone": "UTC"})]
    assert answer([*after_one, *results("get_time")], parallel_tool_calls=False) == (
        "Use get_weather and get_time. (get_weather: get_weather says hi; get_time: get_time "
        "says hi)"
    )


def test_a_plain_answer_in_json_mode_is_an_object() -> None:
    done = [user("Use get_weather."), *results("get_weather")]
    assert json.loads(answer(done, json_object=True)) == {
        "echo": "Use get_weather. (get_weather: get_weather says hi)"}  # fmt: skip


def test_a_request_naming_no_function_gets_the_first_then_an_answer() -> None:
    assert called(answer([user("Hello")])) == [("get_weather", {"city": "echo"})]
    assert (
        answer([user("Hello"), *results("get_weather")])
        == "Hello (get_weather: get_weather says hi)"
    )


def test_a_required_or_named_call_is_always_made() -> None:
    done = [user("Use get_weather."), *results("get_weather")]
    assert called(answer(done, tool_choice="required")) == [("get_weather", {"city": "echo"})]
    assert called(answer(done, tool_choice=NamedTool(name="get_time"))) == [
        ("get_time", {"zone": "UTC"})
    ]


def test_the_magic_word_puts_the_arguments_off_the_schema() -> None:
    assert called(answer([user("Use get_weather, offschema.")])) == [("get_weather", {"city": 0})]
    no_arguments = json.dumps(
        [{"name": "ping", "parameters": {"type": "object", "properties": {}}}]
    )
    prompt = format_prompt([user("offschema")], "", RequestParams(tools=no_arguments))
    assert called(echoed(prompt)) == [("ping_not_offered", {})]
    schema = json.dumps(WEATHER)
    assert json.loads(echoed(format_prompt([user("offschema")], "", RequestParams(json_schema=schema)))) \
        == {"city": 0}  # fmt: skip


def test_a_schema_written_in_the_prompt_is_answered_with_an_instance() -> None:
    schema = {"properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "title": "Person", "type": "object"}  # fmt: skip
    instructor_json = ("As a genius expert, your task is to understand the content and provide "
                       "the parsed objects in json that match the following json_schema:\n\n"
                       f"{json.dumps(schema, indent=2)}\n\nMake sure to return an instance of "
                       "the JSON, not the schema itself")  # fmt: skip
    assert schema_written_in(instructor_json) == schema
    assert json.loads(echoed(f"{instructor_json}\nUser: Ada is 36.")) == {"name": "echo", "age": 1}
    assert schema_written_in('No schema here: {"properties": 1}') is None
    assert echoed("Say {hi}") == "Say {hi}"  # no schema: the echo as before


@pytest.mark.parametrize(
    ("schema", "off"),
    [(WEATHER, {"city": 0}), (TIME, {"zone": 0}),
     ({"type": "object", "properties": {"n": {"type": "integer"}}}, {"n": "off the schema"}),
     ({"type": "object"}, None)],
)  # fmt: skip
def test_an_instance_off_the_schema(schema: dict, off: object) -> None:
    assert off_instance_of(schema) == off
