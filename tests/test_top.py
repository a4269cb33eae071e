"""``chatgptes top`` and ``batches``: the frame from plain data, the commands against a seeded
Redis, what a frame costs with a large pool, and Ctrl-C."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import re
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from click.testing import CliRunner
from rich.console import Console, RenderableType

from chatgptes import top as top_module
from chatgptes.fleet_view import batches, duration
from chatgptes.top import (
    FleetSnapshot,
    counter_deltas,
    live,
    read_snapshot,
    recent_frames,
    render,
    top,
    watch,
)
from contract import keys
from contract.config import QueueSettings
from contract.models import BatchStatus, Message
from producer.api import BatchQueue
from producer.fleet import IdentityHealth, PoolCensus, WorkerInfo, pool_census, worst_first
from producer.inputs import PromptLine

QUEUE = "top:queue"
T0 = 1_700_000_000.0


def text_of(view: RenderableType, width: int = 120) -> str:
    console = Console(record=True, width=width, file=io.StringIO())
    console.print(view)
    return console.export_text()


def status(batch_id: str, *, total: int = 1000, succeeded: int = 0, failed: int = 0,
           running: int = 0, waiting: int = 0, state: str = "in_progress") -> BatchStatus:  # fmt: skip
    settled = succeeded + failed
    return BatchStatus(
        batch_id=batch_id, state=state, total=total, succeeded=succeeded, failed=failed,
        cancelled=0, in_progress=running, waiting=waiting,
        queued=total - settled - running - waiting, done=settled >= total,
        created_at=datetime.fromtimestamp(T0, UTC) - timedelta(minutes=5),
    )  # fmt: skip


def identity(name: str, *, inflight: int = 0, cap: int = 4, cooling_for: float = 0.0,
             reason: str = "", probing: bool = False, penalty: float = 0.0,
             ok: int = 0, failed: int = 0, latency_ms: int = 0) -> IdentityHealth:  # fmt: skip
    return IdentityHealth(
        name=name, inflight=inflight, cap=cap, penalty=penalty, cooling_for=cooling_for,
        reason=reason, probing=probing, latency_ms=latency_ms, successes=ok, failures=failed,
    )  # fmt: skip


def worker(host: str, *, pid: int = 7, alive: bool = True, in_flight: int = 3) -> WorkerInfo:
    return WorkerInfo(
        worker_id=f"{host}:{pid}", host=host, pid=pid, queue=QUEUE, in_flight=in_flight,
        waiting=1, chunks=2, prompts_held=40, succeeded=120, failed=2, cancelled=0,
        seen_ago=1.0 if alive else 60.0, heartbeat_seconds=5.0, stopping=False,
    )  # fmt: skip


def census(found: list[IdentityHealth], total: int | None = None, **states: int) -> PoolCensus:
    counts = {"ready": 0, "full": 0, "probing": 0, "cooling": 0, **states}
    return PoolCensus(
        total=total if total is not None else len(found), states=counts,
        in_flight=sum(i.inflight for i in found), capacity=4 * len(found),
        worst=worst_first(found),
    )  # fmt: skip


def snapshot(at: float = T0, *, batches: list[BatchStatus] | None = None,
             workers: list[WorkerInfo] | None = None, pool: PoolCensus | None = None,
             events: dict[str, int] | None = None) -> FleetSnapshot:  # fmt: skip
    return FleetSnapshot(
        at=at, batches=batches or [], batches_known=len(batches or []), workers=workers or [],
        pool=pool or census([]), events=events or {},
    )  # fmt: skip


# -- the frame, from plain data ------------------------------------------------------


def test_rate_and_eta_come_from_the_earlier_frame() -> None:
    before = snapshot(T0, batches=[status("b1", succeeded=100), status("b2", succeeded=5)])
    now = snapshot(T0 + 10, batches=[status("b1", succeeded=190, failed=10, running=40),
                                     status("b2", succeeded=5), status("new", succeeded=1)])  # fmt: skip
    shown = text_of(render([before, now]))
    row = next(line for line in shown.splitlines() if line.strip().startswith("b1"))
    # 100 settled in 10 s: 10.0/s; 800 to go: 1m 20s.
    assert "200/1,000" in row and "10.0" in row and "1m 20s" in row and "40" in row
    b2 = next(line for line in shown.splitlines() if line.strip().startswith("b2"))
    assert "0.0" in b2 and b2.rstrip().endswith("—")  # stalled: no ETA
    fresh = next(line for line in shown.splitlines() if line.strip().startswith("new"))
    assert fresh.split()[-2:] == ["—", "—"]  # no earlier reading of it: no rate, no ETA
    assert "rates over the last 10s" in shown


def test_a_single_frame_shows_each_batchs_rate_since_it_started() -> None:
    # created 5 minutes before the reading, 60 settled: 0.2/s; 940 to go: 1h 18m.
    started = status("b1", succeeded=60)
    shown = text_of(render([snapshot(batches=[started, status("idle")])]))
    row = next(line for line in shown.splitlines() if line.strip().startswith("b1"))
    assert row.split()[-3:] == ["0.2", "1h", "18m"]
    idle = next(line for line in shown.splitlines() if line.strip().startswith("idle"))
    assert idle.split()[-2:] == ["—", "—"]  # nothing settled yet: no rate
    assert "one frame" in shown and "rates since each batch started" in shown


def test_active_batches_first_and_ended_ones_without_eta() -> None:
    done = status("old", succeeded=1000, state="completed")
    assert top_module.active_first([done, status("run")])[0].batch_id == "run"
    shown = text_of(render([snapshot(batches=[done]), snapshot(T0 + 1, batches=[done])]))
    row = next(line for line in shown.splitlines() if line.strip().startswith("old"))
    assert row.split()[1:] == ["completed", "0", "0", "0", "1,000/1,000", "0"]  # no rate, no ETA
    assert "0 active, 1 ended shown" in shown


def test_identities_worst_first_with_a_summary_of_the_whole_pool() -> None:
    found = [
        identity("ready-1", ok=97, failed=3, latency_ms=850),
        identity("full-1", inflight=4),
        identity("cooling-long", cooling_for=300, reason="RateLimited", penalty=2.0),
        identity("probing-1", probing=True, penalty=0.5),
        identity("cooling-short", cooling_for=12, reason="ProxyError", penalty=1.0),
    ]
    shown = text_of(render([snapshot(pool=census(found, total=1000, ready=980, full=5,
                                                 probing=3, cooling=12))]))  # fmt: skip
    assert "1,000 identities: 980 ready, 5 full, 3 probing, 12 cooling; 4/20 in flight" in shown
    order = [name for name in ("cooling-long", "cooling-short", "probing-1", "full-1", "ready-1")]
    positions = [shown.index(name) for name in order]
    assert positions == sorted(positions)
    long_row = next(line for line in shown.splitlines() if "cooling-long" in line)
    assert "cooling" in long_row and "5m 00s" in long_row and "RateLimited" in long_row
    ready_row = next(line for line in shown.splitlines() if "ready-1" in line)
    assert "97%" in ready_row and "850 ms" in ready_row and "0/4" in ready_row
    assert "RateLimited" not in ready_row


def test_errors_as_deltas_over_the_window_and_totals() -> None:
    before = snapshot(T0, events={"error:RateLimited": 10, "error:Timeout": 5,
                                  "error:Reset": 10, "waited_for_capacity": 3})  # fmt: skip
    now = snapshot(T0 + 30, events={
        "error:RateLimited": 14, "error:Timeout": 5, "error:NewOne": 2,
        "error:Reset": 3,  # lower than before: the counters' hash expired and began again
        "waited_for_capacity": 5, "waited_for_capacity:proxy_full": 2})  # fmt: skip
    rows = counter_deltas(now.events, before.events, "error:")
    assert rows == [("RateLimited", 4, 14), ("Reset", 3, 3), ("NewOne", 2, 2), ("Timeout", 0, 5)]
    shown = text_of(render([before, now]))
    assert "last 30s" in shown
    assert re.search(r"RateLimited +4 +14 ", shown) and re.search(r"Reset +3 +3 ", shown)
    assert re.search(r"waited: proxy_full +2 +2 ", shown)
    alone = text_of(render([now]))
    assert re.search(r"recent +total", alone) and re.search(r"RateLimited +— +14 ", alone)


def test_control_characters_and_markup_in_names_are_shown_escaped() -> None:
    hostile = snapshot(
        batches=[status("b\x1b[31mred")],
        workers=[worker("h\nx\x07[bold]")],
        pool=census([identity("p\x1b]0;t\x07", cooling_for=5, reason="R\x1bx")]),
        events={"error:E\x1b[2J": 1},
    )
    console = Console(record=True, width=160, file=io.StringIO(), force_terminal=True)
    console.print(render([hostile]))
    shown = console.export_text()
    assert "\x1b" not in shown and "\x07" not in shown
    assert "b\\x1b[31mred" in shown and "h\\nx\\x07[bold]" in shown
    assert "p\\x1b]0;t\\x07" in shown and "R\\x1bx" in shown and "E\\x1b[2J" in shown


def test_workers_alive_first_and_a_fleet_with_nobody() -> None:
    shown = text_of(render([snapshot(workers=[worker("a", alive=False), worker("b")])]))
    assert "workers: 1 alive, 1 silent" in shown
    rows = [
        line.split()[:2]
        for line in shown.splitlines()
        if line.split()[:1] in (["alive"], ["silent"])
    ]
    assert rows == [["alive", "b"], ["silent", "a"]]
    empty = text_of(render([snapshot()]))
    assert "workers: 0 alive; nothing runs" in empty and "no workers have reported" in empty
    assert "no batches" in empty and "identities: none announced yet" in empty


def test_a_worker_whose_chore_keeps_failing_says_which_and_why() -> None:
    failing = dataclasses.replace(worker("a"), chores_failing="stops: ValueError (4 times)")
    shown = text_of(render([snapshot(workers=[failing])]))
    assert "chores failing: stops: ValueError (4 times)" in shown


def test_frames_kept_cover_the_error_window_and_at_least_one_earlier() -> None:
    frames = [snapshot(T0 + n) for n in range(0, 100, 10)]
    kept = recent_frames(frames)
    assert kept[0].at == T0 + 30 and kept[-1].at == T0 + 90
    sparse = recent_frames([snapshot(T0), snapshot(T0 + 600)])
    assert len(sparse) == 2  # an interval longer than the window still has a rate
    assert duration(4000) == "1h 06m" and duration(59.6) == "1m 00s"


# -- the loop: Ctrl-C and Redis away ---------------------------------------------------


@pytest.fixture
def ctrl_c_interrupts() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt, as at a terminal, for this test only.

    A runner started with SIGINT ignored (``nohup``, ``make test &``, some CI) passes
    SIG_IGN on to pytest: a raised SIGINT would then do nothing (asyncio.run installs
    its handler only over Python's default one) and the test would hang.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("ctrl_c_interrupts")
def test_ctrl_c_ends_the_live_loop_quietly() -> None:
    reads = 0

    async def read(_queue: object) -> FleetSnapshot:
        nonlocal reads
        reads += 1
        if reads == 3:
            signal.raise_signal(signal.SIGINT)  # what Ctrl-C does
        return snapshot(time.time())

    out = io.StringIO()
    console = Console(file=out, width=120)
    live(console, read, interval=0.01, run=lambda make: asyncio.run(make(None)))
    assert reads >= 3 and out.getvalue().count("chatgptes top") >= 2


def test_top_without_once_exits_0_on_ctrl_c(monkeypatch) -> None:
    reads = 0

    async def read(_queue: object, *, limit: int) -> FleetSnapshot:
        nonlocal reads
        reads += 1
        if reads == 2:
            raise KeyboardInterrupt
        return snapshot(time.time())

    monkeypatch.setattr(top_module, "read_snapshot", read)
    monkeypatch.setenv("CHATGPTES_REDIS_URL", "redis://127.0.0.1:1/0")  # never reached
    result = CliRunner().invoke(top, ["--interval", "0.05"])
    assert result.exit_code == 0 and "Aborted" not in result.output
    assert result.stdout.count("chatgptes top") == 1 and result.exception is None


async def test_redis_away_keeps_the_last_frame_with_a_line_saying_so() -> None:
    replies: list[FleetSnapshot | Exception] = [
        snapshot(T0), ConnectionError("Error 111 connecting to redis://:pw@h:6379"), snapshot(T0 + 2)
    ]  # fmt: skip
    shown: list[str] = []

    async def read() -> FleetSnapshot:
        reply = replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def show(view: RenderableType) -> None:
        shown.append(text_of(view))
        if not replies:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await watch(read, show, interval=0.001)
    assert "Redis unreachable" in shown[1] and "pw" not in shown[1]
    assert "chatgptes top" in shown[1] and "Redis unreachable" not in shown[2]


# -- against a real Redis ----------------------------------------------------------------


def seed_identities(client: redis.Redis, count: int, *, cooling: int = 0, full: int = 0,
                    probing: int = 0) -> list[str]:  # fmt: skip
    """``count`` identities; the first ``cooling`` cool (the longest first), then full ones,
    then probing ones; the rest ready, with some history."""
    now_ms = int(time.time() * 1000)
    names = [f"10.{n // 250}.{n % 250}.1:3128" for n in range(count)]
    columns: dict[str, dict[str, int | float | str]] = {
        attr: {} for attr in ("cap", "inflight", "penalty", "cooldown", "reason", "probe",
                              "latency", "ok", "failed")}  # fmt: skip
    for n, name in enumerate(names):
        columns["cap"][name] = 4
        columns["inflight"][name] = 4 if cooling <= n < cooling + full else n % 3
        columns["latency"][name] = 600 + (n * 37) % 900
        columns["ok"][name] = 100 + n % 50
        columns["failed"][name] = n % 7
        if n < cooling:
            columns["failed"][name] = 8 + n % 5
            columns["cooldown"][name] = now_ms + (cooling - n) * 10_000
            columns["reason"][name] = "RateLimited" if n % 2 else "ProxyError"
            columns["penalty"][name] = 1.0 + (cooling - n) / 10
        elif cooling + full <= n < cooling + full + probing:
            columns["probe"][name] = 1
            columns["penalty"][name] = 0.5
    with client.pipeline(transaction=False) as pipe:
        pipe.zadd(keys.identities_known(), {name: now_ms for name in names})
        for attr, values in columns.items():
            if values:
                pipe.hset(keys.identity_field(attr), mapping=values)
        pipe.execute()
    return names


def seed_worker(client: redis.Redis, worker_id: str, host: str, *, seen_ago: float = 1.0,
                **report: int) -> None:  # fmt: skip
    seen = int((time.time() - seen_ago) * 1000)
    client.zadd(keys.workers_seen(), {worker_id: seen})
    client.hset(keys.worker_info(worker_id), mapping={
        "host": host, "pid": 7, "queue": QUEUE, "in_flight": 3, "waiting": 1, "chunks": 2,
        "prompts_held": 50, "succeeded": 120, "failed": 2, "last_seen": seen,
        "heartbeat_seconds": 5, **report})  # fmt: skip


def seed_batch(url: str, batch_id: str, total: int, **counts: int) -> None:
    """Enqueues a batch of ``total`` prompts, then moves its counts as workers would have."""

    async def go() -> None:
        async with BatchQueue.connect(QueueSettings(redis_url=url, queue_name=QUEUE)) as queue:
            lines = [
                PromptLine(n + 1, f"q{n}", (Message(role="user", content="hi"),), "gpt-4o-mini")
                for n in range(total)
            ]
            await queue.enqueue(lines, batch_id=batch_id)

    asyncio.run(go())
    if counts:
        with redis.Redis.from_url(url) as client:
            settled = sum(counts.get(s, 0) for s in ("succeeded", "failed", "cancelled"))
            queued = total - settled - counts.get("running", 0) - counts.get("waiting", 0)
            client.hset(keys.batch_counts(batch_id), mapping={**counts, "queued": queued})
            if settled >= total:
                client.hset(keys.batch_meta(batch_id), "state", "completed")


@pytest.fixture
def env(monkeypatch, redis_server, real_redis) -> Iterator[redis.Redis]:
    monkeypatch.setenv("CHATGPTES_REDIS_URL", redis_server)
    monkeypatch.setenv("CHATGPTES_QUEUE_NAME", QUEUE)
    client = redis.Redis.from_url(redis_server)
    yield client
    client.close()


def test_batches_lists_newest_first_with_counts(env, redis_server) -> None:
    assert "no batches" in CliRunner().invoke(batches, []).stdout
    seed_batch(redis_server, "first", 10, succeeded=10)
    seed_batch(redis_server, "second", 20, succeeded=5, failed=1, running=3, waiting=2)
    listed = CliRunner().invoke(batches, [], catch_exceptions=False)
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:4] == ["batch", "state", "total", "succeeded"]
    assert lines[1].split()[:9] == ["second", "in_progress", "20", "5", "1", "0", "3", "2", "9"]
    assert lines[1].endswith(" ago  no")
    assert lines[2].split()[:3] == ["first", "completed", "10"] and lines[2].endswith("yes")
    as_json = json.loads(CliRunner().invoke(batches, ["--json", "--limit", "1"]).stdout)
    assert [(b["batch_id"], b["waiting"], b["done"]) for b in as_json] == [("second", 2, False)]


def test_batches_escape_control_characters(env, redis_server) -> None:
    hostile = "x\x1b]0;pwned\x07"
    env.zadd(keys.batches_created(), {hostile: int(time.time() * 1000)})
    env.hset(keys.batch_meta(hostile), mapping={"state": "in_progress", "total": 1})
    shown = CliRunner().invoke(batches, []).stdout
    assert "\x1b" not in shown and "x\\x1b]0;pwned\\x07" in shown
    frame = CliRunner().invoke(top, ["--once", "--interval", "0.05"]).stdout
    assert "\x1b" not in frame and "x\\x1b]0;pwned\\x07" in frame


def test_top_once_shows_the_seeded_fleet(env, redis_server) -> None:
    seed_batch(redis_server, "ended", 10, succeeded=9, failed=1)
    seed_batch(redis_server, "busy", 500, succeeded=140, failed=10, running=40, waiting=10)
    seed_worker(env, "w1", "host-a", in_flight=12)
    seed_worker(env, "w2", "host-b\x1b[2J")
    seed_worker(env, "w3", "host-c", seen_ago=120)
    seed_identities(env, 1000, cooling=12, full=5, probing=3)
    env.hset(keys.policy_events(), mapping={"error:RateLimited": 7, "waited_for_capacity": 2})

    result = CliRunner().invoke(top, ["--once", "--interval", "0.05"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    shown = result.stdout
    assert "\x1b" not in shown  # plain text off a terminal, and the host name escaped
    names = [
        line.split()[0] for line in shown.splitlines() if line.split()[:1] in (["busy"], ["ended"])
    ]
    assert names == ["busy", "ended"]  # the active one first
    busy = next(line for line in shown.splitlines() if line.strip().startswith("busy"))
    assert "300" in busy and "40" in busy and "150/500" in busy and "0.0" in busy
    assert "batches: 1 active, 1 ended shown (2 in the registry" in shown
    assert "workers: 2 alive, 1 silent" in shown and "host-b\\x1b[2J" in shown
    assert "1,000 identities: 980 ready, 5 full, 3 probing, 12 cooling" in shown
    pool_rows = [line for line in shown.splitlines() if ":3128" in line]
    assert len(pool_rows) == top_module.SHOWN_IDENTITIES
    assert pool_rows[0].split()[:2] == ["10.0.0.1:3128", "cooling"]  # the longest cooldown
    assert all("cooling" in row for row in pool_rows)
    assert re.search(r"RateLimited +0 +7 ", shown)
    print(shown)


def test_top_limit_caps_the_batches(env, redis_server) -> None:
    for n in range(3):
        seed_batch(redis_server, f"b{n}", 2)
    shown = CliRunner().invoke(top, ["--once", "--interval", "0.05", "--limit", "2"]).stdout
    assert "b2" in shown and "b1" in shown and "b0" not in shown


class RoundTrips:
    """Counts what reaches Redis: single commands and pipeline flushes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from redis.asyncio.client import Pipeline, Redis

        self.count = 0
        command, flush = Redis.execute_command, Pipeline.execute

        async def counted_command(client, *args, **options):  # type: ignore[no-untyped-def]
            self.count += 1
            return await command(client, *args, **options)

        async def counted_flush(pipe, *args, **options):  # type: ignore[no-untyped-def]
            self.count += 1
            return await flush(pipe, *args, **options)

        monkeypatch.setattr(Redis, "execute_command", counted_command)
        monkeypatch.setattr(Pipeline, "execute", counted_flush)


