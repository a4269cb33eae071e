from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from contract.models import Message
from producer.inputs import (
    MAX_LISTED_PROBLEMS,
    InputFileError,
    LineProblem,
    PromptLine,
    parse_prompt_lines,
    read_prompt_file,
)

LIMITS: dict[str, Any] = {"default_model": "gpt-4o", "max_prompt_chars": 1000}
USER_HI = [{"role": "user", "content": "hi"}]


def jsonl(*objects: Any) -> list[str]:
    return [obj if isinstance(obj, str) else json.dumps(obj) for obj in objects]


def parse(*objects: Any, **overrides: Any) -> list[PromptLine]:
    return parse_prompt_lines(jsonl(*objects), **{**LIMITS, **overrides})


def problems_of(*objects: Any, **overrides: Any) -> list[LineProblem]:
    with pytest.raises(InputFileError) as caught:
        parse(*objects, **overrides)
    return list(caught.value.problems)


def only_reason(*objects: Any, **overrides: Any) -> str:
    problems = problems_of(*objects, **overrides)
    assert len(problems) == 1, problems
    return problems[0].reason


def openai_request(body: Any, **envelope: Any) -> dict[str, Any]:
    return {"method": "POST", "url": "/v1/chat/completions", "body": body, **envelope}


# --- the two forms and their defaults ---


def test_native_line_with_every_field() -> None:
    [prompt] = parse(
        {
            "custom_id": "q1",
            "model": "gpt-4",
            "messages": [{"role": "system", "content": "be brief"}, *USER_HI],
        }
    )
    assert prompt == PromptLine(
        line_number=1,
        custom_id="q1",
        messages=(Message(role="system", content="be brief"), Message(role="user", content="hi")),
        model="gpt-4",
    )


def test_custom_id_defaults_to_line_number_and_model_to_default() -> None:
    prompts = parse({"messages": USER_HI}, "", {"messages": USER_HI})
    assert [(p.line_number, p.custom_id, p.model) for p in prompts] == [
        (1, "1", "gpt-4o"),
        (3, "3", "gpt-4o"),
    ]


def test_openai_batch_request_line() -> None:
    body = {"model": "gpt-4o-mini", "messages": USER_HI, "temperature": 0.2, "max_tokens": 9}
    [prompt] = parse(openai_request(body, custom_id="r1"))
    assert (prompt.custom_id, prompt.model) == ("r1", "gpt-4o-mini")
    assert prompt.messages == (Message(role="user", content="hi"),)


def test_openai_line_without_model_uses_default() -> None:
    [prompt] = parse(openai_request({"messages": USER_HI}, custom_id="r1"))
    assert prompt.model == "gpt-4o"


def test_blank_lines_are_skipped_but_counted() -> None:
    lines = ["", "   \t", json.dumps({"messages": USER_HI}) + "\r\n", "\n"]
    [prompt] = parse_prompt_lines(lines, **LIMITS)
    assert (prompt.line_number, prompt.custom_id) == (3, "3")


def test_leading_byte_order_mark_is_ignored() -> None:
    [prompt] = parse_prompt_lines(["\ufeff" + json.dumps({"messages": USER_HI})], **LIMITS)
    assert prompt.custom_id == "1"


def test_text_content_parts_are_joined() -> None:
    parts = [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]
    [prompt] = parse({"messages": [{"role": "user", "content": parts}]})
    assert prompt.messages[0].content == "first\nsecond"


def test_message_name_is_accepted_and_dropped() -> None:
    [prompt] = parse({"messages": [{"role": "user", "content": "hi", "name": "ann"}]})
    assert prompt.messages == (Message(role="user", content="hi"),)


# --- model override and default ---


def test_model_override_replaces_every_model_without_checking_lines() -> None:
    prompts = parse(
        {"messages": USER_HI, "model": "gpt-4"},
        {"messages": USER_HI, "model": "no-such-model"},
        {"messages": USER_HI},
        model_override="gpt-4o-mini",
    )
    assert {p.model for p in prompts} == {"gpt-4o-mini"}


def test_bad_model_override_is_one_value_error() -> None:
    with pytest.raises(
        ValueError, match=r"model override: unknown model 'gpt-5'.*gpt-4o"
    ) as caught:
        parse({"messages": USER_HI}, {"messages": USER_HI}, model_override="gpt-5")
    assert not isinstance(caught.value, InputFileError)


