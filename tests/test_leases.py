"""The atomic lease: fleet cap, per-identity cap, rate, health, expiry — on fakeredis."""

from __future__ import annotations

from contract import keys
from worker.leases import Cooldown, Lease, LeaseBook, NoCapacity
from worker.proxies import Identity


def identity(name: str, cap: int = 2, rate: float = 0.0, weight: float = 1.0) -> Identity:
    return Identity(
        name=name,
        proxy_url=f"http://{name}:1",
        max_inflight=cap,
        rate_per_second=rate,
        weight=weight,
    )


def book(redis, fleet_cap: int = 10, burst: int = 1, ttl: float = 30.0) -> LeaseBook:
    return LeaseBook(redis, fleet_cap=fleet_cap, burst=burst, ttl_seconds=ttl,
                     backoff_base_seconds=1.0, backoff_cap_seconds=60.0)  # fmt: skip


async def proven(redis, *names: str) -> None:
    """As after one successful request: past the slow start."""
    for name in names:
        await redis.hset(keys.health(name), "successes", 1)


async def take(leases: LeaseBook, identities: list[Identity]) -> Lease:
    lease = await leases.try_acquire(identities)
    assert isinstance(lease, Lease), lease
    return lease


async def test_per_identity_cap_is_held(fake_redis) -> None:
    leases, proxy = book(fake_redis), identity("p1", cap=2)
    await proven(fake_redis, "p1")
    await take(leases, [proxy])
    await take(leases, [proxy])
    refused = await leases.try_acquire([proxy])
    assert isinstance(refused, NoCapacity) and refused.reason == "proxy_full=1"


async def test_fleet_cap_holds_across_identities(fake_redis) -> None:
    leases = book(fake_redis, fleet_cap=3)
    proxies = [identity(f"p{i}", cap=5) for i in range(3)]
    for _ in range(3):
        await take(leases, proxies)
    refused = await leases.try_acquire(proxies)
    assert isinstance(refused, NoCapacity) and refused.reason == "fleet_full"


async def test_release_frees_the_slot(fake_redis) -> None:
    leases, proxy = book(fake_redis), identity("p1", cap=1)
    lease = await take(leases, [proxy])
    assert isinstance(await leases.try_acquire([proxy]), NoCapacity)
    await leases.release(lease, Cooldown("ok"))
    await take(leases, [proxy])


async def test_least_loaded_identity_is_picked(fake_redis) -> None:
    leases = book(fake_redis)
    a, b = identity("a", cap=4), identity("b", cap=4)
    await proven(fake_redis, "a", "b")
    picked = [(await take(leases, [a, b])).identity.name for _ in range(4)]
    assert sorted(picked) == ["a", "a", "b", "b"]


async def test_weight_and_penalty_steer_the_choice(fake_redis) -> None:
    leases = book(fake_redis)
    healthy, penalised = identity("healthy", cap=10), identity("penalised", cap=10)
    await proven(fake_redis, "healthy", "penalised")
    await fake_redis.hset(keys.health("penalised"), mapping={"penalty": 5})
    picked = {(await take(leases, [healthy, penalised])).identity.name for _ in range(5)}
    assert picked == {"healthy"}


async def test_dead_holder_lease_expires(fake_redis) -> None:
    leases, proxy = book(fake_redis, fleet_cap=1), identity("p1", cap=1)
    # A holder that died without returning its lease: both slots expired long ago.
    await fake_redis.zadd(keys.lease_identity("p1"), {"ghost": 1})
    await fake_redis.zadd(keys.lease_fleet(), {"ghost": 1})
    lease = await take(leases, [proxy])
    assert await fake_redis.zrange(keys.lease_fleet(), 0, -1) == [lease.token.encode()]


async def test_rate_is_enforced_with_a_wait_hint(fake_redis) -> None:
    leases, proxy = book(fake_redis, burst=2), identity("p1", cap=10, rate=1.0)
    await proven(fake_redis, "p1")
    await take(leases, [proxy])
    await take(leases, [proxy])  # the burst
    refused = await leases.try_acquire([proxy])
    assert isinstance(refused, NoCapacity) and refused.reason == "rate=1"
    assert 0.5 < refused.wait_seconds <= 1.0