async def test_a_frame_costs_the_same_round_trips_with_1000_identities(
    real_redis, redis_server, monkeypatch
) -> None:
    """No keyspace scan, no command per identity or per batch: the round trips are fixed."""
    client = redis.Redis.from_url(redis_server)
    for n in range(3):
        seed_worker(client, f"w{n}", f"host-{n}")
    seed_identities(client, 10, cooling=2)
    queue = BatchQueue(real_redis, QueueSettings(redis_url=redis_server, queue_name=QUEUE))
    trips = RoundTrips(monkeypatch)
    small = await read_snapshot(queue)
    few = trips.count

    client.flushdb()
    for n in range(3):
        seed_worker(client, f"w{n}", f"host-{n}")
    seed_identities(client, 1000, cooling=12, full=5, probing=3)
    now_ms = int(time.time() * 1000)
    with client.pipeline(transaction=False) as pipe:
        for n in range(100):
            pipe.zadd(keys.batches_created(), {f"b{n}": now_ms + n})
            pipe.hset(keys.batch_meta(f"b{n}"), mapping={"state": "in_progress", "total": 50})
            pipe.hset(keys.batch_counts(f"b{n}"), mapping={"queued": 40, "succeeded": 10})
        pipe.execute()
    client.close()
    trips.count = 0
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        big = await read_snapshot(queue)
        timings.append(time.perf_counter() - started)
    assert trips.count / 5 == few <= 12  # 11, and the webhook outbox
    assert (small.pool.total, big.pool.total, len(big.batches)) == (10, 1000, 20)
    assert big.pool.states == {"ready": 980, "full": 5, "probing": 3, "cooling": 12}
    assert big.batches_known == 100 and big.batches[0].batch_id == "b99"
    # Generous: the point is a few ms, not a second (a busy CI box is slower).
    assert min(timings) < 0.25, timings
    print(f"\nframe read, 1,000 identities + 100 batches: {sorted(timings)} s")