def test_bad_default_model_is_one_value_error() -> None:
    with pytest.raises(ValueError, match="default model: unknown model 'nope'"):
        parse({"messages": USER_HI}, default_model="nope")


def test_unknown_model_names_the_valid_ones() -> None:
    reason = only_reason({"messages": USER_HI, "model": "gpt-5"})
    assert reason == "model: unknown model 'gpt-5'; valid models: gpt-4, gpt-4o, gpt-4o-mini"


def test_model_must_be_a_string() -> None:
    assert only_reason({"messages": USER_HI, "model": 4}) == "model: must be a string, got a number"


# --- one rule per test ---


def test_json_syntax_error() -> None:
    reason = only_reason('{"messages": [}')
    assert reason.startswith("not valid JSON: ") and "column 15" in reason


def test_line_must_be_an_object() -> None:
    assert only_reason("[1, 2]") == "expected a JSON object, got an array"
    assert only_reason('"text"') == "expected a JSON object, got a string"


def test_invalid_utf8_is_reported_on_its_line(tmp_path: Path) -> None:
    path = tmp_path / "prompts.jsonl"
    good = json.dumps({"messages": USER_HI}).encode()
    path.write_bytes(good + b"\n" + b'{"messages": "\xff"}\n' + good + b"\n")
    with pytest.raises(InputFileError) as caught:
        read_prompt_file(str(path), **LIMITS)
    assert caught.value.problems == (LineProblem(2, "not valid UTF-8 text"),)


def test_messages_missing() -> None:
    reason = only_reason({"custom_id": "a"})
    assert reason == "messages: missing; expected a non-empty list of messages"


@pytest.mark.parametrize(
    ("messages", "got"), [([], "an empty list"), ("hi", "a string"), ({}, "an object")]
)
def test_messages_must_be_a_non_empty_list(messages: Any, got: str) -> None:
    reason = only_reason({"messages": messages})
    assert reason == f"messages: must be a non-empty list of messages, got {got}"


def test_message_must_be_an_object() -> None:
    reason = only_reason({"messages": ["hi", *USER_HI]})
    assert reason == "messages[0]: must be an object with role and content, got a string"


def test_role_must_be_known() -> None:
    messages = [*USER_HI, {"role": "assistant", "content": "x"}, {"role": "bot", "content": "y"}]
    reason = only_reason({"messages": messages})
    assert reason == "messages[2].role: 'bot' is not one of system, user, assistant"


def test_role_missing() -> None:
    reason = only_reason({"messages": [{"content": "hi"}]})
    assert reason == "messages[0].role: missing; expected one of system, user, assistant"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "must be a non-empty string, got only whitespace"),
        ("  \n", "must be a non-empty string, got only whitespace"),
        (7, "must be a non-empty string or a list of text parts; got 7"),
        (None, "must be a non-empty string or a list of text parts; got null"),
        ([], "must be a non-empty string or a list of text parts; got an array"),
    ],
)
def test_content_must_be_non_empty_text(content: Any, expected: str) -> None:
    reason = only_reason({"messages": [{"role": "user", "content": content}]})
    assert reason == f"messages[0].content: {expected}"


def test_content_missing() -> None:
    reason = only_reason({"messages": [{"role": "user"}]})
    assert (
        reason == "messages[0].content: must be a non-empty string or a list of text parts; missing"
    )


def test_image_parts_are_rejected_clearly() -> None:
    parts = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {}}]
    reason = only_reason({"messages": [{"role": "user", "content": parts}]})
    assert reason == (
        "messages[0].content[1]: image parts are not supported; chatgpt.es takes text only"
    )


def test_other_part_types_are_rejected() -> None:
    parts = [{"type": "input_audio", "input_audio": {}}]
    reason = only_reason({"messages": [{"role": "user", "content": parts}]})
    assert reason == (
        "messages[0].content[0].type: 'input_audio' parts are not supported; only 'text' parts are"
    )


def test_text_part_needs_text() -> None:
    reason = only_reason({"messages": [{"role": "user", "content": [{"type": "text"}]}]})
    assert reason == "messages[0].content[0].text: must be a string, got null"


