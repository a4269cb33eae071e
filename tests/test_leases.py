"""The lease book: fleet cap, per-identity cap, rate, health, expiry, probes — on fakeredis."""

from __future__ import annotations

import pytest
from redis.exceptions import OutOfMemoryError

from contract import keys
from tests.beats import heartbeat, no_claims
from worker.leases import Cooldown, Grants, Lease, LeaseBook
from worker.proxies import Identity

OK = Cooldown("ok")


def identity(name: str, cap: int = 2, rate: float = 0.0, weight: float = 1.0) -> Identity:
    return Identity(
        name=name,
        proxy_url=f"http://{name}:1",
        max_inflight=cap,
        rate_per_second=rate,
        weight=weight,
    )


async def book(
    redis, identities: list[Identity], fleet_cap: int = 10, burst: int = 1, ttl: float = 30.0
) -> LeaseBook:
    leases = LeaseBook(redis, fleet_cap=fleet_cap, burst=burst, ttl_seconds=ttl,
                       backoff_base_seconds=1.0, backoff_cap_seconds=60.0)  # fmt: skip
    await leases.register(identities)
    return leases


async def proven(redis, *names: str) -> None:
    """As after one successful request: past the slow start."""
    for name in names:
        await redis.hset(keys.identity_field("probe"), name, 0)


async def take(leases: LeaseBook) -> Lease:
    grants = await leases.acquire(1)
    assert len(grants.leases) == 1, grants
    return grants.leases[0]


async def refused(leases: LeaseBook) -> Grants:
    grants = await leases.acquire(1)
    assert grants.leases == [], grants
    return grants


async def field(redis, attribute: str, name: str) -> float:
    return float(await redis.hget(keys.identity_field(attribute), name) or 0)


async def test_per_identity_cap_is_held(redis) -> None:
    leases = await book(redis, [identity("p1", cap=2)])
    await proven(redis, "p1")
    await take(leases)
    await take(leases)
    assert (await refused(leases)).reason == "proxy_full"


async def test_fleet_cap_holds_across_identities(redis) -> None:
    leases = await book(redis, [identity(f"p{i}", cap=5) for i in range(3)], fleet_cap=3)
    await proven(redis, "p0", "p1", "p2")
    grants = await leases.acquire(5)
    assert len(grants.leases) == 3 and grants.reason == "fleet_full"
    assert (await refused(leases)).reason == "fleet_full"


async def test_many_leases_in_one_call_spread_over_identities(redis) -> None:
    leases = await book(redis, [identity(name, cap=2) for name in "abc"])
    await proven(redis, *"abc")
    grants = await leases.acquire(5)
    names = sorted(lease.identity.name for lease in grants.leases)
    assert len(names) == 5 and all(names.count(n) <= 2 for n in "abc")
    assert len({lease.token for lease in grants.leases}) == 5


async def test_release_frees_the_slot(redis) -> None:
    leases = await book(redis, [identity("p1", cap=1)])
    lease = await take(leases)
    await refused(leases)
    await leases.release([(lease, OK)])
    await take(leases)


async def test_least_loaded_identity_is_picked(redis) -> None:
    leases = await book(redis, [identity("a", cap=4), identity("b", cap=4)])
    await proven(redis, "a", "b")
    picked = [(await take(leases)).identity.name for _ in range(4)]
    assert sorted(picked) == ["a", "a", "b", "b"]


async def test_penalty_and_weight_steer_the_choice(redis) -> None:
    identities = [identity("healthy", cap=10), identity("penalised", cap=10),
                  identity("light", cap=10, weight=0.01)]  # fmt: skip
    await redis.hset(keys.identity_field("penalty"), "penalised", 5)
    leases = await book(redis, identities)
    await proven(redis, "healthy", "penalised", "light")
    picked = {(await take(leases)).identity.name for _ in range(6)}
    assert picked == {"healthy"}


