from __future__ import annotations

import io
import json
import os
import random
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from contract.model_map import DEFAULT_MAP, ModelMap
from contract.models import Message
from producer.fast_lines import fast_check_line
from producer.inputs import (
    MAX_LISTED_PROBLEMS,
    MAX_NESTING,
    InputFileError,
    InputTooLargeError,
    LineProblem,
    PromptLine,
    max_line_bytes,
    parse_prompt_lines,
    read_prompt_file,
    summarize_warnings,
)
from producer.line_checks import check_line

LIMITS: dict[str, Any] = {"default_model": "gpt-4o", "max_prompt_chars": 1000}
USER_HI = [{"role": "user", "content": "hi"}]

UNKNOWN_HINT = (
    "add it to CHATGPTES_MODELS (e.g. CHATGPTES_MODELS={m}=gpt-4o), or use a known name "
    "(gpt-4o, gpt-4o-mini, gpt-4, chatgpt-4o-latest, gpt-4.1, gpt-4.1-mini, ... and their "
    "dated snapshots)"
)


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


def test_a_native_line_may_name_its_site() -> None:
    sites = ("es", "uk")
    pinned, free = parse({"site": "uk", "messages": USER_HI}, {"messages": USER_HI}, sites=sites)
    assert (pinned.site, free.site) == ("uk", None)
    assert only_reason({"site": "fr", "messages": USER_HI}, sites=sites) == (
        "site: no site 'fr': the fleet's sites are es, uk (CHATGPTES_SITES)"
    )
    assert only_reason({"site": 3, "messages": USER_HI}) == (
        "site must be a site's name (a-z, 0-9 and -), got 3"
    )
    # A fleet that names no sites here (one site, by its URL) takes any site's name.
    [anywhere] = parse({"site": "uk", "messages": USER_HI})
    assert anywhere.site == "uk"
    # An OpenAI line is pinned by its batch (metadata.site), not by an envelope key.
    assert "unknown key 'site'" in only_reason(openai_request({"messages": USER_HI}, site="uk"))


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
        ValueError, match=r"model override: unknown model 'gpt-9'.*CHATGPTES_MODELS"
    ) as caught:
        parse({"messages": USER_HI}, {"messages": USER_HI}, model_override="gpt-9")
    assert not isinstance(caught.value, InputFileError)


def test_bad_default_model_is_one_value_error() -> None:
    with pytest.raises(ValueError, match="default model: unknown model 'nope'"):
        parse({"messages": USER_HI}, default_model="nope")


def test_unknown_model_names_the_valid_ones() -> None:
    reason = only_reason({"messages": USER_HI, "model": "gpt-9"})
    assert reason == f"model: unknown model 'gpt-9'; {UNKNOWN_HINT.format(m='gpt-9')}"


@pytest.mark.parametrize(
    "model",
    ["gpt-4o-2024-08-06", "gpt-4.1-mini", "gpt-3.5-turbo", "chatgpt-4o-latest", "gpt-4-0613",
     "gpt-4-1106-preview", "gpt-4o-mini-2024-07-18", "gpt-4.1-mini-2025-04-14", "o4-mini"],
)  # fmt: skip
def test_openai_model_names_and_their_snapshots_are_accepted(model: str) -> None:
    native = {"custom_id": "n", "messages": USER_HI, "model": model}
    prompts = parse(native, openai_request({"messages": USER_HI, "model": model}, custom_id="o"))
    assert [p.model for p in prompts] == [model, model]  # echoed as asked


def test_a_model_added_by_the_setting_is_accepted() -> None:
    models = ModelMap.parse("my-model=gpt-4o-mini, other")
    prompts = parse_prompt_lines([json.dumps({"messages": USER_HI, "model": "my-model"})],
                                 **LIMITS, models=models)  # fmt: skip
    assert [p.model for p in prompts] == ["my-model"]
    assert (models.served("my-model"), models.served("other")) == ("gpt-4o-mini", "gpt-4o")
    for bad in ("x=gpt-7", "has space", "=gpt-4o"):
        with pytest.raises(ValueError):
            ModelMap.parse(bad)


def test_developer_messages_are_system_messages() -> None:
    messages = [{"role": "developer", "content": "Be brief."}, *USER_HI]
    for line in ({"messages": messages}, openai_request({"messages": messages})):
        [prompt] = parse(line)
        assert [m.role for m in prompt.messages] == ["system", "user"]


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
    assert caught.value.problems == (
        LineProblem(
            2,
            "not valid UTF-8 text: byte 0xFF at column 15 "
            "(a binary file, or another encoding such as UTF-16 or Latin-1?)",
        ),
    )


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
    assert (
        reason == "messages[2].role: 'bot' is not one of system, developer, user, assistant, tool"
    )


