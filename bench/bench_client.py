"""CPU per prompt of the exchange client alone (``worker.client``), before and after a change.

    .venv/bin/python bench/bench_client.py [--client-from /tmp/before] [--rounds 5]
        [--count 5000] [--concurrency 100]

One zero-latency simulator (this checkout's), then rounds of a child process each: one
page handshake, then ``count`` ``ChatGptEsClient.ask`` calls, ``concurrency`` at once,
the child's CPU read around the asks only. With ``--client-from`` the rounds alternate
between this checkout and the other one (the child runs with ``PYTHONPATH`` set to it),
so both see the same machine at nearly the same time; the busier the machine, the more
the minimum of each side says. The simulator's CPU per prompt is read for each round too:
what each form costs the site to read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import cpu_seconds

from simulator.local import simulator_process

SCRIPT = Path(__file__).resolve()


async def load(url: str, count: int, concurrency: int) -> dict[str, Any]:
    from contract.models import Message
    from worker.client import ChatGptEsClient, ClientOptions
    from worker.proxies import Identity

    client = ChatGptEsClient(ClientOptions(base_url=url, max_connections=concurrency))
    identity = Identity("direct", None, concurrency, 0)
    session = await client.handshake(identity)
    remaining = count

    async def one_at_a_time() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            prompt = (Message(role="user", content=f"Prompt {remaining}: why?"),)
            await client.ask(identity, session, prompt, "gpt-4o")

    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    await asyncio.gather(*(one_at_a_time() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    await client.close()
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"cpu_ms_per_prompt": round(cpu / count * 1000, 4), "seconds": round(seconds, 3)}


def child(url: str, count: int, concurrency: int) -> None:
    try:
        import uvloop  # the worker's loop, when installed

        figures = uvloop.run(load(url, count, concurrency))
    except ImportError:
        figures = asyncio.run(load(url, count, concurrency))
    print(json.dumps(figures))


def round_of(url: str, sim_pid: int, count: int, concurrency: int, path: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if path:
        env["PYTHONPATH"] = path
    sim_before = cpu_seconds(sim_pid)
    argv = [sys.executable, str(SCRIPT), "--child", url, str(count), str(concurrency)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"child failed:\n{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    figures["sim_cpu_ms_per_prompt"] = round((cpu_seconds(sim_pid) - sim_before) / count * 1000, 4)
    return figures


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    cpu = [r["cpu_ms_per_prompt"] for r in rounds]
    sim = [r["sim_cpu_ms_per_prompt"] for r in rounds]
    return {"cpu_ms_min": min(cpu), "cpu_ms_median": round(statistics.median(cpu), 4),
            "cpu_ms": cpu, "sim_cpu_ms_median": round(statistics.median(sim), 4)}  # fmt: skip


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client-from", help="another checkout to alternate with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    sides = {"this": None, **({"other": args.client_from} if args.client_from else {})}
    results: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory() as tmp, simulator_process(
        Path(tmp), "--latency", "fixed:0", "--markup", "data-attrs"
    ) as (sim, process):  # fmt: skip
        for _ in range(args.rounds):
            for side, path in sides.items():
                results[side].append(
                    round_of(sim["url"], process.pid, args.count, args.concurrency, path)
                )
    out = {side: summary(rounds) for side, rounds in results.items()}
    if "other" in out:
        out["this_over_other_min"] = round(
            out["this"]["cpu_ms_min"] / out["other"]["cpu_ms_min"], 3
        )
        out["this_over_other_median"] = round(
            out["this"]["cpu_ms_median"] / out["other"]["cpu_ms_median"], 3
        )
    print(json.dumps({"benchmark": "client", "count": args.count, **out}))


if __name__ == "__main__":
    main()
