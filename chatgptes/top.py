"""``chatgptes top``: the fleet live in the terminal: batches, workers, identities, errors,
and in a fleet of several sites, each site's state.

A frame is one ``FleetSnapshot``, read by ``read_snapshot`` from the registries the
workers and producers keep, never a keyspace scan, in a fixed number of round trips
whatever the fleet's size: the newest batches (registry, one pipeline), their count,
the workers (registry, clock, one pipeline), every identity's state (registry, clock,
one pipeline of one HMGET per attribute), the fleet's counters (one HGETALL),
whether Redis refuses writes (INFO), the webhook outbox (one pipeline, and one more
when it holds events) and, with several sites, their health (one pipeline:
``producer.site_health``).
``render`` turns the snapshots read so far into a rich renderable and reads nothing
else, so it is tested with plain data.

A batch's rate is taken over the frames of the last ``RATE_WINDOW`` seconds, the
errors over the last ``ERROR_WINDOW``: workers add their counts up at every heartbeat,
so a shorter window would flicker between nothing and a burst. With one reading (the
first frame, ``--once``) a batch's rate is its average since it started, and errors
are counted in all. ``--once --interval S`` takes two readings S apart instead, for
the rates of that interval (it then takes S longer).
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import click
from rich import box
from rich.columns import Columns
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from chatgptes.fleet_view import duration
from chatgptes.running import log_warnings_to_stderr, printable, run_with_queue
from contract.models import BatchStatus
from contract.outbox import KnownEndpoint, OutboxState, read_outbox
from contract.redis_errors import explain
from contract.retrying import TRANSIENT
from producer.api import BatchQueue
from producer.fleet import (
    IdentityHealth,
    PoolCensus,
    WorkerInfo,
    batch_count,
    policy_events,
    pool_census,
    workers,
    writes_refused,
)
from producer.pace import eta_seconds, rate_between
from producer.site_health import SiteHealth, site_health

DEFAULT_INTERVAL = 1.0  # seconds between frames
BATCH_WINDOW = 200  # the newest batches looked at for active ones
SHOWN_IDENTITIES = 10
SHOWN_WORKERS = 20
SHOWN_ERRORS = 10
RATE_WINDOW = 10.0  # seconds
ERROR_WINDOW = 60.0  # seconds
PIPE_WIDTH = 120  # columns when the output is not a terminal (and COLUMNS is unset)
STATE_STYLES = {"ready": "green", "full": "yellow", "probing": "cyan", "cooling": "red"}
SITE_STYLES = {"up": "", "probing": "cyan", "down": "red"}
BY_SITE_WIDTH = 24  # the batches' "by site" column, at most
UNBOUNDED = 10_000  # columns: a width to measure a table's natural one in


@dataclass(frozen=True)
class FleetSnapshot:
    """What one frame shows, as read at ``at`` (epoch seconds)."""

    at: float
    batches: list[BatchStatus]  # the active ones first, then the ended ones; newest first
    batches_known: int  # in the registry
    workers: list[WorkerInfo]
    pool: PoolCensus
    events: dict[str, int]  # the fleet's counters: error:<Type>, waited_for_capacity[:<why>]
    read_seconds: float = 0.0
    outbox: OutboxState | None = None  # the webhook events not delivered yet, and given up
    refusing: str | None = None  # why Redis refuses writes now, if it does
    sites: list[SiteHealth] = field(default_factory=list)  # with several sites only


Reader = Callable[[], Awaitable[FleetSnapshot]]
Runner = Callable[[Callable[[BatchQueue], Awaitable[None]]], Any]


# -- reading -------------------------------------------------------------------------


async def read_snapshot(queue: BatchQueue, *, limit: int = 20) -> FleetSnapshot:
    """One frame's data: eleven round trips (twelve with several sites), whatever the number
    of identities or batches."""
    started, at = time.perf_counter(), time.time()
    recent = await queue.batches(max(limit, BATCH_WINDOW))
    known = await batch_count(queue.redis)
    found = await workers(queue.redis)
    pool = await pool_census(queue.redis, shown=SHOWN_IDENTITIES)
    events = await policy_events(queue.redis)
    outbox = await read_outbox(queue.redis, int(at * 1000), shown=1)
    refusing = await writes_refused(queue.redis)
    names = queue.settings.site_names()
    sites = await site_health(queue.redis, names, profiles=False) if len(names) > 1 else []
    return FleetSnapshot(
        at=at,
        batches=active_first(recent)[:limit],
        batches_known=known,
        workers=found,
        pool=pool,
        events=events,
        read_seconds=time.perf_counter() - started,
        outbox=outbox,
        refusing=refusing,
        sites=sites,
    )


def active_first(recent: Sequence[BatchStatus]) -> list[BatchStatus]:
    """The batches still running, then the ended ones, each newest first as given."""
    return [b for b in recent if not b.done] + [b for b in recent if b.done]


async def two_readings(read: Reader, interval: float) -> list[FleetSnapshot]:
    """What ``--once`` shows: two readings ``interval`` apart, for the rates."""
    first = await read()
    await asyncio.sleep(interval)
    return [first, await read()]


async def watch(read: Reader, show: Callable[[RenderableType], Any], *, interval: float) -> None:
    """Reads and shows a frame every ``interval`` seconds, until cancelled.

    Redis going away does not end the view: the last frame stays, with a line saying so.
    """
    frames: list[FleetSnapshot] = []
    while True:
        try:
            frames = recent_frames([*frames, await read()])
            view = render(frames, interval=interval)
        except TRANSIENT as error:
            view = unreachable(frames, error, interval)
        show(view)
        await asyncio.sleep(interval)


def live(
    console: Console,
    read: Callable[[BatchQueue], Awaitable[FleetSnapshot]],
    *,
    interval: float,
    run: Runner = run_with_queue,
) -> None:
    """Frames in place on a terminal (one after another elsewhere) until Ctrl-C, which
    ends the view quietly, the last frame left on screen."""
    try:
        if console.is_terminal:
            with Live(console=console, auto_refresh=False) as screen:

                def show(view: RenderableType) -> None:
                    screen.update(view, refresh=True)

                run(lambda queue: watch(lambda: read(queue), show, interval=interval))
        else:  # a pipe or a file: frame after frame, like top -b
            run(lambda queue: watch(lambda: read(queue), console.print, interval=interval))
    except KeyboardInterrupt:
        pass


# -- windows and rates ---------------------------------------------------------------


def recent_frames(frames: Sequence[FleetSnapshot]) -> list[FleetSnapshot]:
    """The frames a render still needs: those of the last ``ERROR_WINDOW``, at least two."""
    *earlier, now = frames
    kept = [frame for frame in earlier if now.at - frame.at <= ERROR_WINDOW]
    if not kept and earlier:
        kept = [earlier[-1]]
    return [*kept, now]


def base(frames: Sequence[FleetSnapshot], window: float) -> FleetSnapshot | None:
    """The oldest earlier frame within ``window`` seconds of the last (else the one before)."""
    *earlier, now = frames
    within = [frame for frame in earlier if now.at - frame.at <= window]
    if within:
        return within[0]
    return earlier[-1] if earlier else None


def batch_rate(batch: BatchStatus, now: float, before: FleetSnapshot | None) -> float | None:
    """Prompts settled per second since ``before``; without an earlier reading, since the
    batch started (None if it has not, or finished nothing yet)."""
    if before is None:
        return average_rate(batch, now)
    if now <= before.at:
        return None
    old = next((b for b in before.batches if b.batch_id == batch.batch_id), None)
    if old is None:
        return None
    return rate_between((before.at, old.finished), (now, batch.finished))


def average_rate(batch: BatchStatus, now: float) -> float | None:
    """Prompts settled per second since the batch started, or None before any settled."""
    started = batch.in_progress_at or batch.created_at
    if started is None or not batch.finished:
        return None
    elapsed = now - started.timestamp()
    return batch.finished / elapsed if elapsed > 0 else None


def span(seconds: float) -> str:
    """A reading window: 1.0s (``--once``), 10s, 60s, then 2m 30s and the like."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    return f"{seconds:.0f}s" if seconds < 120 else duration(seconds)