async def test_a_dead_holders_lease_expires_and_gives_its_slot_back(redis) -> None:
    leases = await book(redis, [identity("p1", cap=1)], fleet_cap=1)
    # A holder that died without returning its lease, long ago.
    await redis.zadd(keys.lease_tokens(), {"p1|ghost": 1})
    await redis.hset(keys.identity_field("inflight"), "p1", 1)
    lease = await take(leases)
    assert await redis.zrange(keys.lease_tokens(), 0, -1) == [lease.token.encode()]
    assert await field(redis, "inflight", "p1") == 1


async def test_renewal_keeps_a_lease_and_an_expired_one_stays_gone(redis) -> None:
    leases = await book(redis, [identity("p1", cap=2)], ttl=30)
    await proven(redis, "p1")
    held, lost = await take(leases), await take(leases)
    await redis.zadd(keys.lease_tokens(), {lost.token: 1})  # expired meanwhile
    await take(leases)  # the next acquire reaps it
    beat, told = heartbeat(redis, claims=no_claims(redis), book=leases, leases=[held, lost])
    assert await beat.beat()
    assert told == {"leases": [lost.token]}
    expiry = await redis.zscore(keys.lease_tokens(), held.token)
    assert expiry is not None and expiry > 1


async def test_rate_is_enforced_with_a_wait_hint(redis) -> None:
    leases = await book(redis, [identity("p1", cap=10, rate=1.0)], burst=2)
    await proven(redis, "p1")
    await take(leases)
    await take(leases)  # the burst
    grants = await refused(leases)
    assert grants.reason == "rate" and 0.5 < grants.wait_seconds <= 1.0


async def test_a_handshake_spends_a_rate_token(redis) -> None:
    proxy = identity("p1", cap=10, rate=1.0)
    leases = await book(redis, [proxy], burst=2)
    await proven(redis, "p1")
    await take(leases)
    await leases.charge(proxy)  # the page GET that came with it
    assert (await refused(leases)).reason == "rate"


async def test_cooling_identity_waits_and_a_probe_brings_it_back(redis) -> None:
    leases = await book(redis, [identity("p1", cap=5)])
    lease = await take(leases)
    await leases.release([(lease, Cooldown("cool", floor_seconds=30, reason="RateLimited"))])
    grants = await refused(leases)
    assert grants.reason == "cooling" and 29 < grants.wait_seconds <= 30
    assert await redis.hget(keys.identity_field("reason"), "p1") == b"RateLimited"
    assert await field(redis, "penalty", "p1") == 1
    # The cooldown ends: exactly one probe may go, the next request waits for its outcome.
    await redis.hset(keys.identity_field("cooldown"), "p1", 0)
    await redis.zadd(keys.identities_later(_pool(leases)), {"p1": 0})
    probe = await take(leases)
    assert probe.is_probe
    assert (await refused(leases)).reason == "probing"
    await leases.release([(probe, OK)])
    after = await take(leases)
    assert not after.is_probe
    assert await field(redis, "penalty", "p1") == 0.5


def _pool(leases: LeaseBook) -> str:
    return leases._keys[1].rsplit(":", 1)[1]


async def test_failed_probes_cool_again_for_longer(redis) -> None:
    leases = await book(redis, [identity("p1", cap=5)])
    for expected_penalty in (1, 2, 3):
        lease = await take(leases)
        await leases.release([(lease, Cooldown("down", reason="ProxyFault"))])
        assert await field(redis, "penalty", "p1") == expected_penalty
        await redis.hset(keys.identity_field("cooldown"), "p1", 0)
        await redis.zadd(keys.identities_later(_pool(leases)), {"p1": 0})


async def test_retry_after_is_a_floor_beyond_the_backoff_cap(redis) -> None:
    leases = await book(redis, [identity("p1")])
    lease = await take(leases)
    await leases.release([(lease, Cooldown("cool", floor_seconds=3600, reason="QuotaExceeded"))])
    assert (await refused(leases)).wait_seconds > 3500


