"""LangChain's ``ChatOpenAI`` (langchain-openai) against ``chatgptes serve``, real workers and
the simulator: a LangChain app switches by setting ``base_url``, its default model included.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from pydantic import BaseModel

langchain_openai = pytest.importorskip("langchain_openai")

pytestmark = pytest.mark.e2e
KEY = "sk-langchain-0123456789"


class Person(BaseModel):
    name: str
    age: int


@pytest.fixture
def base_url(fleet) -> Iterator[str]:
    fleet.start_simulator("--latency", "fixed:20")
    fleet.start_workers(1, proxy_rate_per_second=0)
    yield fleet.start_api(api_keys=KEY)


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
    with pytest.raises(openai.BadRequestError, match="tool"):
        chat_model(base_url, model="gpt-4o").bind_tools([Person]).invoke("hi")