def test_role_missing() -> None:
    reason = only_reason({"messages": [{"content": "hi"}]})
    assert (
        reason
        == "messages[0].role: missing; expected one of system, developer, user, assistant, tool"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", 'must be a non-empty string, got an empty string ""'),
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
    assert reason == (
        "messages[1].role: the last message must be the user's (or a tool's result), not "
        "'assistant'"
    )


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
        "unknown key 'mesages' (did you mean 'messages'?); expected only custom_id, messages, model, "
        "site",
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
    body = {"model": "gpt-9", "messages": [{"role": "bot", "content": "x"}]}
    assert [p.reason for p in problems_of(openai_request(body))] == [
        "body.messages[0].role: 'bot' is not one of system, developer, user, assistant, tool",
        f"body.model: unknown model 'gpt-9'; {UNKNOWN_HINT.format(m='gpt-9')}",
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
    text = json.dumps(line)
    assert fast_check_line(text, 1000, DEFAULT_MAP) == check_line(text, 1000, models=DEFAULT_MAP)


# --- a lone surrogate ("\ud800") is not Unicode: refused, by path, on both paths ---

LONE_SURROGATE_LINES = [
    (
        r'{"messages": [{"role": "user", "content": "a\ud800b"}]}',
        r"messages[0].content: contains a lone surrogate (\ud800), which is not valid Unicode",
    ),
    (
        r'{"messages": [{"role": "user", "content": "\udfff"}]}',
        r"messages[0].content: contains a lone surrogate (\udfff), which is not valid Unicode",
    ),
    (
        r'{"messages": [{"role": "user", "content": "\ude00\ud83d"}]}',  # reversed pair
        r"messages[0].content: contains a lone surrogate (\ude00), which is not valid Unicode",
    ),
    (
        r'{"custom_id": "q\udc00", "messages": [{"role": "user", "content": "hi"}]}',
        r"custom_id: contains a lone surrogate (\udc00), which is not valid Unicode",
    ),
    (
        r'{"messages": [{"role": "user", "content": [{"type": "text", "text": "\ud800"}]}]}',
        r"messages[0].content[0].text: contains a lone surrogate (\ud800), which is not valid Unicode",
    ),
    (
        r'{"method": "POST", "url": "/v1/chat/completions", "body": {"messages": [{"role": "user", "content": "hi\udbff"}]}}',
        r"body.messages[0].content: contains a lone surrogate (\udbff), which is not valid Unicode",
    ),
    (
        r'{"method": "POST", "url": "/v1/chat/completions", "body": {"messages": [{"role": "user", "content": "hi"}], "stop": ["\ud800"]}}',
        r"body.stop[0]: contains a lone surrogate (\ud800), which is not valid Unicode",
    ),
]


@pytest.mark.parametrize(("text", "expected"), LONE_SURROGATE_LINES)
def test_lone_surrogate_escape_is_refused_naming_the_field(text: str, expected: str) -> None:
    assert only_reason(text) == expected


@pytest.mark.parametrize(("text", "expected"), LONE_SURROGATE_LINES)
def test_fast_path_declines_a_lone_surrogate(text: str, expected: str) -> None:
    # pydantic's JSON parser refuses lone surrogates today; this pins it down
    assert fast_check_line(text, 1000, DEFAULT_MAP) is None


def test_lone_surrogate_in_a_key_is_refused() -> None:
    text = r'{"messages": [{"role": "user", "content": "hi", "\ud800": 1}]}'
    assert r"messages[0]: a key contains a lone surrogate (\ud800)" in [
        p.reason.split(", which")[0] for p in problems_of(text)
    ]


def test_paired_surrogate_escapes_are_one_character() -> None:
    [prompt] = parse(
        r'{"custom_id": "\ud83d\ude00", "messages": [{"role": "user", "content": "\ud83d\ude00"}]}'
    )
    assert (prompt.custom_id, prompt.messages[0].content) == ("😀", "😀")


# --- deep nesting and long lines: refused before the parser can choke ---


def test_a_hundred_thousand_brackets_are_nested_too_deeply() -> None:
    problems = problems_of("[" * 100_000, max_prompt_chars=32_000)
    assert problems == [
        LineProblem(1, f"nested too deeply: more than {MAX_NESTING} levels of arrays and objects")
    ]


@pytest.mark.parametrize(
    "text",
    [
        "[" * (MAX_NESTING + 1) + "]" * (MAX_NESTING + 1),
        '{"messages": ' + "[" * MAX_NESTING + "]" * MAX_NESTING + "}",
        '{"a": ' * (MAX_NESTING + 1) + "1" + "}" * (MAX_NESTING + 1),
        "{" * 50_000,
    ],
)
def test_nesting_deeper_than_the_limit_is_refused(text: str) -> None:
    assert only_reason(text, max_prompt_chars=32_000).startswith("nested too deeply: ")


def test_brackets_inside_strings_are_not_nesting() -> None:
    content = "[{" * 5_000
    [prompt] = parse({"messages": [{"role": "user", "content": content}]}, max_prompt_chars=10_000)
    assert prompt.messages[0].content == content
    text = json.dumps({"custom_id": "[" * 100, "messages": [{"role": "user", "content": "{"}]})
    assert check_line(text, 1000, models=DEFAULT_MAP).reasons == []


def test_nesting_at_the_limit_is_judged_on_its_shape() -> None:
    text = "[" * MAX_NESTING + "]" * MAX_NESTING
    assert only_reason(text) == "expected a JSON object, got an array"


def test_line_longer_than_the_bound_is_refused_with_its_size() -> None:
    limit = max_line_bytes(1000)
    assert limit == 12 * 1000 + 64 * 1024
    text = json.dumps({"messages": [{"role": "user", "content": "x" * limit}]})
    assert only_reason(text) == (
        f"line is {len(text):,} bytes long; the limit is {limit:,} bytes "
        "(12 bytes per character of the 1,000-character prompt limit, plus 64 KiB)"
    )


def test_line_bound_counts_utf8_bytes() -> None:
    limit = max_line_bytes(1000)
    content = "€" * (limit // 3)  # fewer characters than the limit, more bytes
    text = json.dumps({"messages": [{"role": "user", "content": content}]}, ensure_ascii=False)
    assert len(text) < limit < len(text.encode())
    assert only_reason(text).startswith(f"line is {len(text.encode()):,} bytes long; ")


def test_line_under_the_bound_gets_the_prompt_size_reason() -> None:
    text = json.dumps({"messages": [{"role": "user", "content": "x" * 5_000}]})
    assert only_reason(text) == "prompt is 5,000 characters over all messages; the limit is 1,000"


def test_fully_escaped_prompt_at_the_limit_fits_in_a_line() -> None:
    content = "😀" * 1000  # 12 bytes each as "\ud83d\ude00"
    messages = [{"role": "user", "content": content}]
    [prompt] = parse({"custom_id": "x" * 256, "messages": messages})
    assert prompt.messages[0].content == content


# --- repeated keys: JSON parsers keep the last silently; refused, on both paths ---

USER_B = '[{"role": "user", "content": "b"}]'
ENVELOPE = '"method": "POST", "url": "/v1/chat/completions"'
REPEATED_KEY_LINES = [
    (f'{{"messages": {USER_B}, "messages": {USER_B}}}', "duplicate key 'messages'"),
    (f'{{"custom_id": "a", "custom_id": "b", "messages": {USER_B}}}', "duplicate key 'custom_id'"),
    (f'{{"model": "gpt-4", "messages": {USER_B}, "model": "gpt-4o"}}', "duplicate key 'model'"),
    (
        '{"messages": [{"role": "system", "role": "user", "content": "b"}]}',
        "messages[0]: duplicate key 'role'",
    ),
    (
        '{"messages": [{"role": "user", "content": "a", "content": "b"}]}',
        "messages[0]: duplicate key 'content'",
    ),
    (
        '{"messages": [{"role": "user", "content": [{"type": "text", "text": "a", "text": "b"}]}]}',
        "messages[0].content[0]: duplicate key 'text'",
    ),
    (
        f'{{{ENVELOPE}, "body": {{"messages": {USER_B}, "temperature": 1, "temperature": 2}}}}',
        "body: duplicate key 'temperature'",
    ),
    (
        f'{{{ENVELOPE}, "body": {{"messages": {USER_B}, "messages": {USER_B}}}}}',
        "body: duplicate key 'messages'",
    ),
    (
        f'{{{ENVELOPE}, "body": {{"messages": [{{"role": "user", "role": "user", "content": "b"}}]}}}}',
        "body.messages[0]: duplicate key 'role'",
    ),
    (
        f'{{{ENVELOPE}, "method": "POST", "body": {{"messages": {USER_B}}}}}',
        "duplicate key 'method'",
    ),
    (
        f'{{{ENVELOPE}, "body": {{"messages": {USER_B}, "metadata": {{"a": "x", "a": "y"}}}}}}',
        "body.metadata: duplicate key 'a'",
    ),
    (  # a key spelled with an escape is the same key
        f'{{"messages": {USER_B}, "\\u006dessages": {USER_B}}}',
        "duplicate key 'messages'",
    ),
    (  # an escaped colon cannot make up for the repeat in the fast path's count
        '{"messages": [{"role": "user", "content": "a\\u003ab"}], "messages": [{"role": "user", "content": "b"}]}',
        "duplicate key 'messages'",
    ),
]


@pytest.mark.parametrize(("text", "expected"), REPEATED_KEY_LINES)
def test_repeated_key_is_refused(text: str, expected: str) -> None:
    assert only_reason(text) == expected


@pytest.mark.parametrize(("text", "expected"), REPEATED_KEY_LINES)
def test_fast_path_declines_a_repeated_key(text: str, expected: str) -> None:
    assert fast_check_line(text, 1000, DEFAULT_MAP) is None


def test_every_repeated_key_of_a_line_is_listed() -> None:
    text = '{"messages": [{"role": "user", "role": "user", "content": "b"}], "messages": [], "model": "gpt-4", "model": "gpt-4"}'
    reasons = [p.reason for p in problems_of(text)]
    assert reasons[:2] == ["duplicate key 'messages'", "duplicate key 'model'"]


@pytest.mark.parametrize(
    "text",
    [
        '{"custom_id": "a:b", "messages": [{"role": "user", "content": "x: y"}], "model": "gpt-4"}',
        '{"messages":[{"role":"system","content":"::"},{"role":"user","content":"\\":\\""}]}',
        '{ "custom_id" : "c" , "messages" : [ { "role" : "user" , "content" : "a : b" } ] }\r\n',
        '{"messages": [{"role": "user", "content": "hi"}], "model": null}',
        '{"custom_id": "r", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": [{"role": "user", "content": "t: 1"}], "stop": [":", "::"], "metadata": {"k:1": "v:2"}, "temperature": 0.5, "n": 1}}',
        '{"method": "POST", "url": "/v1/chat/completions", "body": {"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}, "stream_options": {"include_usage": true}, "temperature": null}}',
    ],
)
def test_fast_path_takes_valid_lines_with_colons_and_parameters(text: str) -> None:
    fast = fast_check_line(text, 1000, DEFAULT_MAP)
    assert fast is not None
    assert fast == check_line(text, 1000, models=DEFAULT_MAP)


def test_escaped_colon_is_a_colon() -> None:
    [prompt] = parse('{"messages": [{"role": "user", "content": "a\\u003ab"}]}')
    assert prompt.messages[0].content == "a:b"


# --- unknown keys: refused, with a suggestion for a near miss ---


@pytest.mark.parametrize(
    ("body_extra", "expected"),
    [
        ({"temprature": 0.2}, "body: unknown key 'temprature'; did you mean 'temperature'?"),
        ({"max_token": 9}, "body: unknown key 'max_token'; did you mean 'max_tokens'?"),
        ({"Stop": "x"}, "body: unknown key 'Stop'; did you mean 'stop'?"),
        (
            {"web_search_options": {}},
            "body: unknown key 'web_search_options'; it is not a chat completions parameter "
            "chatgpt.es knows",
        ),
    ],
)
def test_unknown_body_key_is_refused(body_extra: dict[str, Any], expected: str) -> None:
    assert only_reason(openai_request({"messages": USER_HI, **body_extra})) == expected


def test_misspelt_body_messages_is_suggested() -> None:
    reasons = [p.reason for p in problems_of(openai_request({"mesages": USER_HI}))]
    assert "body: unknown key 'mesages'; did you mean 'messages'?" in reasons


def test_unknown_envelope_key_gets_a_suggestion() -> None:
    line = {
        "method": "POST",
        "url": "/v1/chat/completions",
        "bdy": {},
        "body": {"messages": USER_HI},
    }
    assert only_reason(line) == (
        "unknown key 'bdy' (did you mean 'body'?); expected only body, custom_id, method, url"
    )


def test_parameter_in_a_native_line_points_to_the_body() -> None:
    assert only_reason({"messages": USER_HI, "temperature": 0.2}) == (
        "unknown key 'temperature'; expected only custom_id, messages, model, site "
        "(request parameters are read only from an OpenAI request line's body)"
    )


# --- every bad input: nothing enqueued, a reason naming the line ---


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{", "not valid JSON: Expecting property name enclosed in double quotes (column 2)"),
        ('{"messages": [}', "not valid JSON: Expecting value (column 15)"),
        (
            "{'messages': []}",
            "not valid JSON: Expecting property name enclosed in double quotes (column 2)",
        ),
        ('{"messages": []} {}', "not valid JSON: Extra data (column 18)"),
        ("messages", "not valid JSON: Expecting value (column 1)"),
        ("null", "expected a JSON object, got null"),
        ("17", "expected a JSON object, got a number"),
        ("true", "expected a JSON object, got a boolean"),
        (
            "\x00\x00\x00\x01",
            "not valid JSON: control character U+0000 at column 1 (binary data, or a raw control character inside a string)",
        ),
        (
            '{"messages": [{"role": "user", "content": "a\x01"}]}',
            "not valid JSON: control character U+0001 at column 45 (binary data, or a raw control character inside a string)",
        ),
        (
            "PK\x03\x04\x14\x00",
            "not valid JSON: Expecting value (column 1)",
        ),
        (
            {"messages": [{"role": "tool", "content": "x"}]},
            "messages[0].tool_call_id: must name the call this result answers, got null",
        ),
        (
            {"messages": [{"role": "User", "content": "x"}]},
            "messages[0].role: 'User' is not one of system, developer, user, assistant, tool",
        ),
        (
            {"messages": [{"role": None, "content": "x"}]},
            "messages[0].role: null is not one of system, developer, user, assistant, tool",
        ),
        (
            {"messages": USER_HI, "model": "gpt-9-turbo"},
            f"model: unknown model 'gpt-9-turbo'; {UNKNOWN_HINT.format(m='gpt-9-turbo')}",
        ),
        ({"messages": USER_HI, "model": ["gpt-4"]}, "model: must be a string, got an array"),
        (
            {"messages": [{"role": "user", "content": ""}]},
            'messages[0].content: must be a non-empty string, got an empty string ""',
        ),
        (
            {"messages": [{"role": "user", "content": {"text": "hi"}}]},
            "messages[0].content: must be a non-empty string or a list of text parts; got an object",
        ),
        (
            {"messages": [{"role": "user", "content": "x" * 1001}]},
            "prompt is 1,001 characters over all messages; the limit is 1,000",
        ),
        (
            {"messages": [["user", "hi"]]},
            "messages[0]: must be an object with role and content, got an array",
        ),
        (
            {"messages": USER_HI, "custom_id": ["a"]},
            "custom_id: must be a non-empty string, got an array",
        ),
        (
            openai_request({"messages": USER_HI}, url="/v1/chat/completions/"),
            "url: must be '/v1/chat/completions' (OpenAI batch form), got '/v1/chat/completions/'",
        ),
        (openai_request("hi"), "body: must be an object, got a string (OpenAI batch form)"),
    ],
)
def test_bad_line_is_refused_with_a_reason(text: Any, expected: str) -> None:
    good = {"custom_id": "ok", "messages": USER_HI}
    problems = problems_of(good, text, good | {"custom_id": "ok2"})
    assert problems == [LineProblem(2, expected)]


def test_byte_order_mark_after_the_first_line_is_refused() -> None:
    good = json.dumps({"messages": USER_HI})
    problems = problems_of(good, "\ufeff" + good)
    assert problems == [
        LineProblem(
            2,
            "starts with a byte order mark (U+FEFF), which only a file's first line may have: "
            "were two files joined?",
        )
    ]


def test_byte_order_mark_inside_a_content_is_text() -> None:
    [prompt] = parse({"messages": [{"role": "user", "content": "\ufeffhi"}]})
    assert prompt.messages[0].content == "\ufeffhi"


def test_random_garbage_never_escapes_as_anything_but_input_file_error() -> None:
    rng = random.Random(7)
    base = json.dumps(openai_request({"messages": USER_HI, "stop": ["x"], "n": 1}, custom_id="r"))
    alphabet = '{}[]":,\\ u0123456789abcdefnulltrue\ud800\ufeff\x00é'
    for _ in range(400):
        chars = list(base)
        for _ in range(rng.randint(1, 6)):
            position = rng.randrange(len(chars) + 1)
            if rng.random() < 0.5 and chars:
                del chars[min(position, len(chars) - 1)]
            else:
                chars.insert(position, rng.choice(alphabet))
        try:
            parse("".join(chars))
        except InputFileError as error:
            assert all(problem.line_number == 1 for problem in error.problems)


# --- files: CRLF, BOM, binary, empty, a directory, too large ---


def write(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(data)
    return str(path)


def test_crlf_file_with_a_byte_order_mark_is_fine(tmp_path: Path) -> None:
    lines = jsonl({"messages": USER_HI}, openai_request({"messages": USER_HI}, custom_id="b"))
    path = write(tmp_path, b"\xef\xbb\xbf" + "\r\n".join([*lines, "", ""]).encode())
    prompts = read_prompt_file(path, **LIMITS)
    assert [(p.line_number, p.custom_id) for p in prompts] == [(1, "1"), (2, "b")]


def test_binary_file_is_refused_line_by_line(tmp_path: Path) -> None:
    garbage = bytes(range(256)) * 3 + b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x1f\x8b\x08\x00"
    with pytest.raises(InputFileError) as caught:
        read_prompt_file(write(tmp_path, garbage), **LIMITS)
    reasons = {p.reason.split(":")[0] for p in caught.value.problems}
    assert reasons <= {
        "not valid UTF-8 text",
        "not valid JSON",
        "expected a JSON object, got a number",
    }
    assert len({p.line_number for p in caught.value.problems}) >= 3


def test_utf16_file_is_refused_with_a_hint(tmp_path: Path) -> None:
    data = json.dumps({"messages": USER_HI}).encode("utf-16")
    with pytest.raises(InputFileError) as caught:
        read_prompt_file(write(tmp_path, data), **LIMITS)
    assert caught.value.problems[0].reason.startswith(
        "not valid UTF-8 text: byte 0xFF at column 1 "
    )
    assert "UTF-16" in caught.value.problems[0].reason


def test_empty_file_has_no_prompts(tmp_path: Path) -> None:
    path = write(tmp_path, b"")
    with pytest.raises(InputFileError, match=re.escape(f"no prompts in {path}: it is empty")):
        read_prompt_file(path, **LIMITS)


def test_directory_is_an_os_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError) as caught:
        read_prompt_file(str(tmp_path), **LIMITS)
    assert str(caught.value).endswith(f"a directory, not a prompts file: {str(tmp_path)!r}")


def test_file_over_max_input_bytes_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    with path.open("wb") as stream:
        stream.truncate(3 << 20)  # NUL bytes: refused as binary if it were read
    with pytest.raises(InputTooLargeError) as caught:
        read_prompt_file(str(path), **LIMITS, max_input_bytes=1 << 20)
    assert (caught.value.size, caught.value.limit) == (3 << 20, 1 << 20)  # the whole size
    assert str(caught.value) == (
        f"{path} is 3,145,728 bytes, more than 1,048,576 bytes, the limit "
        "(CHATGPTES_MAX_INPUT_BYTES): split it into smaller files, or raise the limit"
    )
    assert isinstance(caught.value, InputFileError) and caught.value.problems == ()


def test_file_at_max_input_bytes_is_read(tmp_path: Path) -> None:
    data = (json.dumps({"messages": USER_HI}) + "\n").encode()
    prompts = read_prompt_file(write(tmp_path, data), **LIMITS, max_input_bytes=len(data))
    assert len(prompts) == 1
    with pytest.raises(InputTooLargeError):
        read_prompt_file(write(tmp_path, data), **LIMITS, max_input_bytes=len(data) - 1)


def test_fifo_over_max_input_bytes_is_cut_short(tmp_path: Path) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    line = (json.dumps({"messages": USER_HI}) + "\n").encode()

    def feed() -> None:
        try:
            with fifo.open("wb") as stream:
                for _ in range(1000):
                    stream.write(line)
        except BrokenPipeError:
            pass  # the reader stopped: what the test wants

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        with pytest.raises(InputTooLargeError, match=r"sent more than 1,000 bytes"):
            read_prompt_file(str(fifo), **LIMITS, max_input_bytes=1000)
    finally:
        writer.join(timeout=10)


def test_stdin_over_max_input_bytes_stops_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    line = (json.dumps({"messages": USER_HI}) + "\n").encode()
    stdin = io.BytesIO(line * 100)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stdin, encoding="utf-8"))
    with pytest.raises(InputTooLargeError) as caught:
        read_prompt_file("-", **LIMITS, max_input_bytes=len(line) * 10)
    assert str(caught.value) == (
        f"<stdin> sent more than {len(line) * 10:,} bytes, the limit (CHATGPTES_MAX_INPUT_BYTES); "
        "reading stopped there: split it into smaller files, or raise the limit"
    )
    assert caught.value.size is None
    assert stdin.tell() <= len(line) * 11 + 8192  # stopped, give or take a buffer


