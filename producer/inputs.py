"""Prompt files in: read and validate every line of a JSONL file before anything is enqueued.

Each non-blank line is one JSON object in either of two forms:

- native: ``{"custom_id": "q1", "messages": [...], "model": "gpt-4o"}``, where
  ``custom_id`` (default: the line number) and ``model`` (default: the configured
  default model) are optional and no other key is allowed, so a typo such as
  ``"mesages"`` is reported (with a suggestion) instead of silently dropped;
- an OpenAI Batch API request line: ``{"custom_id": ..., "method": "POST",
  "url": "/v1/chat/completions", "body": {"model": ..., "messages": [...], ...}}``,
  recognised by any of ``body``/``method``/``url``. The other keys of ``body`` are
  request parameters, each refused, honoured or accepted with a warning as
  ``producer.params`` lists; an unknown one (``"temprature"``) is refused.

A message is ``{"role": "system"|"user"|"assistant", "content": ...}`` (an OpenAI
``name`` is accepted and ignored) whose content is a non-blank string or a list
of OpenAI text parts, joined with newlines. Message indexes in reasons count
from 0, as in JSON paths. Blank lines are skipped but keep their line numbers.

A line is also refused, with its number, if it: is not UTF-8; starts with a byte
order mark (only the first line may); is longer than ``max_line_bytes`` (12 bytes
per prompt character, the longest escape of one, plus 64 KiB for the rest); nests
arrays and objects more than ``MAX_NESTING`` deep; repeats a key in any object
(JSON parsers would silently keep the last); or holds a lone UTF-16 surrogate
escape (``"\\ud800"``: not Unicode, it could not be stored). A trailing ``\\r``
(CRLF line ends) is fine.

A file with any bad line yields nothing: ``InputFileError`` lists every problem.
``read_prompt_file`` can also refuse a whole input larger than ``max_input_bytes``
(``InputTooLargeError``, before reading a file, as soon as stdin sends more).
"""

from __future__ import annotations

import errno
import gc
import json
import os
import re
import stat
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from contract.config import KNOWN_MODELS
from contract.models import Message, check_model
from producer.params import (
    KNOWN_PARAMETERS,
    MAX_NAMED_UNKNOWN_KEYS,
    NO_BODY_PARAMS,
    BodyParams,
    check_body_params,
    json_type,
    shown,
    suggestion,
)

ROLES: tuple[str, ...] = ("system", "user", "assistant")
MAX_CUSTOM_ID_CHARS = 256
MAX_LISTED_PROBLEMS = 100
MAX_NESTING = 64  # levels of arrays and objects; a prompt line needs fewer than 10
LINE_BYTES_PER_PROMPT_CHAR = 12  # "\ud83d\ude00": the longest JSON escape of one character
LINE_SLACK_BYTES = 64 * 1024  # keys, custom_id, parameters, text-part wrappers
MAX_INPUT_BYTES_SETTING = "CHATGPTES_MAX_INPUT_BYTES"
OPENAI_METHOD = "POST"
OPENAI_URL = "/v1/chat/completions"

_NATIVE_KEYS = frozenset({"custom_id", "messages", "model"})
_OPENAI_KEYS = frozenset({"custom_id", "method", "url", "body"})
_OPENAI_MARKERS = frozenset({"body", "method", "url"})
_MESSAGE_KEYS = frozenset({"role", "content", "name"})
_IMAGE_PART_TYPES = frozenset({"image_url", "input_image", "image"})
_PART_JOINER = "\n"
_BYTE_ORDER_MARK = "\ufeff"
_ESCAPED_COLON = "\\u003"  # the start of "\u003a": a colon the fast path cannot count
_TOO_DEEP = f"nested too deeply: more than {MAX_NESTING} levels of arrays and objects"
# a JSON string (possessive, so linear even unterminated) or a bracket
_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)|[\[\]{}]', re.DOTALL)
_NESTING_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


@dataclass(frozen=True)
class PromptLine:
    """One valid input line, ready to become a ``PromptRequest``.

    ``params`` holds the request parameters the worker honours (``stop`` as a list of
    strings, ``response_format`` ``{"type": "json_object"}``), as plain JSON values;
    ``warnings`` one sentence per parameter accepted but not honoured.
    """

    line_number: int
    custom_id: str
    messages: tuple[Message, ...]
    model: str
    params: Mapping[str, Any] = field(default_factory=lambda: NO_BODY_PARAMS.params, hash=False)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class LineProblem:
    """Why one line was rejected; a line may have several."""

    line_number: int
    reason: str


