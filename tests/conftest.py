"""Shared fixtures: fakeredis for unit tests, a real Redis server of our own for the rest.

The real server is a redis-server this test process starts on a free port, never the
machine's shared 6379. ``make test`` runs the suite in parallel (pytest-xdist): each
worker process is a session of its own, so each has its own server, which its tests
may flush, fill to ``maxmemory`` or restart without touching another's. A test that
needs a Redis asks for ``real_redis`` (a client, the database flushed) or
``redis_server`` (the URL), and is parallel for free. ``CHATGPTES_TEST_REDIS_URL``
names a server to use instead (where no redis-server can run); the tests flush it, so
it serves one test process: a parallel run refuses it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path

import fakeredis
import pytest
from redis.asyncio import Redis

from simulator import local

if os.environ.get("PYTEST_XDIST_WORKER"):
    # A parallel run's worker processes are given COLUMNS and LINES (80x24): the terminal
    # views would then be drawn 80 wide, where a serial run's are 120 (a pipe's width).
    for _name in ("COLUMNS", "LINES"):
        os.environ.pop(_name, None)


async def eventually(condition, *, timeout: float = 5.0, what: str = "the condition") -> None:
    """Waits (cooperatively) until ``condition()`` (or its awaited value) is true.

    Fails naming ``what`` at the deadline: a condition with a deadline, never a bare sleep.
    """
    import asyncio
    import inspect
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


async def report_live_worker(redis: Redis, queue_name: str, worker_id: str = "test-host:1") -> None:
    """A worker's report, as its heartbeat writes it: alive on ``queue_name`` for an hour.
    For tests that play the workers themselves (serve refuses work nobody runs)."""
    from contract import keys

    seconds, micros = await redis.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    await redis.zadd(keys.workers_seen(), {worker_id: now_ms})
    await redis.hset(keys.worker_info(worker_id), mapping={
        "host": "test-host", "pid": 1, "queue": queue_name, "last_seen": now_ms,
        "heartbeat_seconds": 1200, "stopping": 0,
    })  # fmt: skip


@pytest.fixture
async def fake_redis() -> AsyncIterator[Redis]:
    server = fakeredis.FakeServer()
    redis = fakeredis.FakeAsyncRedis(server=server)
    yield redis
    await redis.aclose()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Redis server that belongs to this test process (ours to flush)."""
    given = os.environ.get("CHATGPTES_TEST_REDIS_URL")
    if given:
        if os.environ.get("PYTEST_XDIST_WORKER"):
            pytest.exit("CHATGPTES_TEST_REDIS_URL is one server, which each test flushes: "
                        "run the tests without -n, or unset it (each worker then starts its "
                        "own redis-server)", returncode=4)  # fmt: skip
        yield given
        return
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server on PATH and CHATGPTES_TEST_REDIS_URL unset (run `make test`)")
    with local.redis_server(tmp_path_factory.mktemp("redis")) as (url, _):
        yield url


@pytest.fixture
async def real_redis(redis_server: str) -> AsyncIterator[Redis]:
    """A client on the tests' own server, flushed before each test."""
    redis = Redis.from_url(redis_server)
    await redis.flushdb()
    yield redis
    await redis.aclose()


@pytest.fixture(params=["fakeredis", "redis-server"])
def redis(request: pytest.FixtureRequest) -> Redis:
    """Each test twice: on fakeredis, and on the tests' own real server (flushed first).

    For the tests of Lua scripts: fakeredis runs Lua through lupa, not Redis's own
    interpreter, so every script is also tried where it will run."""
    return request.getfixturevalue("fake_redis" if request.param == "fakeredis" else "real_redis")


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def chatgptes(*args: str) -> list[str]:
    return [sys.executable, "-m", "chatgptes.cli", *args]


