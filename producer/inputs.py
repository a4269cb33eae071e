"""Prompt files in: read and validate every line of a JSONL file before anything is enqueued.

Each non-blank line is one JSON object in either of two forms:

- native: ``{"custom_id": "q1", "messages": [...], "model": "gpt-4o"}``, where
  ``custom_id`` (default: the line number) and ``model`` (default: the configured
  default model) are optional and no other key is allowed, so a typo such as
  ``"mesages"`` is reported instead of silently dropped;
- an OpenAI Batch API request line: ``{"custom_id": ..., "method": "POST",
  "url": "/v1/chat/completions", "body": {"model": ..., "messages": [...]}}``,
  recognised by any of ``body``/``method``/``url``. Other keys inside ``body``
  (temperature, max_tokens, ...) are ignored: chatgpt.es has no such knobs.

A message is ``{"role": "system"|"user"|"assistant", "content": ...}`` (an OpenAI
``name`` is accepted and ignored) whose content is a non-blank string or a list
of OpenAI text parts, joined with newlines. Message indexes in reasons count
from 0, as in JSON paths. Blank lines are skipped but keep their line numbers.

A file with any bad line yields nothing: ``InputFileError`` lists every problem.
"""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from contract.config import KNOWN_MODELS
from contract.models import Message, check_model

ROLES: tuple[str, ...] = ("system", "user", "assistant")
MAX_CUSTOM_ID_CHARS = 256
MAX_LISTED_PROBLEMS = 100
OPENAI_METHOD = "POST"
OPENAI_URL = "/v1/chat/completions"

_NATIVE_KEYS = frozenset({"custom_id", "messages", "model"})
_OPENAI_KEYS = frozenset({"custom_id", "method", "url", "body"})
_OPENAI_MARKERS = frozenset({"body", "method", "url"})
_MESSAGE_KEYS = frozenset({"role", "content", "name"})
_IMAGE_PART_TYPES = frozenset({"image_url", "input_image", "image"})
_PART_JOINER = "\n"
_decode_json = json.JSONDecoder().decode  # skips json.loads' per-call argument handling


@dataclass(frozen=True)
class PromptLine:
    """One valid input line, ready to become a ``PromptRequest``."""

    line_number: int
    custom_id: str
    messages: tuple[Message, ...]
    model: str


@dataclass(frozen=True)
class LineProblem:
    """Why one line was rejected; a line may have several."""

    line_number: int
    reason: str


class InputFileError(ValueError):
    """Raised when a prompts file has any bad line, or no prompts at all; carries every problem."""

    def __init__(self, source: str, problems: Sequence[LineProblem]) -> None:
        self.source = source
        self.problems: tuple[LineProblem, ...] = tuple(problems)
        super().__init__(describe_problems(source, self.problems))


def describe_problems(source: str, problems: Sequence[LineProblem]) -> str:
    """The report a user reads: how many lines are bad, then each problem (at most 100)."""
    if not problems:
        return f"no prompts in {source}: it is empty or holds only blank lines"
    bad_lines = len({problem.line_number for problem in problems})
    noun = "line" if bad_lines == 1 else "lines"
    listed = [f"  line {p.line_number}: {p.reason}" for p in problems[:MAX_LISTED_PROBLEMS]]
    if len(problems) > MAX_LISTED_PROBLEMS:
        listed.append(f"  ... and {len(problems) - MAX_LISTED_PROBLEMS} more problems")
    return f"{bad_lines} bad {noun} in {source}:\n" + "\n".join(listed)


class _FastNative(BaseModel):
    """A valid native line, checked in one pydantic pass; anything else takes the slow path."""

    model_config = ConfigDict(extra="forbid")
    custom_id: str = Field("", min_length=1, max_length=MAX_CUSTOM_ID_CHARS)
    messages: tuple[Message, ...] = Field(min_length=1)
    model: str | None = None


class _FastBody(BaseModel):
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


@dataclass
class _Line:
    """What one line yielded: its fields where they were valid, and its problems."""

    custom_id: str | None = None  # None: not given, or given but invalid
    custom_id_invalid: bool = False
    messages: tuple[Message, ...] = ()
    model: str | None = None
    reasons: list[str] = field(default_factory=list)
    is_object: bool = False


