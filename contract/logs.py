"""structlog set-up: job and batch IDs from context, secrets masked, JSON off a terminal.

Each step is a plain processor; arq's own stdlib log lines go through the same chain,
once. A line about a prompt carries its ``job_id``, ``batch_id`` and ``custom_id``
(bound for the prompt's task), and, while it is being sent, its ``attempt`` and
``identity`` (a proxy's name: host and port, never its credentials).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from contract.redaction import redact_text


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Masks ``user:password@`` in every string value, whatever logged it."""
    for key, value in event.items():
        if key == "exc_info":
            continue  # formatted into ``exception`` later, and masked there
        if isinstance(value, str) and "@" in value:
            event[key] = redact_text(value)
        elif isinstance(value, BaseException):
            event[key] = redact_text(repr(value))
    return event


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
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
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