class Fleet:
    """The simulator and worker processes of one end-to-end test; all stopped at teardown."""

    def __init__(self, tmp: Path, redis_url: str) -> None:
        self.tmp = tmp
        self.redis_url = redis_url
        self.queue_name = f"e2e:{tmp.name}"
        self.workers: list[subprocess.Popen] = []
        self.sim: dict = {}
        self._stack = ExitStack()

    def start_simulator(self, *options: str) -> dict:
        self.sim, _ = self._stack.enter_context(local.simulator_process(self.tmp, *options))
        return self.sim

    def env(self, **settings: object) -> dict[str, str]:
        env = {
            "CHATGPTES_REDIS_URL": self.redis_url,
            "CHATGPTES_QUEUE_NAME": self.queue_name,
            "CHATGPTES_LOG_FORMAT": "json",
        }
        if self.sim:
            env["CHATGPTES_UPSTREAM_URL"] = self.sim["url"]
        env.update({f"CHATGPTES_{k.upper()}": str(v) for k, v in settings.items()})
        return env

    def start_workers(
        self, count: int, *, fault: str | None = None, **settings: object
    ) -> list[subprocess.Popen]:
        """Starts ``count`` workers (with ``fault`` planted: see tests/faulty_worker.py)."""
        command = chatgptes("worker")
        if fault is not None:
            command = [sys.executable, "-m", "tests.faulty_worker", fault]
        started = []
        for _ in range(count):
            # a file each: two processes writing one file overwrite each other's lines
            log = self.tmp / f"worker{len(self.workers) + len(started)}.log"
            worker = local.running(command, log=log, env=self.env(**settings))
            started.append(self._stack.enter_context(worker))
        self.workers += started
        return started

    def start_api(self, **settings: object) -> str:
        """``chatgptes serve`` on a free port, answering; its base URL (``…/v1``)."""
        from producer.http.client import answers_health

        port = local.free_port()
        argv = [sys.executable, "-m", "chatgptes.serve", "--host", "127.0.0.1", "--port",
                str(port)]  # fmt: skip
        log = self.tmp / f"api{port}.log"
        base_url = f"http://127.0.0.1:{port}/v1"
        process = self._stack.enter_context(local.running(argv, log=log, env=self.env(**settings)))

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"chatgptes serve exited: {log.read_text()}")
            return answers_health(base_url)

        local.wait_until(answers, timeout=30, what="chatgptes serve to answer")
        if self.workers:  # serve refuses chats while no worker has reported: wait for one
            local.wait_until(lambda: "no_workers" not in health(base_url), timeout=30,
                             what="a worker to report itself")  # fmt: skip
        return base_url

    def report_worker(self) -> None:
        """A live worker's report on this fleet's queue, with no worker behind it: serve
        takes chats, and nothing answers them."""
        import asyncio

        async def report() -> None:
            client = Redis.from_url(self.redis_url)
            try:
                await report_live_worker(client, self.queue_name, worker_id="nobody:1")
            finally:
                await client.aclose()

        asyncio.run(report())

    def cli(
        self, *args: str, input: str | None = None, **settings: object
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            chatgptes(*args),
            env={**os.environ, **self.env(**settings)},
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def sim_stats(self) -> dict:
        with urllib.request.urlopen(self.sim["stats_url"], timeout=5) as reply:
            return json.load(reply)

    def worker_logs(self) -> str:
        return "".join(p.read_text() for p in sorted(self.tmp.glob("worker*.log")))

    def stop(self) -> None:
        self._stack.close()


def health(base_url: str) -> str:
    """The body of serve's /healthz, whatever its status."""
    root = base_url.removesuffix("/v1")
    try:
        with urllib.request.urlopen(f"{root}/healthz", timeout=5) as reply:
            return reply.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.read().decode()


@pytest.fixture
def fleet(tmp_path: Path, redis_server: str) -> Iterator[Fleet]:
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushdb()
    client.close()
    running = Fleet(tmp_path, redis_server)
    try:
        yield running
    finally:
        running.stop()
