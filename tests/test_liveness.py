"""Whether anyone runs what serve queues: read from the workers' reports, by queue.

The API's side (a chat refused with ``no_workers``, ``/healthz`` degraded) is in
``test_http_api.py``; here, the reading itself and the console's banner.
"""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from contract import keys
from producer.fleet import live_workers
from producer.http import liveness
from producer.http.app import make_app
from producer.http.settings import ApiSettings
from tests.conftest import report_live_worker

QUEUE = "test:queue"
BANNER = "Batches are accepted, but nothing runs them"


async def test_only_live_workers_on_the_queue_count(fake_redis: Redis) -> None:
    assert await live_workers(fake_redis, QUEUE) == []
    await report_live_worker(fake_redis, QUEUE, worker_id="h:1")
    await report_live_worker(fake_redis, "elsewhere", worker_id="h:2")
    await report_live_worker(fake_redis, QUEUE, worker_id="h:3")
    await fake_redis.hset(keys.worker_info("h:3"), "went_down", "broker loop died")
    await report_live_worker(fake_redis, QUEUE, worker_id="h:4")
    await fake_redis.hset(keys.worker_info("h:4"), "last_seen", 1)  # silent for ages
    assert [w.worker_id for w in await live_workers(fake_redis, QUEUE)] == ["h:1"]


async def test_the_console_says_when_nothing_runs_the_batches(fake_redis: Redis) -> None:
    settings = ApiSettings(_env_file=None, redis_url="redis://unused", queue_name=QUEUE,
                           api_keys="")  # fmt: skip
    app = make_app(settings, open_without_keys=True, redis=fake_redis)
    async with TestClient(TestServer(app)) as client:
        for page in ("/", "/batches"):
            html = await (await client.get(page)).text()
            assert BANNER in html and "chatgptes worker" in html, page
        assert BANNER not in await (await client.get("/live/fleet")).text()
        await report_live_worker(fake_redis, QUEUE)
        assert BANNER not in await (await client.get("/")).text()


async def test_a_live_worker_seen_is_not_read_again_for_a_second(fake_redis: Redis) -> None:
    await report_live_worker(fake_redis, QUEUE)
    assert await liveness.has_workers(fake_redis, QUEUE)
    await fake_redis.delete(keys.workers_seen())  # gone; a burst of chats reads nothing more
    assert await liveness.has_workers(fake_redis, QUEUE)
    liveness._seen_alive[fake_redis][QUEUE] = 0.0  # a second later
    assert not await liveness.has_workers(fake_redis, QUEUE)
    assert not await liveness.has_workers(fake_redis, "another:queue")