def test_text_only_stdin_is_limited_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps({"messages": USER_HI}) + "\n"))
    assert len(read_prompt_file("-", **LIMITS, max_input_bytes=1000)) == 1
    monkeypatch.setattr(sys, "stdin", io.StringIO("é" * 600))
    with pytest.raises(InputTooLargeError):
        read_prompt_file("-", **LIMITS, max_input_bytes=1000)


def test_max_input_bytes_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_input_bytes must be positive"):
        read_prompt_file(write(tmp_path, b""), **LIMITS, max_input_bytes=0)


# --- OpenAI request parameters: refused, honoured, or accepted with a warning ---


def body_line(**params: Any) -> dict[str, Any]:
    return openai_request({"messages": USER_HI, **params}, custom_id="r")


LEGACY = (
    "the legacy functions API is not supported: send 'tools' (of type 'function') and "
    "'tool_choice' instead, which are emulated"
)
NO_LOGPROBS = "log probabilities are not supported: chatgpt.es gives only the text"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "n",
            2,
            "2 answers per prompt are not possible: chatgpt.es gives one; repeat the line under other custom_ids instead",
        ),
        ("tools", [], "must be a list of 1 to 128 function tools, got a list of 0"),
        ("tool_choice", "required", "a call is required, but no 'tools' are given"),
        ("functions", [{"name": "f"}], LEGACY),
        ("function_call", "auto", LEGACY),
        ("logprobs", True, NO_LOGPROBS),
        ("top_logprobs", 3, NO_LOGPROBS),
        (
            "audio",
            {"voice": "alloy", "format": "wav"},
            "audio output is not supported: chatgpt.es answers with text only",
        ),
        (
            "modalities",
            ["text", "audio"],
            'only ["text"] is supported (chatgpt.es answers with text only), got ["text", "audio"]',
        ),
        (
            "modalities",
            ["audio"],
            'only ["text"] is supported (chatgpt.es answers with text only), got ["audio"]',
        ),
        (
            "modalities",
            "text",
            "only [\"text\"] is supported (chatgpt.es answers with text only), got 'text'",
        ),
        (
            "prediction",
            {"type": "content", "content": "x"},
            "predicted outputs are not supported by chatgpt.es",
        ),
        (
            "stream",
            True,
            "a batch is never streamed: each answer is stored whole, to fetch with the results",
        ),
    ],
)
def test_refused_parameter(name: str, value: Any, expected: str) -> None:
    assert only_reason(body_line(**{name: value})) == f"body.{name}: {expected}"


