"""What the fleet's shared policy is doing, read from Redis for ``status`` and ``top``.

Reads only the keys the workers write (``contract.keys``), so a producer host can
show it without importing the worker. Identities come from the pool registry the
workers keep (never a keyspace scan); their state is one HMGET per attribute hash
for all the names asked about, in one pipeline: ``pool_census`` counts a pool of
thousands by state in three round trips.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from redis.asyncio import Redis

from contract import keys

IDENTITY_STATES = ("ready", "full", "probing", "cooling")


def duration(seconds: float) -> str:
    """A short human duration: 45s, 2m 13s, 1h 05m, 3d 04h."""
    whole = max(0, round(seconds))
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


_FIELDS = ("cap", "inflight", "penalty", "cooldown", "reason", "probe", "latency", "ok", "failed")


@dataclass(frozen=True)
class IdentityHealth:
    name: str
    inflight: int
    cap: int
    penalty: float
    cooling_for: float
    reason: str
    probing: bool
    latency_ms: int
    successes: int
    failures: int

    @property
    def state(self) -> str:
        if self.cooling_for > 0:
            return "cooling"
        if self.probing:
            return "probing"
        return "ready" if self.inflight < self.cap else "full"

    @property
    def success_rate(self) -> float | None:
        tried = self.successes + self.failures
        return self.successes / tried if tried else None


async def identity_count(redis: Redis) -> int:
    return int(await redis.zcard(keys.identities_known()))


async def fleet_health(redis: Redis, *, limit: int = 200) -> list[IdentityHealth]:
    """The identities the workers announced (up to ``limit``), worst first."""
    names = [keys.decoded(raw) for raw in await redis.zrange(keys.identities_known(), 0, -1)]
    found = await identities(redis, names) if len(names) <= limit * 5 else []
    if not found:  # a huge pool: look at the most recently announced ones only
        found = await identities(redis, names[-limit:])
    return worst_first(found)[:limit]


def worst_first(found: Iterable[IdentityHealth]) -> list[IdentityHealth]:
    """Longest cooldown first, then the highest penalty, then the most loaded."""
    return sorted(found, key=lambda i: (-i.cooling_for, -i.penalty, -i.inflight, i.name))


@dataclass(frozen=True)
class PoolCensus:
    """Every identity the workers announced, counted by state, and the worst few of them."""

    total: int
    states: dict[str, int]  # ready, full, probing, cooling → how many (all of them)
    in_flight: int
    capacity: int  # the sum of the caps
    worst: list[IdentityHealth]

    @property
    def cooling(self) -> int:
        return self.states.get("cooling", 0)


async def pool_census(redis: Redis, *, shown: int = 10) -> PoolCensus:
    """All identities' states in three round trips (registry, clock, one pipeline of HMGETs),
    whatever the pool's size; only the ``shown`` worst are kept whole."""
    names = [keys.decoded(raw) for raw in await redis.zrange(keys.identities_known(), 0, -1)]
    found = await identities(redis, names)
    counts = Counter(identity.state for identity in found)
    return PoolCensus(
        total=len(found),
        states={state: counts.get(state, 0) for state in IDENTITY_STATES},
        in_flight=sum(identity.inflight for identity in found),
        capacity=sum(identity.cap for identity in found),
        worst=worst_first(found)[:shown],
    )


async def writes_refused(redis: Redis) -> str | None:
    """Why Redis refuses writes now (at maxmemory, a failed snapshot, a replica), or None.

    Read from INFO, which answers even then: workers keep their answers and wait, and a
    user watching ``status`` or ``top`` should know why nothing moves."""
    info = await redis.info()  # one round trip: memory, persistence and replication in it
    limit, used = int(info.get("maxmemory", 0)), int(info.get("used_memory", 0))
    if limit and used >= limit and info.get("maxmemory_policy") == "noeviction":
        return f"at maxmemory ({used / 2**20:,.0f} MiB of {limit / 2**20:,.0f} MiB): OOM"
    if info.get("rdb_last_bgsave_status") == "err":
        return "its last snapshot failed: MISCONF (stop-writes-on-bgsave-error)"
    if info.get("role") == "slave":
        return "it is a read-only replica: READONLY (a failover?)"
    return None


async def redis_now_ms(redis: Redis) -> int:
    """Redis's clock in ms: the one every worker stamps its reports and cooldowns with."""
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def identities(
    redis: Redis, names: list[str], *, now_ms: int | None = None
) -> list[IdentityHealth]:
    """The state of each identity named; ``now_ms``: Redis's clock, if the caller read it."""
    if not names:
        return []
    if now_ms is None:
        now_ms = await redis_now_ms(redis)
    async with redis.pipeline(transaction=False) as pipe:
        for field in _FIELDS:
            pipe.hmget(keys.identity_field(field), names)
        columns = await pipe.execute()
    return _health(names, columns, now_ms)


