import pytest

from contract.models import Message, RequestParams, check_model
from worker.errors import AnswerNotJson
from worker.prompt import (
    DEFAULT_LANGUAGE_INSTRUCTION,
    JSON_INSTRUCTION,
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


@pytest.mark.parametrize("model", ["gpt-4", "gpt-4o", "gpt-4o-mini"])
def test_known_models_pass(model: str) -> None:
    assert check_model(model) == model


def test_unknown_model_error_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"'gpt-5'.*gpt-4, gpt-4o, gpt-4o-mini"):
        check_model("gpt-5")


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
    assert shape_answer(answer, RequestParams(stop=stop)) == shaped


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
    assert shape_answer(answer, RequestParams(json_object=True)) == kept


@pytest.mark.parametrize("answer", ["I cannot do that", "[1, 2]", '"a string"', "{not: json}", ""])
def test_json_mode_refuses_an_answer_without_a_json_object(answer: str) -> None:
    with pytest.raises(AnswerNotJson, match="holds no JSON object"):
        shape_answer(answer, RequestParams(json_object=True))


def test_stop_applies_before_the_json_check() -> None:
    params = RequestParams(stop=("###",), json_object=True)
    assert shape_answer('{"a": 1}### and {"b": 2}', params) == '{"a": 1}'
