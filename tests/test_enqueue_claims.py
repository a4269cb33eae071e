"""Two ``enqueue``s of one batch ID at once: one wins whole, the other exits 1, writing nothing.

Real processes against a real Redis, many rounds: the bigger file is still being
staged while the other one starts, so every round gives the race a chance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from contract import keys

ROUNDS = 16
SIZES = {"a": 12_000, "b": 4_000}


def prompts_file(path: Path, tag: str, count: int) -> Path:
    path.write_text("".join(
        json.dumps({"custom_id": f"{tag}-{n}", "messages": [{"role": "user", "content": "x"}]})
        + "\n" for n in range(count)))  # fmt: skip
    return path


@contextmanager
def started(commands: list[list[str]], env: dict[str, str]) -> Iterator[list[subprocess.Popen]]:
    """The processes, all started before any is waited for; each one ended on the way out."""
    processes: list[subprocess.Popen] = []
    try:
        for command in commands:
            processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True))  # fmt: skip
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.communicate()


def test_two_enqueues_of_one_batch_id_one_wins_whole(real_redis, redis_server, tmp_path) -> None:
    files = {tag: prompts_file(tmp_path / f"{tag}.jsonl", tag, n) for tag, n in SIZES.items()}
    env = {**os.environ, "CHATGPTES_REDIS_URL": redis_server, "CHATGPTES_QUEUE_NAME": "race:q"}
    client = redis.Redis.from_url(redis_server)
    winners = []
    try:
        for round_ in range(ROUNDS):
            batch_id = f"race{round_}"
            order = ["a", "b"] if round_ % 2 == 0 else ["b", "a"]
            commands = [[sys.executable, "-m", "chatgptes.cli", "enqueue", str(files[tag]),
                         "--batch-id", batch_id] for tag in order]  # fmt: skip
            with started(commands, env) as processes:
                outcomes = {tag: (p.wait(timeout=120), p.stderr.read())
                            for tag, p in zip(order, processes, strict=True)}  # fmt: skip
            codes = sorted(code for code, _ in outcomes.values())
            assert codes == [0, 1], f"round {round_}: {outcomes}"
            winner = next(tag for tag, (code, _) in outcomes.items() if code == 0)
            loser_says = next(err for code, err in outcomes.values() if code == 1)
            assert f"batch {batch_id} already exists" in loser_says, loser_says
            meta = keys.batch_meta(batch_id)
            requests = keys.batch_requests(batch_id)
            total = SIZES[winner]
            assert client.hget(meta, "state") == b"in_progress"
            assert int(client.hget(meta, "total")) == total
            assert client.hlen(requests) == total
            first, last = client.hmget(requests, [0, total - 1])
            assert json.loads(first)["custom_id"] == f"{winner}-0"
            assert json.loads(last)["custom_id"] == f"{winner}-{total - 1}"
            assert int(client.hget(keys.batch_counts(batch_id), "queued")) == total
            winners.append(winner)
    finally:
        client.close()
    assert len(winners) == ROUNDS