async def test_other_identity_serves_while_one_cools(redis) -> None:
    await redis.hset(keys.identity_field("penalty"), "spare", 3)  # cooled is picked first
    leases = await book(redis, [identity("cooled"), identity("spare")])
    await proven(redis, "spare")
    lease = await take(leases)
    assert lease.identity.name == "cooled"
    await leases.release([(lease, Cooldown("quarantine", floor_seconds=300, reason="Blocked"))])
    assert {(await take(leases)).identity.name for _ in range(2)} == {"spare"}


async def test_a_neutral_outcome_does_not_penalise(redis) -> None:
    leases = await book(redis, [identity("p1")])
    await proven(redis, "p1")
    lease = await take(leases)
    await leases.release([(lease, Cooldown("none"))])
    assert await field(redis, "penalty", "p1") == 0
    await take(leases)


async def test_a_suspect_cools_only_an_identity_that_keeps_failing(redis) -> None:
    leases = await book(redis, [identity("p1", cap=5)])
    await proven(redis, "p1")
    suspect = Cooldown("suspect", reason="UpstreamHiccup")
    # One ambiguous failure between successes: no cooldown (the site may be at fault).
    await leases.release([(await take(leases), suspect)])
    await leases.release([(await take(leases), OK)])
    assert await field(redis, "cooldown", "p1") == 0
    # Failures with no success between them: the identity is the suspect, and it cools.
    await leases.release([(await take(leases), suspect)])
    await leases.release([(await take(leases), suspect)])
    assert (await refused(leases)).reason == "cooling"


async def test_a_new_identity_starts_with_one_probe(redis) -> None:
    leases = await book(redis, [identity("new", cap=4)])
    first = await take(leases)
    assert first.is_probe
    assert (await refused(leases)).reason == "probing"
    await leases.release([(first, OK)])
    # Proven: the full in-flight cap opens.
    grants = await leases.acquire(4)
    assert [lease.is_probe for lease in grants.leases] == [False] * 4


async def test_a_dead_new_identity_costs_one_request(redis) -> None:
    await redis.hset(keys.identity_field("penalty"), "good", 3)  # dead is tried first
    leases = await book(redis, [identity("dead", cap=4), identity("good", cap=4)])
    await proven(redis, "good")
    first = await take(leases)
    assert first.identity.name == "dead"
    await leases.release([(first, Cooldown("down", reason="ProxyFault"))])
    grants = await leases.acquire(4)
    assert {lease.identity.name for lease in grants.leases} == {"good"}


async def test_caps_hold_across_workers_with_different_pools(redis) -> None:
    shared = identity("shared", cap=2)
    await redis.hset(keys.identity_field("penalty"), "only_first", 9)
    first = await book(redis, [shared, identity("only_first")])
    second = await book(redis, [shared])
    await proven(redis, "shared", "only_first")
    assert (await take(first)).identity.name == "shared"
    assert (await take(second)).identity.name == "shared"
    assert (await refused(second)).reason == "proxy_full"
    assert (await take(first)).identity.name == "only_first"


async def test_a_stopped_batch_is_reported_with_the_grants(redis) -> None:
    leases = await book(redis, [identity("p1")])
    await redis.hset(keys.stopped_batches(), mapping={"gone": "cancelled 1", "late": "expired 2"})
    grants = await leases.exchange((), ["kept", "gone", "late"])
    assert grants is not None and grants.stopped == {"gone": "cancelled", "late": "expired"}
    assert list(grants.by_slot) == [0]  # one lease, for the one prompt whose batch runs