def eta(batch: BatchStatus, rate: float | None) -> str:
    if batch.done:
        return ""
    left = eta_seconds(batch.total - batch.finished, rate)
    return "—" if left is None else duration(left)


def counter_deltas(
    now: dict[str, int], before: dict[str, int] | None, prefix: str
) -> list[tuple[str, int | None, int]]:
    """(name less the prefix, increase since ``before`` or None, total) of each counter,
    the fastest-growing first. A counter lower than before was reset (its hash expired)."""
    found = []
    for counter, total in now.items():
        if not counter.startswith(prefix) or counter == prefix:
            continue
        delta = None
        if before is not None:
            old = before.get(counter, 0)
            delta = total - old if total >= old else total
        found.append((counter.removeprefix(prefix), delta, total))
    return sorted(found, key=lambda row: (-(row[1] or 0), -row[2], row[0]))


# -- rendering -----------------------------------------------------------------------


def render(frames: Sequence[FleetSnapshot], *, interval: float | None = None) -> RenderableType:
    """The frame for the last snapshot; earlier ones (oldest first) give the rates."""
    now = frames[-1]
    return Group(
        _header(now, interval),
        pool_summary(now.pool),  # near the top: a short terminal still shows it
        *sites_summary(now.sites),
        *webhooks_summary(now.outbox, now.at),
        Text(""),
        _batches(now, base(frames, RATE_WINDOW)),
        # Side by side where the terminal is wide enough, one under the other elsewhere.
        Columns(
            [_workers(now.workers), _errors(now, base(frames, ERROR_WINDOW))],
            padding=(0, 2),
        ),
        _identities(now.pool),
    )