class InputFileError(ValueError):
    """Raised when a prompts file has any bad line, or no prompts at all; carries every problem.

    ``message`` replaces the usual report, for an input refused whole.
    """

    def __init__(
        self, source: str, problems: Sequence[LineProblem], *, message: str | None = None
    ) -> None:
        self.source = source
        self.problems: tuple[LineProblem, ...] = tuple(problems)
        super().__init__(message or describe_problems(source, self.problems))


class InputTooLargeError(InputFileError):
    """An input over ``max_input_bytes``: a file refused before it is read, stdin cut short.

    ``size`` is the file's size, or None when only "more than ``limit``" is known.
    """

    def __init__(self, source: str, limit: int, size: int | None = None) -> None:
        self.limit = limit
        self.size = size
        where = f"the limit ({MAX_INPUT_BYTES_SETTING})"
        if size is None:
            what = f"sent more than {limit:,} bytes, {where}; reading stopped there"
        else:
            what = f"is {size:,} bytes, more than {limit:,} bytes, {where}"
        message = f"{source} {what}: split it into smaller files, or raise the limit"
        super().__init__(source, (), message=message)


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


def summarize_warnings(lines: Sequence[PromptLine]) -> list[str]:
    """One line per distinct warning, with how many prompts it concerns, first seen first.

    E.g. ``"temperature (120 prompts): accepted but not honoured: chatgpt.es has no
    such setting"``.
    """
    counts = Counter(warning for line in lines for warning in line.warnings)
    return [_warning_summary(warning, count) for warning, count in counts.items()]


def _warning_summary(warning: str, count: int) -> str:
    prompts = f"{count:,} prompt{'' if count == 1 else 's'}"
    name, is_, rest = warning.partition(" is ")  # "<parameter> is accepted but <why>"
    return f"{name} ({prompts}): {rest}" if is_ else f"{warning} ({prompts})"


def max_line_bytes(max_prompt_chars: int) -> int:
    """The longest line accepted: enough for a full prompt written all in escapes."""
    return LINE_BYTES_PER_PROMPT_CHAR * max_prompt_chars + LINE_SLACK_BYTES


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


@dataclass
class _Line:
    """What one line yielded: its fields where they were valid, and its problems."""

    custom_id: str | None = None  # None: not given, or given but invalid
    custom_id_invalid: bool = False
    messages: tuple[Message, ...] = ()
    model: str | None = None
    reasons: list[str] = field(default_factory=list)
    is_object: bool = False
    body_params: BodyParams = NO_BODY_PARAMS


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
    not checked); a bad override or default model is one ``ValueError``. Warnings
    about parameters accepted but not honoured are on each line; see
    ``summarize_warnings``.
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
    check_line_model = model_override is None
    quarter_line_limit = max_line_bytes(max_prompt_chars) // 4  # a character: 1-4 bytes
    for line_number, text in enumerate(lines, start=1):
        if line_number == 1:
            text = text.removeprefix(_BYTE_ORDER_MARK)
        if not text or text.isspace():
            continue
        if text[0] == _BYTE_ORDER_MARK or len(text) > quarter_line_limit:
            refusal = _refused_unread(text, max_prompt_chars)
            if refusal is not None:
                problems.append(LineProblem(line_number, refusal))
                continue
        line = _parse_valid_line(text, max_prompt_chars, check_line_model) or _parse_line(
            text, max_prompt_chars, check_line_model=check_line_model
        )
        custom_id = _register_custom_id(line, line_number, first_use)
        if line.reasons:
            problems.extend(LineProblem(line_number, reason) for reason in line.reasons)
        elif custom_id is not None:
            model = model_override or line.model or fallback_model
            body_params = line.body_params
            prompts.append(
                PromptLine(
                    line_number,
                    custom_id,
                    line.messages,
                    model,
                    body_params.params,
                    body_params.warnings,
                )
            )
    return prompts, problems