async def test_an_identity_removed_from_the_pool_leaves_the_index(redis) -> None:
    leases = await book(redis, [identity("p1"), identity("old")])
    await proven(redis, "p1", "old")
    await redis.hdel(keys.identity_field("cap"), "old")  # forgotten by the fleet
    grants = await leases.acquire(3)
    assert {lease.identity.name for lease in grants.leases} == {"p1"}
    assert await redis.zscore(keys.identities_ready(_pool(leases)), "old") is None


@pytest.mark.parametrize("pool_size", [10, 1000])
async def test_one_acquire_reads_the_same_whatever_the_pool(redis, pool_size: int) -> None:
    """Not a timing: the call touches only the identities it takes (the index head)."""
    leases = await book(redis, [identity(f"p{i:04d}", cap=1) for i in range(pool_size)])
    await proven(redis, *(f"p{i:04d}" for i in range(pool_size)))
    grants = await leases.acquire(3)
    assert len(grants.leases) == 3
    ready = await redis.zcard(keys.identities_ready(_pool(leases)))
    later = await redis.zcard(keys.identities_later(_pool(leases)))
    assert (ready, later) == (pool_size - 3, 3)  # the three full ones moved, no others


async def test_a_dead_workers_identity_is_never_filed_in_another_pool(redis) -> None:
    mine = await book(redis, [identity("a1")])
    theirs = await book(redis, [identity("b1")])
    await proven(redis, "a1", "b1")
    lost = await take(theirs)  # its worker dies holding it
    await redis.zadd(keys.lease_tokens(), {lost.token: 1})
    await take(mine)  # reaps b1's lease: b1's slot comes back, in b1's own pool only
    assert await field(redis, "inflight", "b1") == 0
    for index in (keys.identities_ready(_pool(mine)), keys.identities_later(_pool(mine))):
        assert await redis.zscore(index, "b1") is None
    grants = await mine.acquire(5)
    assert {lease.identity.name for lease in grants.leases} <= {"a1"}
    assert (await take(theirs)).identity.name == "b1"  # its own pool still has it


async def test_a_grant_on_an_identity_this_worker_lacks_is_a_stranger(redis) -> None:
    leases = await book(redis, [identity("p1"), identity("p2")])
    await proven(redis, "p1", "p2")
    del leases._identities["p2"]  # as if p2 left this worker's list but not its pool yet
    grants = await leases.acquire(2)
    assert [lease.identity.name for lease in grants.leases] == ["p1"]
    assert len(grants.strangers) == 1 and grants.strangers[0].startswith("p2|")


async def test_identities_nobody_announces_are_forgotten(redis) -> None:
    leases = await book(redis, [identity("p1"), identity("gone")])
    await proven(redis, "p1", "gone")
    busy = await take(await book(redis, [identity("busy")]))  # a request of it is out
    await redis.zadd(keys.identities_known(), {"gone": 1, "busy": 1})
    await leases.register([identity("p1")])  # "gone" was dropped from the proxies file
    assert await leases.forget_unannounced(age_seconds=60) == 1
    assert await redis.hget(keys.identity_field("cap"), "gone") is None
    assert await redis.hget(keys.identity_field("cap"), "busy") is not None  # kept: in flight
    assert busy.identity.name == "busy"
    grants = await leases.acquire(5)
    assert {lease.identity.name for lease in grants.leases} == {"p1"}


async def test_a_pool_nobody_announces_is_forgotten(redis) -> None:
    old = await book(redis, [identity("p1"), identity("p2")])
    await redis.zadd(keys.identity_pools(), {_pool(old): 1})
    await old.forget_unannounced(age_seconds=60)
    assert await redis.exists(keys.identities_ready(_pool(old))) == 0
    assert await redis.zscore(keys.identity_pools(), _pool(old)) is None


async def test_an_emptied_redis_is_reported_as_no_identity(redis) -> None:
    leases = await book(redis, [identity("p1")])
    await redis.flushdb()  # restarted without its data
    grants = await leases.acquire(1)
    assert (grants.leases, grants.reason) == ([], "no_identity")
    await leases.register([identity("p1")])
    await proven(redis, "p1")
    assert (await take(leases)).identity.name == "p1"