async def every_identity(redis: Redis, *, now_ms: int) -> list[IdentityHealth]:
    """The state of every identity the workers announced, in registry order, in one round
    trip: each attribute's whole hash (HGETALL) rather than ten thousand names sent to ask
    for it (HMGET), which costs the client more than the server (a pool of 10,000 read in
    a fraction of the time; ``docs/benchmarks.md``)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrange(keys.identities_known(), 0, -1)
        for field in _FIELDS:
            pipe.hgetall(keys.identity_field(field))
        registry, *columns = await pipe.execute()
    names = [keys.decoded(raw) for raw in registry]
    return _health(names, [[column.get(raw) for raw in registry] for column in columns], now_ms)


def _health(
    names: list[str], columns: list[list[bytes | None]], now_ms: int
) -> list[IdentityHealth]:
    """The identities from their attributes' columns (``_FIELDS``' order, one value a name)."""
    caps, inflights, penalties, cooldowns, reasons, probes, latencies, oks, faileds = columns
    return [
        IdentityHealth(
            name=name,
            inflight=int(_number(inflight)),
            cap=int(_number(cap)) or 1,
            penalty=_number(penalty),
            cooling_for=max(0.0, (_number(cooldown) - now_ms) / 1000) if cooldown else 0.0,
            reason=keys.decoded(reason) if reason else "",
            probing=_number(probe) >= 1 if probe else False,
            latency_ms=int(_number(latency)),
            successes=int(_number(ok)),
            failures=int(_number(failed)),
        )
        for name, cap, inflight, penalty, cooldown, reason, probe, latency, ok, failed in zip(
            names, caps, inflights, penalties, cooldowns, reasons, probes, latencies, oks,
            faileds, strict=True,
        )
    ]  # fmt: skip


def _number(raw: bytes | None) -> float:
    try:
        return float(raw) if raw is not None else 0.0
    except ValueError:
        return 0.0


async def batch_count(redis: Redis) -> int:
    """How many batches the registry holds (those created within the result TTL)."""
    return int(await redis.zcard(keys.batches_created()))


async def policy_events(redis: Redis) -> dict[str, int]:
    """Fleet-wide counters: capacity waits by reason, and the like."""
    raw = await redis.hgetall(keys.policy_events())
    return {keys.decoded(k): int(v) for k, v in sorted(raw.items())}


@dataclass(frozen=True)
class WorkerInfo:
    """One worker as it last reported itself (every heartbeat)."""

    worker_id: str
    host: str
    pid: int
    queue: str
    in_flight: int
    waiting: int
    chunks: int
    prompts_held: int
    succeeded: int
    failed: int
    cancelled: int
    seen_ago: float
    heartbeat_seconds: float
    stopping: bool
    went_down: str = ""  # why it went down (a loop of it died), if it said
    chores_failing: str = ""  # its housekeeping chores failing now, and why

    @property
    def alive(self) -> bool:
        """Reported within three heartbeats, and not gone down: a worker that died stops
        reporting; one whose loop died says so on its way out."""
        return not self.went_down and self.seen_ago <= 3 * self.heartbeat_seconds


async def live_workers(redis: Redis, queue_name: str) -> list[WorkerInfo]:
    """The workers taking work from ``queue_name`` now: alive, and not stopping."""
    return [w for w in await workers(redis) if w.alive and not w.stopping and w.queue == queue_name]


async def workers(redis: Redis, *, now_ms: int | None = None) -> list[WorkerInfo]:
    """The workers that reported lately, from the registry (never a keyspace scan);
    ``now_ms``: Redis's clock, if the caller read it."""
    ids = [keys.decoded(raw) for raw in await redis.zrange(keys.workers_seen(), 0, -1)]
    if not ids:
        return []
    if now_ms is None:
        now_ms = await redis_now_ms(redis)
    async with redis.pipeline(transaction=False) as pipe:
        for worker_id in ids:
            pipe.hgetall(keys.worker_info(worker_id))
        reports = await pipe.execute()
    found = []
    for worker_id, raw in zip(ids, reports, strict=True):
        info = {keys.decoded(k): keys.decoded(v) for k, v in raw.items()}
        if not info:
            continue  # its entry expired: long gone
        found.append(
            WorkerInfo(
                worker_id=worker_id,
                host=info.get("host", ""),
                pid=int(info.get("pid", 0)),
                queue=info.get("queue", ""),
                in_flight=int(info.get("in_flight", 0)),
                waiting=int(info.get("waiting", 0)),
                chunks=int(info.get("chunks", 0)),
                prompts_held=int(info.get("prompts_held", 0)),
                succeeded=int(info.get("succeeded", 0)),
                failed=int(info.get("failed", 0)),
                cancelled=int(info.get("cancelled", 0)),
                seen_ago=max(0.0, (now_ms - int(info.get("last_seen", 0))) / 1000),
                heartbeat_seconds=float(info.get("heartbeat_seconds", 5)),
                stopping=info.get("stopping") == "1",
                went_down=info.get("went_down", ""),
                chores_failing=info.get("chores_failing", ""),
            )
        )
    return sorted(found, key=lambda w: (w.host, w.pid))