def unreachable(
    frames: Sequence[FleetSnapshot], error: BaseException, interval: float
) -> RenderableType:
    line = Text(f"Redis unreachable ({explain(error).detail}); trying again", style="bold red")
    if not frames:
        return line
    read_at = datetime.fromtimestamp(frames[-1].at).strftime("%H:%M:%S")
    line.append(f"; the frame below was read at {read_at}")
    return Group(line, render(frames, interval=interval))


def _table() -> Table:
    return Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)


def _section(title: Text, body: RenderableType) -> Group:
    """A title over the whole width (a table's own title would wrap at the table's)."""
    return Group(_bold_label(title), body)


def _bold_label(text: Text) -> Text:
    """``label:`` in bold, the rest as it is."""
    text.stylize("bold", 0, text.plain.find(":") + 1)
    return text


def _header(now: FleetSnapshot, interval: float | None) -> Text:
    clock = datetime.fromtimestamp(now.at).strftime("%H:%M:%S")
    every = f"every {interval:g}s, Ctrl-C quits" if interval else "one frame"
    header = Text.assemble(
        ("chatgptes top", "bold"),
        f"  {clock}  {every}  (read in {now.read_seconds * 1000:.0f} ms)",
    )
    if now.refusing:
        header.append(
            f"\nRedis refuses writes, {now.refusing}: workers keep their answers and wait",
            style="bold red",
        )
    return header


def _batches(now: FleetSnapshot, before: FleetSnapshot | None) -> RenderableType:
    active = sum(1 for b in now.batches if not b.done)
    title = Text(f"batches: {active} active, {len(now.batches) - active} ended shown")
    title.append(f" ({now.batches_known:,} in the registry", style="dim")
    if now.batches_known > BATCH_WINDOW:
        title.append(f"; the newest {BATCH_WINDOW} looked at", style="dim")
    title.append(")", style="dim")
    if before is not None:
        title.append(f"; rates over the last {span(now.at - before.at)}", style="dim")
    else:
        title.append("; rates since each batch started", style="dim")
    if not now.batches:
        return _section(title, Text("  no batches (none enqueued, or their records expired)\n"))
    plain = _batch_table(now, before, by_site=False)
    if not any(len(b.answered_by_site) > 1 for b in now.batches):
        return _section(title, plain)
    return _section(title, FirstThatFits(_batch_table(now, before, by_site=True), plain))


