"""Logging: one line per event, JSON or console, prompt context bound, secrets masked."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import logging.config

import structlog
from arq.logs import default_log_config

from contract.logs import configure_logging


def lines_of(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line.strip()]


def capture(monkeypatch) -> io.StringIO:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    return stream


def test_under_the_arq_command_each_line_comes_out_once(monkeypatch) -> None:
    stream = capture(monkeypatch)
    configure_logging("json", "INFO")  # when WorkerSettings is read
    logging.config.dictConfig(default_log_config(verbose=False))  # then the arq command
    arq_handler = logging.getLogger("arq").handlers[0]
    monkeypatch.setattr(arq_handler, "stream", stream)
    logging.getLogger("arq.worker").info("Starting worker for 1 functions: run_chunk")
    configure_logging("json", "INFO")  # the worker's start-up takes arq's lines over
    logging.getLogger("arq.worker").info("shutdown on SIGTERM")
    shown = lines_of(stream)
    assert [line for line in shown if "Starting worker" in line] == [
        next(line for line in shown if "Starting worker" in line)
    ]
    assert len([line for line in shown if "shutdown on SIGTERM" in line]) == 1
    assert json.loads(shown[-1])["event"] == "shutdown on SIGTERM"


def test_a_prompts_lines_carry_its_ids_in_its_own_task_only(monkeypatch) -> None:
    stream = capture(monkeypatch)
    configure_logging("json", "INFO")
    log = structlog.get_logger("chatgptes.test")

    async def prompt(n: int) -> None:
        structlog.contextvars.bind_contextvars(job_id=f"b.{n}", batch_id="b")
        structlog.contextvars.bind_contextvars(attempt=1, identity="10.0.0.7:3128")
        log.warning("upstream.error", error="UpstreamHiccup")

    async def main() -> None:
        await asyncio.gather(prompt(0), prompt(1))
        log.info("worker.stopped")

    asyncio.run(main())
    events = [json.loads(line) for line in lines_of(stream)]
    errors = [e for e in events if e["event"] == "upstream.error"]
    assert sorted(e["job_id"] for e in errors) == ["b.0", "b.1"]
    assert all(e["batch_id"] == "b" and e["attempt"] == 1 and e["identity"] for e in errors)
    stopped = next(e for e in events if e["event"] == "worker.stopped")
    assert "job_id" not in stopped  # a prompt's context stays with its task


def test_console_form_for_people_and_secrets_masked(monkeypatch) -> None:
    stream = capture(monkeypatch)
    configure_logging("console", "INFO")
    structlog.get_logger("chatgptes.test").warning(
        "proxy.failed", proxy="http://bob:pa/ss1@10.0.0.7:3128"
    )
    [line] = lines_of(stream)
    assert "proxy.failed" in line and not line.startswith("{")
    assert "pa/ss1" not in line and "bob:***@10.0.0.7:3128" in line