@pytest.mark.parametrize(
    ("params", "kept"),
    [
        ({"stop": "END"}, {"stop": ["END"]}),
        ({"stop": ["\n\n", "END", "a", "b"]}, {"stop": ["\n\n", "END", "a", "b"]}),
        ({"stop": []}, {}),
        ({"stop": None}, {}),
        (
            {"response_format": {"type": "json_object"}},
            {"response_format": {"type": "json_object"}},
        ),
        ({"response_format": {"type": "text"}}, {}),
        ({"modalities": ["text"]}, {}),
        (
            {"stop": "x", "response_format": {"type": "json_object"}},
            {"stop": ["x"], "response_format": {"type": "json_object"}},
        ),
    ],
)
def test_honoured_parameters_are_kept_for_the_worker(
    params: dict[str, Any], kept: dict[str, Any]
) -> None:
    [prompt] = parse(body_line(**params))
    assert dict(prompt.params) == kept
    assert prompt.warnings == ()
    json.dumps(dict(prompt.params))  # plain JSON


NO_SETTING = "not honoured: chatgpt.es has no such setting"


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("temperature", 0, NO_SETTING),
        ("temperature", 2, NO_SETTING),
        ("temperature", 0.7, NO_SETTING),
        ("top_p", 1, NO_SETTING),
        ("presence_penalty", -2, NO_SETTING),
        ("frequency_penalty", 1.5, NO_SETTING),
        ("seed", -42, NO_SETTING),
        ("logit_bias", {"50256": -100, "13": 2.5}, NO_SETTING),
        ("reasoning_effort", "low", NO_SETTING),
        ("user", "user-123", "not sent: chatgpt.es has no end-user field"),
        (
            "metadata",
            {"team": "a", "run": "7"},
            "not kept: chatgpt.es stores no completions to tag",
        ),
        ("store", False, "not honoured: chatgpt.es stores no completions"),
        ("service_tier", "auto", "not honoured: chatgpt.es has a single service tier"),
        ("stream_options", {"include_usage": True}, "not honoured: a batch is never streamed"),
        ("n", 1, "changes nothing: chatgpt.es gives one answer"),
        ("logprobs", False, "changes nothing: chatgpt.es gives no log probabilities"),
        ("stream", False, "changes nothing: a batch is never streamed"),
    ],
)
def test_parameter_accepted_with_a_warning(name: str, value: Any, why: str) -> None:
    [prompt] = parse(body_line(**{name: value}))
    assert prompt.warnings == (f"{name} is accepted but {why}",)
    assert dict(prompt.params) == {}


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("temperature", 2.5, "must be a number from 0 to 2, got 2.5"),
        ("temperature", "0.5", "must be a number from 0 to 2, got '0.5'"),
        ("temperature", True, "must be a number from 0 to 2, got true"),
        ("temperature", float("nan"), "must be a number from 0 to 2, got NaN"),
        ("top_p", 1.1, "must be a number from 0 to 1, got 1.1"),
        ("presence_penalty", -3, "must be a number from -2 to 2, got -3"),
        ("frequency_penalty", [1], "must be a number from -2 to 2, got an array"),
        ("max_tokens", 0, "must be a positive integer, got 0"),
        ("max_tokens", 10.0, "must be a positive integer, got 10.0"),
        ("max_completion_tokens", "100", "must be a positive integer, got '100'"),
        ("n", 0, "must be a positive integer, got 0"),
        ("n", True, "must be a positive integer, got true"),
        ("seed", 1.5, "must be an integer, got 1.5"),
        (
            "logit_bias",
            {"abc": 1},
            'must be an object mapping token ids to numbers from -100 to 100, got {"abc": 1}',
        ),
        (
            "logit_bias",
            {"1": 101},
            'must be an object mapping token ids to numbers from -100 to 100, got {"1": 101}',
        ),
        ("user", 5, "must be a string, got 5"),
        (
            "metadata",
            {"a": 1},
            'must be an object of at most 16 string values (keys up to 64 characters, values up to 512), got {"a": 1}',
        ),
        (
            "metadata",
            {str(i): "v" for i in range(17)},
            "must be an object of at most 16 string values (keys up to 64 characters, values up to 512), got an object",
        ),
        ("store", "yes", "must be true or false, got 'yes'"),
        ("stream", 1, "must be true or false, got 1"),
        ("logprobs", "false", "must be true or false, got 'false'"),
        ("service_tier", 1, "must be a string, got 1"),
        ("reasoning_effort", ["low"], "must be a string, got an array"),
        ("stream_options", True, "must be an object, got a boolean"),
        (
            "stop",
            ["a", "b", "c", "d", "e"],
            'must be a non-empty string or a list of up to 4 non-empty strings, got ["a", "b", "c", "d", "e"]',
        ),
        ("stop", "", "must be a non-empty string or a list of up to 4 non-empty strings, got ''"),
        ("stop", [1], "must be a non-empty string or a list of up to 4 non-empty strings, got [1]"),
        (
            "response_format",
            {"type": "xml"},
            'must be {"type": "text"}, {"type": "json_object"} or {"type": "json_schema", "json_schema": {...}}, got {"type": "xml"}',
        ),
        (
            "response_format",
            "json_object",
            'must be {"type": "text"}, {"type": "json_object"} or {"type": "json_schema", "json_schema": {...}}, got \'json_object\'',
        ),
        (
            "response_format",
            {"type": "json_object", "strict": True},
            'must be {"type": "text"}, {"type": "json_object"} or {"type": "json_schema", "json_schema": {...}}, got {"type": "json_object", "strict": true}',
        ),
    ],
)
def test_parameter_of_the_wrong_type_or_range_is_refused(
    name: str, value: Any, expected: str
) -> None:
    assert only_reason(body_line(**{name: value})) == f"body.{name}: {expected}"