async def test_pool_census_counts_every_identity(real_redis, redis_server) -> None:
    with redis.Redis.from_url(redis_server) as client:
        seed_identities(client, 300, cooling=4, full=2, probing=1)
    found = await pool_census(real_redis, shown=3)
    assert found.total == 300 and found.cooling == 4
    assert found.states == {"ready": 293, "full": 2, "probing": 1, "cooling": 4}
    assert [i.name for i in found.worst] == ["10.0.0.1:3128", "10.0.1.1:3128", "10.0.2.1:3128"]
    assert (found.in_flight, found.capacity) == (sum(4 if 4 <= n < 6 else n % 3
                                                     for n in range(300)), 1200)  # fmt: skip


async def test_a_frame_says_when_redis_refuses_writes(real_redis, redis_server) -> None:
    queue = BatchQueue(real_redis, QueueSettings(redis_url=redis_server, queue_name=QUEUE))
    assert (await read_snapshot(queue)).refusing is None
    used = int((await real_redis.info("memory"))["used_memory"])
    await real_redis.config_set("maxmemory", used // 2)  # full: every write refused
    try:
        frame = await read_snapshot(queue)
    finally:
        await real_redis.config_set("maxmemory", 0)
    assert frame.refusing is not None and "OOM" in frame.refusing
    shown = Console(width=120, record=True, file=io.StringIO())
    shown.print(render([frame]))
    assert "Redis refuses writes, at maxmemory" in shown.export_text()


def test_webhook_deliveries_pending_and_given_up_are_shown() -> None:
    from dataclasses import replace

    from contract.outbox import KnownEndpoint, OutboxEvent, OutboxState

    waiting = OutboxEvent("evt_1", "batch.completed", "b1", 3, "http://hooks:8080: HTTP 503",
                          int((T0 + 40) * 1000))  # fmt: skip
    endpoint = KnownEndpoint("k1", "", "http://hooks:8080", int(T0 * 1000))
    outbox = OutboxState(pending=2, failed=1, deliverers=1, next_pending=[waiting],
                         last_failed=[], endpoints=[endpoint])  # fmt: skip
    shown = text_of(render([replace(snapshot(), outbox=outbox)]))
    assert "webhooks: 1 endpoint; 2 pending (the next in 40s, 3 failed: http://hooks:8080: " \
           "HTTP 503), 1 given up" in shown  # fmt: skip
    nobody = replace(outbox, deliverers=0, failed=0, next_pending=[])
    assert "no worker delivers them" in text_of(render([replace(snapshot(), outbox=nobody)]))
    quiet = replace(outbox, pending=0, failed=0, next_pending=[])
    assert "webhooks: 1 endpoint; 0 pending" in text_of(render([replace(snapshot(), outbox=quiet)]))


def test_with_no_endpoint_configured_top_says_nothing_of_webhooks() -> None:
    from dataclasses import replace

    from contract.outbox import OutboxEvent, OutboxState

    # Events left from before (or written by an older version) with nobody to deliver them.
    left = OutboxEvent("evt_1", "batch.completed", "b1", 0, "", int(T0 * 1000))
    outbox = OutboxState(pending=2, failed=0, deliverers=0, next_pending=[left], last_failed=[])
    shown = text_of(render([replace(snapshot(), outbox=outbox)]))
    assert "webhooks" not in shown and "no worker delivers" not in shown


def test_a_failing_and_a_disabled_endpoint_stand_out_with_their_next_try() -> None:
    from dataclasses import replace

    from contract.outbox import KnownEndpoint, OutboxState

    ms = int(T0 * 1000)
    failing = KnownEndpoint("k1", "", "https://hooks.example", ms, failing_since_ms=ms - 90_000,
                            last_error="HTTP 503", pending=3, next_ms=ms + 40_000)  # fmt: skip
    gone = KnownEndpoint("k2", "team-a", "https://old.example", ms, disabled_ms=ms - 60_000,
                         disabled_why="HTTP 410 Gone")  # fmt: skip
    fine = KnownEndpoint("k3", "", "https://fine.example", ms)
    outbox = OutboxState(pending=3, failed=0, deliverers=1, next_pending=[], last_failed=[],
                         endpoints=[failing, gone, fine])  # fmt: skip
    shown = text_of(render([replace(snapshot(), outbox=outbox)]))
    assert "https://hooks.example: failing for 1m 30s (HTTP 503), 3 waiting, the next try " \
           "in 40s" in shown  # fmt: skip
    assert "team-a: https://old.example: disabled 1m 00s ago (HTTP 410 Gone)" in shown
    assert "fine.example" not in shown


def test_top_once_reads_once_and_does_not_wait(env, redis_server, monkeypatch) -> None:
    seed_batch(redis_server, "busy", 500, succeeded=140, failed=10, running=40)
    reads = []
    real = top_module.read_snapshot

    async def counted(queue, **options):  # type: ignore[no-untyped-def]
        reads.append(time.monotonic())
        return await real(queue, **options)

    monkeypatch.setattr(top_module, "read_snapshot", counted)
    started = time.monotonic()
    result = CliRunner().invoke(top, ["--once"], catch_exceptions=False)
    assert result.exit_code == 0 and len(reads) == 1, result.output
    assert time.monotonic() - started < 0.9  # no second reading a second later
    assert "rates since each batch started" in result.stdout


# -- the sites of a fleet of several -------------------------------------------------------

SITES = "es=https://chatgpt.es,uk=https://chatgpt.co.uk"


@pytest.fixture
def no_info(monkeypatch: pytest.MonkeyPatch) -> None:
    """fakeredis has no INFO: Redis is taken to accept writes (``writes_refused`` is tested
    on a real server above)."""

    async def accepts(redis: object) -> None:
        return None

    monkeypatch.setattr(top_module, "writes_refused", accepts)


async def seed_two_sites(client) -> None:  # type: ignore[no-untyped-def]
    """As the lease scripts and the workers leave them: es up, 5 requests in flight through
    its identities, 12 answers this minute; uk down 40 s more after UpstreamHiccup (its
    third rest), 3 answers before it went down."""
    from contract.throughput import ThroughputTally

    seconds, micros = await client.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    inflight = {"es/10.0.0.1:3128": 3, "es/10.0.0.2:3128": 2, "uk/10.0.0.1:3128": 0}
    await client.zadd(keys.identities_known(), {name: now_ms for name in inflight})
    await client.hset(keys.identity_field("cap"), mapping=dict.fromkeys(inflight, 4))
    await client.hset(keys.identity_field("inflight"), mapping=inflight)
    await client.hset(keys.site_health(), mapping={
        "es:ok": now_ms, "uk:down_until": now_ms + 40_000, "uk:reason": "UpstreamHiccup",
        "uk:probe": 1, "uk:downs": 3, "uk:strikes": 0})  # fmt: skip
    tally = ThroughputTally()
    for site, answers in (("es", 12), ("uk", 3)):
        for _ in range(answers):
            tally.count("succeeded", None, site=site)
    await tally.flush(client)


async def test_a_fleet_of_several_sites_shows_each_ones_state_in_one_more_round_trip(
    fake_redis, no_info, monkeypatch
) -> None:
    await seed_two_sites(fake_redis)
    one = BatchQueue(fake_redis, QueueSettings(queue_name=QUEUE))
    two = BatchQueue(fake_redis, QueueSettings(queue_name=QUEUE, sites=SITES))
    await enqueue_answered(two, "b_both", {"es": 7, "uk": 5})
    trips = RoundTrips(monkeypatch)
    alone = await read_snapshot(one)
    one_site, trips.count = trips.count, 0
    frame = await read_snapshot(two)
    assert trips.count == one_site + 1  # the sites' health: one pipeline
    assert alone.sites == [] and [site.state for site in frame.sites] == ["up", "down"]

    shown = text_of(render([frame]), width=140)
    assert "sites: 1 of 2 up, 1 down" in shown
    assert "  es up, 12 answers in the last minute, 5 in flight" in shown
    assert re.search(r"  uk down for (39|40)s more after UpstreamHiccup, 3 answers in the last "
                     r"minute, 0 in flight", shown), shown  # fmt: skip
    row = next(line for line in shown.splitlines() if line.strip().startswith("b_both"))
    assert row.rstrip().endswith("es 7, uk 5")
    assert "by site" in shown.splitlines()[shown.splitlines().index(row) - 2]
    narrow = text_of(render([frame]), width=80)  # no room: the other columns stay whole
    assert "by site" not in narrow and "12/12" in narrow


async def test_a_fleet_of_one_site_shows_no_sites(fake_redis, no_info) -> None:
    await seed_two_sites(fake_redis)  # left by a fleet of several, say: not this one's
    queue = BatchQueue(fake_redis, QueueSettings(queue_name=QUEUE))
    await enqueue_answered(queue, "b_one", {"es": 12})
    frame = await read_snapshot(queue)
    assert frame.sites == []
    shown = text_of(render([frame]), width=140)
    assert "sites:" not in shown and "answers in the last minute" not in shown
    assert "by site" not in shown and "es 12" not in shown  # one site answered: no column


def test_a_batch_answered_by_one_site_of_several_adds_no_column() -> None:
    from producer.site_health import SiteHealth

    both = status("b_both", total=10, succeeded=10).model_copy(
        update={"answered_by_site": {"es": 10}}
    )
    sites = [SiteHealth("es", "up", answered_last_minute=10),
             SiteHealth("uk", "probing", reason="Blocked")]  # fmt: skip
    shown = text_of(render([dataclasses.replace(snapshot(batches=[both]), sites=sites)]), 140)
    assert "by site" not in shown
    assert "sites: 1 of 2 up, 1 coming back" in shown
    assert "uk coming back one request at a time (down after Blocked)" in shown


async def enqueue_answered(queue: BatchQueue, batch_id: str, by_site: dict[str, int]) -> None:
    """A batch of as many prompts as ``by_site`` counts, each answered by its site."""
    from contract.models import JobResult

    sites = [site for site, count in by_site.items() for _ in range(count)]
    lines = [PromptLine(n + 1, f"q{n}", (Message(role="user", content="hi"),), "gpt-4o-mini")
             for n in range(len(sites))]  # fmt: skip
    await queue.enqueue(lines, batch_id=batch_id)
    created = await queue.store.created_at(batch_id)
    requests = await queue.store.requests(batch_id, range(len(sites)), created)
    await queue.store.ledger.save_results([
        JobResult.for_request(request, status="succeeded", content="an answer", site=site)
        for request, site in zip(requests, sites, strict=True)
    ])  # fmt: skip
