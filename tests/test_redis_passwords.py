"""A Redis password that needs percent-encoding logs in the same for producers and workers.

Against a redis-server of the test's own, started with ``requirepass``: the password
holds every character a URL parser splits on, written percent-encoded in the URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from arq.connections import create_pool

from contract.retrying import arq_redis_settings, redis_client
from tests.private_redis import redis_with_password

pytestmark = pytest.mark.integration

PASSWORD = "S3cr@t:p/w?q#r%s, tZ"
USER = "ops@team:1"


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with redis_with_password(tmp_path_factory.mktemp("redis-pw"), PASSWORD, user=USER) as port:
        yield port


def urls(port: int) -> list[str]:
    secret = quote(PASSWORD, safe="")
    return [
        f"redis://:{secret}@127.0.0.1:{port}/0",
        f"redis://{quote(USER, safe='')}:{secret}@127.0.0.1:{port}/1",
    ]


async def test_producers_log_in_with_an_encoded_password(port: int) -> None:
    for url in urls(port):
        client = redis_client(url)
        try:
            assert await client.ping()
        finally:
            await client.aclose()


async def test_workers_log_in_with_the_same_url(port: int) -> None:
    for url, db in zip(urls(port), (0, 1), strict=True):
        settings = arq_redis_settings(url)
        assert settings.password == PASSWORD and settings.database == db
        pool = await create_pool(settings)
        try:
            assert await pool.ping()
        finally:
            await pool.aclose()


def test_arq_settings_read_the_url_as_redis_py_does(tmp_path: Path) -> None:
    settings = arq_redis_settings("rediss://u%40x:p%2Fw@h.example:6380/2?ssl_cert_reqs=none")
    assert (settings.host, settings.port, settings.database) == ("h.example", 6380, 2)
    assert (settings.username, settings.password, settings.ssl) == ("u@x", "p/w", True)
    assert settings.ssl_cert_reqs == "none"
    socket = arq_redis_settings(f"unix://{tmp_path}/redis.sock?db=3")
    assert socket.unix_socket_path == f"{tmp_path}/redis.sock" and socket.database == 3
