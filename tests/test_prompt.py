import json
import re

import pytest
from pydantic import BaseModel

from contract.models import JobResult, Message, PromptRequest, RequestParams, check_model, utc_now
from worker import tokens
from worker.errors import AnswerNotJson, AnswerOffSchema
from worker.prompt import (
    DEFAULT_LANGUAGE_INSTRUCTION,
    JSON_INSTRUCTION,
    SCHEMA_INSTRUCTION,
    flatten_messages,
    format_prompt,
    shape_answer,
)


def test_one_message_is_its_content() -> None:
    assert flatten_messages([Message(role="user", content="Hola")]) == "Hola"


def test_several_messages_become_role_lines_and_assistant() -> None:
    messages = [
        Message(role="system", content="Be brief."),
        Message(role="user", content="Hi"),
        Message(role="assistant", content="Hello!"),
        Message(role="user", content="How are you?"),
    ]
    assert flatten_messages(messages) == (
        "System: Be brief.\nUser: Hi\nAssistant: Hello!\nUser: How are you?\nAssistant:"
    )


def test_language_instruction_prefixes_the_prompt() -> None:
    prompt = format_prompt([Message(role="user", content="Hola")])
    assert prompt == f"{DEFAULT_LANGUAGE_INSTRUCTION} Hola"
    assert DEFAULT_LANGUAGE_INSTRUCTION.startswith("Your default language is English.")
    assert DEFAULT_LANGUAGE_INSTRUCTION.endswith("User input:")


def test_language_instruction_can_be_changed_or_turned_off() -> None:
    messages = [Message(role="user", content="Hola")]
    assert format_prompt(messages, "Answer in Spanish.") == "Answer in Spanish. Hola"
    assert format_prompt(messages, "") == "Hola"


@pytest.mark.parametrize("model", ["gpt-4", "gpt-4o-2024-08-06", "ft:gpt-4o:org:x:1", "my-model"])
def test_a_worker_takes_any_model_name(model: str) -> None:
    assert check_model(model) == model  # which names are accepted is the producer's to say


def test_a_malformed_model_name_is_refused() -> None:
    with pytest.raises(ValueError, match="is not a model name"):
        check_model("gpt 4\x1b[2J")


def test_blank_message_content_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        Message(role="user", content="   ")


# --- request parameters: stop sequences and JSON mode -------------------------------------


def test_json_mode_asks_for_one_json_object_after_the_messages() -> None:
    prompt = format_prompt(
        [Message(role="user", content="Name three colours")], "", RequestParams(json_object=True)
    )
    assert prompt == f"Name three colours\n\n{JSON_INSTRUCTION}"
    assert format_prompt([Message(role="user", content="hi")], "") == "hi"


@pytest.mark.parametrize(
    ("answer", "stop", "shaped"),
    [
        ("one, two. three", (".",), "one, two"),
        ("one, two. three", ("three", ","), "one"),  # the first to occur, not the first given
        ("no stop here", ("END",), "no stop here"),
        ("END at once", ("END",), ""),
    ],
)
def test_stop_cuts_the_answer_before_the_first_stop_sequence(
    answer: str, stop: tuple[str, ...], shaped: str
) -> None:
    assert shape_answer(answer, RequestParams(stop=stop)).text == shaped


@pytest.mark.parametrize(
    ("answer", "kept"),
    [
        ('{"a": 1}', '{"a": 1}'),
        ('  {"a": [1, 2]}\n', '{"a": [1, 2]}'),
        ('Sure! Here it is:\n```json\n{"a": {"b": 2}}\n```', '{"a": {"b": 2}}'),
        ('Echo: {"echo": "x"}', '{"echo": "x"}'),
    ],
)
def test_json_mode_keeps_the_json_object_the_answer_holds(answer: str, kept: str) -> None:
    assert shape_answer(answer, RequestParams(json_object=True)).text == kept


@pytest.mark.parametrize("answer", ["I cannot do that", "[1, 2]", '"a string"', "{not: json}", ""])
def test_json_mode_refuses_an_answer_without_a_json_object(answer: str) -> None:
    with pytest.raises(AnswerNotJson, match="holds no JSON object"):
        shape_answer(answer, RequestParams(json_object=True))


def test_stop_applies_before_the_json_check() -> None:
    params = RequestParams(stop=("###",), json_object=True)
    assert shape_answer('{"a": 1}### and {"b": 2}', params).text == '{"a": 1}'


# --- structured outputs and max_tokens -----------------------------------------------------