def parse_prompt_lines(
    lines: Iterable[str],
    *,
    source: str = "<input>",
    default_model: str,
    max_prompt_chars: int,
    model_override: str | None = None,
) -> list[PromptLine]:
    """Every prompt in ``lines``, or ``InputFileError`` listing every bad line.

    ``model_override`` replaces every line's model (a line's own ``model`` is then
    not checked); a bad override or default model is one ``ValueError``.
    """
    fallback_model = _checked_fallback_model(default_model, model_override)
    with _cyclic_gc_paused():
        prompts, problems = _collect(lines, max_prompt_chars, fallback_model, model_override)
    if problems or not prompts:
        raise InputFileError(source, problems)
    return prompts


def _collect(
    lines: Iterable[str], max_prompt_chars: int, fallback_model: str, model_override: str | None
) -> tuple[list[PromptLine], list[LineProblem]]:
    prompts: list[PromptLine] = []
    problems: list[LineProblem] = []
    first_use: dict[str, tuple[int, bool]] = {}  # custom_id → (line, was it a default id)
    for line_number, text in enumerate(lines, start=1):
        if line_number == 1:
            text = text.removeprefix("\ufeff")
        if not text or text.isspace():
            continue
        check_line_model = model_override is None
        line = _parse_valid_line(text, max_prompt_chars, check_line_model) or _parse_line(
            text, max_prompt_chars, check_line_model=check_line_model
        )
        custom_id = _register_custom_id(line, line_number, first_use)
        if line.reasons:
            problems.extend(LineProblem(line_number, reason) for reason in line.reasons)
        elif custom_id is not None:
            model = model_override or line.model or fallback_model
            prompts.append(PromptLine(line_number, custom_id, line.messages, model))
    return prompts, problems


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    # parsing builds only acyclic objects, which the cyclic GC would rescan: ~40% of the time
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def read_prompt_file(
    path_or_dash: str,
    *,
    default_model: str,
    max_prompt_chars: int,
    model_override: str | None = None,
) -> list[PromptLine]:
    """Every prompt in the file (``-`` reads stdin); see ``parse_prompt_lines``.

    A missing or unreadable file raises the ``OSError`` from ``open``.
    """
    kwargs: dict[str, Any] = {
        "default_model": default_model,
        "max_prompt_chars": max_prompt_chars,
        "model_override": model_override,
    }
    if path_or_dash == "-":
        return parse_prompt_lines(_stdin_lines(), source="<stdin>", **kwargs)
    with open(path_or_dash, "rb") as stream:
        return parse_prompt_lines(_decoded(stream), source=path_or_dash, **kwargs)


def _stdin_lines() -> Iterable[str]:
    buffer = getattr(sys.stdin, "buffer", None)
    return sys.stdin if buffer is None else _decoded(buffer)


def _decoded(raw_lines: Iterable[bytes]) -> Iterator[str]:
    # surrogateescape keeps a bad byte on its own line, where _parse_line reports it
    for raw in raw_lines:
        yield raw.decode("utf-8", "surrogateescape")


def _checked_fallback_model(default_model: str, model_override: str | None) -> str:
    if model_override is not None:
        try:
            return check_model(model_override)
        except ValueError as exc:
            raise ValueError(f"model override: {exc}") from None
    try:
        return check_model(default_model)
    except ValueError as exc:
        raise ValueError(f"default model: {exc}") from None


def _register_custom_id(
    line: _Line, line_number: int, first_use: dict[str, tuple[int, bool]]
) -> str | None:
    """The line's id (given or defaulted), or None; a duplicate adds a reason to ``line``."""
    if not line.is_object or line.custom_id_invalid:
        return None
    defaulted = line.custom_id is None
    custom_id = line.custom_id or str(line_number)
    earlier = first_use.get(custom_id)
    if earlier is None:
        first_use[custom_id] = (line_number, defaulted)
        return custom_id
    earlier_line, earlier_defaulted = earlier
    if defaulted:
        line.reasons.append(
            f"custom_id: not given, and the default (the line number, {custom_id!r}) "
            f"is already used on line {earlier_line}"
        )
    elif earlier_defaulted:
        line.reasons.append(
            f"custom_id: {custom_id!r} is already the default id of line {earlier_line}, "
            "which has no custom_id (a line without one is named by its line number)"
        )
    else:
        line.reasons.append(f"custom_id: {custom_id!r} is already used on line {earlier_line}")
    return None


