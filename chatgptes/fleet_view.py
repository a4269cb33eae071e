"""What the fleet is doing, in the terminal: the live workers (and, soon, ``top``).

Reads only the registries the workers and producers keep (``producer.fleet``,
``BatchQueue.batches``): nothing here scans the keyspace.
"""

from __future__ import annotations

import socket
from dataclasses import asdict

import click

from chatgptes.running import EXIT_ERROR, echo_json, fail, printable, run_with_queue


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
            fail(f"no live worker on {host} (none reported within 3 heartbeats)", EXIT_ERROR)
        click.echo(f"ok: {len(alive)} live worker(s) on {host}")
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
        click.echo(
            f"{printable(w.host)[:20]:<20} {w.pid:>7} {printable(w.queue)[:18]:<18} "
            f"{w.in_flight:>9} {w.waiting:>7} {w.prompts_held:>5} {w.succeeded:>8} "
            f"{w.failed:>6} {w.seen_ago:>5.0f}s  {state}"
        )
