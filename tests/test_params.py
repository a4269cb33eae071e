"""The request-parameter policy (``producer.params``): what structured outputs and length
limits come to, as a worker is told of them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contract.models import NamedTool, RequestParams
from producer.params import body_params, check_body_params, request_params

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}},
    "required": ["name"],
    "additionalProperties": False,
}


def judged(**body: Any) -> tuple[dict[str, Any], list[str]]:
    reasons: list[str] = []
    checked = check_body_params(body, reasons)
    return dict(checked.params), reasons


def test_a_json_schema_is_kept_for_the_worker() -> None:
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": PERSON, "strict": True},
    }
    params, reasons = judged(response_format=fmt)
    assert reasons == []
    assert params == {"response_format": {"type": "json_schema", "schema": PERSON}}
    told = request_params(params)
    assert json.loads(told.json_schema or "") == PERSON and told.wants_json


def test_a_json_schema_without_a_schema_asks_for_any_object() -> None:
    params, _ = judged(response_format={"type": "json_schema", "json_schema": {"name": "any"}})
    assert json.loads(request_params(params).json_schema or "") == {"type": "object"}


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (None, "must be an object with 'name' and 'schema', got null"),
        ({"schema": PERSON}, "name must be 1-64 letters, digits, '_' or '-', got null"),
        ({"name": "a b", "schema": PERSON}, "name must be 1-64 letters"),
        ({"name": "p", "schema": PERSON, "strict": "yes"}, "strict must be true or false"),
        ({"name": "p", "schema": PERSON, "colour": 1}, "unknown key 'colour'"),
        ({"name": "p", "schema": [1]}, "schema must be an object (a JSON Schema), got an array"),
        ({"name": "p", "schema": {"type": "array"}}, "schema must describe an object"),
        ({"name": "p", "schema": {"type": "object", "properties": {"a": {"type": 5}}}},
         "schema is not a valid JSON Schema at properties/a/type"),
    ],
)  # fmt: skip
def test_a_bad_json_schema_is_refused_saying_why(spec: Any, problem: str) -> None:
    _, reasons = judged(response_format={"type": "json_schema", "json_schema": spec})
    assert len(reasons) == 1 and reasons[0].startswith("body.response_format.json_schema: ")
    assert problem in reasons[0]


@pytest.mark.parametrize(
    ("body", "limit"),
    [({"max_tokens": 5}, 5), ({"max_completion_tokens": 7}, 7),
     ({"max_tokens": 9, "max_completion_tokens": 4}, 4)],
)  # fmt: skip
def test_max_tokens_are_honoured_not_warned_about(body: dict[str, Any], limit: int) -> None:
    reasons: list[str] = []
    checked = check_body_params(body, reasons)
    assert (reasons, checked.warnings) == ([], ())
    assert request_params(checked.params).max_tokens == limit


WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def tool(name: str, parameters: Any = WEATHER, **more: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": parameters, **more}}


def test_tools_are_kept_for_the_worker_and_asked_back_the_same() -> None:
    body = {"tools": [tool("get_weather", description="Weather now", strict=True), tool("noop", None)],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": False}  # fmt: skip
    params, reasons = judged(**body)
    assert reasons == []
    told = request_params(params)
    assert json.loads(told.tools or "") == [
        {
            "name": "get_weather",
            "description": "Weather now",
            "parameters": WEATHER,
            "strict": True,
        },
        {"name": "noop", "parameters": {"type": "object", "properties": {}}},
    ]
    assert told.tool_choice == NamedTool(name="get_weather") and told.parallel_tool_calls is False
    assert told.given and told.calls_tools and not told.wants_json
    again = body_params(told)
    assert again["tool_choice"] == body["tool_choice"] and again["parallel_tool_calls"] is False
    assert request_params(judged(**again)[0]) == told


@pytest.mark.parametrize(
    ("choice", "kept"), [("required", "required"), ("none", "none"), ("auto", None)]
)
def test_a_tool_choice_mode_is_kept_unless_it_is_the_default(choice: str, kept: Any) -> None:
    told = request_params(judged(tools=[tool("f")], tool_choice=choice)[0])
    assert told.tool_choice == kept and told.calls_tools == (choice != "none")


def test_choices_that_change_nothing_without_tools_are_dropped() -> None:
    assert judged(tool_choice="none", parallel_tool_calls=True) == ({}, [])
    assert judged(tool_choice="auto") == ({}, [])


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"tools": []}, "body.tools: must be a list of 1 to 128 function tools, got a list of 0"),
        ({"tools": {"name": "f"}}, "body.tools: must be a list of 1 to 128 function tools, got an object"),
        ({"tools": [{"type": "web_search"}]}, "body.tools[0].type: only 'function' tools can be emulated, got 'web_search'"),
        ({"tools": [tool("a b")]}, "body.tools[0].function.name: must be 1-64 letters, digits, '_' or '-', got 'a b'"),
        ({"tools": [tool("f"), tool("f")]}, "body.tools[1].function.name: 'f' is already the name of tools[0]"),
        ({"tools": [tool("f", {"type": "array"})]}, "body.tools[0].function.parameters: must describe an object (type 'object'), not 'array'"),
        ({"tools": [tool("f", {"type": "object", "properties": {"a": {"type": 5}}})]},
         "body.tools[0].function.parameters: not a valid JSON Schema at properties/a/type"),
        ({"tools": [tool("f", strict="yes")]}, "body.tools[0].function.strict: must be true or false, got 'yes'"),
        ({"tools": [tool("f", colour=1)]}, "body.tools[0].function: unknown key 'colour'"),
        ({"tools": [tool("f")], "tool_choice": "any"}, "body.tool_choice: must be 'auto', 'none', 'required' or"),
        ({"tools": [tool("f")], "tool_choice": {"type": "function", "function": {"name": "g"}}},
         "body.tool_choice.function.name: 'g' is not one of the tools given"),
        ({"tool_choice": "required"}, "body.tool_choice: a call is required, but no 'tools' are given"),
        ({"tools": [tool("f")], "parallel_tool_calls": "no"}, "body.parallel_tool_calls: must be true or false"),
        ({"functions": [{"name": "f"}]}, "body.functions: the legacy functions API is not supported: send 'tools'"),
    ],
)  # fmt: skip
def test_bad_tools_are_refused_saying_where(body: dict[str, Any], reason: str) -> None:
    _, reasons = judged(**body)
    assert len(reasons) == 1 and reasons[0].startswith(reason), reasons


def test_body_params_ask_for_what_request_params_tell() -> None:
    schema = json.dumps(PERSON, separators=(",", ":"))
    told = RequestParams(stop=("END",), json_schema=schema, max_tokens=3)
    reasons: list[str] = []
    again = request_params(check_body_params(body_params(told), reasons).params)
    assert reasons == [] and again == told
