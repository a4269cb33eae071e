"""The fast path for a valid prompt line: one pydantic pass, then a count of colons.

Most lines of a file are valid, and ``producer.line_checks`` spends its time wording
problems they do not have. ``fast_check_line`` accepts a line only when it is sure
``check_line`` would (``tests/test_fast_lines.py`` checks that on generated lines);
anything else, it leaves to ``check_line``.

pydantic's parser refuses lone surrogates itself, but keeps the last of repeated keys
silently: as every colon outside a string is one object member, a line holds no
repeated key when its colons are those of the members pydantic kept plus those in
its strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from contract.model_map import ModelMap
from contract.models import Message
from producer.line_checks import MAX_CUSTOM_ID_CHARS, CheckedLine
from producer.params import NO_BODY_PARAMS, BodyParams, check_body_params

ESCAPED_COLON = "\\u003"  # the start of "\u003a": a colon the fast path cannot count


class _FastNative(BaseModel):
    """A valid native line, checked in one pydantic pass; anything else takes the slow path."""

    model_config = ConfigDict(extra="forbid")
    custom_id: str = Field("", min_length=1, max_length=MAX_CUSTOM_ID_CHARS)
    messages: tuple[Message, ...] = Field(min_length=1)
    model: str | None = None


class _FastBody(BaseModel):
    """The body of an OpenAI line; its parameters are kept as extras for ``check_body_params``."""

    model_config = ConfigDict(extra="allow")
    messages: tuple[Message, ...] = Field(min_length=1)
    model: str | None = None


class _FastOpenAI(BaseModel):
    """A valid OpenAI Batch request line, checked in one pydantic pass."""

    model_config = ConfigDict(extra="forbid")
    custom_id: str = Field("", min_length=1, max_length=MAX_CUSTOM_ID_CHARS)
    method: Literal["POST"]
    url: Literal["/v1/chat/completions"]
    body: _FastBody


_fast_native = TypeAdapter(_FastNative).validate_json
_fast_openai = TypeAdapter(_FastOpenAI).validate_json


class _FastRead(NamedTuple):
    """An OpenAI line pydantic validated, and what it takes to be sure no key was repeated."""

    custom_id: str
    messages: tuple[Message, ...]
    model: str | None
    members: int  # object members pydantic kept, other than each message's role and content
    colons: int  # colons inside the strings of those members
    body_params: BodyParams


def fast_check_line(
    text: str, max_prompt_chars: int, models: ModelMap | None
) -> CheckedLine | None:
    """The line's fields if it is valid (the common case), or None: then ask ``check_line``.

    It only ever accepts what ``check_line`` accepts; ``check_line`` words the reasons.
    """
    try:
        if '"body"' in text:  # a guess at the form: a wrong one only costs the slow path
            read = _fast_openai_read(text)
            if read is None:
                return None
            custom_id, messages, model, members, colons, body_params = read
        else:
            request = _fast_native(text)
            custom_id, messages, model = request.custom_id, request.messages, request.model
            members, colons, body_params = len(request.model_fields_set), 0, NO_BODY_PARAMS
    except ValidationError:
        return None
    size = 0
    for message in messages:  # every one is {role, content}: 2 members
        if message.tool_calls is not None:
            return None  # a tool history: line_checks words its problems
        content = message.content
        size += len(content)
        colons += content.count(":")
    if (
        (custom_id and not custom_id.strip())
        or messages[-1].role != "user"
        or (models is not None and model is not None and model not in models)
        or size > max_prompt_chars
    ):
        return None
    colons += custom_id.count(":") + (model.count(":") if model else 0)
    if text.count(":") != members + 2 * len(messages) + colons:
        return None  # a repeated key
    if colons and ESCAPED_COLON in text:
        return None  # "\u003a", a colon that is not in the count: a repeat may hide behind it
    return CheckedLine(
        custom_id=custom_id or None,
        messages=messages,
        model=model if models is not None else None,  # an override replaces it, unread
        is_object=True,
        body_params=body_params,
    )


def _fast_openai_read(text: str) -> _FastRead | None:
    request = _fast_openai(text)
    body = request.body
    members = len(request.model_fields_set) + len(body.model_fields_set)
    extra, colons, body_params = body.model_extra, 0, NO_BODY_PARAMS
    if extra:
        checked = _fast_body_params(extra)
        if checked is None:
            return None
        body_params, nested_members, colons = checked
        members += nested_members
    return _FastRead(request.custom_id, body.messages, body.model, members, colons, body_params)


_CheckedParams = tuple[BodyParams, int, int]  # and the members and colons inside them
_checked_params_memo: dict[tuple[tuple[str, type, Any], ...], _CheckedParams | None] = {}
_MEMO_SIZE = 256


def _fast_body_params(extra: dict[str, Any]) -> _CheckedParams | None:
    """``check_body_params`` (None if it gives a reason), and the members and colons inside.

    Memoized for parameters that are all scalars: a file tends to repeat a few sets of
    them (the type is in the key, as ``1 == 1.0 == true``).
    """
    key = tuple([(name, value.__class__, value) for name, value in extra.items()])
    try:
        return _checked_params_memo[key]
    except KeyError:
        pass
    except TypeError:  # an array or object: not memoized
        return _checked_body_params(extra)
    if len(_checked_params_memo) >= _MEMO_SIZE:
        _checked_params_memo.clear()
    checked = _checked_params_memo[key] = _checked_body_params(extra)
    return checked


def _checked_body_params(extra: dict[str, Any]) -> _CheckedParams | None:
    reasons: list[str] = []
    body_params = check_body_params(extra, reasons)
    if reasons:
        return None
    return (body_params, *_members_and_colons(extra))


def _members_and_colons(obj: Mapping[str, Any]) -> tuple[int, int]:
    """Object members inside ``obj``'s values, and colons in its keys and strings."""
    members = colons = 0
    pending: list[Any] = [obj]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            colons += value.count(":")
        elif isinstance(value, dict):
            if value is not obj:
                members += len(value)
            colons += sum(key.count(":") for key in value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return members, colons
