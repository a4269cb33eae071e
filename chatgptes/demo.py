"""``chatgptes demo``: the whole story offline — Redis, the simulator, workers, a batch, results.

Every process the demo starts is stopped on the way out, whatever happened (a
failure, Ctrl-C or SIGTERM included). On a Redis the user named it writes only
under its own queue and batch id, with a short TTL, and never flushes anything.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from redis import Redis, RedisError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from chatgptes.progress import wait_progress
from contract.config import DEFAULT_MODEL, QueueSettings
from contract.models import BatchStatus, JobResult
from contract.redaction import redact_text, redact_url
from producer.api import BatchQueue
from producer.fleet import IdentityHealth, fleet_health
from producer.inputs import PromptLine, parse_prompt_lines
from simulator.local import free_port

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_PROMPTS = PACKAGE_ROOT / "examples" / "prompts.jsonl"
SIMULATOR_OPTIONS = (
    "--port", "0", "--proxies", "3", "--latency", "uniform:20,120", "--fault-5xx-rate", "0.02",
)  # fmt: skip
REDIS_START_SECONDS = 10.0
SIMULATOR_START_SECONDS = 15.0
BATCH_WAIT_SECONDS = 120.0
STOP_GRACE_SECONDS = 10.0
RESULT_TTL_SECONDS = 3600  # demo data in a user's Redis goes away by itself
SHOWN_RESULTS = 20

console = Console(highlight=False, soft_wrap=True)


class DemoError(RuntimeError):
    """A step of the demo could not be done; the message says which and where to look."""


def say(message: str) -> None:
    console.print(Text("» ", style="bold cyan") + Text(message))


@dataclass
class Cleanup:
    """What the demo started: processes stopped together first, then the servers they used."""

    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    servers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        # A second Ctrl-C must not cut the clean-up short and leave processes behind.
        with _signal_handler(signal.SIG_IGN, signal.SIGINT, signal.SIGTERM):
            stop_processes(self.processes)
            self.processes.clear()
            while self.servers:
                self.servers.pop()()


def stop_processes(named: Sequence[tuple[str, subprocess.Popen[bytes]]]) -> None:
    """SIGTERM all at once, wait up to the grace period together, SIGKILL whatever is left."""
    running = [(name, process) for name, process in named if process.poll() is None]
    for _, process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for name, process in running:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{name} did not stop within {STOP_GRACE_SECONDS:.0f}s; killing it")
            process.kill()
            process.wait(timeout=5)
    if running:
        say(f"stopped {', '.join(name for name, _ in running)}")


@contextmanager
def _signal_handler(handler: Any, *signums: int) -> Iterator[None]:
    """Installs ``handler`` for ``signums`` while the block runs (only the main thread can)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, handler_before in previous.items():
            signal.signal(signum, handler_before)


@dataclass(frozen=True)
class DemoRedis:
    url: str
    label: str  # which Redis this is, as the user is told (no password)


def start_redis(cleanup: Cleanup, workdir: Path) -> DemoRedis:
    """The user's Redis if reachable, else a redis-server of our own, else embedded fakeredis."""
    given = os.environ.get("CHATGPTES_REDIS_URL")
    if given:
        problem = redis_problem(given)
        if problem is None:
            return DemoRedis(given, f"your Redis at {redact_url(given)} (CHATGPTES_REDIS_URL)")
        say(f"CHATGPTES_REDIS_URL={redact_url(given)} is not reachable ({redact_text(problem)})")
    binary = shutil.which("redis-server")
    if binary is not None:
        return _start_redis_server(cleanup, workdir, binary)
    return _start_fake_redis(cleanup)


def redis_problem(url: str, timeout: float = 1.0) -> str | None:
    """None if the Redis at ``url`` answers PING within ``timeout``, else why not."""
    try:
        with Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout) as client:
            client.ping()
    except (RedisError, OSError, ValueError) as error:
        return str(error) or type(error).__name__
    return None