def test_blank_text_parts_are_blank_content() -> None:
    parts = [{"type": "text", "text": " "}]
    reason = only_reason({"messages": [{"role": "user", "content": parts}]})
    assert reason == "messages[0].content: must be a non-empty string, got only whitespace"


def test_unknown_message_key() -> None:
    reason = only_reason({"messages": [{"role": "user", "content": "hi", "tool_calls": []}]})
    assert reason == "messages[0]: unknown key 'tool_calls'; expected only content, name, role"


def test_last_message_must_be_the_users() -> None:
    messages = [*USER_HI, {"role": "assistant", "content": "hello"}]
    reason = only_reason({"messages": messages})
    assert reason == "messages[1].role: the last message must be the user's, not 'assistant'"


def test_prompt_size_counts_every_message() -> None:
    messages = [{"role": "system", "content": "s" * 600}, {"role": "user", "content": "u" * 401}]
    reason = only_reason({"messages": messages}, max_prompt_chars=1000)
    assert reason == "prompt is 1,001 characters over all messages; the limit is 1,000"
    assert parse({"messages": [*messages[:1], {"role": "user", "content": "u" * 400}]})


def test_duplicate_custom_id_names_the_first_line() -> None:
    problems = problems_of(
        {"custom_id": "a", "messages": USER_HI},
        {"custom_id": "b", "messages": USER_HI},
        {"custom_id": "a", "messages": USER_HI},
        {"custom_id": "a", "messages": USER_HI},
    )
    assert problems == [
        LineProblem(3, "custom_id: 'a' is already used on line 1"),
        LineProblem(4, "custom_id: 'a' is already used on line 1"),
    ]


def test_explicit_id_colliding_with_an_earlier_default_id() -> None:
    reason = only_reason({"messages": USER_HI}, {"custom_id": "1", "messages": USER_HI})
    assert reason.startswith("custom_id: '1' is already the default id of line 1")


def test_default_id_colliding_with_an_earlier_explicit_id() -> None:
    reason = only_reason({"custom_id": "2", "messages": USER_HI}, {"messages": USER_HI})
    assert reason == (
        "custom_id: not given, and the default (the line number, '2') is already used on line 1"
    )


def test_duplicate_of_a_bad_line_is_still_reported() -> None:
    problems = problems_of({"custom_id": "a"}, {"custom_id": "a", "messages": USER_HI})
    assert [p.line_number for p in problems] == [1, 2]


@pytest.mark.parametrize(
    ("custom_id", "expected"),
    [
        ("", "custom_id: must be a non-empty string, got ''"),
        ("  ", "custom_id: must be a non-empty string, got '  '"),
        (5, "custom_id: must be a non-empty string, got 5"),
        (None, "custom_id: must be a non-empty string, got null"),
        ("x" * 257, "custom_id: 257 characters is longer than the limit of 256"),
    ],
)
def test_custom_id_must_be_a_short_non_empty_string(custom_id: Any, expected: str) -> None:
    assert only_reason({"custom_id": custom_id, "messages": USER_HI}) == expected


def test_custom_id_of_256_characters_is_fine() -> None:
    assert parse({"custom_id": "x" * 256, "messages": USER_HI})[0].custom_id == "x" * 256


def test_unknown_top_level_key_catches_typos() -> None:
    problems = problems_of({"mesages": USER_HI})
    assert [p.reason for p in problems] == [
        "unknown key 'mesages'; expected only custom_id, messages, model",
        "messages: missing; expected a non-empty list of messages",
    ]


def test_openai_wrong_method_and_url() -> None:
    problems = problems_of(
        openai_request({"messages": USER_HI}, method="GET", url="/v1/embeddings")
    )
    assert [p.reason for p in problems] == [
        "method: must be 'POST' (OpenAI batch form), got 'GET'",
        "url: must be '/v1/chat/completions' (OpenAI batch form), got '/v1/embeddings'",
    ]


def test_openai_body_missing_or_not_an_object() -> None:
    assert only_reason({"method": "POST", "url": "/v1/chat/completions"}) == (
        "body: missing (OpenAI batch form)"
    )
    assert (
        only_reason(openai_request([1]))
        == "body: must be an object, got an array (OpenAI batch form)"
    )


