"""Logging: one line per event, JSON or console, prompt context bound, secrets masked."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import logging.config
import re

import pytest
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


HOSTILE = "id\x1b[2J\x1b]0;PWNED\x07\nfake.line level=error\u202e"
ESCAPED = "id\\x1b[2J\\x1b]0;PWNED\\x07\\nfake.line level=error\\u202e"


def raw_controls(text: str) -> list[str]:
    """Control characters a terminal would act on (a line's own newline aside)."""
    return [c for c in text if not c.isprintable() and c != "\n"]


def log_everything_hostile() -> None:
    log = structlog.get_logger("chatgptes.test")
    structlog.contextvars.bind_contextvars(custom_id=HOSTILE)
    try:
        log.warning(f"event {HOSTILE}", **{f"key{HOSTILE}": HOSTILE}, listed=[HOSTILE])
        try:
            raise ValueError(f"bad {HOSTILE}")
        except ValueError:
            log.exception("prompt.failed")
        logging.getLogger("arq.worker").warning("arq says %s", HOSTILE)
    finally:
        structlog.contextvars.clear_contextvars()


def test_control_characters_are_escaped_on_a_console(monkeypatch) -> None:
    stream = capture(monkeypatch)
    configure_logging("console", "INFO")
    log_everything_hostile()
    shown = stream.getvalue()
    assert not raw_controls(shown), raw_controls(shown)
    # Only an exception's own message can break a line (inside its traceback).
    starts = [line.split()[0] for line in shown.splitlines() if line.strip()]
    assert starts.count("fake.line") == 1 and starts[starts.index("fake.line") - 1] == "ValueError:"
    # (A value with spaces is quoted by the renderer, its backslashes doubled.)
    assert f"event {ESCAPED}" in shown and f"arq says {ESCAPED}" in shown
    assert f"custom_id={ESCAPED!r}" in shown and f"key{ESCAPED}={ESCAPED!r}" in shown
    # A traceback keeps its own line breaks, and only those.
    assert "Traceback (most recent call last):\n" in shown
    assert "ValueError: bad id\\x1b[2J\\x1b]0;PWNED\\x07" in shown


def test_control_characters_are_escaped_in_json(monkeypatch) -> None:
    stream = capture(monkeypatch)
    configure_logging("json", "INFO")
    log_everything_hostile()
    lines = lines_of(stream)
    assert len(lines) == 3 and not raw_controls(stream.getvalue())
    first, failed, arq = (json.loads(line) for line in lines)
    assert first["custom_id"] == ESCAPED and first[f"key{ESCAPED}"] == ESCAPED
    assert first["listed"] == [HOSTILE]  # inside a list: JSON's own escapes suffice
    assert "ValueError: bad id\\x1b[2J\\x1b]0;PWNED\\x07" in failed["exception"]
    assert arq["event"] == f"arq says {ESCAPED}"


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_every_line_is_bounded_and_says_what_was_cut(monkeypatch, log_format: str) -> None:
    stream = capture(monkeypatch)
    configure_logging(log_format, "INFO")
    log = structlog.get_logger("chatgptes.test")
    payload = "HEAD " + "prompt text, " * 12_000 + "OOM command not allowed TAIL"
    wide = "漢字😀" * 20_000  # many bytes per character
    checks = [
        lambda: log.warning("redis.refused", error=payload),
        lambda: log.warning("many", **{f"k{n}": "v" * 300 for n in range(40)}),
        lambda: log.warning("wide", text=wide, more=wide),
        lambda: log.warning("listed", prompts=[payload, payload]),
        lambda: logging.getLogger("arq.worker").warning("arq: %s", payload),
    ]
    for emit in checks:
        stream.seek(0)
        stream.truncate()
        emit()
        line = stream.getvalue()
        assert 0 < len(line.encode()) <= 4096, (len(line.encode()), line[:200])
        if log_format == "json":
            json.loads(line)  # still one JSON object
    stream.seek(0)
    stream.truncate()
    checks[0]()
    line = stream.getvalue()
    assert "HEAD prompt text" in line and "OOM command not allowed TAIL" in line
    assert re.search(r"\.\.\.\[1\d\d,\d{3} characters cut\]\.\.\.", line), line[:300]


def test_a_traceback_is_bounded_and_keeps_its_end(monkeypatch) -> None:
    stream = capture(monkeypatch)
    configure_logging("console", "INFO")
    try:
        raise RuntimeError("Command # 1 (HSET " + "x" * 150_000 + ") caused error: OOM")
    except RuntimeError:
        structlog.get_logger("chatgptes.test").exception("results.save_failed")
    shown = stream.getvalue()
    assert len(shown.encode()) <= 4096 and "results.save_failed" in shown
    assert "Traceback (most recent call last):" in shown and "caused error: OOM" in shown


def test_secrets_inside_nested_values_are_masked(monkeypatch) -> None:
    stream = capture(monkeypatch)
    configure_logging("json", "INFO")
    structlog.get_logger("chatgptes.test").info(
        "worker.started",
        shown=["http://TOKENSECRET@gw:1", {"url": "redis://:hunter2@r:6379/0"}],
    )
    line = stream.getvalue()
    assert "TOKENSECRET" not in line and "hunter2" not in line
    assert json.loads(line)["shown"] == ["http://***@gw:1", {"url": "redis://:***@r:6379/0"}]


def test_cut_text_keeps_head_and_tail_within_the_limit() -> None:
    from contract.text import cut_text

    assert cut_text("short", 100) == "short"
    cut = cut_text("a" * 500 + "b" * 500, 200)
    assert len(cut) <= 200 and cut.startswith("aaa") and cut.endswith("bbb")
    assert "characters cut" in cut
    assert len(json.dumps(cut_text("😀" * 1000, 300))) <= 300


def test_a_redis_pipeline_error_is_logged_without_its_payload(monkeypatch) -> None:
    from redis.exceptions import OutOfMemoryError

    stream = capture(monkeypatch)
    configure_logging("json", "INFO")
    error = OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")
    payload = '{"custom_id": "q1", "content": "a prompt\'s text"}\n' * 2000
    error.args = (f"Command # 3 (HSET chatgptes:{{b}}:results 0 {payload}) of pipeline "
                  f"caused error: {error.args}",)  # fmt: skip
    try:
        raise error
    except OutOfMemoryError as caught:
        structlog.get_logger("chatgptes.test").exception("results.save_failed", error=str(caught))
    line = json.loads(stream.getvalue())
    for said in (line["error"], line["exception"]):
        assert "Command # 3 (HSET ...) of pipeline caused error: " in said
        assert "when used memory > 'maxmemory'" in said and "prompt" not in said
