"""What the simulator answers when a message offers functions to call, as a model would.

The worker lists the functions after ``You can call functions.``, one JSON object a
line (``name``, ``description``, ``parameters``), and says whether a call is required,
which one, and whether several may be made (``worker.tool_calls``). The simulator reads
the conversation before that, and:

- with one function named by ``tool_choice``, calls it;
- otherwise calls the functions that the user's last message names and that have not
  been called since (all at once, or the first if only one call may be made); if the
  message names none, the first function offered, unless one was called since;
- when nothing is left to call: with a call required, calls the first function again;
  else answers in plain text, the user's request and what each function returned
  (``<request> (get_weather: 18C; ...)``), so an agent loop reaches its final answer
  (as ``{"echo": ...}`` when a plain answer must be a JSON object).

Arguments are an instance of the function's schema (``schema_answers.instance_of``).
A message holding the magic word ``OFF_SCHEMA_WORD`` gets arguments off the schema
instead: its first property of the wrong type (or, for a function that takes no
arguments, a call of a function not offered), so the worker's retry is seen.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from simulator.schema_answers import instance_of, off_instance_of

INTRODUCTION = "You can call functions. Each line below is one function, as JSON"
CALLS_INSTRUCTION = "To call functions, respond with only this JSON object"
OFF_SCHEMA_WORD = "offschema"
PLAIN_AS_JSON = "If you answer in plain text, respond with one valid JSON object"
_NAMED = re.compile(r"You must call the function ([A-Za-z0-9_-]+)")
_REQUIRED = "You must call at least one function"
_ONE_CALL = "Call one function at most."
_TOOL_RESULT = re.compile(r"^Tool \(([A-Za-z0-9_-]+|a function)\): (.*)$")


@dataclass(frozen=True)
class ToolPrompt:
    """A message that offers functions, read back."""

    conversation: str
    functions: dict[str, dict[str, Any]]  # name -> parameters, in the order offered
    named: str | None
    required: bool
    one_call: bool


def tool_prompt(message: str) -> ToolPrompt | None:
    """The functions a message offers and how they may be called, if it offers any."""
    at = message.rfind("\n\n" + INTRODUCTION)
    if at < 0:
        return None
    functions: dict[str, dict[str, Any]] = {}
    rules = ""
    lines = message[at + 2 :].split("\n")[1:]
    for n, line in enumerate(lines):
        if line.startswith(CALLS_INSTRUCTION):
            rules = "\n".join(lines[n:])
            break
        try:
            function = json.loads(line)
        except ValueError:
            continue
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            functions[function["name"]] = function.get("parameters") or {}
    if not functions:
        return None
    named = _NAMED.search(rules)
    return ToolPrompt(message[:at], functions, named[1] if named else None,
                      _REQUIRED in rules, _ONE_CALL in rules)  # fmt: skip


def tool_answer(prompt: ToolPrompt, off_schema: bool) -> str | None:
    """The calls to make, as the worker asks for them; None: answer in plain text."""
    request, since = _last_request(prompt.conversation)
    called = _called(since)
    if prompt.named is not None:
        names = [prompt.named]
    else:
        names = [name for name in prompt.functions if name in request and name not in called]
        if not names and not called and not any(name in request for name in prompt.functions):
            names = [next(iter(prompt.functions))]
        if not names and prompt.required:
            names = [next(iter(prompt.functions))]
    if not names:
        return None
    if prompt.one_call:
        names = names[:1]
    calls = [_call(name, prompt.functions.get(name, {}), off_schema) for name in names]
    return json.dumps({"tool_calls": calls})


def plain_answer(prompt: ToolPrompt) -> str:
    """The user's request, then what each function returned since."""
    request, since = _last_request(prompt.conversation)
    results = [f"{found[1]}: {found[2]}" for line in since.split("\n")
               if (found := _TOOL_RESULT.match(line))]  # fmt: skip
    return f"{request.strip()} ({'; '.join(results)})" if results else request.strip()


def _call(name: str, parameters: dict[str, Any], off_schema: bool) -> dict[str, Any]:
    if not off_schema:
        return {"name": name, "arguments": instance_of(parameters)}
    arguments = off_instance_of(parameters)
    if arguments is None:  # nothing to get wrong in no arguments: call what is not offered
        return {"name": f"{name}_not_offered", "arguments": {}}
    return {"name": name, "arguments": arguments}


def _last_request(conversation: str) -> tuple[str, str]:
    """The user's last message, and the conversation after it."""
    text = "\n" + conversation.split("User input: ", 1)[-1]  # the language instruction's end
    at = text.rfind("\nUser: ")
    if at < 0:
        at = text.find(" User: ")  # the first message, after another language instruction
    if at < 0:  # one message: its content
        return text[1:], ""
    rest = text[at + len("\nUser: ") :]
    end = re.search(r"\n(Assistant|Tool \(|System): ?", rest)
    return (rest[: end.start()], rest[end.start() :]) if end else (rest, "")


def _called(since: str) -> set[str]:
    """The functions called in the conversation after the user's last message."""
    called: set[str] = set()
    for line in since.split("\n"):
        if not line.startswith("Assistant: ") or '"tool_calls"' not in line:
            continue
        try:
            value = json.loads(line[line.index("{") : line.rindex("}") + 1])
        except ValueError:
            continue
        called.update(call.get("name", "") for call in value.get("tool_calls", []))
    return called
