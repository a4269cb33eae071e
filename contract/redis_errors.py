"""What a Redis error means, said in a few words: never a command's arguments.

redis-py annotates a failed pipeline command with the whole command, arguments and
all: ``Command # 1 (HSET <key> 0 <a prompt> 1 <a prompt> …) of pipeline caused error:
('command not allowed when used memory > maxmemory',)``. An enqueue refused by a full
Redis printed that as one 146,841-byte line holding 1,000 prompts. Here such an error
becomes what Redis is doing ("is out of memory and refuses writes") and its own words,
short, with the command's name only; credentials masked, control characters escaped.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from contract.redaction import redact_text
from contract.text import cut_text, printable

DETAIL_LIMIT = 300  # bytes of Redis's own words kept
UNREACHABLE = "cannot be reached"
_PIPELINE_PREFIX = "Command # "
_PIPELINE_SUFFIX = " of pipeline caused error: "
_ANNOTATION_HEAD = re.compile(r"Command # (?P<number>\d+) \((?P<command>[^\s)]{1,32})")
# Where in a script an error was raised: "script: <sha>, on @user_script:27." (its "@"
# reads as a URL's credentials to whoever masks the line again)
_SCRIPT_PLACE = re.compile(r"\.? ?script: [0-9a-f]{40}, on @user_script:[0-9?]+\.?")


@dataclass(frozen=True)
class RedisProblem:
    meaning: str
    """What Redis is doing, said after "Redis": "is out of memory and refuses writes"."""
    detail: str
    """Redis's (or the client's) own words, short: "HSET: command not allowed …"."""

    def said(self, subject: str = "Redis") -> str:
        return f"{subject} {self.meaning} ({self.detail})"

    @property
    def unreachable(self) -> bool:
        """No connection at all (refused, no such host): the wrong Redis, or none running."""
        return self.meaning == UNREACHABLE


def explain(error: BaseException) -> RedisProblem:
    """The meaning of ``error`` (any error talking to Redis) and its words, bounded."""
    command, words = _own_words(error)
    text = words.upper()
    if isinstance(error, OutOfMemoryError) or "WHEN USED MEMORY > 'MAXMEMORY'" in text:
        meaning = "is out of memory (maxmemory) and refuses writes"
    elif isinstance(error, ReadOnlyError) or text.startswith("READONLY"):
        meaning = "is a read-only replica and refuses writes (a failover under way?)"
    elif text.startswith("MISCONF"):
        meaning = "cannot save to disk and refuses writes"
    elif isinstance(error, BusyLoadingError):
        meaning = "is loading its data set"
    elif text.startswith("BUSY"):
        meaning = "is busy running a script"
    elif isinstance(error, AuthenticationError | AuthorizationError) or text.startswith(
        ("NOAUTH", "WRONGPASS")
    ):
        meaning = "refused the login"
    elif isinstance(error, NoPermissionError):
        meaning = "refused a command: no permission"
    elif isinstance(error, RedisTimeoutError | TimeoutError):
        meaning = "did not answer in time"
    elif isinstance(error, RedisConnectionError | ConnectionError | OSError):
        meaning = UNREACHABLE
    else:
        meaning = "refused a command"
        words = f"{type(error).__name__}: {words}"
    detail = cut_text(printable(redact_text(words)), DETAIL_LIMIT)
    return RedisProblem(meaning, f"{command}: {detail}" if command else detail)


def without_command_arguments(text: str) -> str:
    """``text`` with redis-py's pipeline annotation cut to the command's name:
    ``Command # 1 (HSET ...) of pipeline caused error: ...``, whoever logs the error.

    Everything from the first ``Command # N (`` to the last marker goes: a payload holding
    the same words (a hostile prompt) goes with it, in one pass.
    """
    end = text.rfind(_PIPELINE_SUFFIX)
    start = text.find(_PIPELINE_PREFIX)
    head = _ANNOTATION_HEAD.match(text, start) if 0 <= start < end else None
    if head is None:
        return text
    return (f"{text[:start]}Command # {head['number']} ({head['command']} ...)"
            f"{text[end:]}")  # fmt: skip


def _own_words(error: BaseException) -> tuple[str | None, str]:
    """(the failed command's name if redis-py named it, the error's own words)."""
    text = _SCRIPT_PLACE.sub("", str(error)) or type(error).__name__
    if not (text.startswith(_PIPELINE_PREFIX) and _PIPELINE_SUFFIX in text):
        return None, text
    # The last marker is redis-py's: a prompt holding the same words comes before it.
    annotation, _, words = text.rpartition(_PIPELINE_SUFFIX)
    command = annotation.partition("(")[2].split(" ", 1)[0]
    return printable(command[:32]) or None, _first_argument(words)


def _first_argument(words: str) -> str:
    """redis-py writes the error's args tuple, ``('message',)``: its message."""
    if len(words) > 10_000:  # not a tuple redis-py wrote; no point parsing it
        return words
    try:
        args = ast.literal_eval(words)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return words
    if isinstance(args, tuple) and args:
        return str(args[0])
    return words
