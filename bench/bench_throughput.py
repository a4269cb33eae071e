"""End-to-end prompts/s of the service, each figure beside references measured in the same run.

    .venv/bin/python bench/bench_throughput.py [--scenarios zero,pool,cap,concurrency]
        [--count 3000] [--sizes 10,100,1000] [--levels 10,50,100,200] [--out F.json]
        [--plot F.png] [--profile DIR]

Scenarios (each starts its own simulator; one redis-server for the run, flushed per phase):

- ``zero``: 1 worker, zero-latency site, 100 in flight allowed (fleet cap and the one
  identity's cap), against a plain curl_cffi process at concurrency 100, the per-call
  provider at 100 and arq's no-op job (same max_jobs and poll delay as the worker).
- ``pool``: 2 workers, 200 ms site, N identities behind one gateway with the same total
  allowance (1,000 requests/s, fleet cap 400): cap max(4, 400/N), 1000/N requests/s
  each; the site limits each identity a little above that, and bans after 3 early
  requests. Each run is cold, as a user meets it: a fresh Redis, simulator and workers,
  timed from the enqueue to the last result (``--pool-runs``, identities:prompts). The
  steady rate is read over the run's middle: from the moment every identity has made a
  request to the last wave of requests. References at the same fleet concurrency
  through the gateway.
- ``cap``: 1 worker, ~200 ms site (uniform 150-250 ms), fleet cap 100, everything else
  default but the one identity's own limits lifted: the bound is 100 / 0.2 s = 500
  prompts/s; the plain process at concurrency 100 beside it.
- ``concurrency``: 1 worker, 50 ms site, fleet cap = identity cap = C, beside the plain
  process and the per-call provider at concurrency C.

Each service phase but ``pool`` starts fresh workers, runs a warm-up batch (sessions
made, the pool's slow start done), then times one batch from the first enqueue to the
status saying done.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import references
from harness import http_json
from service import dump, flush, measure, run_batch, sim_counts, worker_env, workers

from simulator.local import redis_server, simulator_process, wait_until

TOTAL_RATE = 1000.0  # requests/s the whole pool may send, in the pool scenario
POOL_PLOT_PROMPTS = 12_000  # the pool runs drawn (one prompt count, every pool size)
POOL_FLEET_CAP = 400


def _sim(tmp: Path, *options: str) -> Any:
    return simulator_process(tmp, "--seed", "1", *options)


def phase(
    ctx: dict[str, Any], sim: dict[str, Any], sim_pid: int, n_workers: int, count: int,
    warmup: int, tag: str, **settings: object,
) -> dict[str, Any]:  # fmt: skip
    """Fresh Redis and workers, a warm-up batch, then the timed one."""
    flush(ctx["url"])
    http_json(sim["url"] + "/__sim/reset", method="POST")
    env = worker_env(ctx["url"], sim["url"], **settings)
    profile = ctx["profile"] / f"{tag}.txt" if ctx["profile"] else None
    with workers(n_workers, env, ctx["tmp"]) as fleet:
        run_batch(ctx["url"], warmup, f"{tag}-warm", ctx["timeout"])
        figures = measure(
            ctx["url"], fleet, sim["stats_url"], count, tag, ctx["timeout"],
            redis_pid=ctx["redis_pid"], sim_pid=sim_pid, profile=profile,
        )  # fmt: skip
    # The site's counts since this phase began: page GETs happen in the warm-up.
    site = sim_counts(sim["stats_url"])
    figures["site_with_warmup"] = site
    figures["page_gets_per_identity_used"] = round(
        site["page"] / max(site["identities_used"], 1), 3
    )
    figures["requests_per_prompt_with_warmup"] = round(
        (site["page"] + site["ajax"]) / (count + warmup), 4
    )
    return figures


def zero_latency(ctx: dict[str, Any], count: int) -> dict[str, Any]:
    limits = {"fleet_max_inflight": 100, "proxy_max_inflight": 100, "max_jobs": 100,
              "proxy_rate_per_second": 0, "worker_max_inflight": 100}  # fmt: skip
    with _sim(ctx["tmp"], "--latency", "fixed:0") as (sim, proc):
        service = phase(ctx, sim, proc.pid, 1, count, 500, "zero", **limits)
        plain = references.plain_curl(sim["url"], count, 100)
        per_call = references.per_call(sim["url"], count, 100)
    arq = references.arq_noop(ctx["url"], count, max_jobs=100, poll_delay=0.02)
    return {
        "service": service,
        "plain_curl": plain,
        "per_call": per_call,
        "arq_noop": arq,
        "ratio_service_vs_plain_curl": round(service["prompts_per_s"] / plain["prompts_per_s"], 3),
        "ratio_service_vs_per_call": round(service["prompts_per_s"] / per_call["prompts_per_s"], 3),
    }


def pool(ctx: dict[str, Any], runs: list[tuple[int, int]]) -> dict[str, Any]:
    """Each (identities, prompts) run cold: a fresh Redis, simulator and workers, timed
    from the enqueue to the last result; the steady rate read over the run's middle."""
    rows = []
    for size, count in runs:
        rate = TOTAL_RATE / size
        settings = {
            "fleet_max_inflight": POOL_FLEET_CAP,
            "proxy_max_inflight": max(4, POOL_FLEET_CAP // size),
            "proxy_rate_per_second": rate,
            "proxies_file": _proxies_file(ctx, size),
        }
        site_limits = ("--rate-per-second", f"{rate * 1.1:.3f}", "--burst", "4",
                       "--ban-after-violations", "3")  # fmt: skip
        with _sim(ctx["tmp"], "--latency", "fixed:200", "--gateway", "--bind-nonce-to-identity",
                  *site_limits) as (sim, proc):  # fmt: skip
            _write_proxies(ctx, sim, size)
            flush(ctx["url"])
            env = worker_env(ctx["url"], sim["url"], **settings)
            profile = ctx["profile"] / f"pool{size}-{count}.txt" if ctx["profile"] else None
            with workers(2, env, ctx["tmp"]) as fleet:
                wait_until(lambda: reported(ctx["url"]) >= 2, timeout=60, what="the workers up")
                service = cold_run(ctx, fleet, sim, proc.pid, count, size, profile)
        with _sim(ctx["tmp"], "--latency", "fixed:200", "--gateway") as (sim, _):
            plain = references.plain_curl(sim["url"], count, POOL_FLEET_CAP,
                                          _gateway_urls(sim, size))  # fmt: skip
        rows.append({"identities": size, "prompts": count, "allowance_per_s": TOTAL_RATE,
                     "service": service, "plain_curl": plain})  # fmt: skip
    return {"rows": rows, "ratios": pool_ratios(rows)}


def cold_run(
    ctx: dict[str, Any], fleet: Any, sim: dict[str, Any], sim_pid: int, count: int, size: int,
    profile: Path | None,
) -> dict[str, Any]:  # fmt: skip
    """The batch timed from its enqueue to its last result, the site sampled meanwhile."""
    samples: list[tuple[float, int, int]] = []  # (seconds since the enqueue, answers, used)

    def sample(since: float) -> None:
        stats = http_json(sim["stats_url"])
        used = sum(1 for i in stats["identities"].values() if i.get("ajax", 0) > 0)
        samples.append((time.perf_counter() - since, stats["replies"]["success"], used))

    figures = measure(
        ctx["url"], fleet, sim["stats_url"], count, f"cold{size}", ctx["timeout"],
        redis_pid=ctx["redis_pid"], sim_pid=sim_pid, profile=profile, every=sample,
    )  # fmt: skip
    # The window opens once every identity the run used has made a request (a slow one
    # may not have made any by the end: it then counts as not used).
    used = max((s[2] for s in samples), default=size)
    figures["steady_prompts_per_s"] = steady_rate(samples, used, count - POOL_FLEET_CAP)
    figures["steady_window_seconds"] = steady_window(samples, used, count - POOL_FLEET_CAP)
    figures["timeline"] = [(round(t, 1), done, used) for t, done, used in samples[::5]]
    return figures


def steady_rate(samples: list[tuple[float, int, int]], size: int, tail: int) -> float | None:
    """Answers per second from the first sample in which every identity had made a request
    to the last one before the last wave of requests (``tail`` answers); None if the run
    has no such window."""
    window = _window(samples, size, tail)
    if window is None:
        return None
    (t0, n0, _), (t1, n1, _) = window
    return round((n1 - n0) / (t1 - t0), 1)


def steady_window(samples: list[tuple[float, int, int]], size: int, tail: int) -> float | None:
    window = _window(samples, size, tail)
    return None if window is None else round(window[1][0] - window[0][0], 2)


def _window(
    samples: list[tuple[float, int, int]], size: int, tail: int
) -> tuple[tuple[float, int, int], tuple[float, int, int]] | None:
    start = next((s for s in samples if s[2] >= size), None)
    ends = [s for s in samples if s[1] <= tail]
    if start is None or not ends or ends[-1][0] - start[0] < 1.0:
        return None
    return start, ends[-1]


def pool_ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Each big pool's cold run over the 10-identity pool's with as many prompts, and each
    steady rate over the allowance."""
    small = {row["prompts"]: row["service"]["prompts_per_s"] for row in rows
             if row["identities"] == 10}  # fmt: skip
    out = {}
    for row in rows:
        size, count = row["identities"], row["prompts"]
        service = row["service"]
        if size != 10 and count in small:
            out[f"cold_{size}_vs_10_at_{count}"] = round(service["prompts_per_s"] / small[count], 3)
        if service.get("steady_prompts_per_s") is not None:
            out[f"steady_{size}_vs_allowance"] = round(
                service["steady_prompts_per_s"] / row["allowance_per_s"], 3
            )
    return out


def pool_runs(spec: str) -> list[tuple[int, int]]:
    return [
        (int(size), int(count)) for size, _, count in (r.partition(":") for r in spec.split(","))
    ]


def reported(url: str) -> int:
    """How many workers have reported themselves (they are up, their pools registered)."""
    import redis as sync_redis

    from contract import keys

    with sync_redis.Redis.from_url(url) as client:
        return int(client.zcard(keys.workers_seen()))


def _gateway_urls(sim: dict[str, Any], size: int) -> list[str]:
    from simulator.proxies import gateway_proxy_urls

    return gateway_proxy_urls(sim["gateway"], sim["gateway_password"], size)


def _proxies_file(ctx: dict[str, Any], size: int) -> Path:
    return ctx["tmp"] / f"proxies-{size}.txt"


def _write_proxies(ctx: dict[str, Any], sim: dict[str, Any], size: int) -> None:
    path = _proxies_file(ctx, size)
    path.write_text("\n".join(_gateway_urls(sim, size)) + "\n")
    path.chmod(0o600)


def fleet_cap(ctx: dict[str, Any], count: int) -> dict[str, Any]:
    """~200 ms (uniform 150-250: a fixed delay would march all 100 requests in lockstep)."""
    settings = {"fleet_max_inflight": 100, "proxy_max_inflight": 100, "proxy_rate_per_second": 0}
    with _sim(ctx["tmp"], "--latency", "uniform:150,250") as (sim, proc):
        service = phase(ctx, sim, proc.pid, 1, count, 300, "cap", **settings)
        plain = references.plain_curl(sim["url"], count, 100)
    bound = 100 / 0.2
    return {"service": service, "plain_curl": plain, "bound": bound,
            "share_of_bound": round(service["prompts_per_s"] / bound, 3),
            "plain_curl_share_of_bound": round(plain["prompts_per_s"] / bound, 3)}  # fmt: skip


def concurrency(ctx: dict[str, Any], count: int, levels: list[int]) -> dict[str, Any]:
    rows = []
    with _sim(ctx["tmp"], "--latency", "fixed:50") as (sim, proc):
        for level in levels:
            settings = {"fleet_max_inflight": level, "proxy_max_inflight": level,
                        "proxy_rate_per_second": 0, "max_jobs": level,
                        "worker_max_inflight": max(level, 1)}  # fmt: skip
            service = phase(ctx, sim, proc.pid, 1, count, 300, f"conc{level}", **settings)
            rows.append({
                "concurrency": level,
                "service": service,
                "plain_curl": references.plain_curl(sim["url"], count, level),
                "per_call": references.per_call(sim["url"], count, level),
            })  # fmt: skip
    return {"rows": rows}


def plot_input(figures: dict[str, Any]) -> dict[str, Any]:
    """The shape bench/plot.py draws."""
    out: dict[str, Any] = {"title": "chatgptes-queue throughput (2-core box, simulator)"}
    if "pool" in figures:
        out["pool_sweep"] = [
            {"identities": r["identities"], "service": r["service"]["prompts_per_s"],
             "service_steady": r["service"]["steady_prompts_per_s"],
             "allowance": r["allowance_per_s"], "plain_curl": r["plain_curl"]["prompts_per_s"]}
            for r in figures["pool"]["rows"] if r["prompts"] == POOL_PLOT_PROMPTS
        ]  # fmt: skip
    if "concurrency" in figures:
        out["concurrency_sweep"] = [
            {"concurrency": r["concurrency"], "service": r["service"]["prompts_per_s"],
             "plain_curl": r["plain_curl"]["prompts_per_s"],
             "per_call": r["per_call"]["prompts_per_s"]}
            for r in figures["concurrency"]["rows"]
        ]  # fmt: skip
    return out


def report(figures: dict[str, Any]) -> None:
    if "zero" in figures:
        z = figures["zero"]
        print(f"zero-latency, 1 worker, 100 in flight: service {z['service']['prompts_per_s']}/s "
              f"vs plain curl {z['plain_curl']['prompts_per_s']}/s = "
              f"{z['ratio_service_vs_plain_curl']}; per-call {z['per_call']['prompts_per_s']}/s; "
              f"arq no-op {z['arq_noop']['jobs_per_s']} jobs/s; worker CPU "
              f"{z['service']['worker_cpu_ms_per_prompt']} ms/prompt, Redis commands "
              f"{z['service']['redis_commands_per_prompt']}/prompt")  # fmt: skip
    if "pool" in figures:
        for row in figures["pool"]["rows"]:
            s = row["service"]
            print(f"pool {row['identities']:>5} identities, {row['prompts']:,} prompts, cold: "
                  f"{s['prompts_per_s']}/s, steady {s['steady_prompts_per_s']}/s over "
                  f"{s['steady_window_seconds']} s (allowance {row['allowance_per_s']:.0f}/s; "
                  f"plain curl {row['plain_curl']['prompts_per_s']}/s); site {s['site']}; "
                  f"requests/prompt {s['requests_per_prompt']}")  # fmt: skip
        print(f"pool ratios: {figures['pool']['ratios']}")
    if "cap" in figures:
        c = figures["cap"]
        plain = c["plain_curl"]["prompts_per_s"]
        print(f"fleet cap 100, ~200 ms site, 1 worker: {c['service']['prompts_per_s']}/s = "
              f"{c['share_of_bound']} of {c['bound']:.0f}/s (plain curl at 100: "
              f"{plain}/s = {c['plain_curl_share_of_bound']})")  # fmt: skip
    if "concurrency" in figures:
        for row in figures["concurrency"]["rows"]:
            print(f"concurrency {row['concurrency']:>4}: service {row['service']['prompts_per_s']}"
                  f"/s, plain curl {row['plain_curl']['prompts_per_s']}/s, per-call "
                  f"{row['per_call']['prompts_per_s']}/s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="zero,pool,cap,concurrency")
    parser.add_argument("--count", type=int, default=3000, help="prompts in each timed batch")
    parser.add_argument(
        "--pool-runs",
        default="10:12000,100:12000,1000:12000,10:40000,10000:40000",
        help="cold pool runs, identities:prompts",
    )
    parser.add_argument("--levels", default="10,50,100,200", help="concurrency levels")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds a batch may take")
    parser.add_argument("--out", type=Path, help="write every figure here (JSON)")
    parser.add_argument("--plot", type=Path, help="draw the sweeps here (PNG)")
    parser.add_argument("--profile", type=Path, help="py-spy the first worker, files here")
    args = parser.parse_args()
    scenarios = args.scenarios.split(",")
    if not 1 <= args.count <= 100_000:
        parser.error("need 1 <= --count <= 100,000")
    figures: dict[str, Any] = {"benchmark": "throughput", "count": args.count}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
        with redis_server(tmp) as (url, redis_proc):
            ctx = {"url": url, "redis_pid": redis_proc.pid, "tmp": tmp,
                   "timeout": args.timeout, "profile": args.profile}  # fmt: skip
            if "zero" in scenarios:
                figures["zero"] = zero_latency(ctx, args.count)
            if "pool" in scenarios:
                figures["pool"] = pool(ctx, pool_runs(args.pool_runs))
            if "cap" in scenarios:
                figures["cap"] = fleet_cap(ctx, args.count)
            if "concurrency" in scenarios:
                levels = [int(n) for n in args.levels.split(",")]
                figures["concurrency"] = concurrency(ctx, args.count, levels)
    report(figures)
    dump(args.out, figures)
    if args.plot:
        args.plot.with_suffix(".json").write_text(json.dumps(plot_input(figures), indent=2))
        from plot import plot as draw

        draw(plot_input(figures), args.plot)
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