def _batch_table(now: FleetSnapshot, before: FleetSnapshot | None, *, by_site: bool) -> Table:
    table = _table()
    table.add_column("batch", max_width=28, no_wrap=True, overflow="ellipsis")
    table.add_column("state")
    for name in ("queued", "running", "waiting", "done/total", "failed", "rate/s", "ETA"):
        table.add_column(name, justify="right", no_wrap=True)
    if by_site:
        table.add_column("by site", max_width=BY_SITE_WIDTH, no_wrap=True, overflow="ellipsis")
    for b in now.batches:
        rate = batch_rate(b, now.at, before)
        table.add_row(
            Text(printable(b.batch_id)),
            Text(b.state, style="dim" if b.done else "bold"),
            f"{b.queued:,}",
            f"{b.in_progress:,}",
            Text(f"{b.waiting:,}", style="yellow" if b.waiting else ""),
            f"{b.finished:,}/{b.total:,}",
            Text(f"{b.failed:,}", style="red" if b.failed else ""),
            "" if b.done else "—" if rate is None else f"{rate:,.1f}",
            eta(b, rate),
            *([answered_by_site(b)] if by_site else []),
        )
    return table


@dataclass(frozen=True)
class FirstThatFits:
    """``wide`` where the width given holds it whole, else ``narrow``: a column that is
    only worth showing when no other column is cut short for it."""

    wide: RenderableType
    narrow: RenderableType

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        natural = Measurement.get(console, options.update_width(UNBOUNDED), self.wide).maximum
        yield self.wide if natural <= options.max_width else self.narrow


def answered_by_site(batch: BatchStatus) -> Text:
    """``es 312, uk 288``: the answers of a batch answered by more than one site."""
    if len(batch.answered_by_site) < 2:
        return Text("")
    counts = batch.answered_by_site.items()
    return Text(", ".join(f"{printable(name)} {count:,}" for name, count in counts), style="dim")


def _worker_state(w: WorkerInfo) -> Text:
    if w.stopping:
        return Text("stopping", style="yellow")
    if w.alive and w.chores_failing:
        return Text(f"chores failing: {printable(w.chores_failing)}", style="yellow")
    return Text("alive", style="green") if w.alive else Text("silent", style="red")


def _workers(found: Sequence[WorkerInfo]) -> RenderableType:
    alive = sum(1 for w in found if w.alive)
    title = Text(f"workers: {alive} alive")
    if len(found) > alive:
        title.append(f", {len(found) - alive} silent (no report within 3 heartbeats)")
    if not alive:
        title.append("; nothing runs", style="bold red")
    if not found:
        return _section(title, Text("  no workers have reported\n"))
    table = _table()
    table.add_column("state")
    table.add_column("host", max_width=28, no_wrap=True, overflow="ellipsis")
    for name in ("pid", "in flight", "waiting", "held", "done", "seen"):
        table.add_column(name, justify="right", no_wrap=True)
    shown = sorted(found, key=lambda w: (not w.alive, w.host, w.pid))
    for w in shown[:SHOWN_WORKERS]:
        table.add_row(
            _worker_state(w),
            Text(printable(w.host)),
            str(w.pid),
            f"{w.in_flight:,}",
            f"{w.waiting:,}",
            f"{w.prompts_held:,}",
            f"{w.succeeded + w.failed + w.cancelled:,}",
            f"{duration(w.seen_ago)} ago",
        )
    if len(shown) > SHOWN_WORKERS:
        table.add_row("", Text(f"… and {len(shown) - SHOWN_WORKERS} more", style="dim"))
    return _section(title, table)


