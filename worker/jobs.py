"""The arq side: the job function, worker start-up and shut-down, and WorkerSettings.

Run with ``chatgptes worker`` or ``arq worker.jobs.WorkerSettings``.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from arq import func
from arq.connections import RedisSettings
from redis.asyncio import Redis

from contract.batches import JOB_FUNCTION, BatchStore, json_dumps
from contract.models import JobPayload
from worker.client import ChatGptEsClient, ClientOptions
from worker.config import WorkerConfig
from worker.connections import HttpSessions
from worker.leases import LeaseBook
from worker.logs import configure_logging
from worker.proxies import ProxyDefaults, ProxyPool
from worker.runner import Policy, PromptRunner
from worker.sessions import SessionStore

log = structlog.get_logger("chatgptes.worker")
# Deferrals while waiting for capacity count as arq tries; budgets are ours, per error class.
ARQ_MAX_TRIES = 1_000_000


async def run_prompts(ctx: dict[str, Any], payload: dict[str, Any]) -> dict[str, int]:
    """The arq job: every prompt it carries runs to its result (one prompt per job today)."""
    job = JobPayload.model_validate(payload)
    runner: PromptRunner = ctx["runner"]
    for request in job.prompts:
        await runner.run(request)
    return {"prompts": len(job.prompts)}


def build_runner(config: WorkerConfig, redis: Redis) -> PromptRunner:
    """The runner with its policy, client and curl sessions, as one worker process uses it."""
    options = ClientOptions(
        base_url=config.upstream_url,
        impersonate=config.impersonate,
        connect_timeout=config.connect_timeout_seconds,
        request_timeout=config.request_timeout_seconds,
        language_instruction=config.language_instruction,
        max_connections=config.max_jobs,
    )
    defaults = ProxyDefaults(
        config.proxy_max_inflight, config.proxy_rate_per_second, config.proxy_burst
    )
    policy = Policy(
        config=config,
        pool=ProxyPool(config.proxies, config.proxies_file, defaults),
        leases=LeaseBook(
            redis,
            fleet_cap=config.fleet_max_inflight,
            burst=config.proxy_burst,
            ttl_seconds=config.lease_ttl_seconds,
            backoff_base_seconds=config.cooldown_base_seconds,
            backoff_cap_seconds=config.cooldown_cap_seconds,
        ),
        sessions=SessionStore(
            redis,
            ttl_seconds=config.session_ttl_seconds,
            max_uses=config.session_max_uses,
            wait_seconds=config.request_timeout_seconds,
        ),
    )
    batches = BatchStore(redis, queue_name=config.queue_name, ttl_seconds=config.result_ttl_seconds)
    http = HttpSessions(options, config.http_sessions_max)
    return PromptRunner(redis, batches, policy, ChatGptEsClient(options), http)


async def startup(ctx: dict[str, Any]) -> None:
    config: WorkerConfig = ctx["config"]
    runner = build_runner(config, ctx["redis"])
    ctx["runner"] = runner
    log.info(
        "worker.started",
        upstream=config.upstream_url,
        identities=[identity.shown for identity in runner.policy.pool.identities],
        max_jobs=config.max_jobs,
        fleet_max_inflight=config.fleet_max_inflight,
    )


async def shutdown(ctx: dict[str, Any]) -> None:
    if "runner" in ctx:
        await ctx["runner"].http.close()
    log.info("worker.stopped")


def worker_settings(config: WorkerConfig, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for ``arq.Worker``, tuned for I/O-bound jobs."""
    settings: dict[str, Any] = {
        "functions": [func(run_prompts, name=JOB_FUNCTION, max_tries=ARQ_MAX_TRIES)],
        "queue_name": config.queue_name,
        "redis_settings": RedisSettings.from_dsn(config.redis_url),
        "max_jobs": config.max_jobs,
        "job_timeout": config.job_timeout_seconds + 30,
        "keep_result": 60,
        "poll_delay": config.poll_delay_seconds,
        "max_tries": ARQ_MAX_TRIES,
        "job_completion_wait": config.shutdown_grace_seconds,
        "job_serializer": json_dumps,
        "job_deserializer": json.loads,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {"config": config},
        "log_results": False,
        "expires_extra_ms": config.result_ttl_seconds * 1000,
    }
    settings.update(overrides)
    return settings


def run_worker(config: WorkerConfig, *, burst: bool = False, max_jobs: int | None = None) -> None:
    from arq.worker import Worker

    configure_logging(config.log_format, config.log_level)
    # Fail before arq starts if the proxies cannot be read: a clear error, not a crash loop.
    ProxyPool(config.proxies, config.proxies_file, ProxyDefaults(1, 0, 1))
    overrides: dict[str, Any] = {"burst": burst}
    if max_jobs is not None:
        overrides["max_jobs"] = max_jobs
    Worker(**worker_settings(config, **overrides)).run()


def __getattr__(name: str) -> Any:
    """``arq worker.jobs.WorkerSettings`` works too; settings are read when asked for."""
    if name == "WorkerSettings":
        config = WorkerConfig()
        configure_logging(config.log_format, config.log_level)
        return worker_settings(config)
    raise AttributeError(name)
