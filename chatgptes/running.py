"""How a command ends: settings read or refused, Redis reached or one clear line, exit codes.

Exit codes: 0 success, 1 an operational error (Redis unreachable, no such batch),
2 bad input or usage (nothing was enqueued), 3 ``wait`` timed out, 4 ``wait`` saw the
batch end failed, expired or cancelled.

Every command imports this module, so it imports nothing heavy at its top: pydantic,
the settings, redis-py and the producer load when a command reads settings or Redis
(``tests/test_cli_imports.py``; ``--help`` needs none of them).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from contract.redaction import redact_text
from contract.text import LINE_LIMIT, cut_text
from contract.text import printable as printable  # one escaping, for logs and commands alike

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

    from producer.api import BatchQueue

T = TypeVar("T")
S = TypeVar("S", bound="BaseSettings")
EXIT_ERROR, EXIT_BAD_INPUT, EXIT_TIMEOUT, EXIT_BATCH_ENDED_BADLY = 1, 2, 3, 4
# CHATGPTES_* variables that are not settings but are read on purpose elsewhere.
NOT_SETTINGS = {"CHATGPTES_TEST_REDIS_URL"}
REDIS_URL_SETTING = "CHATGPTES_REDIS_URL"


def load_settings(cls: type[S]) -> S:
    """The settings from the environment, or a clear exit naming each bad variable."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    try:
        return cls()
    except ValidationError as error:
        problems = "; ".join(
            (f"CHATGPTES_{'_'.join(map(str, e['loc'])).upper()}: " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ")
            for e in error.errors()
        )
        fail(f"bad settings: {redact_text(problems)}", EXIT_BAD_INPUT)
    except SettingsError as error:  # a value that is not even JSON, before validation
        field = str(error).split('"')[1] if '"' in str(error) else "a setting"
        fail(f"bad settings: CHATGPTES_{field.upper()}: not valid JSON", EXIT_BAD_INPUT)


def warn_unknown_settings(known: Iterable[str]) -> None:
    """A misspelled CHATGPTES_* variable is ignored by the settings: say so."""
    names = {f"CHATGPTES_{name.upper()}" for name in known} | NOT_SETTINGS
    for variable in sorted(os.environ):
        if variable.startswith("CHATGPTES_") and variable not in names:
            import difflib

            close = difflib.get_close_matches(variable, names, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            click.echo(f"warning: {variable} is not a setting{hint}; it is ignored", err=True)


def run_with_queue(make: Callable[[BatchQueue], Awaitable[T]]) -> T:
    """Runs one async operation against Redis; known failures become clear exits."""
    import asyncio

    from redis.exceptions import RedisError

    from contract.config import QueueSettings
    from producer.api import BatchNotFound, BatchQueue, JobNotFound

    settings = load_settings(QueueSettings)

    async def main() -> T:
        async with BatchQueue.connect(settings) as queue:
            return await make(queue)

    try:
        return asyncio.run(main())
    except BrokenPipeError:  # the reader went (`results | head`): not Redis, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_ERROR)
    except (BatchNotFound, JobNotFound) as error:
        fail(str(error), EXIT_ERROR)
    except (RedisError, ConnectionError) as error:
        fail(redis_problem(settings.redis_url, error), EXIT_ERROR)


def redis_problem(url: str, error: BaseException) -> str:
    """One short line: which Redis (password masked) and what it is doing, never the
    command's arguments (redis-py quotes a failed pipeline's whole payload). A Redis that
    cannot be reached at all is named by the setting that chose it."""
    from contract.redaction import redact_url
    from contract.redis_errors import explain

    problem = explain(error)
    line = problem.said(f"Redis at {redact_url(url)}")
    if problem.unreachable:
        line += f"; {REDIS_URL_SETTING} names the Redis to use (`chatgptes up` starts a local one)"
    return line


def log_warnings_to_stderr() -> None:
    """Warnings (Redis away while waiting, say) go to stderr, never into a command's output."""
    from contract.logs import configure_logging

    configure_logging("console", "WARNING")


def fail(message: str, code: int) -> Any:
    """Prints ``error: message`` and exits: credentials masked, control characters escaped
    (a message may quote what a user typed), each line at most a few KB."""
    safe = printable(redact_text(message), keep="\n")
    click.echo("\n".join(cut_text(line, LINE_LIMIT) for line in f"error: {safe}".split("\n")),
               err=True)  # fmt: skip
    sys.exit(code)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, default=str))


def counted(count: int, noun: str) -> str:
    """``1 failed job``, ``2 failed jobs``: a count and its noun, plural unless it is one."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"
