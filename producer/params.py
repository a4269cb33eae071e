"""OpenAI request parameters in a batch line's ``body``: refused, honoured, or accepted and ignored.

Only the OpenAI Batch form has parameters (everything in ``body`` but ``messages`` and
``model``); the native form has none. chatgpt.es is a chat page, not an API, so most
parameters have nothing to act on. Each known parameter gets one of three policies:

=====================================  ==============================================
parameter                              policy
=====================================  ==============================================
``stop``                               honoured: a string or a list of up to 4
                                       non-empty strings; the worker cuts the answer
                                       at the first one (kept as a list)
``response_format``                    honoured: ``{"type": "json_object"}`` (the
                                       worker asks for JSON and checks it),
                                       ``{"type": "json_schema"}`` (the worker asks
                                       for JSON matching the schema and checks it:
                                       the schema is checked here) or ``{"type":
                                       "text"}`` (the default, not kept)
``max_tokens``,                        honoured: a positive integer; the worker cuts
``max_completion_tokens``              the answer at that many tokens (the smaller,
                                       if both are given)
``modalities``                         honoured: ``["text"]`` (the default, not kept);
                                       refused: anything else (text only)
``n``                                  accepted with a warning when 1; refused above 1
``logprobs``, ``stream``               accepted with a warning when false; refused
                                       when true
``tools``, ``tool_choice``,            emulated: function tools are described in the
``parallel_tool_calls``                prompt and the calls checked against their
                                       schemas (``producer.tool_params`` checks them)
``functions``, ``function_call``       refused: the legacy API; ``tools`` instead
``top_logprobs``                       refused: no log probabilities
``audio``                              refused: text only
``prediction``                         refused: no predicted outputs
``temperature``, ``top_p``,            accepted with a warning: chatgpt.es has no
``presence_penalty``,                  such settings; checked as OpenAI does
``frequency_penalty``, ``seed``,       (temperature 0-2, top_p 0-1, penalties -2 to
``logit_bias``, ``reasoning_effort``,  2, ...) and refused if of the wrong type
``user``, ``metadata``, ``store``,     or range
``service_tier``, ``stream_options``
anything else                          refused as an unknown key, with a suggestion
                                       for a near miss (``temprature``)
=====================================  ==============================================

A parameter set to ``null`` counts as not given, as in OpenAI's API. Honoured
parameters end up in ``PromptLine.params`` (plain JSON values, for the worker);
each accepted-and-ignored one adds a sentence to ``PromptLine.warnings``.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from contract.models import MAX_STOP_SEQUENCES, NO_PARAMS, NamedTool, RequestParams
from producer.tool_params import (
    LEGACY_FUNCTIONS,
    checked_tool_choice,
    checked_tools,
    object_schema_problem,
    tools_together,
)
from producer.wording import json_type, shown, shown_json

MAX_NAMED_UNKNOWN_KEYS = 5  # per object; the rest are counted
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
BODY_FIELDS = frozenset({"messages", "model"})  # checked by producer.inputs, not here

_TEXT_ONLY = "chatgpt.es answers with text only"
_NO_LOGPROBS = "log probabilities are not supported: chatgpt.es gives only the text"

# Refused whatever their (non-null) value: the site has nothing that could honour them.
REFUSED: Mapping[str, str] = {
    "functions": LEGACY_FUNCTIONS,
    "function_call": LEGACY_FUNCTIONS,
    "top_logprobs": _NO_LOGPROBS,
    "audio": f"audio output is not supported: {_TEXT_ONLY}",
    "prediction": "predicted outputs are not supported by chatgpt.es",
}


@dataclass(frozen=True)
class BodyParams:
    """What a body's parameters come to when none is refused."""

    params: Mapping[str, Any]  # the honoured ones, as the worker reads them (read-only)
    warnings: tuple[str, ...]  # one sentence per accepted-but-ignored parameter


NO_BODY_PARAMS = BodyParams(MappingProxyType({}), ())


@dataclass
class _Verdicts:
    """What the parameters of one body came to, so far."""

    reasons: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def accept_or_refuse(self, name: str, problem: str | None, why_ignored: str) -> None:
        """A warning for ``name`` if it has no problem, else the problem as a reason."""
        if problem is None:
            self.warnings.append(ignored_warning(name, why_ignored))
        else:
            self.reasons.append(f"body.{name}: {problem}")


