"""LangChain's ``ChatOpenAI`` (langchain-openai) against ``chatgptes serve``, real workers and
the simulator: a LangChain app switches by setting ``base_url``, its default model included.
Tools too: ``bind_tools``, ``with_structured_output(method="function_calling")``, and
LangGraph's prebuilt ReAct agent with two tools, run to its final answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel

from tests.api_fleet import api_fleet

langchain_openai = pytest.importorskip("langchain_openai")

pytestmark = pytest.mark.e2e
KEY = "sk-langchain-0123456789"


class Person(BaseModel):
    name: str
    age: int


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Iterator[str]:
    with api_fleet(tmp_path_factory.mktemp("langchain"), redis_server, KEY) as (url, _):
        yield url


def chat_model(base_url: str, **options: object):
    return langchain_openai.ChatOpenAI(base_url=base_url, api_key=KEY, max_retries=0, **options)


def test_langchain_chat_structured_output_streaming_and_length(base_url: str) -> None:
    default = chat_model(base_url)  # LangChain's default model name
    answer = default.invoke([("system", "Be brief."), ("human", "What is Redis?")])
    assert "User: What is Redis?" in answer.content
    assert answer.response_metadata["model_name"] == default.model_name

    structured = chat_model(base_url, model="gpt-4o-mini").with_structured_output(Person)
    assert structured.invoke("Ada is 36.") == Person(name="echo", age=1)

    streamed = "".join(chunk.content for chunk in chat_model(base_url).stream("What is Redis?"))
    assert streamed.endswith("What is Redis?")

    cut = chat_model(base_url, max_tokens=5).invoke("What is Redis?")
    assert cut.response_metadata["finish_reason"] == "length"
    assert 0 < cut.usage_metadata["output_tokens"] <= 5

    assert [m.content.endswith(text) for m, text in zip(default.batch(["one", "two"]),
                                                       ("one", "two"), strict=True)] == [True, True]  # fmt: skip


def test_langchain_over_the_responses_api(base_url: str) -> None:
    model = chat_model(base_url, model="gpt-4.1-mini", use_responses_api=True)
    answer = model.invoke("What is Redis?")
    assert "What is Redis?" in answer.text
    assert model.with_structured_output(Person).invoke("Ada is 36.") == Person(name="echo", age=1)


def test_langchain_sees_openais_errors(base_url: str) -> None:
    with pytest.raises(openai.NotFoundError):
        chat_model(base_url, model="gpt-9").invoke("hi")
    with pytest.raises(openai.BadRequestError, match="only 'function' tools"):
        chat_model(base_url).bind_tools([{"type": "web_search"}]).invoke("hi")


@tool
def get_weather(city: str) -> str:
    """The weather in a city now."""
    return f"18 C and sunny in {city}"


@tool
def get_time(zone: str) -> str:
    """The time now in a time zone."""
    return f"12:00 in {zone}"


def test_bind_tools_and_structured_output_by_function_calling(base_url: str) -> None:
    model = chat_model(base_url, model="gpt-4o").bind_tools([get_weather, get_time])
    called = model.invoke("What is the weather in Paris? Use get_weather.")
    assert (
        isinstance(called, AIMessage) and called.response_metadata["finish_reason"] == "tool_calls"
    )
    weather = [("get_weather", {"city": "echo"})]
    assert [(c["name"], c["args"]) for c in called.tool_calls] == weather
    chunks = list(model.stream("What is the weather in Paris? Use get_weather."))
    streamed = sum(chunks[1:], chunks[0])  # the tool_call_chunks put back together
    assert [(c["name"], c["args"]) for c in streamed.tool_calls] == weather

    structured = chat_model(base_url, model="gpt-4o-mini").with_structured_output(
        Person, method="function_calling"
    )
    assert structured.invoke("Ada is 36.") == Person(name="echo", age=1)

    # json_mode: the schema is the prompt's to give, and the simulator answers one written there
    json_mode = chat_model(base_url).with_structured_output(Person, method="json_mode")
    schema = json.dumps(Person.model_json_schema())
    answer = json_mode.invoke(f"Answer with JSON of this schema: {schema}. Ada is 36.")
    assert answer == Person(name="echo", age=1)


# LangGraph 1.x points to langchain.agents.create_agent (another package); the prebuilt
# agent is still LangGraph's, and what people run.
@pytest.mark.filterwarnings("ignore:create_react_agent has been moved")
def test_a_react_agent_with_two_tools_reaches_its_final_answer(base_url: str) -> None:
    from langgraph.prebuilt import create_react_agent

    agent = create_react_agent(chat_model(base_url, model="gpt-4o"), [get_weather, get_time])
    ask = "Use get_weather and get_time for Paris."
    state = agent.invoke({"messages": [("user", ask)]})
    messages = state["messages"]
    results = [m.content for m in messages if isinstance(m, ToolMessage)]
    assert results == ["18 C and sunny in echo", "12:00 in echo"]
    final = messages[-1]
    assert isinstance(final, AIMessage) and not final.tool_calls
    assert (
        final.content
        == f"Echo: {ask} (get_weather: 18 C and sunny in echo; get_time: 12:00 in echo)"
    )
