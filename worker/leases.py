"""Leases in Redis: the fleet-wide and per-identity in-flight caps, the per-identity rate and
the identity's health, checked and taken in one atomic call for many prompts at once.

This is the lease book, the Redis side only; ``worker.broker`` owns a lease's life in
the worker (waiting, handing out, renewing, giving back). The scripts are
``worker/lua/*.lua``; ``policy.lua`` says how identities are classified and filed.

Identities are indexed by when they next have room, so a lease costs the same with
ten identities as with ten thousand:

- ``ready`` holds those with room now, scored by load (in flight / cap, penalty,
  latency, weight): the head is the best one;
- ``later`` holds the rest, scored by the moment (ms) they may have room again:
  the end of a cooldown, the next rate token (GCRA), the return of a probe.

Every call touches only the identities it takes, returns or finds due; nothing
visits the whole pool. The indexes belong to one pool (a worker's list of
identities), the identities' state (caps, in flight, rate, health) to the fleet,
so workers with the same proxies share everything and caps hold across pools. An
identity is only ever filed in the pools that list it.

A lease is a member of the fleet's lease set scored by its expiry, under a token
(``identity|random.n``, n numbering the grants of the identity); its holder renews it
while the request runs (and learns which it lost), and a lease whose holder died is
reaped within its TTL and gives its slot back. A new identity, or one back from a
cooldown, takes one request at a time until one succeeds (a probe), so a dead proxy
costs one request, not a whole in-flight cap of them.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from contract import keys
from contract.scripts import ScriptBook
from worker.claims import Claim, claim_margin
from worker.proxies import Identity

ATTRIBUTES = (
    "cap", "interval", "weight", "inflight", "tat", "penalty",
    "cooldown", "reason", "probe", "latency", "ok", "failed", "incident", "granted",
)  # fmt: skip
POLICY_TTL_SECONDS = 7 * 24 * 3600
SCRIPTS = (
    "acquire_leases", "release_leases", "register_identities",
    "forget_identities", "identity_states", "charge_identity",
)  # fmt: skip


@dataclass(eq=False)
class Lease:
    identity: Identity
    claim: Claim
    is_probe: bool
    taken_at: float
    # When (this process's clock) the last word that its batch was not stopped was asked
    # for: the grant's call, or a check of the mark since. A request leaves within
    # ``SEND_WINDOW_SECONDS`` of it (``contract.stopping``).
    checked_at: float = 0.0

    @property
    def token(self) -> str:
        return self.claim.token


@dataclass(frozen=True)
class Cooldown:
    """How hard an outcome cools an identity: at least ``floor`` seconds, else backoff."""

    verdict: str
    floor_seconds: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class Grants:
    """What one acquire call gave: leases, why not more (and for how long), the stopped
    batches."""

    by_slot: dict[int, Lease]  # slot: the place in the list asked with of the prompt it is for
    reason: str
    wait_seconds: float
    stopped: dict[str, str]  # batch ID → "cancelled" or "expired"
    strangers: list[str]  # tokens granted on identities this worker does not have
    site: str = ""  # the site whose book granted them

    @property
    def leases(self) -> list[Lease]:
        return list(self.by_slot.values())


def renewal_tokens(leases: Sequence[Lease]) -> list[str]:
    """The leases' tokens as a renewal takes them: the probes' first."""
    return [lease.token for lease in sorted(leases, key=lambda lease: not lease.is_probe)]


def pool_id(identities: Sequence[Identity]) -> str:
    """A short name for a list of identities: workers with the same list share indexes."""
    names = "\n".join(sorted(identity.name for identity in identities))
    return hashlib.sha256(names.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Exchange:
    """One book's part of a call: the leases it gives back, the prompts it asks leases for
    (their batch IDs, in order), and tokens of identities this worker lacks."""

    book: LeaseBook
    returned: Sequence[tuple[Lease, Cooldown]] = ()
    slots: Sequence[str] = ()
    strangers: Sequence[str] = ()


async def exchange_all(exchanges: Sequence[Exchange]) -> list[Grants | None]:
    """Every book's exchange in one round trip (one pipeline): the grants of each, in
    order (None where it asked for no lease)."""
    parts = [part for part in exchanges if part.returned or part.slots or part.strangers]
    if not parts:
        return [None] * len(exchanges)
    sent_at = time.monotonic()

    def build(pipe: object) -> None:
        for part in parts:
            part.book.queue_exchange(pipe, part)

    replies = iter(await parts[0].book.scripts.pipelined(build))
    found: dict[int, Grants | None] = {}
    for part in parts:
        if part.returned or part.strangers:
            next(replies)
        found[id(part)] = part.book._grants(next(replies), sent_at) if part.slots else None
    return [found.get(id(part)) for part in exchanges]


class LeaseBook:
    def __init__(
        self,
        redis: Redis,
        *,
        fleet_cap: int,
        burst: int,
        ttl_seconds: float,
        backoff_base_seconds: float,
        backoff_cap_seconds: float,
        site: str = "",
        track_site: bool = False,
    ) -> None:
        self.redis = redis
        self.site_name = site  # whose identities these are ("" when no site was named)
        # The scripts keep the site's health only in a fleet of several sites: a fleet of
        # one has nowhere else to send its prompts, and waits on its identities alone.
        self.site = site if track_site else ""
        self.fleet_cap = fleet_cap
        self.burst = burst
        self.ttl_seconds = ttl_seconds
        self.ttl_ms = int(ttl_seconds * 1000)
        self.base_ms = int(backoff_base_seconds * 1000)
        self.cap_ms = int(backoff_cap_seconds * 1000)
        self.scripts = ScriptBook(redis, "worker", SCRIPTS)
        self.pool = ""
        self._identities: dict[str, Identity] = {}
        self._keys: list[str] = []

    async def register(self, identities: Sequence[Identity]) -> None:
        """Announces this worker's identities (their caps, rates, weights) to the fleet."""
        self.pool = pool_id(identities)
        self._identities = {identity.name: identity for identity in identities}
        self._keys = [
            keys.lease_tokens(),
            keys.identities_ready(self.pool),
            keys.identities_later(self.pool),
            keys.identities_known(),
            keys.stopped_batches(),
            *(keys.identity_field(attribute) for attribute in ATTRIBUTES),
            keys.pool_filed(self.pool),
            keys.pool_state_counts(self.pool),
            keys.room_marker(),
        ]
        args: list[str | int | float] = [self.burst, POLICY_TTL_SECONDS, self.pool]
        for identity in identities:
            interval_ms = 1000 / identity.rate_per_second if identity.rate_per_second > 0 else 0
            args += [identity.name, identity.max_inflight, interval_ms, identity.weight]
        await self.scripts.run("register_identities", [*self._keys, keys.identity_pools()], args)

    async def exchange(
        self,
        returned: Sequence[tuple[Lease, Cooldown]],
        slots: Sequence[str] = (),
        *,
        strangers: Sequence[str] = (),
    ) -> Grants | None:
        """Returns leases and takes new ones, in one round trip.

        ``slots`` holds the batch ID of each prompt a lease is asked for, in the order the
        leases go to them: a stopped batch's prompt gets none, and the stopped batches
        come back in ``Grants.stopped``. ``strangers`` are tokens granted on identities
        this worker does not have, given back unused. Returns None when no lease is asked.
        """
        [grants] = await exchange_all([Exchange(self, returned, slots, strangers)])
        return grants

    def queue_exchange(self, pipe: object, part: Exchange) -> None:
        """Adds this book's release (if any) and acquire (if any) to ``pipe``."""
        site_keys = [*self._keys, keys.site_health(), keys.site_failures(self.site or "-")]
        if part.returned or part.strangers:
            args = self._release_args(part.returned, part.strangers)
            self.scripts.queue(pipe, "release_leases", site_keys, args)
        if part.slots:
            args = [self.burst, self.ttl_ms, self.fleet_cap, secrets.token_hex(6),
                    POLICY_TTL_SECONDS, self.site, *part.slots]  # fmt: skip
            self.scripts.queue(pipe, "acquire_leases", site_keys, args)

    async def acquire(self, want: int, batch_id: str = "-") -> Grants:
        """Up to ``want`` leases for prompts of one batch (a test's and a tool's way in)."""
        grants = await self.exchange((), [batch_id] * want)
        assert grants is not None
        return grants

    async def release(self, returned: Sequence[tuple[Lease, Cooldown]]) -> None:
        await self.exchange(returned, 0)

    def _grants(self, reply: list[bytes | int], sent_at: float) -> Grants:
        granted = int(reply[0])
        until = sent_at + self.ttl_seconds - claim_margin(self.ttl_seconds)
        leases: dict[int, Lease] = {}
        strangers = []
        for n in range(granted):
            slot, name, token, probe = reply[1 + 4 * n : 5 + 4 * n]
            identity = self._identities.get(keys.decoded(name))
            if identity is None:
                strangers.append(keys.decoded(token))
                continue
            claim = Claim(keys.decoded(name), keys.decoded(token), until)
            leases[int(slot) - 1] = Lease(
                identity, claim, bool(int(probe)), time.monotonic(), checked_at=sent_at
            )
        rest = reply[1 + 4 * granted :]
        return Grants(
            by_slot=leases,
            reason=keys.decoded(rest[0]),
            wait_seconds=max(float(rest[1]), 1.0) / 1000,
            stopped={
                keys.decoded(rest[i]): keys.decoded(rest[i + 1]) for i in range(2, len(rest), 2)
            },
            strangers=strangers,
            site=self.site_name,
        )

    def _release_args(
        self, returned: Sequence[tuple[Lease, Cooldown]], strangers: Sequence[str]
    ) -> list[str | int | float]:
        now = time.monotonic()
        args: list[str | int | float] = [
            self.burst, self.base_ms, self.cap_ms, POLICY_TTL_SECONDS, self.site,
        ]  # fmt: skip
        for lease, cooldown in returned:
            args += [
                lease.token, cooldown.verdict, int(cooldown.floor_seconds * 1000),
                random.random(), int((now - lease.taken_at) * 1000), cooldown.reason,
                int(lease.is_probe),
            ]  # fmt: skip
        for token in strangers:
            args += [token, "none", 0, 0, 0, "", 0]
        return args

    @property
    def keys(self) -> list[str]:
        """The policy keys every lease script names first (see worker/lua/policy.lua)."""
        return self._keys

    async def state_counts(self) -> dict[str, int]:
        """This pool's identities by state: ready, proxy_full, rate, cooling, probing.

        Kept as identities are filed; this call files again only those found due."""
        flat = await self.scripts.run("identity_states", self._keys, [self.burst])
        return {keys.decoded(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def wait_for_room(self, seconds: float) -> bool:
        """Blocks until a lease slot is freed somewhere in the fleet (True) or ``seconds``
        pass (False): a worker waiting on a full fleet sleeps here instead of polling."""
        return await self.redis.blpop([keys.room_marker()], timeout=seconds) is not None

    async def stopped(self, batch_id: str) -> str | None:
        """Why the batch was stopped (``cancelled`` or ``expired``), or None if it was not."""
        mark = await self.redis.hget(keys.stopped_batches(), batch_id)
        return keys.decoded(mark).split()[0] if mark else None

    async def charge(self, identity: Identity) -> None:
        """Spends one rate token of ``identity`` for a request that took no lease of its own."""
        args = [self.burst, identity.name, POLICY_TTL_SECONDS]
        await self.scripts.run("charge_identity", self._keys, args)

    async def forget_unannounced(self, age_seconds: float, limit: int = 500) -> int:
        """Deregisters identities and pools no worker announced for ``age_seconds`` (on
        Redis's clock, which dated the announcements); returns how many identities."""
        forgotten, *found = await self.scripts.run(
            "forget_identities",
            [*self._keys, keys.site_sessions(), keys.site_session_uses(), keys.identity_pools()],
            [int(age_seconds * 1000), limit],
        )
        pools = [keys.decoded(raw) for raw in found]
        if pools:
            async with self.redis.pipeline(transaction=True) as pipe:
                for pool in pools:
                    pipe.delete(
                    keys.identities_ready(pool), keys.identities_later(pool),
                    keys.pool_filed(pool), keys.pool_state_counts(pool),
                )  # fmt: skip
                pipe.zrem(keys.identity_pools(), *pools)
                await pipe.execute()
        return int(forgotten)