def _refused_unread(text: str, max_prompt_chars: int) -> str | None:
    """Why a line is refused before it is parsed (a stray BOM, a huge line), if it is."""
    if text[0] == _BYTE_ORDER_MARK:
        return (
            "starts with a byte order mark (U+FEFF), which only a file's first line may "
            "have: were two files joined?"
        )
    size, limit = len(text.encode("utf-8", "surrogatepass")), max_line_bytes(max_prompt_chars)
    if size <= limit:
        return None
    return (
        f"line is {size:,} bytes long; the limit is {limit:,} bytes "
        f"({LINE_BYTES_PER_PROMPT_CHAR} bytes per character of the {max_prompt_chars:,}-"
        "character prompt limit, plus 64 KiB)"
    )


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
    max_input_bytes: int | None = None,
) -> list[PromptLine]:
    """Every prompt in the file (``-`` reads stdin); see ``parse_prompt_lines``.

    ``max_input_bytes`` (the CLI passes ``CHATGPTES_MAX_INPUT_BYTES``; None: no limit)
    refuses a larger file before reading it, and stdin as soon as it sends more, with
    ``InputTooLargeError``. A directory raises ``IsADirectoryError`` naming it; a
    missing or unreadable file raises the ``OSError`` from ``open``.
    """
    if max_input_bytes is not None and max_input_bytes < 1:
        raise ValueError(f"max_input_bytes must be positive, got {max_input_bytes}")
    kwargs: dict[str, Any] = {
        "default_model": default_model,
        "max_prompt_chars": max_prompt_chars,
        "model_override": model_override,
    }
    if path_or_dash == "-":
        lines = _stdin_lines(max_input_bytes)
        return parse_prompt_lines(lines, source="<stdin>", **kwargs)
    if os.path.isdir(path_or_dash):
        raise IsADirectoryError(errno.EISDIR, "a directory, not a prompts file", path_or_dash)
    with open(path_or_dash, "rb") as stream:
        _check_file_size(stream, path_or_dash, max_input_bytes)
        lines = _decoded(_limited(stream, path_or_dash, max_input_bytes))
        return parse_prompt_lines(lines, source=path_or_dash, **kwargs)


def _check_file_size(stream: IO[bytes], source: str, max_input_bytes: int | None) -> None:
    """Refuses a regular file over the limit before reading it (a pipe is counted as read)."""
    if max_input_bytes is None:
        return
    status = os.fstat(stream.fileno())
    if stat.S_ISREG(status.st_mode) and status.st_size > max_input_bytes:
        raise InputTooLargeError(source, max_input_bytes, status.st_size)


def _limited(stream: IO[bytes], source: str, max_input_bytes: int | None) -> Iterator[bytes]:
    """The stream's lines, stopping with ``InputTooLargeError`` once it is over the limit."""
    if max_input_bytes is None:
        yield from stream
        return
    read = 0
    while raw := stream.readline(max_input_bytes - read + 1):
        read += len(raw)
        if read > max_input_bytes:
            raise InputTooLargeError(source, max_input_bytes)
        yield raw


def _stdin_lines(max_input_bytes: int | None) -> Iterable[str]:
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        return _decoded(_limited(buffer, "<stdin>", max_input_bytes))
    return sys.stdin if max_input_bytes is None else _limited_text(sys.stdin, max_input_bytes)


def _limited_text(stream: Iterable[str], max_input_bytes: int) -> Iterator[str]:
    """A text-only stdin's lines, counted in UTF-8 bytes like a binary one."""
    read = 0
    for text in stream:
        read += len(text.encode("utf-8", "surrogatepass"))
        if read > max_input_bytes:
            raise InputTooLargeError("<stdin>", max_input_bytes)
        yield text


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


# --- the fast path ---


class _FastRead(NamedTuple):
    """An OpenAI line pydantic validated, and what it takes to be sure no key was repeated."""

    custom_id: str
    messages: tuple[Message, ...]
    model: str | None
    members: int  # object members pydantic kept, other than each message's role and content
    colons: int  # colons inside the strings of those members
    body_params: BodyParams