def _start_redis_server(cleanup: Cleanup, workdir: Path, binary: str) -> DemoRedis:
    datadir = workdir / "redis"
    datadir.mkdir()
    port = free_port()
    process = _spawn(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(datadir)],
        log=workdir / "redis-server.log",
    )  # fmt: skip
    cleanup.servers.append(lambda: stop_processes([("redis-server", process)]))
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + REDIS_START_SECONDS
    while redis_problem(url, timeout=0.2) is not None:
        if process.poll() is not None or time.monotonic() > deadline:
            raise DemoError(f"redis-server did not start; see {workdir / 'redis-server.log'}")
        time.sleep(0.05)
    return DemoRedis(url, f"a redis-server of its own at {url} (stopped at the end)")


def _start_fake_redis(cleanup: Cleanup) -> DemoRedis:
    try:
        from fakeredis import TcpFakeServer

        _teach_fakeredis_what_arq_needs()
    except ImportError as error:
        raise DemoError(
            "no Redis: set CHATGPTES_REDIS_URL, install redis-server, "
            f"or pip install 'fakeredis[lua]' for the embedded one ({error})"
        ) from error
    server = TcpFakeServer(("127.0.0.1", 0))
    server.daemon_threads = True  # a connection left open must not hold up the exit
    server.block_on_close = False
    server.RequestHandlerClass = _error_tolerant(server.RequestHandlerClass)
    thread = threading.Thread(target=server.serve_forever, name="fakeredis", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    cleanup.servers.append(stop)
    url = f"redis://127.0.0.1:{server.server_address[1]}/0"
    return DemoRedis(url, f"embedded fakeredis server at {url} (redis-server not found)")


def _teach_fakeredis_what_arq_needs() -> None:
    """fakeredis (2.40) has no INFO, which an arq worker sends when it starts: a minimal one."""
    from fakeredis._commands import SUPPORTED_COMMANDS, command
    from fakeredis._socket._base import BaseFakeSocket

    if "info" in SUPPORTED_COMMANDS:
        return

    def info(self: Any, *sections: bytes) -> bytes:
        return b"# Server\r\nredis_version:7.0.0\r\n# Clients\r\nconnected_clients:1\r\n"

    BaseFakeSocket.info = command((), (bytes,))(info)  # type: ignore[attr-defined]


def _error_tolerant(handler: type) -> type:
    """fakeredis's TCP handler hangs up after any error reply; real Redis keeps the connection."""
    from redis.exceptions import ResponseError

    class ErrorTolerantHandler(handler):  # type: ignore[valid-type, misc]
        def setup(self) -> None:
            super().setup()
            read_response = self.current_client.read_response

            def read_reply(**kwargs: Any) -> Any:
                try:
                    return read_response(**kwargs)
                except ResponseError as error:
                    return error  # written back as an error reply, like real Redis

            self.current_client.read_response = read_reply

    return ErrorTolerantHandler


def _spawn(
    argv: Sequence[str], *, log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        return subprocess.Popen(
            list(argv), stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=cwd
        )


def _child_env(**settings: str) -> dict[str, str]:
    """The demo's own settings only: none of the user's CHATGPTES_* leaks into its processes."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CHATGPTES_")}
    # The children run in the work directory (so no .env applies); keep this package importable.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    env.update({f"CHATGPTES_{name.upper()}": value for name, value in settings.items()})
    return env


def start_simulator(cleanup: Cleanup, workdir: Path) -> dict[str, Any]:
    """Starts the simulator and returns its ready info: {"url", "proxies", "stats_url", ...}."""
    ready, log = workdir / "sim.json", workdir / "simulator.log"
    argv = [sys.executable, "-m", "simulator", *SIMULATOR_OPTIONS, "--ready-file", str(ready)]
    process = _spawn(argv, log=log, env=_child_env(), cwd=workdir)
    cleanup.processes.append(("simulator", process))
    deadline = time.monotonic() + SIMULATOR_START_SECONDS
    while not ready.exists():
        if process.poll() is not None:
            raise DemoError(f"the simulator exited with code {process.returncode}; see {log}")
        if time.monotonic() > deadline:
            raise DemoError(f"the simulator was not ready after {SIMULATOR_START_SECONDS:.0f}s")
        time.sleep(0.05)
    return json.loads(ready.read_text())


def start_workers(
    cleanup: Cleanup, workdir: Path, count: int, *, redis_url: str, queue_name: str,
    sim: dict[str, Any],
) -> list[tuple[str, subprocess.Popen[bytes]]]:  # fmt: skip
    env = _child_env(
        redis_url=redis_url,
        queue_name=queue_name,
        upstream_url=sim["url"],
        proxies=",".join(sim["proxies"]),
        proxy_rate_per_second="5",
        result_ttl_seconds=str(RESULT_TTL_SECONDS),
        log_format="json",
        # The simulator echoes the message: without the long preamble the echo shows the prompt.
        language_instruction="",
    )
    argv = [sys.executable, "-m", "chatgptes.cli", "worker"]
    started = [
        (f"worker-{n}", _spawn(argv, log=workdir / f"worker-{n}.log", env=env, cwd=workdir))
        for n in range(1, count + 1)
    ]
    cleanup.processes.extend(started)
    return started


def sample_prompts(count: int) -> list[PromptLine]:
    """``count`` prompts: the example file's first lines, or generated ones if it has too few."""
    lines = EXAMPLE_PROMPTS.read_text().splitlines() if EXAMPLE_PROMPTS.exists() else []
    source = str(EXAMPLE_PROMPTS)
    if count > len(lines):
        lines, source = [json.dumps(_generated(index)) for index in range(count)], "<generated>"
    return parse_prompt_lines(
        lines[:count], source=source, default_model=DEFAULT_MODEL, max_prompt_chars=32_000
    )


_TOPICS = (
    "Redis", "the Alhambra", "sourdough bread", "black holes", "HTTP/2", "olive trees",
    "the Spanish Armada", "garbage collection", "flamenco", "solar panels", "octopuses",
)  # fmt: skip
_QUESTIONS = (
    "What is {}?", "Explain {} in two sentences.", "Give me three facts about {}.",
    "What is a common misconception about {}?", "Write a haiku about {}.",
)  # fmt: skip


def _generated(index: int) -> dict[str, Any]:
    topic = _TOPICS[index % len(_TOPICS)]
    question = _QUESTIONS[(index // len(_TOPICS)) % len(_QUESTIONS)].format(topic)
    messages = [{"role": "user", "content": question}]
    if index % 5 == 1:
        messages.insert(0, {"role": "system", "content": "Answer briefly, for a curious teenager."})
    if index % 7 == 3:
        messages = [
            {"role": "user", "content": f"I want to learn about {topic}."},
            {"role": "assistant", "content": "Happy to help. What would you like to know?"},
            *messages,
        ]
    return {"custom_id": f"gen{index + 1:04d}", "messages": messages}


async def run_batch(
    settings: QueueSettings,
    lines: list[PromptLine],
    workers: Sequence[tuple[str, subprocess.Popen[bytes]]],
    sim: dict[str, Any],
) -> bool:
    """Enqueues, follows and shows one batch; True if every prompt succeeded."""
    async with BatchQueue.connect(settings) as queue:
        batch = await queue.enqueue(lines, batch_id=f"demo_{secrets.token_hex(6)}")
        say(f"enqueued {batch.jobs} prompts as batch {batch.batch_id}; waiting for the workers")
        with wait_progress(batch.batch_id) as show:

            def on_status(status: BatchStatus) -> None:
                show(status)
                _check_alive(workers)

            # Three proxies at 5/s get through ~15 prompts a second: let big batches take longer.
            timeout = max(BATCH_WAIT_SECONDS, len(lines) / 5)
            done = await queue.wait(batch.batch_id, timeout=timeout, on_status=on_status)
        say(f"batch done: {done.succeeded} succeeded, {done.failed} failed, "
            f"{done.cancelled} cancelled")  # fmt: skip
        results = await queue.results(batch.batch_id)
        show_results(results)
        show_simulator_stats(await asyncio.to_thread(_fetch_json, sim["stats_url"]), len(lines))
        show_fleet(await fleet_health(queue.redis), sim["proxies"])
    return len(results) == done.total and all(r.status == "succeeded" for r in results)


def _check_alive(workers: Sequence[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for name, process in workers:
        if process.poll() is not None:
            raise DemoError(f"{name} exited with code {process.returncode}; see its log")


def _fetch_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.loads(reply.read())


def show_results(results: list[JobResult]) -> None:
    table = Table(title="results", title_justify="left")
    table.add_column("custom_id", no_wrap=True, min_width=9)
    table.add_column("status", no_wrap=True, min_width=9)
    table.add_column("attempts", no_wrap=True, justify="right", min_width=8)
    table.add_column("answer", no_wrap=True, overflow="ellipsis")
    for result in results[:SHOWN_RESULTS]:
        answer = result.content or (
            f"{result.error.type}: {result.error.message}" if result.error else ""
        )
        table.add_row(result.custom_id, result.status, str(result.attempts), _short(answer, 60))
    console.print(table)
    if len(results) > SHOWN_RESULTS:
        console.print(f"  … and {len(results) - SHOWN_RESULTS} more")


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def show_simulator_stats(stats: dict[str, Any], prompts: int) -> None:
    requests, faults = stats["requests"], stats["faults"]
    say(f"simulator: {requests['page']} page GETs and {requests['ajax']} ajax POSTs for "
        f"{prompts} prompts (one page GET per proxy session, not one per prompt); "
        f"{faults['5xx']} injected 5xx retried; at most {stats['inflight_max']} requests "
        f"in flight")  # fmt: skip
    for name, identity in stats["identities"].items():
        console.print(
            f"  {name}: {identity['page']} page, {identity['ajax']} ajax, "
            f"{identity['success']} answered, at most {identity['inflight_max']} in flight"
        )


def show_fleet(identities: list[IdentityHealth], proxies: Sequence[str]) -> None:
    """Like ``chatgptes status``, for the demo's proxies only (the Redis may hold others)."""
    ours = {f"{urlsplit(url).hostname}:{urlsplit(url).port}" for url in proxies}
    say("fleet health (as `chatgptes status` shows it):")
    for identity in (identity for identity in identities if identity.name in ours):
        line = (
            f"  {identity.name}: {identity.inflight} in flight, penalty {identity.penalty:.2f}, "
            f"{identity.successes} ok / {identity.failures} failed"
        )
        if identity.cooling_for > 0:
            line += f", cooling {identity.cooling_for:.0f}s after {identity.reason}"
        console.print(line)


def run_demo(prompts: int = 40, workers: int = 2) -> int:
    """Runs the demo; 0 if every prompt succeeded, 1 otherwise, 130 on Ctrl-C."""
    if prompts < 1 or workers < 1:
        console.print("error: --prompts and --workers must be at least 1")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="chatgptes-demo-"))
    say(f"work directory (logs of every process): {workdir}")
    cleanup = Cleanup()
    try:
        with _signal_handler(
            signal.default_int_handler, signal.SIGTERM
        ):  # unwinds, so the clean-up runs
            return 0 if _story(cleanup, workdir, prompts, workers) else 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except (DemoError, TimeoutError, RedisError, OSError) as error:
        console.print(Text(f"demo failed: {redact_text(str(error))}", style="red"))
        return 1
    finally:
        cleanup.close()
        say(f"logs kept in {workdir}")


def _story(cleanup: Cleanup, workdir: Path, prompts: int, workers: int) -> bool:
    server = start_redis(cleanup, workdir)
    say(f"using {server.label}")
    sim = start_simulator(cleanup, workdir)
    say(f"simulator (chatgpt.es stand-in) at {sim['url']} with {len(sim['proxies'])} proxies")
    queue_name = f"chatgptes:demo:{secrets.token_hex(4)}"
    started = start_workers(
        cleanup, workdir, workers, redis_url=server.url, queue_name=queue_name, sim=sim
    )
    say(f"started {workers} workers on queue {queue_name}; "
        f"logs in {workdir}/worker-N.log (JSON)")  # fmt: skip
    lines = sample_prompts(prompts)
    settings = QueueSettings(
        redis_url=server.url, queue_name=queue_name, result_ttl_seconds=RESULT_TTL_SECONDS
    )
    return asyncio.run(run_batch(settings, lines, started, sim))
