"""What the housekeeper's look at unfinished stops costs, with many stops of the last days.

    .venv/bin/python bench/bench_stops.py [--stopped 20000] [--runs 5]

Writes ``--stopped`` finished stops (their marks, as ``cancel`` leaves them) and one
unfinished, then times ``BatchStopper.unfinished()`` (what the lock holder runs every
2 s, beside its heartbeat). Runs the code on PYTHONPATH, so the same script measures the
checkout before a change (``PYTHONPATH=../before``) and after.

Starts its own redis-server on 127.0.0.1; stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from harness import emit
from redis.asyncio import Redis

from contract import keys
from contract.ledger import PromptLedger
from contract.stopping import BatchStopper
from simulator.local import redis_server


async def measure(url: str, stopped: int, runs: int) -> dict[str, float]:
    redis = Redis.from_url(url)
    now_ms = int(time.time() * 1000)
    async with redis.pipeline(transaction=False) as pipe:
        for n in range(stopped):
            batch_id = f"done{n}"
            pipe.hset(keys.stopped_batches(), batch_id, f"cancelled {now_ms}")
            pipe.hset(keys.batch_meta(batch_id), mapping={"state": "cancelled",
                                                           "stop_cursor": "done"})  # fmt: skip
        await pipe.execute()
    stopper = BatchStopper(redis, queue_name="bench:queue", ttl_seconds=3600,
                           ledger=PromptLedger(redis, ttl_seconds=3600))  # fmt: skip
    await redis.hset(keys.batch_meta("open"), mapping={"state": "in_progress", "total": 1})
    await stopper.begin("open", "cancelled")
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        found = await stopper.unfinished()
        times.append((time.perf_counter() - began) * 1000)
    assert [s.batch_id for s in found] == ["open"], found
    await redis.aclose()
    return {"stopped": stopped, "median_ms": round(statistics.median(times), 2),
            "max_ms": round(max(times), 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stopped", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as (url, _):
        figures = asyncio.run(measure(url, args.stopped, args.runs))
    print(f"unfinished() with {args.stopped} finished stops: {figures}")
    emit({"benchmark": "stops", **figures})


if __name__ == "__main__":
    main()