def check_body_params(body: Mapping[str, Any], reasons: list[str]) -> BodyParams:
    """The parameters of an OpenAI ``body`` (its ``messages`` and ``model`` are skipped).

    Each refused, unknown or mistyped parameter appends a reason to ``reasons``.
    """
    verdicts = _Verdicts(reasons)
    unknown: list[str] = []
    for name, value in body.items():
        if name not in KNOWN_BODY_KEYS:
            unknown.append(name)
        elif name not in BODY_FIELDS and value is not None:
            _judge(name, value, verdicts)
    reasons.extend(
        f"body: unknown key {shown(name)}; {_unknown_key_hint(name)}"
        for name in unknown[:MAX_NAMED_UNKNOWN_KEYS]
    )
    if len(unknown) > MAX_NAMED_UNKNOWN_KEYS:
        reasons.append(f"body: {len(unknown) - MAX_NAMED_UNKNOWN_KEYS} more unknown keys")
    if _TOOL_PARAMETERS.intersection(verdicts.params):
        tools_together(verdicts.params, reasons)
    if not verdicts.params and not verdicts.warnings:
        return NO_BODY_PARAMS
    return BodyParams(MappingProxyType(verdicts.params), tuple(verdicts.warnings))


def _judge(name: str, value: Any, verdicts: _Verdicts) -> None:
    """Refuses, keeps, or warns about one known parameter, by its policy."""
    if name in REFUSED:
        verdicts.reasons.append(f"body.{name}: {REFUSED[name]}")
    elif name in _IGNORED:
        check, why = _IGNORED[name]
        verdicts.accept_or_refuse(name, check(value), why)
    else:
        _CONDITIONAL[name](value, verdicts)


def ignored_warning(name: str, why: str) -> str:
    """The warning for a parameter accepted and ignored: ``"<name> is accepted but <why>"``."""
    return f"{name} is accepted but {why}"


def suggestion(key: str, known: Collection[str]) -> str | None:
    """The known key that ``key`` is most likely a typo of, if one is close enough."""
    if len(key) > 2 * max(map(len, known), default=0):
        return None
    matches = difflib.get_close_matches(key.lower(), known, n=1, cutoff=0.75)
    return matches[0] if matches else None


def _unknown_key_hint(name: str) -> str:
    close = suggestion(name, KNOWN_BODY_KEYS)
    if close is not None:
        return f"did you mean {close!r}?"
    return "it is not a chat completions parameter chatgpt.es knows"


# --- value checks, as OpenAI's API makes them: a problem ("must be ..."), or None ---

Check = Callable[[Any], str | None]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number_in(low: float, high: float) -> Check:
    def check(value: Any) -> str | None:
        if _is_number(value) and low <= value <= high:
            return None
        return f"must be a number from {low:g} to {high:g}, got {shown(value)}"

    return check


def _positive_integer(value: Any) -> str | None:
    if _is_integer(value) and value >= 1:
        return None
    return f"must be a positive integer, got {shown(value)}"


def _integer(value: Any) -> str | None:
    return None if _is_integer(value) else f"must be an integer, got {shown(value)}"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {shown(value)}"


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else f"must be a string, got {shown(value)}"


def _object(value: Any) -> str | None:
    return None if isinstance(value, dict) else f"must be an object, got {json_type(value)}"


def _logit_bias(value: Any) -> str | None:
    if isinstance(value, dict) and all(
        key.isdigit() and _is_number(bias) and -100 <= bias <= 100 for key, bias in value.items()
    ):
        return None
    return (
        f"must be an object mapping token ids to numbers from -100 to 100, got {shown_json(value)}"
    )


def _metadata(value: Any) -> str | None:
    if (
        isinstance(value, dict)
        and len(value) <= MAX_METADATA_PAIRS
        and all(
            len(key) <= MAX_METADATA_KEY_CHARS
            and isinstance(item, str)
            and len(item) <= MAX_METADATA_VALUE_CHARS
            for key, item in value.items()
        )
    ):
        return None
    return (
        f"must be an object of at most {MAX_METADATA_PAIRS} string values (keys up to "
        f"{MAX_METADATA_KEY_CHARS} characters, values up to {MAX_METADATA_VALUE_CHARS}), "
        f"got {shown_json(value)}"
    )


_NO_SETTING = "not honoured: chatgpt.es has no such setting"

