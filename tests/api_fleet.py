"""One fleet for a whole module of end-to-end client tests: the simulator, one worker and
``chatgptes serve``. Client tests only read answers, so they share it; starting one per
test would cost more than the tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.conftest import Fleet


@contextmanager
def api_fleet(tmp: Path, redis_url: str, key: str) -> Iterator[tuple[str, Fleet]]:
    """The base URL (``…/v1``) of an API answered by a worker, and its fleet; everything
    stopped after."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    fleet = Fleet(tmp, redis_url)
    try:
        fleet.start_simulator("--latency", "fixed:5")
        # A retry after an answer off its schema waits a short backoff, not the default.
        fleet.start_workers(1, proxy_rate_per_second=0, backoff_base_seconds=0.05)
        yield fleet.start_api(api_keys=key), fleet
    finally:
        fleet.stop()
