"""One prompt line checked thoroughly: every problem it has, worded for a user.

This is the truth about a line; ``producer.fast_lines`` only ever accepts what it
accepts, faster. A line is one JSON object in either of two forms:

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
of OpenAI text parts, joined with newlines. A history may also hold the tool calls
an assistant made and ``tool`` messages with their results (``producer.tool_messages``);
the last message is the user's, or a tool's result. Message indexes in reasons count
from 0, as in JSON paths.

A line is also refused if it: is not UTF-8; nests arrays and objects more than
``MAX_NESTING`` deep; repeats a key in any object (JSON parsers would silently keep
the last); or holds a lone UTF-16 surrogate escape (``"\\ud800"``: not Unicode, it
could not be stored). Whether a ``custom_id`` is unique is a question about the
whole file (``producer.inputs``); the size of a line is ``producer.input_limits``'s.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from contract.model_map import SITE_NAME, ModelMap
from contract.models import Message
from producer.nesting import nests_deeper
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
from producer.tool_messages import ECHOED_KEYS, tool_message, unanswered_results

ROLES: tuple[str, ...] = ("system", "developer", "user", "assistant", "tool")  # developer: system
_PLAIN_ROLES = frozenset({"system", "developer", "user", "assistant"})
_LAST_ROLES = frozenset({"user", "tool"})  # a prompt asks for an answer to one of these
MAX_CUSTOM_ID_CHARS = 256
MAX_NESTING = 64  # levels of arrays and objects; a prompt line needs fewer than 10
OPENAI_METHOD = "POST"
OPENAI_URL = "/v1/chat/completions"

_NATIVE_KEYS = frozenset({"custom_id", "messages", "model", "site"})
_OPENAI_KEYS = frozenset({"custom_id", "method", "url", "body"})
_OPENAI_MARKERS = frozenset({"body", "method", "url"})
_MESSAGE_KEYS = frozenset({"role", "content", "name"})
_KEYS_OF_ROLE = {
    "assistant": _MESSAGE_KEYS | {"tool_calls"} | ECHOED_KEYS,
    "tool": _MESSAGE_KEYS | {"tool_call_id"},
}
_IMAGE_PART_TYPES = frozenset({"image_url", "input_image", "image"})
_PART_JOINER = "\n"
_TOO_DEEP = f"nested too deeply: more than {MAX_NESTING} levels of arrays and objects"


@dataclass
class CheckedLine:
    """What one line yielded: its fields where they were valid, and its problems."""

    custom_id: str | None = None  # None: not given, or given but invalid
    custom_id_invalid: bool = False
    messages: tuple[Message, ...] = ()
    model: str | None = None
    reasons: list[str] = field(default_factory=list)
    is_object: bool = False
    body_params: BodyParams = NO_BODY_PARAMS
    site: str | None = None  # a native line's own site (None: not pinned by the line)


def check_line(
    text: str, max_prompt_chars: int, *, models: ModelMap | None, sites: Collection[str] = ()
) -> CheckedLine:
    """Every problem of one line, worded for a user (or its fields, if it has none).

    ``models``: the names a line's ``model`` may be (None: it is not read, an override
    replaces it). ``sites``: the fleet's sites, one of which a native line's ``site`` must
    name (empty: the fleet names none here; any site's name is taken)."""
    line = CheckedLine()
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
        if "site" in obj:
            line.site = _check_line_site(obj["site"], line.reasons, sites)
    if request is None:
        return line
    line.messages = _check_messages(request.get("messages"), prefix + "messages", line.reasons)
    if models is not None:
        line.model = _check_line_model(request.get("model"), prefix + "model", line.reasons, models)
    if prefix:
        line.body_params = check_body_params(request, line.reasons)
    size = sum(len(message.content) for message in line.messages)
    if size > max_prompt_chars:
        line.reasons.append(
            f"prompt is {size:,} characters over all messages; the limit is {max_prompt_chars:,}"
        )
    return line


def _check_line_site(site: Any, reasons: list[str], sites: Collection[str]) -> str | None:
    if not isinstance(site, str) or not SITE_NAME.match(site):
        reasons.append(f"site must be a site's name (a-z, 0-9 and -), got {shown(site)}")
        return None
    if sites and site not in sites:
        reasons.append(
            f"site: no site {site!r}: the fleet's sites are {', '.join(sites)} (CHATGPTES_SITES)"
        )
        return None
    return site


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
    if nests_deeper(text, MAX_NESTING):
        reasons.append(_TOO_DEEP)
        return _NotJSON()
    try:
        return _decode_json(text)
    except RecursionError:  # not expected after the check above, but never a traceback
        reasons.append(_TOO_DEEP)
    except json.JSONDecodeError as exc:
        reasons.append(_json_error_reason(exc))
    return _NotJSON()


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


def _check_custom_id(obj: dict[str, Any], line: CheckedLine) -> None:
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


def _check_line_model(model: Any, where: str, reasons: list[str], models: ModelMap) -> str | None:
    if model is None:
        return None
    if not isinstance(model, str):
        reasons.append(f"{where}: must be a string, got {json_type(model)}")
        return None
    try:
        return models.check(model)
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
    if last_role in ROLES and last_role not in _LAST_ROLES:
        reasons.append(f"{where}[{len(raw) - 1}].role: the last message must be the user's "
                       f"(or a tool's result), not {last_role!r}")  # fmt: skip
    if len(reasons) > count_before:
        return ()
    checked = tuple(message for message in messages if message is not None)
    if any(message.role == "tool" for message in checked):
        reasons.extend(unanswered_results(checked, where))
    return () if len(reasons) > count_before else checked


def _plain_message(item: Any) -> Message | None:
    """The common case checked fast: a valid message with string content, else None."""
    if isinstance(item, dict) and item.keys() <= _MESSAGE_KEYS:
        role, content = item.get("role"), item.get("content")
        if role in _PLAIN_ROLES and isinstance(content, str) and content and not content.isspace():
            return Message(role=role, content=content)
    return None


def _check_message(item: Any, where: str, reasons: list[str]) -> Message | None:
    """Every problem of one message (or the message, e.g. one with text parts)."""
    if not isinstance(item, dict):
        reasons.append(f"{where}: must be an object with role and content, got {json_type(item)}")
        return None
    count_before = len(reasons)
    role = item.get("role")
    _check_known_keys(item, _KEYS_OF_ROLE.get(role, _MESSAGE_KEYS), f"{where}: ", reasons)
    if "role" not in item:
        reasons.append(f"{where}.role: missing; expected one of {', '.join(ROLES)}")
    elif role not in ROLES:
        reasons.append(f"{where}.role: {shown(role)} is not one of {', '.join(ROLES)}")
    if role == "assistant" or role == "tool":
        message = tool_message(item, role, where, reasons, _check_content)
        return None if len(reasons) > count_before else message
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
        got = "only whitespace" if text else 'an empty string ""'
        reasons.append(f"{where}: must be a non-empty string, got {got}")
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
