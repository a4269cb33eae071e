"""The OpenAI Agents SDK (``openai-agents``) against ``chatgptes serve``, a real worker and
the simulator: an agent with one function tool runs to its final answer, over the
Responses API (the SDK's default; streamed too) and over chat completions.

Only the client differs from code written for OpenAI (its ``base_url`` and
``api_key``), and tracing is off: the SDK would export its traces to OpenAI, and no
test reaches the internet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from openai import AsyncOpenAI

from tests.api_fleet import api_fleet

agents = pytest.importorskip("agents", reason="openai-agents is in the dev extra")

pytestmark = pytest.mark.e2e
KEY = "sk-agents-0123456789abcdef"
ASK = "What is the weather in Paris? Use get_weather."


async def run_streamed(agent: object) -> object:
    result = agents.Runner.run_streamed(agent, ASK)
    async for _ in result.stream_events():  # each turn's events, as an app reads them
        pass
    return result


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Iterator[str]:
    agents.set_tracing_disabled(True)
    with api_fleet(tmp_path_factory.mktemp("agents"), redis_server, KEY) as (url, _):
        yield url


@agents.function_tool
def get_weather(city: str) -> str:
    """The weather in a city now."""
    return f"18 C and sunny in {city}"


@pytest.mark.parametrize("api", ["responses", "chat_completions", "responses streamed"])
def test_an_agent_with_a_function_tool_reaches_its_final_answer(base_url: str, api: str) -> None:
    client = AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0)
    agents.set_default_openai_client(client, use_for_tracing=False)
    agents.set_default_openai_api(api.removesuffix(" streamed"))
    agent = agents.Agent(name="Weather", instructions="Answer briefly.", model="gpt-4o",
                         tools=[get_weather])  # fmt: skip
    if api.endswith("streamed"):
        result = asyncio.run(run_streamed(agent))
    else:
        result = agents.Runner.run_sync(agent, ASK)
    calls = [item for item in result.new_items if item.type == "tool_call_output_item"]
    assert [call.output for call in calls] == ["18 C and sunny in echo"]
    assert result.final_output == f"Echo: {ASK} (get_weather: 18 C and sunny in echo)"
