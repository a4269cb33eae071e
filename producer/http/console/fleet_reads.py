"""What the fleet page shows, read from Redis in a fixed number of round trips.

The fleet page (and its live update, every 2 s) reads the registries ``top`` reads,
never a keyspace scan: Redis's clock, every identity's state (the registry and one
HGETALL per attribute, one pipeline), the workers (registry, one pipeline), the last hour's
throughput (one HGETALL), the webhook outbox (one to three pipelines), the newest
batches for the backlog (registry, one pipeline), whether Redis refuses writes (INFO) and,
in a fleet of several sites, their health (one HGETALL; their requests in flight and
answers come from the identities and the throughput already read): about a dozen round
trips whatever the number of identities (``docs/benchmarks.md``).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, replace

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from contract.models import BatchStatus
from contract.outbox import KnownEndpoint, OutboxState, read_outbox, targets_for
from contract.throughput import INTERVAL_SECONDS, Interval, read_throughput
from producer.api import BatchQueue
from producer.fleet import (
    IDENTITY_STATES,
    IdentityHealth,
    WorkerInfo,
    every_identity,
    redis_now_ms,
    workers,
    worst_first,
    writes_refused,
)
from producer.http import records
from producer.site_health import SiteHealth, site_marks, sites_from

SHOWN_IDENTITIES = 15
GRID_LETTERS = {"ready": "r", "full": "f", "probing": "p", "cooling": "c"}
BACKLOG_LOOKS_AT = 200  # the newest batches whose prompts left make the backlog
PACE_INTERVALS = 2  # the fleet's pace: the last two whole intervals (a minute)
DEAD_AFTER_FAILURES = 3  # an identity with no success in this many tries is dead


def dead(identity: IdentityHealth) -> bool:
    """An identity that has not once succeeded in ``DEAD_AFTER_FAILURES`` tries or more."""
    return identity.successes == 0 and identity.failures >= DEAD_AFTER_FAILURES


@dataclass(frozen=True)
class Backlog:
    prompts: int  # not finished yet, in the active batches among the newest
    batches: int  # active batches among the newest
    looked_at: int  # batches looked at


@dataclass(frozen=True)
class FleetView:
    at: float  # epoch s
    states: dict[str, int]  # identities by state
    grid: str  # one letter per identity (registry order): r, f, p or c
    in_flight: int
    capacity: int
    worst: list[IdentityHealth]
    dead: int  # identities that never succeeded lately (cooling or not)
    workers: list[WorkerInfo]
    throughput: list[Interval]
    outbox: OutboxState  # the project's events and endpoints only
    backlog: Backlog
    refusing: str | None  # why Redis refuses writes, if it does
    sites: list[SiteHealth] = field(default_factory=list)  # with several sites only

    @property
    def identities(self) -> int:
        return len(self.grid)

    @property
    def alive(self) -> int:
        return sum(1 for w in self.workers if w.alive)

    @property
    def pace(self) -> float | None:
        """Prompts the fleet finished per second over the last minute (None: no data)."""
        whole = self.throughput[-1 - PACE_INTERVALS : -1]
        if len(whole) < PACE_INTERVALS:
            return None
        return sum(i.finished for i in whole) / (PACE_INTERVALS * INTERVAL_SECONDS)

    @property
    def site_failing(self) -> tuple[int, str] | None:
        """(failures, the commonest type) when the last minute finished prompts and not one
        of them succeeded: the site (or every way to it) answers only errors."""
        recent = self.throughput[-1 - PACE_INTERVALS :]
        failed = sum(i.failed for i in recent)
        if not failed or any(i.succeeded for i in recent):
            return None
        errors: Counter[str] = Counter()
        for interval in recent:
            errors.update(interval.errors)
        return failed, (errors.most_common(1)[0][0] if errors else "?")


async def read_fleet(queue: BatchQueue, project: str) -> FleetView:
    """The fleet (shared by every project), and the webhooks of ``project``'s batches."""
    redis = queue.redis
    at = time.time()
    now_ms = await redis_now_ms(redis)  # one clock reading for the identities and the workers
    found = await every_identity(redis, now_ms=now_ms)
    counts = Counter(identity.state for identity in found)
    throughput = await read_throughput(redis, at)
    return FleetView(
        at=at,
        states={state: counts.get(state, 0) for state in IDENTITY_STATES},
        grid="".join(GRID_LETTERS[identity.state] for identity in found),
        in_flight=sum(identity.inflight for identity in found),
        capacity=sum(identity.cap for identity in found),
        worst=[i for i in worst_first(found)[:SHOWN_IDENTITIES] if i.state != "ready" or dead(i)],
        dead=sum(1 for identity in found if dead(identity)),
        workers=await workers(redis, now_ms=now_ms),
        throughput=throughput,
        outbox=await projects_outbox(redis, await read_outbox(redis, int(at * 1000)), project),
        backlog=backlog_of(await queue.store.recent(BACKLOG_LOOKS_AT)),
        refusing=await _refusing(redis),
        sites=await _sites(redis, queue.settings.site_names(), now_ms, found, throughput),
    )


async def _sites(
    redis: Redis,
    names: tuple[str, ...],
    now_ms: int,
    found: list[IdentityHealth],
    throughput: list[Interval],
) -> list[SiteHealth]:
    """Each site's health in a fleet of several (one HGETALL); none for a fleet of one."""
    if len(names) < 2:
        return []
    inflight = {identity.name: identity.inflight for identity in found}
    return sites_from(names, now_ms, await site_marks(redis), inflight, throughput)


async def _refusing(redis: Redis) -> str | None:
    """Why Redis refuses writes, or None; None too where INFO is not allowed (some hosted
    Redis rename it away): the page shows the rest."""
    try:
        return await writes_refused(redis)
    except ResponseError:
        return None


def backlog_of(recent: list[BatchStatus]) -> Backlog:
    active = [b for b in recent if not b.done]
    return Backlog(sum(b.total - b.finished for b in active), len(active), len(recent))


def visible_endpoints(endpoints: list[KnownEndpoint], project: str) -> list[KnownEndpoint]:
    """The endpoints a project's batches are told to (another project's are not its to see)."""
    return targets_for(project, endpoints)


async def projects_outbox(redis: Redis, outbox: OutboxState, project: str) -> OutboxState:
    """The outbox with only ``project``'s events and endpoints listed (all are counted)."""
    listed = [*outbox.next_pending, *outbox.last_failed]
    endpoints = visible_endpoints(outbox.endpoints, project)
    if not listed:
        return replace(outbox, endpoints=endpoints)
    batch_ids = [e.batch_id for e in listed]
    extras = dict(zip(batch_ids, await records.extras_of(redis, batch_ids), strict=True))
    mine = [e for e in listed if records.project_of(extras[e.batch_id]) == project]
    return replace(outbox, next_pending=[e for e in outbox.next_pending if e in mine],
                   last_failed=[e for e in outbox.last_failed if e in mine],
                   endpoints=endpoints)  # fmt: skip