def test_openai_body_fields_are_named_by_path() -> None:
    body = {"model": "gpt-5", "messages": [{"role": "bot", "content": "x"}]}
    assert [p.reason for p in problems_of(openai_request(body))] == [
        "body.messages[0].role: 'bot' is not one of system, user, assistant",
        "body.model: unknown model 'gpt-5'; valid models: gpt-4, gpt-4o, gpt-4o-mini",
    ]


def test_openai_unknown_envelope_key() -> None:
    reason = only_reason(openai_request({"messages": USER_HI}, messages=USER_HI))
    assert reason == "unknown key 'messages'; expected only body, custom_id, method, url"


def test_empty_input_is_an_error() -> None:
    for lines in ([], ["", "  "]):
        with pytest.raises(InputFileError, match=r"no prompts in p\.jsonl") as caught:
            parse_prompt_lines(lines, source="p.jsonl", **LIMITS)
        assert caught.value.problems == ()


# --- the whole-file report ---


def test_mixed_file_lists_every_bad_line_and_enqueues_nothing() -> None:
    lines = jsonl(
        {"custom_id": "ok1", "messages": USER_HI},
        "{broken",
        {"custom_id": "ok2", "messages": USER_HI},
        "",
        {"messages": [{"role": "bot", "content": "x"}]},
        {"custom_id": "ok1", "messages": USER_HI},
        {"messages": USER_HI, "model": "gpt-9"},
        {"custom_id": "ok3", "messages": USER_HI},
        openai_request({"messages": USER_HI}, method="PUT"),
    )
    with pytest.raises(InputFileError) as caught:
        parse_prompt_lines(lines, source="prompts.jsonl", **LIMITS)
    error = caught.value
    assert sorted({p.line_number for p in error.problems}) == [2, 5, 6, 7, 9]
    text = str(error)
    assert text.startswith("5 bad lines in prompts.jsonl:\n  line 2: not valid JSON")
    for number in (2, 5, 6, 7, 9):
        assert f"\n  line {number}: " in text
    assert isinstance(error, ValueError)


def test_one_bad_line_is_singular() -> None:
    with pytest.raises(InputFileError, match=r"^1 bad line in <input>:\n  line 1: "):
        parse("[]")


def test_listed_problems_are_capped() -> None:
    lines = ["[]"] * (MAX_LISTED_PROBLEMS + 7)
    with pytest.raises(InputFileError) as caught:
        parse_prompt_lines(lines, **LIMITS)
    text = str(caught.value)
    assert len(caught.value.problems) == MAX_LISTED_PROBLEMS + 7
    assert text.count("\n  line ") == MAX_LISTED_PROBLEMS
    assert text.endswith("\n  ... and 7 more problems")


# --- files and stdin ---


def test_read_prompt_file(tmp_path: Path) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        "\n".join(jsonl({"messages": USER_HI}, {"custom_id": "b", "messages": USER_HI}))
    )
    prompts = read_prompt_file(str(path), **LIMITS)
    assert [p.custom_id for p in prompts] == ["1", "b"]


def test_read_prompt_file_names_the_file_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("[]\n")
    with pytest.raises(InputFileError, match=re.escape(f"1 bad line in {path}")):
        read_prompt_file(str(path), **LIMITS)


def test_missing_file_raises_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_prompt_file(str(tmp_path / "absent.jsonl"), **LIMITS)


def test_dash_reads_stdin_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    data = "\n".join(jsonl({"messages": [{"role": "user", "content": "¿qué?"}]})).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    [prompt] = read_prompt_file("-", **LIMITS, model_override="gpt-4")
    assert (prompt.messages[0].content, prompt.model) == ("¿qué?", "gpt-4")


def test_dash_reads_a_text_only_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("[]\n"))
    with pytest.raises(InputFileError, match="1 bad line in <stdin>"):
        read_prompt_file("-", **LIMITS)


@pytest.mark.parametrize(
    "line",
    [
        {"custom_id": "a", "messages": USER_HI, "model": "gpt-4"},
        {"messages": [{"role": "system", "content": "s"}, *USER_HI], "model": None},
        openai_request({"messages": USER_HI, "model": "gpt-4o", "n": 1}, custom_id="r"),
    ],
)
def test_fast_and_thorough_paths_agree_on_valid_lines(line: dict[str, Any]) -> None:
    from producer.inputs import _parse_line, _parse_valid_line

    text = json.dumps(line)
    assert _parse_valid_line(text, 1000, True) == _parse_line(text, 1000, check_line_model=True)