PERSON = json.dumps(
    {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
)


def test_a_schema_is_sent_after_the_messages() -> None:
    prompt = format_prompt(
        [Message(role="user", content="Who?")], "", RequestParams(json_schema=PERSON)
    )
    assert prompt == f"Who?\n\n{SCHEMA_INSTRUCTION}{PERSON}"


def test_an_answer_matching_the_schema_is_kept() -> None:
    params = RequestParams(json_schema=PERSON)
    answer = 'Here: {"name": "Ada", "age": 36}'
    assert shape_answer(answer, params).text == '{"name": "Ada", "age": 36}'


@pytest.mark.parametrize(
    ("answer", "where"),
    [
        ('{"name": "Ada"}', "(the object)"),
        ('{"name": "Ada", "age": -1}', "age"),
        ('{"name": "Ada", "age": 1, "x": 2}', "(the object)"),
        ('{"name": 7, "age": 1}', "name"),
    ],
)
def test_an_answer_off_the_schema_is_an_answer_off_schema(answer: str, where: str) -> None:
    with pytest.raises(AnswerOffSchema, match=re.escape(f"at {where}:")) as raised:
        shape_answer(answer, RequestParams(json_schema=PERSON))
    assert isinstance(raised.value, AnswerNotJson)  # the same branch of the tree
    with pytest.raises(AnswerNotJson, match="holds no JSON object"):
        shape_answer("no object", RequestParams(json_schema=PERSON))


def test_pydantic_schemas_with_refs_are_followed() -> None:
    class Step(BaseModel):
        explanation: str

    class Steps(BaseModel):
        steps: list[Step]

    params = RequestParams(json_schema=json.dumps(Steps.model_json_schema()))
    assert shape_answer('{"steps": [{"explanation": "a"}]}', params)
    with pytest.raises(AnswerOffSchema, match="steps/0"):
        shape_answer('{"steps": [{"why": "a"}]}', params)


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4", "gpt-3.5-turbo", "gpt-4.1-mini"])
@pytest.mark.parametrize("limit", [1, 2, 5, 17])
def test_max_tokens_cuts_the_answer_at_that_many_tokens(model: str, limit: int) -> None:
    answer = "Héllo wörld, ünïcödé 😀 — a longer answer than any of the limits asked for here."
    shaped, cut, _ = shape_answer(answer, RequestParams(max_tokens=limit), model)
    assert answer.startswith(shaped) and shaped != answer and cut
    assert 0 < tokens.count(shaped, model) <= limit
    assert shape_answer("Hi", RequestParams(max_tokens=limit), model) == ("Hi", False, None)


def test_max_tokens_cuts_after_the_json_is_taken() -> None:
    params = RequestParams(json_object=True, max_tokens=3)
    shaped, cut, _ = shape_answer('Echo: {"echo": "a long echoed message"}', params)
    assert shaped.startswith("{") and tokens.count(shaped, "gpt-4o") <= 3 and cut


def test_finish_reason_is_length_when_max_tokens_cut_the_answer() -> None:
    request = PromptRequest(
        job_id="b.0", batch_id="b", custom_id="c", index=0, model="gpt-4o",
        messages=(Message(role="user", content="x"),), enqueued_at=utc_now(),
        params=RequestParams(max_tokens=5),
    )  # fmt: skip
    cut = JobResult.for_request(request, status="succeeded", content="a b", cut=True)
    whole = JobResult.for_request(request, status="succeeded", content="a b")
    failed = JobResult.for_request(request, status="failed")
    assert (cut.finish_reason, whole.finish_reason, failed.finish_reason) == (
        "length",
        "stop",
        None,
    )


def test_tokens_are_counted_with_the_encoding_of_the_models_family() -> None:
    assert tokens.encoding_name("gpt-4o-2024-08-06") == "o200k_base"
    assert tokens.encoding_name("gpt-4.1-mini") == "o200k_base"
    assert tokens.encoding_name("gpt-4-turbo") == "cl100k_base"
    assert tokens.encoding_name("gpt-3.5-turbo-0125") == "cl100k_base"
    assert tokens.encoding_name("some-other-model") == "o200k_base"


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-3.5-turbo"])
def test_a_special_token_s_text_is_counted_and_cut_as_ordinary_text(model: str) -> None:
    # The tokenizer's encode raises on "<|endoftext|>"; the site answered such a prompt,
    # so its usage must count it, not fail it after the answer came back.
    text = "say <|endoftext|> twice: <|endoftext|>"
    request = PromptRequest(
        job_id="b.0", batch_id="b", index=0, custom_id="c", enqueued_at=utc_now(),
        model=model, messages=[Message(role="user", content=text)],
    )  # fmt: skip
    usage = tokens.usage_of(request, text)
    assert usage.completion_tokens == tokens.count(text, model) > 10  # characters, not 1 token
    kept, was_cut = tokens.cut(text, 3, model)
    assert was_cut and tokens.count(kept, model) <= 3 and text.startswith(kept)
