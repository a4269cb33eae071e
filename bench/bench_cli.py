"""Each read command of the CLI as a whole process, beside redis-cli, in one run.

    .venv/bin/python bench/bench_cli.py [--runs 15] [--prompts 10] [--machine-bytecode]
        [--instructions]

A user feels the whole process: the interpreter starting, the imports, the settings,
connecting, the round trips, the printing, the exit. Each command runs in a new
process, started the way a shell starts it (its console script, output to
/dev/null), from ``exec`` to exit; the rounds are interleaved (every command once
per round), so a burst of load on the machine touches them all alike. The
references, in the same rounds: ``redis-cli`` asking the same Redis for the batch's
record (what a reading costs with no Python at all) and ``python -c pass`` (the
interpreter alone).

Commands: ``status``, ``batches``, ``workers``, ``job``, ``results`` of a small batch,
``config``, ``--help`` and ``top --once``. The batch is enqueued once, before the
rounds, into a redis-server of this script's own on a free port (stopped at the end).

On a busy machine wall times swell with the load (each figure is reported with the
load average around the rounds). ``--instructions`` also counts the instructions each
command executes, once, under valgrind (cachegrind, no cache simulation; ~50× slower):
a figure the load does not change, to compare before and after on a shared machine.

Bytecode: an installed package has its modules compiled; a checkout run with
``PYTHONDONTWRITEBYTECODE`` (this machine sets it) compiles the project's modules
again in every process. The commands run with a bytecode cache of their own
(``PYTHONPYCACHEPREFIX`` in a temporary folder, warmed before the rounds), unless
``--machine-bytecode`` says to run them with this environment as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import emit

from contract import keys
from simulator.local import redis_server

ROOT = Path(__file__).resolve().parent.parent
BATCH = "bench-cli"


def commands(bin_dir: Path, port: int) -> dict[str, list[str]]:
    """What is timed, by name: the CLI's read commands, then the references."""
    cli = str(bin_dir / "chatgptes")
    redis_cli = shutil.which("redis-cli") or "redis-cli"
    return {
        "status": [cli, "status", BATCH],
        "batches": [cli, "batches"],
        "workers": [cli, "workers"],
        "job": [cli, "job", f"{BATCH}.0"],
        "results": [cli, "results", BATCH],
        "config": [cli, "config"],
        "--help": [cli, "--help"],
        "top --once": [cli, "top", "--once"],
        "redis-cli hgetall": [redis_cli, "-p", str(port), "hgetall", keys.batch_meta(BATCH)],
        "python -c pass": [sys.executable, "-c", "pass"],
    }


def environment(url: str, cache: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATGPTES_")}
    env["CHATGPTES_REDIS_URL"] = url
    if cache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(cache)
    return env


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          cwd=ROOT, timeout=60)  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-500:]!r}")
    return wall


def instructions(argv: list[str], env: dict[str, str]) -> int:
    """Instructions the process executes (user space), counted by valgrind."""
    done = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         *argv],
        env={**env, "PYTHONHASHSEED": "0"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    refs = [line for line in done.stderr.splitlines() if "I   refs:" in line or "I refs:" in line]
    if done.returncode != 0 or not refs:
        raise RuntimeError(f"valgrind {' '.join(argv)}: {done.stderr[-500:]!r}")
    return int(refs[-1].rsplit(":", 1)[1].replace(",", ""))


def enqueue(bin_dir: Path, env: dict[str, str], prompts: int, workdir: Path) -> None:
    path = workdir / "prompts.jsonl"
    path.write_text("".join(
        json.dumps({"custom_id": f"q{n}", "messages": [{"role": "user", "content": f"hi {n}"}]})
        + "\n" for n in range(prompts)))  # fmt: skip
    subprocess.run([str(bin_dir / "chatgptes"), "enqueue", str(path), "--batch-id", BATCH],
                   env=env, check=True, capture_output=True, timeout=60)  # fmt: skip


def measure(runs: int, prompts: int, machine_bytecode: bool, count: bool) -> dict[str, Any]:
    bin_dir = Path(sys.executable).parent
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as (url, _):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        env = environment(url, None if machine_bytecode else Path(tmp) / "pyc")
        enqueue(bin_dir, env, prompts, Path(tmp))
        timed_commands = commands(bin_dir, port)
        for argv in timed_commands.values():  # warm: the bytecode cache, the page cache
            timed(argv, env)
        walls: dict[str, list[float]] = {name: [] for name in timed_commands}
        for _ in range(runs):
            for name, argv in timed_commands.items():
                walls[name].append(timed(argv, env))
        counted = {name: round(instructions(argv, env) / 1e6)
                   for name, argv in timed_commands.items()} if count else {}  # fmt: skip
    return {
        "benchmark": "cli",
        "runs": runs,
        "prompts": prompts,
        "bytecode_cache": not machine_bytecode,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "median_ms": {name: round(statistics.median(w) * 1000, 1) for name, w in walls.items()},
        "min_ms": {name: round(min(w) * 1000, 1) for name, w in walls.items()},
        "instructions_millions": counted,
    }


def report(f: dict[str, Any]) -> None:
    print(f"{f['runs']} interleaved rounds; load average {f['load_average_before']} before, "
          f"{f['load_average_after']} after; bytecode cache: {f['bytecode_cache']}")  # fmt: skip
    counted = f["instructions_millions"]
    print(f"{'command':<20} {'median':>9} {'min':>9}" + ("  instructions" if counted else ""))
    for name, median in f["median_ms"].items():
        print(f"{name:<20} {median:>7.1f}ms {f['min_ms'][name]:>7.1f}ms"
              + (f"  {counted[name]:>8,} M" if counted else ""))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--prompts", type=int, default=10, help="prompts in the batch read")
    parser.add_argument(
        "--machine-bytecode",
        action="store_true",
        help="run with this environment's bytecode setting as it is",
    )
    parser.add_argument("--instructions", action="store_true",
                        help="also count each command's instructions under valgrind")  # fmt: skip
    args = parser.parse_args()
    if not 1 <= args.runs <= 1000 or not 1 <= args.prompts <= 10_000:
        parser.error("need 1 <= --runs <= 1000 and 1 <= --prompts <= 10,000")
    if args.instructions and shutil.which("valgrind") is None:
        parser.error("--instructions needs valgrind (apt-get install valgrind)")
    figures = measure(args.runs, args.prompts, args.machine_bytecode, args.instructions)
    report(figures)
    emit(figures)


if __name__ == "__main__":
    main()
