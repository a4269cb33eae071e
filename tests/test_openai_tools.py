"""The official ``openai`` SDK calling tools against ``chatgptes serve``, a real worker and
the simulator: ``tools``, ``tool_choice``, ``pydantic_function_tool`` and ``.parse()``,
streaming, the Responses API, and a loop that sends the tool's result back. Only
``base_url`` and ``api_key`` differ from code written for OpenAI.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel, Field

from tests.api_fleet import api_fleet
from tests.conftest import Fleet
from worker.config import DEFAULT_RETRY_BUDGETS

pytestmark = pytest.mark.e2e
KEY = "sk-tools-0123456789abcdef"
ASK = "What is the weather in Paris? Use get_weather."
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"], "additionalProperties": False},
        "strict": True,
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Iterator[tuple]:
    with api_fleet(tmp_path_factory.mktemp("openai-tools"), redis_server, KEY) as served:
        yield served


@pytest.fixture(scope="module")
def client(served: tuple[str, Fleet]) -> Iterator[OpenAI]:
    with OpenAI(base_url=served[0], api_key=KEY, max_retries=0, timeout=60) as sdk:
        yield sdk


def get_weather(city: str) -> str:
    return f"18 C and sunny in {city}"


def test_a_tool_loop_sends_the_result_back_and_gets_the_answer(client: OpenAI) -> None:
    messages: list = [{"role": "user", "content": ASK}]
    first = client.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER_TOOL])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    messages.append(choice.message)  # as OpenAI's own examples do: the message object itself
    arguments = json.loads(call.function.arguments)
    messages.append({"role": "tool", "tool_call_id": call.id, "content": get_weather(**arguments)})
    final = client.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER_TOOL])
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == f"Echo: {ASK} (get_weather: 18 C and sunny in echo)"
    assert final.usage is not None and final.usage.prompt_tokens > first.usage.prompt_tokens


class GetTime(BaseModel):
    """The time now in a time zone."""

    zone: str = Field(description="An IANA time zone")


class Lookup(BaseModel):
    """Looks a word up."""

    word: str
    limit: int


def test_pydantic_function_tools_and_parse(client: OpenAI) -> None:
    tools = [openai.pydantic_function_tool(GetTime), openai.pydantic_function_tool(Lookup)]
    parsed = client.chat.completions.parse(
        model="gpt-4o-mini", tools=tools, tool_choice={"type": "function",
                                                       "function": {"name": "Lookup"}},
        messages=[{"role": "user", "content": "Look 'redis' up."}],
    )  # fmt: skip
    (call,) = parsed.choices[0].message.tool_calls or []
    assert call.function.parsed_arguments == Lookup(word="echo", limit=1)

    required = client.chat.completions.parse(
        model="gpt-4o", tools=tools, tool_choice="required",
        messages=[{"role": "user", "content": "Which time is it in Paris? Use GetTime."}],
    )  # fmt: skip
    assert required.choices[0].message.tool_calls[0].function.parsed_arguments == GetTime(
        zone="echo"
    )

    none = client.chat.completions.create(model="gpt-4o", tools=tools, tool_choice="none",
                                          messages=[{"role": "user", "content": "Hi"}])  # fmt: skip
    assert none.choices[0].message.tool_calls is None and none.choices[0].finish_reason == "stop"


def test_streamed_tool_calls(client: OpenAI) -> None:
    tools = [WEATHER_TOOL, openai.pydantic_function_tool(GetTime)]
    ask = [{"role": "user", "content": "Use get_weather and GetTime for Paris."}]
    with client.chat.completions.stream(model="gpt-4o", messages=ask, tools=tools) as stream:
        done = [event for event in stream if event.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()
    assert [event.name for event in done] == ["get_weather", "GetTime"]
    assert final.choices[0].finish_reason == "tool_calls"
    calls = final.choices[0].message.tool_calls or []
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "echo"}, {"zone": "echo"}]
    raw = client.chat.completions.create(model="gpt-4o", messages=ask, tools=tools, stream=True,
                                         parallel_tool_calls=False)  # fmt: skip
    deltas = [c.choices[0].delta for c in raw if c.choices]
    assert {call.index for d in deltas for call in d.tool_calls or []} == {0}


def test_the_responses_api_calls_a_function(client: OpenAI) -> None:
    tool = {"type": "function", **WEATHER_TOOL["function"]}
    response = client.responses.create(model="gpt-4o", input=ASK, tools=[tool])
    (call,) = response.output
    assert call.type == "function_call" and call.name == "get_weather"
    output = {"type": "function_call_output", "call_id": call.call_id,
              "output": get_weather(**json.loads(call.arguments))}  # fmt: skip
    final = client.responses.create(model="gpt-4o", tools=[tool],
                                    input=[{"role": "user", "content": ASK}, call, output])  # fmt: skip
    assert final.output_text == f"Echo: {ASK} (get_weather: 18 C and sunny in echo)"
    events = list(client.responses.create(model="gpt-4o", input=ASK, tools=[tool], stream=True))
    arguments = "".join(
        e.delta for e in events if e.type == "response.function_call_arguments.delta"
    )
    assert json.loads(arguments) == {"city": "echo"} and events[-1].type == "response.completed"


def test_a_call_off_its_schema_is_asked_again_then_fails_typed(
    client: OpenAI, served: tuple[str, Fleet]
) -> None:
    before = served[1].sim_stats()["answered_duplicates"]
    with pytest.raises(openai.InternalServerError) as off:
        client.chat.completions.create(
            model="gpt-4o", tools=[WEATHER_TOOL],
            messages=[{"role": "user", "content": "Use get_weather, offschema."}],
        )  # fmt: skip
    assert off.value.code == "tool_call_invalid"
    assert off.value.message.endswith("tool_calls[0] (get_weather): the arguments do not match "
                                      "its schema at city: 0 is not of type 'string'")  # fmt: skip
    assert off.value.response.headers["x-should-retry"] == "false"
    asked_again = served[1].sim_stats()["answered_duplicates"] - before
    assert asked_again == DEFAULT_RETRY_BUDGETS["ToolCallOffSchema"] == 2


def test_the_readmes_tools_example_runs(served: tuple[str, Fleet], capsys) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("### Tools") :]
    start = section.index("```python\n") + len("```python\n")
    example = section[start : section.index("\n```", start)]
    example = example.replace("http://127.0.0.1:8000/v1", served[0]).replace("sk-…", KEY)
    exec(compile(example, "README.md (Tools)", "exec"), {})
    assert capsys.readouterr().out == (
        "Echo: What is the weather in Paris? (get_weather: 18 C in echo)\n"
    )