def test_null_parameter_counts_as_not_given() -> None:
    [prompt] = parse(body_line(temperature=None, tools=None, n=None, stop=None))
    assert (dict(prompt.params), prompt.warnings) == ({}, ())


def test_every_problem_of_a_body_is_listed() -> None:
    reasons = [p.reason for p in problems_of(body_line(n=3, tools=[], temperature=9, temprature=1))]
    assert [reason.split(":")[0] for reason in reasons] == [
        "body.n", "body.tools", "body.temperature", "body",
    ]  # fmt: skip


def test_native_lines_have_no_params_or_warnings() -> None:
    [prompt] = parse({"messages": USER_HI})
    assert (dict(prompt.params), prompt.warnings) == ({}, ())


def test_summarize_warnings_counts_prompts_per_warning() -> None:
    prompts = parse(
        body_line(temperature=0.2, max_tokens=10) | {"custom_id": "a"},
        body_line(temperature=0.9) | {"custom_id": "b"},
        {"messages": USER_HI},
        body_line(stop="x") | {"custom_id": "c"},
    )
    assert summarize_warnings(prompts) == [
        "temperature (2 prompts): accepted but not honoured: chatgpt.es has no such setting",
    ]
    assert summarize_warnings(prompts[2:]) == []


def test_prompt_line_keeps_its_old_constructor() -> None:
    line = PromptLine(1, "q", (Message(role="user", content="hi"),), "gpt-4o")
    assert (dict(line.params), line.warnings) == ({}, ())
    assert hash(line) == hash(PromptLine(1, "q", (Message(role="user", content="hi"),), "gpt-4o"))