# Accepted with a warning when OpenAI would take the value; refused otherwise.
_IGNORED: Mapping[str, tuple[Check, str]] = {
    "temperature": (_number_in(0, 2), _NO_SETTING),
    "top_p": (_number_in(0, 1), _NO_SETTING),
    "presence_penalty": (_number_in(-2, 2), _NO_SETTING),
    "frequency_penalty": (_number_in(-2, 2), _NO_SETTING),
    "seed": (_integer, _NO_SETTING),
    "logit_bias": (_logit_bias, _NO_SETTING),
    "reasoning_effort": (_string, _NO_SETTING),
    "user": (_string, "not sent: chatgpt.es has no end-user field"),
    "metadata": (_metadata, "not kept: chatgpt.es stores no completions to tag"),
    "store": (_boolean, "not honoured: chatgpt.es stores no completions"),
    "service_tier": (_string, "not honoured: chatgpt.es has a single service tier"),
    "stream_options": (_object, "not honoured: a batch is never streamed"),
}


# --- parameters whose policy depends on their value ---


def _n(value: Any, verdicts: _Verdicts) -> None:
    problem = _positive_integer(value)
    if problem is None and value > 1:
        problem = (
            f"{value} answers per prompt are not possible: chatgpt.es gives one; "
            "repeat the line under other custom_ids instead"
        )
    verdicts.accept_or_refuse("n", problem, "changes nothing: chatgpt.es gives one answer")


def _logprobs(value: Any, verdicts: _Verdicts) -> None:
    problem = _boolean(value) or (_NO_LOGPROBS if value else None)
    why = "changes nothing: chatgpt.es gives no log probabilities"
    verdicts.accept_or_refuse("logprobs", problem, why)


def _stream(value: Any, verdicts: _Verdicts) -> None:
    refused = "a batch is never streamed: each answer is stored whole, to fetch with the results"
    problem = _boolean(value) or (refused if value else None)
    verdicts.accept_or_refuse("stream", problem, "changes nothing: a batch is never streamed")


def _modalities(value: Any, verdicts: _Verdicts) -> None:
    if value != ["text"]:
        verdicts.reasons.append(
            f'body.modalities: only ["text"] is supported ({_TEXT_ONLY}), got {shown_json(value)}'
        )


def _response_format(value: Any, verdicts: _Verdicts) -> None:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "json_schema":
        extra = set(value) - {"type", "json_schema"}
        problem = json_schema_problem(value.get("json_schema"), extra)
        if problem is None:
            schema = value["json_schema"].get("schema") or {"type": "object"}
            verdicts.params["response_format"] = {"type": "json_schema", "schema": schema}
        else:
            verdicts.reasons.append(f"body.response_format.json_schema: {problem}")
    elif kind not in ("text", "json_object") or len(value) != 1:
        verdicts.reasons.append(
            'body.response_format: must be {"type": "text"}, {"type": "json_object"} or '
            f'{{"type": "json_schema", "json_schema": {{...}}}}, got {shown_json(value)}'
        )
    elif kind == "json_object":
        verdicts.params["response_format"] = {"type": "json_object"}


SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_JSON_SCHEMA_KEYS = frozenset({"name", "schema", "strict", "description"})


def json_schema_problem(spec: Any, extra_keys: Collection[str] = ()) -> str | None:
    """What is wrong with OpenAI's ``json_schema`` object (``name``, ``schema``, ``strict``,
    ``description``), if anything: the schema must be a valid JSON Schema of an object."""
    if extra_keys:
        return f"unknown key {shown(sorted(extra_keys)[0])} beside 'json_schema'"
    if not isinstance(spec, dict):
        return f"must be an object with 'name' and 'schema', got {json_type(spec)}"
    unknown = sorted(set(spec) - _JSON_SCHEMA_KEYS)
    if unknown:
        return f"unknown key {shown(unknown[0])}; expected {', '.join(sorted(_JSON_SCHEMA_KEYS))}"
    name = spec.get("name")
    if not isinstance(name, str) or not SCHEMA_NAME.match(name):
        return f"name must be 1-64 letters, digits, '_' or '-', got {shown(name)}"
    if spec.get("strict") is not None and not isinstance(spec["strict"], bool):
        return f"strict must be true or false, got {shown(spec['strict'])}"
    schema = spec.get("schema")
    if schema is None:
        return None
    shape = object_schema_problem(schema)
    if shape is not None:
        return f"schema {shape}"
    return _schema_problem(json.dumps(schema, sort_keys=True))


@lru_cache(maxsize=64)
def _schema_problem(schema_text: str) -> str | None:
    # A batch repeats one schema on every line: checked once, not per line. jsonschema
    # (~80 ms to import) loads at the first schema, not for every enqueue and serve.
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    schema = json.loads(schema_text)
    try:
        validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as error:
        where = "/".join(str(part) for part in error.absolute_path) or "its root"
        return f"schema is not a valid JSON Schema at {where}: {error.message[:200]}"
    return None