def _parse_valid_line(text: str, max_prompt_chars: int, check_line_model: bool) -> _Line | None:
    """The fast path for the common case, a valid line; None sends the line to ``_parse_line``.

    It only ever accepts what ``_parse_line`` accepts; ``_parse_line`` words the reasons.
    pydantic's parser refuses lone surrogates itself, but keeps the last of repeated
    keys silently: as every colon outside a string is one object member, the line's
    colons must be those of the members pydantic kept plus those in its strings.
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
        content = message.content
        size += len(content)
        colons += content.count(":")
    if (
        (custom_id and not custom_id.strip())
        or messages[-1].role != "user"
        or (check_line_model and model is not None and model not in KNOWN_MODELS)
        or size > max_prompt_chars
    ):
        return None
    colons += custom_id.count(":") + (model.count(":") if model else 0)
    if text.count(":") != members + 2 * len(messages) + colons:
        return None  # a repeated key
    if colons and _ESCAPED_COLON in text:
        return None  # "\u003a", a colon that is not in the count: a repeat may hide behind it
    return _Line(
        custom_id=custom_id or None,
        messages=messages,
        model=model,
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


# --- the slow path: every problem, worded ---


def _parse_line(text: str, max_prompt_chars: int, *, check_line_model: bool) -> _Line:
    """Every problem of one line, worded for a user (or its fields, if it has none)."""
    line = _Line()
    undecodable = _undecodable(text)
    if undecodable is not None:
        line.reasons.append(undecodable)
        return line
    obj = _decode_line(text, line.reasons)
    if not isinstance(obj, dict):
        if not line.reasons:
            line.reasons.append(f"expected a JSON object, got {json_type(obj)}")
        return line
    line.is_object = True
    line.reasons.extend(_repeated_keys_and_lone_surrogates(obj))
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
    if prefix:
        line.body_params = check_body_params(request, line.reasons)
    size = sum(len(message.content) for message in line.messages)
    if size > max_prompt_chars:
        line.reasons.append(
            f"prompt is {size:,} characters over all messages; the limit is {max_prompt_chars:,}"
        )
    return line


def _undecodable(text: str) -> str | None:
    """Why the text is not UTF-8, if it is not: the bytes ``_decoded`` could not decode."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = ord(text[exc.start])
        what = f"byte 0x{bad - 0xDC00:02X}" if 0xDC80 <= bad <= 0xDCFF else f"U+{bad:04X}"
        return (
            f"not valid UTF-8 text: {what} at column {exc.start + 1} "
            "(a binary file, or another encoding such as UTF-16 or Latin-1?)"
        )
    return None


class _RepeatedKeys(dict[str, Any]):
    """A decoded JSON object that had some key more than once (the last value kept)."""

    repeated: tuple[str, ...] = ()


def _object_from_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A decoded object; a ``_RepeatedKeys`` if a key came more than once."""
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    counts = Counter(key for key, _ in pairs)
    marked = _RepeatedKeys(obj)
    marked.repeated = tuple(key for key, count in counts.items() if count > 1)
    return marked


_decode_json = json.JSONDecoder(object_pairs_hook=_object_from_pairs).decode


class _NotJSON:
    """What ``_decode_line`` returns for a line that is not JSON (its reason already given)."""


def _decode_line(text: str, reasons: list[str]) -> Any:
    """The line's JSON value, or a ``_NotJSON`` and a reason."""
    if _nested_too_deeply(text):
        reasons.append(_TOO_DEEP)
        return _NotJSON()
    try:
        return _decode_json(text)
    except RecursionError:  # not expected after the check above, but never a traceback
        reasons.append(_TOO_DEEP)
    except json.JSONDecodeError as exc:
        reasons.append(_json_error_reason(exc))
    return _NotJSON()


def _nested_too_deeply(text: str) -> bool:
    """Whether arrays and objects nest more than ``MAX_NESTING`` deep (strings skipped)."""
    if text.count("[") + text.count("{") <= MAX_NESTING:
        return False
    depth = 0
    for token in _STRING_OR_BRACKET.findall(text):
        depth += _NESTING_STEP.get(token, 0)
        if depth > MAX_NESTING:
            return True
    return False


def _json_error_reason(exc: json.JSONDecodeError) -> str:
    char = exc.doc[exc.pos] if exc.pos < len(exc.doc) else ""
    if char and char < " " and char not in "\t\n\r":
        return (
            f"not valid JSON: control character U+{ord(char):04X} at column {exc.colno} "
            "(binary data, or a raw control character inside a string)"
        )
    return f"not valid JSON: {exc.msg} (column {exc.colno})"


