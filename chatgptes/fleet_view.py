"""What the fleet is doing, in the terminal: the recent batches and the live workers
(``chatgptes.top`` shows both, and the identities, live).

Reads only the registries the workers and producers keep (``producer.fleet``,
``BatchQueue.batches``): nothing here scans the keyspace.
"""

from __future__ import annotations

import socket
from dataclasses import asdict
from datetime import UTC, datetime

import click

from chatgptes.running import EXIT_ERROR, counted, echo_json, fail, printable, run_with_queue
from contract.models import BatchStatus
from producer.fleet import duration


def age(status: BatchStatus, now: datetime) -> str:
    """How long ago the batch was created, or ? when its record does not say."""
    if status.created_at is None:
        return "?"
    return duration((now - status.created_at).total_seconds())


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the batches as JSON.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="At most this many."
)
def batches(as_json: bool, limit: int) -> None:
    """List the recent batches, newest first: state and counts."""
    found = run_with_queue(lambda queue: queue.batches(limit))
    if as_json:  # the shape of `status --json`, less the fleet's part
        echo_json([status.model_dump(mode="json") for status in found])
        return
    if not found:
        click.echo("no batches (none enqueued, or their records expired)")
        return
    now = datetime.now(UTC)
    width = max(8, *(len(printable(b.batch_id)) for b in found))
    click.echo(
        f"{'batch':<{width}} {'state':<11} {'total':>7} {'succeeded':>9} {'failed':>7} "
        f"{'cancelled':>9} {'in progress':>11} {'waiting':>7} {'queued':>7} {'created':>10}  done"
    )
    for b in found:
        click.echo(
            f"{printable(b.batch_id):<{width}} {b.state:<11} {b.total:>7} {b.succeeded:>9} "
            f"{b.failed:>7} {b.cancelled:>9} {b.in_progress:>11} {b.waiting:>7} {b.queued:>7} "
            f"{age(b, now) + ' ago':>10}  {'yes' if b.done else 'no'}"
        )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the workers as JSON.")
@click.option(
    "--check",
    is_flag=True,
    help="Exit 0 if a worker on this host (or --host) reported within 3 heartbeats, else 1.",
)
@click.option(
    "--host", default=None, help="With --check: the host to look for (default: this one)."
)
def workers(as_json: bool, check: bool, host: str | None) -> None:
    """List the live workers: host, pid, queue, in flight, jobs done, last seen."""
    from producer.fleet import workers as read_workers

    found = run_with_queue(lambda queue: read_workers(queue.redis))
    if check:
        host = host or socket.gethostname()
        alive = [w for w in found if w.alive and w.host == host]
        if not alive:
            down = sorted({w.went_down for w in found if w.went_down and w.host == host})
            why = "; ".join(printable(reason) for reason in down)
            fail(
                f"no live worker on {host} "
                + (f"(went down: {why})" if why else "(none reported within 3 heartbeats)"),
                EXIT_ERROR,
            )
        click.echo(f"ok: {counted(len(alive), 'live worker')} on {host}")
        for w in alive:
            if w.chores_failing:  # it serves prompts; a chore of it keeps failing
                click.echo(
                    f"warning: worker {w.pid}: chores failing: {printable(w.chores_failing)}",
                    err=True,
                )
        return
    if as_json:
        echo_json([{**asdict(w), "alive": w.alive} for w in found])
        return
    if not found:
        click.echo("no workers have reported")
        return
    click.echo(
        f"{'host':<20} {'pid':>7} {'queue':<18} {'in flight':>9} {'waiting':>7} "
        f"{'held':>5} {'done':>8} {'failed':>6} {'seen':>6}  state"
    )
    for w in found:
        state = "stopping" if w.stopping else "alive" if w.alive else "silent"
        state = "down" if w.went_down else state
        if w.chores_failing and w.alive:
            state = f"chores failing: {printable(w.chores_failing)}"
        click.echo(
            f"{printable(w.host)[:20]:<20} {w.pid:>7} {printable(w.queue)[:18]:<18} "
            f"{w.in_flight:>9} {w.waiting:>7} {w.prompts_held:>5} {w.succeeded:>8} "
            f"{w.failed:>6} {w.seen_ago:>5.0f}s  {state}"
        )