def _max_tokens(name: str) -> Callable[[Any, _Verdicts], None]:
    def judge(value: Any, verdicts: _Verdicts) -> None:
        problem = _positive_integer(value)
        if problem is not None:
            verdicts.reasons.append(f"body.{name}: {problem}")
        else:
            given = verdicts.params.get("max_tokens")
            verdicts.params["max_tokens"] = value if given is None else min(given, value)

    return judge


def _stop(value: Any, verdicts: _Verdicts) -> None:
    stops = [value] if isinstance(value, str) else value
    if (
        isinstance(stops, list)
        and len(stops) <= MAX_STOP_SEQUENCES
        and all(isinstance(stop, str) and stop for stop in stops)
    ):
        if stops:
            verdicts.params["stop"] = list(stops)
        return
    verdicts.reasons.append(
        f"body.stop: must be a non-empty string or a list of up to {MAX_STOP_SEQUENCES} "
        f"non-empty strings, got {shown_json(value)}"
    )


def _tools(value: Any, verdicts: _Verdicts) -> None:
    functions = checked_tools(value, verdicts.reasons, _parameters_problem)
    if functions is not None:
        verdicts.params["tools"] = functions


def _parameters_problem(schema: dict[str, Any]) -> str | None:
    problem = _schema_problem(json.dumps(schema, sort_keys=True))
    return None if problem is None else problem.removeprefix("schema is ")


def _tool_choice(value: Any, verdicts: _Verdicts) -> None:
    choice = checked_tool_choice(value, verdicts.reasons)
    if choice is not None:
        verdicts.params["tool_choice"] = choice


def _parallel_tool_calls(value: Any, verdicts: _Verdicts) -> None:
    problem = _boolean(value)
    if problem is None:
        verdicts.params["parallel_tool_calls"] = value
    else:
        verdicts.reasons.append(f"body.parallel_tool_calls: {problem}")


_TOOL_PARAMETERS = frozenset({"tools", "tool_choice", "parallel_tool_calls"})
_CONDITIONAL: Mapping[str, Callable[[Any, _Verdicts], None]] = {
    "tools": _tools,
    "tool_choice": _tool_choice,
    "parallel_tool_calls": _parallel_tool_calls,
    "n": _n,
    "logprobs": _logprobs,
    "stream": _stream,
    "modalities": _modalities,
    "response_format": _response_format,
    "stop": _stop,
    "max_tokens": _max_tokens("max_tokens"),
    "max_completion_tokens": _max_tokens("max_completion_tokens"),
}

KNOWN_PARAMETERS = frozenset(REFUSED) | frozenset(_IGNORED) | frozenset(_CONDITIONAL)
KNOWN_BODY_KEYS = KNOWN_PARAMETERS | BODY_FIELDS


def request_params(params: Mapping[str, Any]) -> RequestParams:
    """What a worker is told of a line's honoured parameters (``PromptLine.params``)."""
    if not params:
        return NO_PARAMS
    response_format = params.get("response_format") or {}
    schema = response_format.get("schema")
    tools = params.get("tools")
    choice = params.get("tool_choice")
    return RequestParams(
        stop=tuple(params.get("stop", ())),
        json_object=response_format.get("type") == "json_object",
        json_schema=None if schema is None else json.dumps(schema, separators=(",", ":")),
        max_tokens=params.get("max_tokens"),
        tools=None if tools is None else json.dumps(tools, separators=(",", ":")),
        tool_choice=NamedTool(**choice) if isinstance(choice, dict) else choice,
        parallel_tool_calls=params.get("parallel_tool_calls"),
    )


def body_params(params: RequestParams) -> dict[str, Any]:
    """The body parameters that ask for ``params`` (the inverse of ``request_params``)."""
    body: dict[str, Any] = {}
    if params.stop:
        body["stop"] = list(params.stop)
    if params.json_object:
        body["response_format"] = {"type": "json_object"}
    if params.json_schema is not None:
        spec = {"name": "response", "schema": json.loads(params.json_schema)}
        body["response_format"] = {"type": "json_schema", "json_schema": spec}
    if params.max_tokens is not None:
        body["max_completion_tokens"] = params.max_tokens
    if params.tools is not None:
        body["tools"] = [{"type": "function", "function": function}
                         for function in json.loads(params.tools)]  # fmt: skip
    if isinstance(params.tool_choice, NamedTool):
        body["tool_choice"] = {"type": "function", "function": {"name": params.tool_choice.name}}
    elif params.tool_choice is not None:
        body["tool_choice"] = params.tool_choice
    if params.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = params.parallel_tool_calls
    return body