def test_many_unknown_keys_are_named_up_to_five() -> None:
    native = {"messages": USER_HI, **{f"k{i}": i for i in range(8)}}
    assert only_reason(native) == (
        "unknown keys 'k0', 'k1', 'k2', 'k3', 'k4' and 3 more; expected only custom_id, messages, model, "
        "site"
    )
    reasons = [p.reason for p in problems_of(body_line(**{f"k{i}": i for i in range(8)}))]
    assert reasons == [
        *(
            f"body: unknown key 'k{i}'; it is not a chat completions parameter chatgpt.es knows"
            for i in range(5)
        ),
        "body: 3 more unknown keys",
    ]


def test_a_huge_unknown_key_is_named_by_its_length() -> None:
    assert only_reason(body_line(**{"t" * 50_000: 1})) == (
        "body: unknown key a 50000-character string; it is not a chat completions parameter chatgpt.es knows"
    )


def test_repeated_parameters_are_judged_by_type_as_well_as_value() -> None:
    # the fast path memoizes parameter sets; 1, 1.0 and true are equal keys in Python
    ok = [body_line(n=1, seed=1) | {"custom_id": f"a{i}"} for i in range(3)]
    problems = problems_of(*ok, body_line(n=True, seed=1.0) | {"custom_id": "b"})
    assert problems == [
        LineProblem(4, "body.n: must be a positive integer, got true"),
        LineProblem(4, "body.seed: must be an integer, got 1.0"),
    ]