async def test_renewal_works_while_redis_refuses_writes(real_redis) -> None:
    """At maxmemory, Redis refuses a script at its first write only if that write may grow
    memory: the renewal's first write is a PEXPIRE, so it runs whole."""
    leases = await book(real_redis, [identity("p1", cap=2)], ttl=30)
    await proven(real_redis, "p1")
    held = await take(leases)
    used = int((await real_redis.info("memory"))["used_memory"])
    await real_redis.config_set("maxmemory", used + 1024)
    try:
        with pytest.raises(OutOfMemoryError):
            await real_redis.set("grow", "x" * 100_000)
        beat, told = heartbeat(real_redis, claims=no_claims(real_redis), book=leases,
                               leases=[held])  # fmt: skip
        assert await beat.beat()
        assert told == {}
    finally:
        await real_redis.config_set("maxmemory", 0)


async def test_an_index_emptied_and_filled_again_keeps_a_ttl(redis) -> None:
    leases = await book(redis, [identity("p1", cap=1)])
    await proven(redis, "p1")
    held = await take(leases)  # p1 leaves ready: the key is gone
    assert await redis.exists(keys.identities_ready(_pool(leases))) == 0
    await leases.release([(held, OK)])  # and comes back
    assert await redis.ttl(keys.identities_ready(_pool(leases))) > 0
    assert await redis.ttl(keys.identities_later(_pool(leases))) in (-2, *range(1, 10**7))


async def test_state_counts_follow_the_identities_without_walking_the_pool(redis) -> None:
    leases = await book(redis, [identity("a", cap=1), identity("b", cap=1), identity("c")])
    assert await leases.state_counts() == {"ready": 3}  # each waits for its one probe
    await proven(redis, "a", "b", "c")
    await leases.register([identity("a", cap=1), identity("b", cap=1), identity("c")])
    assert await leases.state_counts() == {"ready": 3}
    held = (await leases.acquire(2)).leases  # two of them full now
    counts = await leases.state_counts()
    assert counts.get("proxy_full", 0) + counts.get("ready", 0) == 3 and counts["ready"] >= 1
    await leases.release([(held[0], Cooldown("down", floor_seconds=60, reason="ProxyFault"))])
    assert (await leases.state_counts()).get("cooling") == 1


async def test_failures_that_share_one_cause_count_once(redis) -> None:
    """Regression (issue 20, 6): a site restart under 100 requests in flight raised the one
    proxy's penalty to 50 and parked it for half an hour. All 100 were out when the first
    failure came back: one incident, one step of penalty, seconds of cooling."""
    leases = await book(redis, [identity("direct", cap=100)], fleet_cap=100)
    await proven(redis, "direct")
    out = (await leases.acquire(100)).leases
    assert len(out) == 100
    hiccup = Cooldown("suspect", reason="UpstreamHiccup")
    await leases.release([(lease, hiccup) for lease in out])
    assert await field(redis, "penalty", "direct") == 0.5
    assert await field(redis, "failed", "direct") == 100  # each failure still counted
    # A request sent after the incident began is new evidence: it counts again.
    again = await take(leases)
    await leases.release([(again, hiccup)])
    assert await field(redis, "penalty", "direct") == 1.0
    cooling_ms = await field(redis, "cooldown", "direct") - await _redis_ms(redis)
    assert cooling_ms <= 4100  # base 1 s x 2^1, with jitter: seconds, not half an hour


async def test_a_bad_exit_still_cools_failure_after_failure(redis) -> None:
    leases = await book(redis, [identity("bad", cap=5)])
    await proven(redis, "bad")
    down = Cooldown("down", reason="ProxyFault")
    await leases.release([(await take(leases), down)])
    assert (await refused(leases)).reason == "cooling"


async def _redis_ms(redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000
