"""A Redis password that needs percent-encoding logs in the same for producers and workers.

Against a redis-server of the test's own, started with ``requirepass``: the password
holds every character a URL parser splits on, written percent-encoded in the URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest

from contract.retrying import arq_pool, redis_client
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
    for url in urls(port):
        pool = arq_pool(url)  # what a worker's arq Worker is given
        try:
            assert await pool.ping()
        finally:
            await pool.aclose()