def pool_summary(pool: PoolCensus) -> Text:
    """``1,000 identities: 980 ready, 12 cooling, …; 180/4,000 in flight``, all of them."""
    if not pool.total:
        return _bold_label(Text("identities: none announced yet"))
    summary = _bold_label(Text(f"{pool.total:,} identities: "))
    parts = [(state, count) for state, count in pool.states.items() if count or state == "ready"]
    for n, (state, count) in enumerate(parts):
        summary.append(", " if n else "")
        summary.append(f"{count:,} {state}", style=STATE_STYLES.get(state, ""))
    summary.append(f"; {pool.in_flight:,}/{pool.capacity:,} in flight")
    return summary


def sites_summary(sites: Sequence[SiteHealth]) -> list[Text]:
    """``sites: 1 of 2 down``, then a line each (``SiteHealth.line``); nothing for a fleet
    of one site (it has nowhere else to send its prompts, and keeps no site health)."""
    if len(sites) < 2:
        return []
    title = _bold_label(Text("sites: "))
    down = sum(1 for site in sites if site.state == "down")
    coming = sum(1 for site in sites if site.state == "probing")
    title.append(f"{len(sites) - down - coming} of {len(sites)} up")
    if down:
        title.append(f", {down} down", style="red")
    if coming:
        title.append(f", {coming} coming back", style="cyan")
    lines = [Text(f"  {printable(site.line)}", style=SITE_STYLES[site.state]) for site in sites]
    return [title, *lines]


def webhooks_summary(outbox: OutboxState | None, now: float) -> list[Text]:
    """``webhooks: 2 endpoints; 2 pending (the next in 4s, 3 failed: …), 1 given up``, then
    a line per endpoint failing, disabled or dropping events; nothing when no worker
    delivers to any endpoint (no event is written then)."""
    if outbox is None or not outbox.configured:
        return []
    count = len(outbox.endpoints)
    line = _bold_label(Text("webhooks: "))
    line.append(f"{count} endpoint{'' if count == 1 else 's'}; ")
    line.append(f"{outbox.pending:,} pending", style="yellow" if outbox.pending else "")
    if outbox.next_pending:
        event = outbox.next_pending[0]
        due = max(0.0, event.at_ms / 1000 - now)
        line.append(f" (the next {'now' if due < 1 else 'in ' + duration(due)}")
        if event.attempts:
            line.append(f", {event.attempts} failed: {printable(event.last_error)}")
        line.append(")")
    if outbox.failed:
        line.append(", ")
        line.append(f"{outbox.failed:,} given up", style="red")
    if outbox.pending and not outbox.deliverers:
        line.append("; no worker delivers them now (none with CHATGPTES_WEBHOOK_URLS is "
                    "running)", style="bold red")  # fmt: skip
    return [line, *(_endpoint_line(e, now) for e in outbox.endpoints if _troubled(e))]


def _troubled(endpoint: KnownEndpoint) -> bool:
    return bool(endpoint.disabled or endpoint.failing_since_ms or endpoint.dropped)


def _endpoint_line(endpoint: KnownEndpoint, now: float) -> Text:
    name = (f"{endpoint.project}: " if endpoint.project else "") + endpoint.label
    line = Text(f"  {printable(name)}: ")
    if endpoint.disabled:
        line.append(f"disabled {_ago(endpoint.disabled_ms, now)} "
                    f"({printable(endpoint.disabled_why)}); nothing more is sent there "
                    "until its URL changes", style="red")  # fmt: skip
        return line
    if endpoint.failing_since_ms:
        line.append(f"failing for {duration(now - endpoint.failing_since_ms / 1000)} "
                    f"({printable(endpoint.last_error)})", style="red")  # fmt: skip
        if endpoint.pending:
            due = max(0.0, endpoint.next_ms / 1000 - now)
            line.append(f", {endpoint.pending:,} waiting, the next try "
                        f"{'now' if due < 1 else 'in ' + duration(due)}")  # fmt: skip
    if endpoint.dropped:
        line.append(f"{'; ' if endpoint.failing_since_ms else ''}{endpoint.dropped:,} events "
                    "dropped: its queue was full", style="red")  # fmt: skip
    return line


