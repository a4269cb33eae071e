"""A Redis that refuses (full, read-only, loading, …) is said in a few words, never by
quoting the refused command: the CLI's errors, the API's bodies and its log lines.

redis-py annotates a failed pipeline command with its whole payload; an enqueue of 1,000
prompts refused by a full Redis printed a 146,841-byte line. The real refusals run
against a redis-server of the test's own, its maxmemory set just above what it holds.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from contract.logs import LINE_LIMIT, configure_logging
from contract.redis_errors import explain, without_command_arguments
from contract.retrying import redis_client
from producer.http.app import make_app
from producer.http.settings import ApiSettings
from tests.private_redis import redis_with_password

PASSWORD = "Fu11:Red#s @/x"
PROMPT_TEXT = "the text of prompt {n}, which must never be printed back " * 8


def pipeline_error(error_type: type[Exception], message: str, payload: str) -> Exception:
    """An error as redis-py's pipeline leaves it: annotated with the whole command."""
    error = error_type(message)
    error.args = (f"Command # 1 (HSET chatgptes:{{b}}:requests 0 {payload}) of pipeline "
                  f"caused error: {error.args}",)  # fmt: skip
    return error


def test_a_pipeline_error_is_explained_by_its_command_name_and_redis_words() -> None:
    hostile = "x" * 100_000 + ") of pipeline caused error: ('fake',)"  # a prompt's text
    error = pipeline_error(OutOfMemoryError, "command not allowed when used memory > "
                           "'maxmemory'.", hostile)  # fmt: skip
    problem = explain(error)
    assert problem.meaning == "is out of memory (maxmemory) and refuses writes"
    assert problem.detail == "HSET: command not allowed when used memory > 'maxmemory'."
    assert "xxxx" not in problem.said() and len(problem.said()) < 200


def test_an_annotation_in_any_text_keeps_only_the_command_name() -> None:
    fake = "Command # 9 (DEL x) of pipeline caused error: ('no',) "  # a prompt's own text
    error = pipeline_error(OutOfMemoryError, "OOM!", "PAYLOAD " + fake * 20_000)
    traceback = f"Traceback ...\nredis.exceptions.OutOfMemoryError: {error}\n"
    assert without_command_arguments(traceback) == (
        "Traceback ...\nredis.exceptions.OutOfMemoryError: Command # 1 (HSET ...) of pipeline "
        "caused error: ('OOM!',)\n"
    )
    assert without_command_arguments("no annotation here") == "no annotation here"


@pytest.mark.parametrize(
    ("error", "meaning"),
    [
        (ReadOnlyError("You can't write against a read only replica."), "read-only replica"),
        (ResponseError("MISCONF Redis is configured to save RDB snapshots"), "save to disk"),
        (BusyLoadingError("Redis is loading the dataset in memory"), "is loading"),
        (ResponseError("BUSY Redis is busy running a script."), "busy running a script"),
        (AuthenticationError("invalid username-password pair"), "refused the login"),
        (RedisConnectionError("Error 111 connecting to 127.0.0.1:1."), "cannot be reached"),
        (ResponseError("ERR unknown command"), "refused a command"),
    ],
)
def test_each_refusal_has_its_meaning(error: Exception, meaning: str) -> None:
    assert meaning in explain(error).meaning


def test_the_words_are_masked_escaped_and_short() -> None:
    error = RedisConnectionError("redis://:hunter2@h:1 said \x1b[2J" + "y" * 10_000)
    said = explain(error).said()
    assert "hunter2" not in said and "\x1b" not in said and "\\x1b[2J" in said
    assert len(said) <= 400 and "characters cut" in said


@pytest.fixture(scope="module")
def full_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL (password percent-encoded) of a redis-server of our own."""
    workdir = tmp_path_factory.mktemp("redis-full")
    with redis_with_password(workdir, PASSWORD) as port:
        yield f"redis://:{quote(PASSWORD, safe='')}@127.0.0.1:{port}/0"


@contextmanager
def at_maxmemory(url: str, room: int = 128 * 1024) -> Iterator[None]:
    """Redis refuses writes that need more than ``room`` bytes, until the block ends."""
    with redis.Redis.from_url(url) as client:
        client.flushdb()
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used + room)
        try:
            yield
        finally:
            client.config_set("maxmemory", 0)
            client.flushdb()


def prompts_file(tmp_path: Path, count: int = 1000) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(
        json.dumps({"custom_id": f"q{n}", "messages": [
            {"role": "user", "content": PROMPT_TEXT.format(n=n)}]}) + "\n"
        for n in range(count)
    ))  # fmt: skip
    return path


def test_an_enqueue_refused_by_a_full_redis_is_one_short_clear_line(
    full_redis: str, tmp_path: Path
) -> None:
    file = prompts_file(tmp_path)
    with at_maxmemory(full_redis):
        ran = subprocess.run(
            [sys.executable, "-m", "chatgptes.cli", "enqueue", str(file)],
            env={"PATH": "/usr/bin:/bin", "CHATGPTES_REDIS_URL": full_redis},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert ran.returncode == 1, ran.stderr[-2000:]
    printed = ran.stdout + ran.stderr
    assert max(len(line.encode()) for line in printed.splitlines()) <= LINE_LIMIT
    last = ran.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Redis at redis://:***@127.0.0.1:")
    assert "is out of memory (maxmemory) and refuses writes" in last, last
    assert "must never be printed" not in printed
    assert "Fu11" not in printed and "Red#s" not in printed and "Fu11%3A" not in printed


async def test_an_upload_refused_by_a_full_redis_is_a_short_503_and_log_line(
    full_redis: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logged = io.StringIO()
    monkeypatch.setattr("sys.stderr", logged)
    configure_logging("json", "INFO")
    client = redis_client(full_redis)
    settings = ApiSettings(_env_file=None, redis_url=full_redis, queue_name="refusals")
    app = make_app(settings, open_without_keys=True, redis=client)
    data = prompts_file(tmp_path).read_bytes()
    try:
        async with TestClient(TestServer(app)) as api:
            with at_maxmemory(full_redis):
                from aiohttp import FormData

                form = FormData()
                form.add_field("purpose", "batch")
                form.add_field("file", data, filename="in.jsonl")
                reply = await api.post("/v1/files", data=form)
                body = await reply.text()
    finally:
        await client.aclose()
    assert reply.status == 503, body
    message = json.loads(body)["error"]["message"]
    assert message == "The service's Redis is out of memory (maxmemory) and refuses writes; " \
        "try again shortly."  # fmt: skip
    lines = logged.getvalue().splitlines()
    [unavailable] = [json.loads(line) for line in lines if "api.redis_unavailable" in line]
    assert "out of memory" in unavailable["error"] and unavailable["redis_url"].startswith(
        "redis://:***@127.0.0.1:"
    )
    assert max(len(line.encode()) for line in lines) <= LINE_LIMIT
    assert "must never be printed" not in logged.getvalue() and "Fu11" not in logged.getvalue()
