import pytest

from contract.models import Message, check_model
from worker.prompt import DEFAULT_LANGUAGE_INSTRUCTION, flatten_messages, format_prompt


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