def _repeated_keys_and_lone_surrogates(obj: dict[str, Any]) -> list[str]:
    """A reason per repeated key and per string or key holding a lone surrogate, by path."""
    reasons: list[str] = []
    pending: list[tuple[str, Any]] = [("", obj)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            surrogate = _lone_surrogate(value)
            if surrogate is not None:
                reasons.append(f"{path}: contains {surrogate}")
        elif isinstance(value, dict):
            prefix = f"{path}: " if path else ""
            for key in getattr(value, "repeated", ()):
                reasons.append(f"{prefix}duplicate key {shown(key)}")
            for key in value:
                surrogate = _lone_surrogate(key)
                if surrogate is not None:
                    reasons.append(f"{prefix}a key contains {surrogate}")
            children = [(_key_path(path, key), item) for key, item in value.items()]
            pending.extend(reversed(children))
        elif isinstance(value, list):
            children = [(f"{path}[{index}]", item) for index, item in enumerate(value)]
            pending.extend(reversed(children))
    return reasons


def _key_path(path: str, key: str) -> str:
    shortened = key if len(key) <= 40 else key[:37] + "..."
    return f"{path}.{shortened}" if path else shortened


def _lone_surrogate(text: str) -> str | None:
    """The first lone surrogate in ``text``, described with its JSON escape, if there is one."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        escape = f"\\u{ord(text[exc.start]):04x}"
        return f"a lone surrogate ({escape}), which is not valid Unicode"
    return None


def _check_custom_id(obj: dict[str, Any], line: _Line) -> None:
    if "custom_id" not in obj:
        return
    custom_id = obj["custom_id"]
    if not isinstance(custom_id, str) or not custom_id.strip():
        line.reasons.append(f"custom_id: must be a non-empty string, got {shown(custom_id)}")
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
    noun = "key" if len(unknown) == 1 else "keys"
    names = ", ".join(_with_suggestion(key, allowed) for key in unknown[:MAX_NAMED_UNKNOWN_KEYS])
    if len(unknown) > MAX_NAMED_UNKNOWN_KEYS:
        names += f" and {len(unknown) - MAX_NAMED_UNKNOWN_KEYS} more"
    reason = f"{prefix}unknown {noun} {names}; expected only {', '.join(sorted(allowed))}"
    if allowed is _NATIVE_KEYS and KNOWN_PARAMETERS.intersection(unknown):
        reason += " (request parameters are read only from an OpenAI request line's body)"
    reasons.append(reason)


def _with_suggestion(key: str, allowed: frozenset[str]) -> str:
    close = suggestion(key, allowed)
    return shown(key) if close is None else f"{shown(key)} (did you mean {close!r}?)"


def _openai_body(obj: dict[str, Any], reasons: list[str]) -> dict[str, Any] | None:
    """The ``body`` of an OpenAI Batch request line, checking its envelope on the way."""
    _check_known_keys(obj, _OPENAI_KEYS, "", reasons)
    method, url = obj.get("method"), obj.get("url")
    if method != OPENAI_METHOD:
        reasons.append(
            f"method: must be {OPENAI_METHOD!r} (OpenAI batch form), got {shown(method)}"
        )
    if url != OPENAI_URL:
        reasons.append(f"url: must be {OPENAI_URL!r} (OpenAI batch form), got {shown(url)}")
    body = obj.get("body")
    if not isinstance(body, dict):
        what = "missing" if "body" not in obj else f"must be an object, got {json_type(body)}"
        reasons.append(f"body: {what} (OpenAI batch form)")
        return None
    return body


def _check_line_model(model: Any, where: str, reasons: list[str]) -> str | None:
    if model is None:
        return None
    if not isinstance(model, str):
        reasons.append(f"{where}: must be a string, got {json_type(model)}")
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
        got = "an empty list" if isinstance(raw, list) else json_type(raw)
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
        reasons.append(f"{where}: must be an object with role and content, got {json_type(item)}")
        return None
    count_before = len(reasons)
    _check_known_keys(item, _MESSAGE_KEYS, f"{where}: ", reasons)
    role = item.get("role")
    if "role" not in item:
        reasons.append(f"{where}.role: missing; expected one of {', '.join(ROLES)}")
    elif role not in ROLES:
        reasons.append(f"{where}.role: {shown(role)} is not one of {', '.join(ROLES)}")
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
        got = "missing" if not present else f"got {shown(raw)}"
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
            reasons.append(f"{part_where}.text: must be a string, got {shown(part.get('text'))}")
        elif kind in _IMAGE_PART_TYPES:
            reasons.append(
                f"{part_where}: image parts are not supported; chatgpt.es takes text only"
            )
        elif isinstance(part, dict):
            reasons.append(
                f"{part_where}.type: {shown(kind)} parts are not supported; only 'text' parts are"
            )
        else:
            reasons.append(f"{part_where}: must be a text part object, got {json_type(part)}")
    if len(reasons) > count_before:
        return None
    return _PART_JOINER.join(texts)