# --- tools: parameters and histories ---

WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}  # fmt: skip
CALLED = {"role": "assistant", "content": None, "refusal": None, "annotations": [],
          "tool_calls": [{"id": "call_1", "type": "function",
                          "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}  # fmt: skip


def test_a_line_may_offer_tools_and_end_with_a_tools_result() -> None:
    history = [{"role": "user", "content": "Weather in Paris?"}, CALLED,
               {"role": "tool", "tool_call_id": "call_1", "content": "18 C"}]  # fmt: skip
    [prompt] = parse(openai_request({"messages": history, "tools": [WEATHER_TOOL],
                                     "tool_choice": "required"}))  # fmt: skip
    assert [m.role for m in prompt.messages] == ["user", "assistant", "tool"]
    assert prompt.messages[1].tool_calls[0].arguments == '{"city":"Paris"}'
    assert prompt.params["tool_choice"] == "required" and prompt.warnings == ()


def test_the_fast_path_leaves_tool_histories_to_the_thorough_checks() -> None:
    plain = json.dumps(openai_request({"messages": USER_HI, "tools": [WEATHER_TOOL]}))
    assert fast_check_line(plain, 1000, DEFAULT_MAP) is not None  # tools alone: fast
    history = json.dumps(openai_request({"messages": [*USER_HI, CALLED, *USER_HI]}))
    assert fast_check_line(history, 1000, DEFAULT_MAP) is None
    assert check_line(history, 1000, models=DEFAULT_MAP).reasons == []


@pytest.mark.parametrize(
    ("messages", "reason"),
    [([*USER_HI, {**CALLED, "tool_calls": [{"id": "call_1", "function": {"name": "f"}}]}, *USER_HI],
      "body.messages[1].tool_calls[0].function.arguments: must be a string (the arguments' JSON), got null"),
     ([*USER_HI, {**CALLED, "refusal": "no"}, *USER_HI],
      "body.messages[1].refusal: only null is accepted here, got a string"),
     ([*USER_HI, {"role": "tool", "tool_call_id": "call_1", "content": "18 C"}],
      "body.messages[1].tool_call_id: 'call_1' answers no tool call of an earlier assistant message"),
     ([*USER_HI, {"role": "tool", "content": "18 C"}],
      "body.messages[1].tool_call_id: must name the call this result answers, got null"),
     ([*USER_HI, {"role": "user", "content": "x", "tool_call_id": "call_1"}],
      "body.messages[1]: unknown key 'tool_call_id'; expected only content, name, role")],
)  # fmt: skip
def test_a_bad_tool_history_says_where(messages: list[Any], reason: str) -> None:
    assert only_reason(openai_request({"messages": messages})) == reason