def _parse_valid_line(text: str, max_prompt_chars: int, check_line_model: bool) -> _Line | None:
    """The fast path for the common case, a valid line; None sends the line to ``_parse_line``.

    It only ever accepts what ``_parse_line`` accepts; ``_parse_line`` words the reasons.
    """
    try:
        if '"body"' in text:  # a guess at the form: a wrong one only costs the slow path
            request = _fast_openai(text)
            messages, model = request.body.messages, request.body.model
        else:
            request = _fast_native(text)
            messages, model = request.messages, request.model
    except ValidationError:
        return None
    if (
        (request.custom_id and not request.custom_id.strip())
        or messages[-1].role != "user"
        or (check_line_model and model is not None and model not in KNOWN_MODELS)
        or sum(len(message.content) for message in messages) > max_prompt_chars
    ):
        return None
    return _Line(
        custom_id=request.custom_id or None, messages=messages, model=model, is_object=True
    )


def _parse_line(text: str, max_prompt_chars: int, *, check_line_model: bool) -> _Line:
    """Every problem of one line, worded for a user (or its fields, if it has none)."""
    line = _Line()
    if not text.isascii() and _has_undecodable_bytes(text):
        line.reasons.append("not valid UTF-8 text")
        return line
    try:
        obj = _decode_json(text)
    except json.JSONDecodeError as exc:
        line.reasons.append(f"not valid JSON: {exc.msg} (column {exc.colno})")
        return line
    if not isinstance(obj, dict):
        line.reasons.append(f"expected a JSON object, got {_json_type(obj)}")
        return line
    line.is_object = True
    _check_custom_id(obj, line)
    if _OPENAI_MARKERS.intersection(obj):
        request, prefix = _openai_body(obj, line.reasons), "body."
    else:
        request, prefix = obj, ""
        _check_known_keys(obj, _NATIVE_KEYS, "", line.reasons)
    if request is None:
        return line
    line.messages = _check_messages(request.get("messages"), prefix + "messages", line.reasons)
    if check_line_model:
        line.model = _check_line_model(request.get("model"), prefix + "model", line.reasons)
    size = sum(len(message.content) for message in line.messages)
    if size > max_prompt_chars:
        line.reasons.append(
            f"prompt is {size:,} characters over all messages; the limit is {max_prompt_chars:,}"
        )
    return line


def _has_undecodable_bytes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_custom_id(obj: dict[str, Any], line: _Line) -> None:
    if "custom_id" not in obj:
        return
    custom_id = obj["custom_id"]
    if not isinstance(custom_id, str) or not custom_id.strip():
        line.reasons.append(f"custom_id: must be a non-empty string, got {_shown(custom_id)}")
    elif len(custom_id) > MAX_CUSTOM_ID_CHARS:
        line.reasons.append(
            f"custom_id: {len(custom_id)} characters is longer than the limit "
            f"of {MAX_CUSTOM_ID_CHARS}"
        )
    else:
        line.custom_id = custom_id
        return
    line.custom_id_invalid = True


def _check_known_keys(
    obj: dict[str, Any], allowed: frozenset[str], prefix: str, reasons: list[str]
) -> None:
    if obj.keys() <= allowed:
        return
    unknown = sorted(key for key in obj if key not in allowed)
    if unknown:
        noun = "key" if len(unknown) == 1 else "keys"
        names = ", ".join(repr(key) for key in unknown)
        reasons.append(
            f"{prefix}unknown {noun} {names}; expected only {', '.join(sorted(allowed))}"
        )


def _openai_body(obj: dict[str, Any], reasons: list[str]) -> dict[str, Any] | None:
    """The ``body`` of an OpenAI Batch request line, checking its envelope on the way."""
    _check_known_keys(obj, _OPENAI_KEYS, "", reasons)
    method, url = obj.get("method"), obj.get("url")
    if method != OPENAI_METHOD:
        reasons.append(
            f"method: must be {OPENAI_METHOD!r} (OpenAI batch form), got {_shown(method)}"
        )
    if url != OPENAI_URL:
        reasons.append(f"url: must be {OPENAI_URL!r} (OpenAI batch form), got {_shown(url)}")
    body = obj.get("body")
    if not isinstance(body, dict):
        what = "missing" if "body" not in obj else f"must be an object, got {_json_type(body)}"
        reasons.append(f"body: {what} (OpenAI batch form)")
        return None
    return body