def _ago(at_ms: int, now: float) -> str:
    return f"{duration(now - at_ms / 1000)} ago"


def _identities(pool: PoolCensus) -> RenderableType:
    if not pool.total:
        return Text("")
    title = Text(f"identities: the worst {len(pool.worst)} of {pool.total:,}")
    table = _table()
    table.add_column("identity", max_width=32, no_wrap=True, overflow="ellipsis")
    table.add_column("state")
    table.add_column("in flight", justify="right")
    table.add_column("cooling", justify="right")
    table.add_column("why", max_width=24, no_wrap=True, overflow="ellipsis")
    for name in ("ok", "latency", "penalty"):
        table.add_column(name, justify="right", no_wrap=True)
    for identity in pool.worst:
        table.add_row(*_identity_row(identity))
    return _section(title, table)


def _identity_row(identity: IdentityHealth) -> tuple[Text | str, ...]:
    cooling = identity.cooling_for > 0
    rate = identity.success_rate
    return (
        Text(printable(identity.name)),
        Text(identity.state, style=STATE_STYLES.get(identity.state, "")),
        f"{identity.inflight}/{identity.cap}",
        duration(identity.cooling_for) if cooling else "",
        Text(printable(identity.reason) if cooling else ""),
        "—" if rate is None else f"{rate:.0%}",
        f"{identity.latency_ms:,} ms" if identity.latency_ms else "—",
        f"{identity.penalty:.2f}",
    )


def _errors(now: FleetSnapshot, before: FleetSnapshot | None) -> RenderableType:
    """Upstream errors by type, then long waits for capacity by reason: over the window
    and in all (since the counters' hash was made; it expires when nothing is counted)."""
    old = before.events if before else None
    errors = counter_deltas(now.events, old, "error:")
    waits = counter_deltas(now.events, old, "waited_for_capacity:")
    if not errors and not waits:
        return _section(Text("errors: none counted"), Text(""))
    table = _table()
    table.add_column("error or wait", max_width=28, no_wrap=True, overflow="ellipsis")
    table.add_column(f"last {span(now.at - before.at)}" if before else "recent", justify="right")
    table.add_column("total", justify="right")
    for rows, label in ((errors, "{}"), (waits, "waited: {}")):
        if rows and table.row_count:
            table.add_section()
        for name, delta, total in rows[:SHOWN_ERRORS]:
            table.add_row(
                Text(label.format(printable(name))),
                Text("—" if delta is None else f"{delta:,}", style="red" if delta else ""),
                f"{total:,}",
            )
        if len(rows) > SHOWN_ERRORS:
            table.add_row(Text(f"… and {len(rows) - SHOWN_ERRORS} more", style="dim"))
    return _section(Text("errors and waits:"), table)


# -- the command ---------------------------------------------------------------------


def console_for_output() -> Console:
    """Colours and in-place frames on a terminal; plain text, 120 columns, elsewhere."""
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


@click.command()
@click.option("--once", is_flag=True, help="Print one frame and exit.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    help="Seconds between frames (default 1). With --once: two readings this far apart, "
    "for current rates (else rates since each batch started).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Batches shown at most: the active ones first.",
)
def top(once: bool, interval: float | None, limit: int) -> None:
    """Watch the fleet live: batches (rates, ETAs), workers, identities, errors."""
    console = console_for_output()

    def read(queue: BatchQueue) -> Awaitable[FleetSnapshot]:
        return read_snapshot(queue, limit=limit)

    if once and interval is None:
        frames = [run_with_queue(read)]
    elif once:
        frames = run_with_queue(lambda queue: two_readings(lambda: read(queue), interval))
    else:
        gc.enable()  # a long run (the group turned it off for a quick one)
        log_warnings_to_stderr()  # Redis away is waited out, and said once per outage
        live(console, read, interval=interval or DEFAULT_INTERVAL)
        return
    console.print(render(frames))