async def test_cooling_identity_is_skipped_and_a_probe_brings_it_back(fake_redis) -> None:
    leases, proxy = book(fake_redis), identity("p1", cap=5)
    lease = await take(leases, [proxy])
    await leases.release(lease, Cooldown("cool", floor_seconds=30, reason="RateLimited"))
    refused = await leases.try_acquire([proxy])
    assert isinstance(refused, NoCapacity) and refused.reason == "cooling=1"
    assert 29 < refused.wait_seconds <= 30
    health = await fake_redis.hgetall(keys.health("p1"))
    assert health[b"reason"] == b"RateLimited" and float(health[b"penalty"]) == 1
    # The cooldown ends: exactly one probe may go, the next request waits for its outcome.
    await fake_redis.hset(keys.health("p1"), "cooldown_until", 0)
    probe = await take(leases, [proxy])
    assert probe.is_probe
    assert (await leases.try_acquire([proxy])).reason == "probing=1"
    await leases.release(probe, Cooldown("ok"))
    after = await take(leases, [proxy])
    assert not after.is_probe
    assert float(await fake_redis.hget(keys.health("p1"), "penalty")) == 0.5


async def test_failed_probe_cools_again_for_longer(fake_redis) -> None:
    leases, proxy = book(fake_redis), identity("p1", cap=5)
    for expected_penalty in (1, 2, 3):
        lease = await take(leases, [proxy])
        await leases.release(lease, Cooldown("down", reason="ProxyFault"))
        assert float(await fake_redis.hget(keys.health("p1"), "penalty")) == expected_penalty
        await fake_redis.hset(keys.health("p1"), "cooldown_until", 0)


async def test_retry_after_is_a_floor_beyond_the_backoff_cap(fake_redis) -> None:
    leases, proxy = book(fake_redis), identity("p1")
    lease = await take(leases, [proxy])
    await leases.release(lease, Cooldown("cool", floor_seconds=3600, reason="QuotaExceeded"))
    refused = await leases.try_acquire([proxy])
    assert isinstance(refused, NoCapacity) and refused.wait_seconds > 3500


async def test_other_identity_serves_while_one_cools(fake_redis) -> None:
    leases = book(fake_redis)
    cooled, spare = identity("cooled"), identity("spare")
    await proven(fake_redis, "spare")
    lease = await take(leases, [cooled])
    await leases.release(lease, Cooldown("quarantine", floor_seconds=300, reason="Blocked"))
    assert {(await take(leases, [cooled, spare])).identity.name for _ in range(2)} == {"spare"}


async def test_site_hiccup_does_not_penalise(fake_redis) -> None:
    leases, proxy = book(fake_redis), identity("p1")
    lease = await take(leases, [proxy])
    await leases.release(lease, Cooldown("none"))
    assert float(await fake_redis.hget(keys.health("p1"), "penalty") or 0) == 0
    await take(leases, [proxy])


async def test_a_new_identity_starts_with_one_probe(fake_redis) -> None:
    leases, proxy = book(fake_redis), identity("new", cap=4)
    first = await take(leases, [proxy])
    assert first.is_probe
    refused = await leases.try_acquire([proxy])
    assert isinstance(refused, NoCapacity) and refused.reason == "probing=1"
    await leases.release(first, Cooldown("ok"))
    # Proven: the full in-flight cap opens.
    assert [(await take(leases, [proxy])).is_probe for _ in range(4)] == [False] * 4


async def test_a_dead_new_identity_costs_one_request(fake_redis) -> None:
    leases, dead, good = book(fake_redis), identity("dead", cap=4), identity("good", cap=4)
    await proven(fake_redis, "good")
    first = await take(leases, [dead])
    await leases.release(first, Cooldown("down", reason="ProxyFault"))
    picked = {(await take(leases, [dead, good])).identity.name for _ in range(4)}
    assert picked == {"good"}