def _check_line_model(model: Any, where: str, reasons: list[str]) -> str | None:
    if model is None:
        return None
    if not isinstance(model, str):
        reasons.append(f"{where}: must be a string, got {_json_type(model)}")
        return None
    try:
        return check_model(model)
    except ValueError as exc:
        reasons.append(f"{where}: {exc}")
        return None


def _check_messages(raw: Any, where: str, reasons: list[str]) -> tuple[Message, ...]:
    """The messages if every one is valid (and the last is the user's), else ``()``."""
    if raw is None:
        reasons.append(f"{where}: missing; expected a non-empty list of messages")
        return ()
    if not isinstance(raw, list) or not raw:
        got = "an empty list" if isinstance(raw, list) else _json_type(raw)
        reasons.append(f"{where}: must be a non-empty list of messages, got {got}")
        return ()
    count_before = len(reasons)
    messages = [
        _plain_message(item) or _check_message(item, f"{where}[{index}]", reasons)
        for index, item in enumerate(raw)
    ]
    last = raw[-1]
    last_role = last.get("role") if isinstance(last, dict) else None
    if last_role in ROLES and last_role != "user":
        reasons.append(
            f"{where}[{len(raw) - 1}].role: the last message must be the user's, not {last_role!r}"
        )
    if len(reasons) > count_before:
        return ()
    return tuple(message for message in messages if message is not None)


def _plain_message(item: Any) -> Message | None:
    """The common case checked fast: a valid message with string content, else None."""
    if isinstance(item, dict) and item.keys() <= _MESSAGE_KEYS:
        role, content = item.get("role"), item.get("content")
        if role in ROLES and isinstance(content, str) and content and not content.isspace():
            return Message(role=role, content=content)
    return None


def _check_message(item: Any, where: str, reasons: list[str]) -> Message | None:
    """Every problem of one message (or the message, e.g. one with text parts)."""
    if not isinstance(item, dict):
        reasons.append(f"{where}: must be an object with role and content, got {_json_type(item)}")
        return None
    count_before = len(reasons)
    _check_known_keys(item, _MESSAGE_KEYS, f"{where}: ", reasons)
    role = item.get("role")
    if "role" not in item:
        reasons.append(f"{where}.role: missing; expected one of {', '.join(ROLES)}")
    elif role not in ROLES:
        reasons.append(f"{where}.role: {_shown(role)} is not one of {', '.join(ROLES)}")
    content = _check_content(item.get("content"), "content" in item, f"{where}.content", reasons)
    if len(reasons) > count_before or content is None:
        return None
    return Message(role=role, content=content)


def _check_content(raw: Any, present: bool, where: str, reasons: list[str]) -> str | None:
    """The message text: a non-blank string, or OpenAI text parts joined by newlines."""
    if isinstance(raw, str):
        text = raw
    elif isinstance(raw, list) and raw:
        text = _join_text_parts(raw, where, reasons)
        if text is None:
            return None
    else:
        got = "missing" if not present else f"got {_shown(raw)}"
        reasons.append(f"{where}: must be a non-empty string or a list of text parts; {got}")
        return None
    if not text.strip():
        reasons.append(f"{where}: must be a non-empty string, got only whitespace")
        return None
    return text


def _join_text_parts(parts: list[Any], where: str, reasons: list[str]) -> str | None:
    texts: list[str] = []
    count_before = len(reasons)
    for index, part in enumerate(parts):
        part_where = f"{where}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "text":
            reasons.append(f"{part_where}.text: must be a string, got {_shown(part.get('text'))}")
        elif kind in _IMAGE_PART_TYPES:
            reasons.append(
                f"{part_where}: image parts are not supported; chatgpt.es takes text only"
            )
        elif isinstance(part, dict):
            reasons.append(
                f"{part_where}.type: {_shown(kind)} parts are not supported; only 'text' parts are"
            )
        else:
            reasons.append(f"{part_where}: must be a text part object, got {_json_type(part)}")
    if len(reasons) > count_before:
        return None
    return _PART_JOINER.join(texts)


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for reasons a user reads."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _shown(value: Any) -> str:
    """A short string quoted, a number or literal as JSON text, anything bigger by its type."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else f"a {len(value)}-character string"
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    return _json_type(value)
