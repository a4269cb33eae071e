"""The request-parameter policy (``producer.params``): what structured outputs and length
limits come to, as a worker is told of them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contract.models import RequestParams
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


def test_tools_stay_refused_saying_why() -> None:
    _, reasons = judged(tools=[{"type": "function", "function": {"name": "f"}}])
    assert reasons == ["body.tools: tool and function calls are not supported: "
                       "chatgpt.es cannot make them"]  # fmt: skip


def test_body_params_ask_for_what_request_params_tell() -> None:
    schema = json.dumps(PERSON, separators=(",", ":"))
    told = RequestParams(stop=("END",), json_schema=schema, max_tokens=3)
    reasons: list[str] = []
    again = request_params(check_body_params(body_params(told), reasons).params)
    assert reasons == [] and again == told
