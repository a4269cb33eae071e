"""The three references alone: plain curl_cffi, the per-call provider, arq's no-op job.

    .venv/bin/python bench/bench_references.py [--count 2000] [--concurrency 100]
        [--latency fixed:0] [--max-jobs 32] [--gateway-identities 0]

Starts its own simulator and redis-server on 127.0.0.1, runs each reference in a
child process of its own (see ``references.py``), prints a short report and one JSON
line. With ``--gateway-identities N`` the simulator runs its gateway and the curl
references spread their requests over N identity proxy URLs through it.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import references
from harness import cpu_seconds, emit, http_json

from simulator.local import redis_server, simulator_process


def gateway_urls(sim: dict[str, Any], identities: int) -> list[str]:
    """N identity proxy URLs through the simulator's gateway (its ``--gateway`` mode)."""
    from simulator.proxies import gateway_proxy_urls

    urls: list[str] = gateway_proxy_urls(sim["gateway"], sim["gateway_password"], identities)
    return urls


def with_sim_cpu(sim_pid: int, count: int, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A reference's figures plus the simulator's CPU per prompt while it ran.

    The child's start-up and handshakes fall inside this window too (they cost the
    simulator next to nothing but the handshakes' GETs).
    """
    before = cpu_seconds(sim_pid)
    figures = run()
    return {**figures, "simulator_cpu_ms_per_prompt": round(
        (cpu_seconds(sim_pid) - before) / count * 1000, 3)}  # fmt: skip


def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    options = ["--latency", args.latency, "--proxies", "0", "--seed", "1"]
    if args.gateway_identities:
        options.append("--gateway")
    with (
        redis_server(tmp) as (redis_url, _),
        simulator_process(tmp, *options) as (sim, sim_proc),
    ):
        proxies = gateway_urls(sim, args.gateway_identities) if args.gateway_identities else None
        load = (sim["url"], args.count, args.concurrency, proxies)
        out = {
            "plain_curl": with_sim_cpu(sim_proc.pid, args.count,
                                       lambda: references.plain_curl(*load)),
            "per_call": with_sim_cpu(sim_proc.pid, args.count,
                                     lambda: references.per_call(*load)),
            "arq_noop": references.arq_noop(redis_url, args.count, args.max_jobs),
        }  # fmt: skip
        stats = http_json(sim["stats_url"])
    out["sim_requests"] = {**stats["requests"], "success": stats["replies"]["success"]}
    return out


def report(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    where = (f"{args.gateway_identities} gateway identities" if args.gateway_identities
             else "direct")  # fmt: skip
    print(f"{args.count} prompts, concurrency {args.concurrency}, latency {args.latency}, {where}")
    for name in ("plain_curl", "per_call"):
        f = figures[name]
        per = f.get("requests_per_prompt")
        extra = f", {per} requests/prompt" if per is not None else ""
        print(f"  {name}: {f['prompts_per_s']:,} prompts/s ({f['seconds']} s, {f['ok']} ok, "
              f"{f['failed']} failed, {f['handshakes']} handshakes{extra}); CPU ms/prompt: "
              f"client {f['cpu_ms_per_prompt']}, simulator "
              f"{f['simulator_cpu_ms_per_prompt']}")  # fmt: skip
    a = figures["arq_noop"]
    print(f"  arq_noop (max_jobs {a['max_jobs']}): {a['jobs_per_s']:,} jobs/s ({a['seconds']} s); "
          f"worker CPU {a['cpu_ms_per_job']} ms/job")  # fmt: skip
    ratio = figures["plain_curl"]["prompts_per_s"] / max(figures["per_call"]["prompts_per_s"], 0.1)
    print(f"  plain_curl / per_call: {ratio:.2f}x; simulator counted {figures['sim_requests']}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2_000, help="prompts (and jobs) per reference")
    parser.add_argument("--concurrency", type=int, default=100, help="requests in flight")
    parser.add_argument("--latency", default="fixed:0", help="simulator --latency")
    parser.add_argument("--max-jobs", type=int, default=32, help="arq max_jobs of the no-op run")
    parser.add_argument(
        "--gateway-identities",
        type=int,
        default=0,
        help="identity proxy URLs through the simulator's gateway (0 = direct)",
    )
    args = parser.parse_args()
    if not 1 <= args.count <= 200_000 or not 1 <= args.concurrency <= 1024:
        parser.error("need 1 <= --count <= 200,000 and 1 <= --concurrency <= 1024")
    if not 1 <= args.max_jobs <= 1024 or not 0 <= args.gateway_identities <= 100_000:
        parser.error("need 1 <= --max-jobs <= 1024 and 0 <= --gateway-identities <= 100,000")
    return args


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = measure(args, Path(tmp))
    report(args, figures)
    emit({"benchmark": "references", "count": args.count, "concurrency": args.concurrency,
          "latency": args.latency, "gateway_identities": args.gateway_identities,
          "max_jobs": args.max_jobs, **figures})  # fmt: skip


if __name__ == "__main__":
    main()
