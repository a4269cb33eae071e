"""structlog set-up: job and batch IDs from context, secrets masked, JSON off a terminal.

Each step is a plain processor; arq's own stdlib log lines go through the same chain,
once. A line about a prompt carries its ``job_id``, ``batch_id`` and ``custom_id``
(bound for the prompt's task), and, while it is being sent, its ``attempt`` and
``identity`` (a proxy's name: host and port, never its credentials).

Whatever is logged, and by whom, the last steps before rendering make the line safe
for people: credentials masked, a Redis command's arguments (the payload redis-py
quotes in its errors) dropped, control characters escaped (no logged text can clear
a screen or fake a line), and the whole line at most ``LINE_LIMIT`` bytes (a long
value keeps its head and tail, with a note of how much was cut).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from contract.redaction import redact_text
from contract.redis_errors import without_command_arguments
from contract.text import LINE_LIMIT, cut_text, json_size, printable

# The renderer's framing: per line (timestamp, level, padding) and per key (=, colours).
_LINE_FRAMING, _KEY_FRAMING = 256, 24
_SHORTEST_CUT = 64  # a value is never cut shorter than this
_MULTI_LINE = ("exception", "stack")  # tracebacks keep their newlines on a console
_PLAIN = (str, int, float, bool, type(None), list, tuple, dict)
_DEPTH = 8  # how deep into nested values secrets are looked for


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Masks the credentials of every URL in every value (nested ones too), whoever logged it."""
    for key, value in event.items():
        if key == "exc_info":
            continue  # formatted into ``exception`` later, and masked there
        event[key] = _redacted(value, _DEPTH)
    return event


def _redacted(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return redact_text(value) if "@" in value or "=" in value else value
    if isinstance(value, BaseException):
        return redact_text(repr(value))
    if depth and isinstance(value, list | tuple):
        items = [_redacted(item, depth - 1) for item in value]
        return items if isinstance(value, list) else tuple(items)
    if depth and isinstance(value, dict):
        return {key: _redacted(item, depth - 1) for key, item in value.items()}
    return value


def drop_command_arguments(
    _: Any, __: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A Redis error's pipeline annotation (in a message or a traceback) keeps the command's
    name, not its arguments: those are the payload (a batch's prompts, an uploaded file)."""
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = without_command_arguments(value)
    return event


def escape_controls(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Control characters in every key and string value shown escaped (ESC as ``\\x1b``,
    a newline as ``\\n``), in whichever renderer follows; a traceback keeps its line breaks.

    Values that are not plain data are shown by their ``repr``, escaped too; lists and
    dicts need nothing: both renderers escape the strings inside them.
    """
    escaped = {}
    for key, value in event.items():
        if isinstance(value, str):
            value = printable(value, keep="\n" if key in _MULTI_LINE else "")
        elif not isinstance(value, _PLAIN):
            value = printable(repr(value))
        escaped[printable(str(key))] = value
    event.clear()
    event.update(escaped)
    return event


def bound_line(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Cuts the longest values until the line fits in ``LINE_LIMIT`` bytes: each cut value
    keeps its head and its tail (where an error says what happened) around a note of how
    many characters went. Payloads are never dumped whole."""
    if (
        _LINE_FRAMING + sum(_KEY_FRAMING + _most(k) + _most(v) for k, v in event.items())
        <= LINE_LIMIT
    ):
        return event  # the usual line: short values, no need to measure them exactly
    sizes = {key: _KEY_FRAMING + json_size(key) + json_size(value) for key, value in event.items()}
    excess = _LINE_FRAMING + sum(sizes.values()) - LINE_LIMIT
    while excess > 0:
        key = max(sizes, key=sizes.__getitem__)
        value_size = json_size(event[key])
        if value_size <= _SHORTEST_CUT:
            break  # many short values: nothing worth cutting
        text = event[key] if isinstance(event[key], str) else printable(repr(event[key]))
        event[key] = cut_text(text, max(_SHORTEST_CUT, value_size - excess))
        size = _KEY_FRAMING + json_size(key) + json_size(event[key])
        excess -= sizes[key] - size
        sizes[key] = size
    return event


def _most(value: Any) -> int:
    """At least ``json_size(value)``, cheaply for text (escaped already) and numbers."""
    if isinstance(value, str):
        return 2 * len(value) + 2 if value.isascii() else 12 * len(value) + 2
    if isinstance(value, int | float | bool | None):
        return 32
    return json_size(value)


def drop_arq_job_lines(record: logging.LogRecord) -> bool:
    """arq's per-job lines ("0.34s → job(...) delayed=…") read a chunk's fair-share queue
    score as a time; the worker logs its own chunk lines instead."""
    return not (record.name == "arq.worker" and str(record.msg).startswith("%6.2fs"))


def printed_elsewhere(record: logging.LogRecord) -> bool:
    """Whether a logger below the root has a handler of its own that prints this record
    (arq's command sets one up before our start-up can take it over)."""
    logger: logging.Logger | None = logging.getLogger(record.name)
    while logger is not None and logger is not logging.root:
        if logger.handlers:
            return True
        logger = logger.parent if logger.propagate else None
    return False


def configure_logging(log_format: str = "auto", level: str = "INFO") -> None:
    as_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())  # none in a file
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secrets,
            drop_command_arguments,
            escape_controls,
            bound_line,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(drop_arq_job_lines)
    handler.addFilter(lambda record: not printed_elsewhere(record))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The arq command gives arq's logger a handler of its own: its lines would come out
    # twice, once plain and once through ours. They go through ours only.
    arq = logging.getLogger("arq")
    arq.handlers.clear()
    arq.propagate = True
