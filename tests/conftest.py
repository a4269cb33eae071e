"""Shared fixtures: fakeredis for unit tests, a real Redis server of our own for the rest.

The real server is the one ``make test`` started (``CHATGPTES_TEST_REDIS_URL``), or
one this session starts on a free port; never the machine's shared 6379.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import fakeredis
import pytest
from redis.asyncio import Redis

from tests.processes import free_port, stop_process, wait_until


@pytest.fixture
async def fake_redis() -> AsyncIterator[Redis]:
    server = fakeredis.FakeServer()
    redis = fakeredis.FakeAsyncRedis(server=server)
    yield redis
    await redis.aclose()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Redis server that belongs to the tests (database 0 is ours to flush)."""
    given = os.environ.get("CHATGPTES_TEST_REDIS_URL")
    if given:
        yield given
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server on PATH and CHATGPTES_TEST_REDIS_URL unset (run `make test`)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until(lambda: _pings(port), timeout=10, what="redis-server to answer PING")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(process)


def _pings(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.2).ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
async def real_redis(redis_server: str) -> AsyncIterator[Redis]:
    """A client on the tests' own server, flushed before each test."""
    redis = Redis.from_url(redis_server)
    await redis.flushdb()
    yield redis
    await redis.aclose()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
