"""``chatgptes``: enqueue batch prompts, follow them, read results, run workers.

Exit codes: 0 success, 1 an operational error (Redis unreachable, no such batch),
2 bad input or usage (nothing was enqueued), 3 ``wait`` timed out.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict
from typing import Any, TypeVar

import click
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsError
from redis.exceptions import RedisError

from chatgptes.progress import enqueue_progress, wait_progress
from contract.config import QueueSettings
from contract.logs import configure_logging
from contract.models import BatchStatus, JobResult
from contract.redaction import redact_text, redact_url
from producer.api import BatchNotFound, BatchQueue, JobNotFound, JobState
from producer.formats import FORMATS
from producer.inputs import InputFileError
from simulator.cli import sim

T = TypeVar("T")
S = TypeVar("S", bound=BaseSettings)
EXIT_ERROR, EXIT_BAD_INPUT, EXIT_TIMEOUT = 1, 2, 3
SHOWN_IDENTITIES = 10
# CHATGPTES_* variables that are not settings but are read on purpose elsewhere.
NOT_SETTINGS = {"CHATGPTES_TEST_REDIS_URL"}


def load_settings(cls: type[S]) -> S:
    """The settings from the environment, or a clear exit naming each bad variable."""
    try:
        return cls()
    except ValidationError as error:
        problems = "; ".join(
            (f"CHATGPTES_{'_'.join(map(str, e['loc'])).upper()}: " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ")
            for e in error.errors()
        )
        _fail(f"bad settings: {redact_text(problems)}", EXIT_BAD_INPUT)
    except SettingsError as error:  # a value that is not even JSON, before validation
        field = str(error).split('"')[1] if '"' in str(error) else "a setting"
        _fail(f"bad settings: CHATGPTES_{field.upper()}: not valid JSON", EXIT_BAD_INPUT)


def warn_unknown_settings(known: Iterable[str]) -> None:
    """A misspelled CHATGPTES_* variable is ignored by the settings: say so."""
    names = {f"CHATGPTES_{name.upper()}" for name in known} | NOT_SETTINGS
    for variable in sorted(os.environ):
        if variable.startswith("CHATGPTES_") and variable not in names:
            close = difflib.get_close_matches(variable, names, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            click.echo(f"warning: {variable} is not a setting{hint}; it is ignored", err=True)


def _run(make: Callable[[BatchQueue], Awaitable[T]]) -> T:
    """Runs one async operation against Redis; known failures become clear exits."""
    settings = load_settings(QueueSettings)

    async def main() -> T:
        async with BatchQueue.connect(settings) as queue:
            return await make(queue)

    try:
        return asyncio.run(main())
    except (BatchNotFound, JobNotFound) as error:
        _fail(str(error), EXIT_ERROR)
    except (RedisError, ConnectionError) as error:
        _fail(redis_problem(settings.redis_url, error), EXIT_ERROR)


def redis_problem(url: str, error: BaseException) -> str:
    return f"Redis at {redact_url(url)}: {redact_text(str(error) or type(error).__name__)}"


def _fail(message: str, code: int) -> Any:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def printable(text: str) -> str:
    """Text safe for a terminal: control characters (newlines, escapes) shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Batch prompts for chatgpt.es through Redis and arq workers."""
    from worker.config import WorkerConfig

    warn_unknown_settings(WorkerConfig.model_fields)
    # Warnings (Redis away while waiting, say) go to stderr, never into a command's output.
    configure_logging("console", "WARNING")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--batch-id", help="Name the batch (1-64 of A-Z a-z 0-9 _ -); default random.")
@click.option("--model", help="Use this model for every line (gpt-4, gpt-4o, gpt-4o-mini).")
@click.option("--json", "as_json", is_flag=True, help='Print {"batch_id": ..., "jobs": N}.')
def enqueue(file: str, batch_id: str | None, model: str | None, as_json: bool) -> None:
    """Validate FILE (JSONL, or - for stdin) whole, then enqueue it as one batch."""

    async def go(queue: BatchQueue) -> Any:
        with enqueue_progress() as progress:
            return await queue.enqueue_file(file, batch_id=batch_id, model=model, progress=progress)

    try:
        batch = _run(go)
    except InputFileError as error:
        _fail(f"{error}\nnothing was enqueued", EXIT_BAD_INPUT)
    except (ValueError, OSError) as error:
        _fail(f"{error}; nothing was enqueued", EXIT_BAD_INPUT)
    if as_json:
        _echo_json({"batch_id": batch.batch_id, "jobs": batch.jobs})
    else:
        click.echo(batch.batch_id)
        click.echo(f"enqueued {batch.jobs} prompts", err=True)


@main.command()
@click.argument("batch_id")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(batch_id: str, as_json: bool) -> None:
    """Show a batch's progress and what the shared policy is doing."""
    from producer.fleet import fleet_health, policy_events

    async def go(queue: BatchQueue) -> Any:
        return (
            await queue.status(batch_id),
            await fleet_health(queue.redis),
            await policy_events(queue.redis),
        )

    batch, identities, events = _run(go)
    if as_json:
        _echo_json(
            {
                **batch.model_dump(),
                "identities": [asdict(identity) for identity in identities],
                "policy_events": events,
            }
        )
        return
    click.echo(
        f"batch {batch.batch_id} ({batch.state}): {batch.finished}/{batch.total} finished "
        f"({batch.succeeded} succeeded, {batch.failed} failed, {batch.cancelled} cancelled), "
        f"{batch.in_progress} in progress, "
        + (f"{batch.waiting} waiting for capacity, " if batch.waiting else "")
        + f"{batch.queued} queued"
        + (" — done" if batch.done else "")
    )
    cooling = sum(1 for identity in identities if identity.cooling_for > 0)
    click.echo(
        f"identities: {len(identities)} shown, {cooling} cooling, "
        f"{sum(i.inflight for i in identities)} requests in flight (worst first)"
    )
    for identity in identities[:SHOWN_IDENTITIES]:
        why = (
            f", cooling {identity.cooling_for:.0f}s after {identity.reason}"
            if identity.cooling_for > 0
            else ""
        )
        click.echo(
            f"  {identity.name}: {identity.state}, {identity.inflight} in flight, "
            f"penalty {identity.penalty:.2f}, {identity.successes} ok / "
            f"{identity.failures} failed{why}"
        )
    if events:
        click.echo("  policy: " + ", ".join(f"{name}={count}" for name, count in events.items()))


@main.command()
@click.argument("batch_id")
@click.option("--timeout", type=float, help="Give up after this many seconds (exit 3).")
def wait(batch_id: str, timeout: float | None) -> None:
    """Wait for a batch to finish, with a live progress bar."""

    async def go(queue: BatchQueue) -> Any:
        with wait_progress(batch_id) as on_status:
            return await queue.wait(batch_id, timeout=timeout, on_status=on_status)

    try:
        done = _run(go)
    except TimeoutError as error:
        _fail(str(error), EXIT_TIMEOUT)
    click.echo(
        f"batch {batch_id} done: {done.succeeded} succeeded, {done.failed} failed, "
        f"{done.cancelled} cancelled",
        err=True,
    )


@main.command()
@click.argument("batch_id")
@click.option(
    "-o",
    "--output",
    type=click.File("w", lazy=False),  # an unwritable path fails now, not after the reads
    default="-",
    help="Write here (default -).",
)
@click.option(
    "--format", "fmt", type=click.Choice(sorted(FORMATS)), default="native", show_default=True
)
@click.option("--follow", is_flag=True, help="Keep streaming results as jobs finish.")
def results(batch_id: str, output: Any, fmt: str, follow: bool) -> None:
    """Write the batch's results as JSONL, one line per job, in input order."""
    render = FORMATS[fmt]

    async def go(queue: BatchQueue) -> tuple[int, BatchStatus]:
        count = 0
        async for raw in queue.iter_raw_results(batch_id, follow=follow):
            # The stored line is the native one: written through without parsing.
            line = raw.decode() if fmt == "native" else render(JobResult.model_validate_json(raw))
            output.write(line + "\n")
            count += 1
            if follow:
                output.flush()
        return count, await queue.status(batch_id)

    count, status = _run(go)
    output.flush()
    if status.done:
        click.echo(f"{count} results written", err=True)
    else:
        click.echo(
            f"{count} results written; batch {batch_id} is not done yet ({status.state}, "
            f"{status.total - status.finished} of {status.total} to come: --follow waits for them)",
            err=True,
        )


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def job(job_id: str, as_json: bool) -> None:
    """Show one job: its result, or where it is."""

    found = _run(lambda queue: queue.job(job_id))
    data = asdict(found) if isinstance(found, JobState) else found.model_dump(mode="json")
    if as_json:
        _echo_json(data)
    else:
        for name, value in data.items():
            click.echo(f"{name}: {printable(str(value))}")


@main.command()
@click.argument("batch_id")
def cancel(batch_id: str) -> None:
    """Cancel a batch: nothing more of it is sent; requests already sent finish."""
    count = _run(lambda queue: queue.cancel(batch_id))
    click.echo(
        f"cancelled {count} queued prompts of {batch_id}; prompts a worker holds end "
        "cancelled there unless already sent"
    )


@main.command()
@click.argument("batch_id")
def retry(batch_id: str) -> None:
    """Enqueue a batch's failed jobs again."""
    count = _run(lambda queue: queue.retry(batch_id))
    click.echo(f"re-enqueued {count} failed jobs of {batch_id}")


@main.command()
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@click.option("--max-jobs", type=click.IntRange(min=1), help="Jobs this process runs at once.")
def worker(burst: bool, max_jobs: int | None) -> None:
    """Run an arq worker (also: arq worker.jobs.WorkerSettings)."""
    from worker.config import WorkerConfig
    from worker.jobs import run_worker
    from worker.proxies import ProxyConfigError

    settings = load_settings(WorkerConfig)
    try:
        run_worker(settings, burst=burst, max_jobs=max_jobs)
    except ProxyConfigError as error:
        _fail(str(error), EXIT_BAD_INPUT)
    except (RedisError, ConnectionError) as error:  # unreachable at start: no traceback loop
        _fail(redis_problem(settings.redis_url, error), EXIT_ERROR)


@main.command()
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

    found = _run(lambda queue: read_workers(queue.redis))
    if check:
        host = host or socket.gethostname()
        alive = [w for w in found if w.alive and w.host == host]
        if not alive:
            _fail(f"no live worker on {host} (none reported within 3 heartbeats)", EXIT_ERROR)
        click.echo(f"ok: {len(alive)} live worker(s) on {host}")
        return
    if as_json:
        _echo_json([{**asdict(w), "alive": w.alive} for w in found])
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


@main.command()
def config() -> None:
    """List every setting with its current value (secrets masked) and what it does."""
    from worker.config import WorkerConfig

    described = load_settings(WorkerConfig).describe()
    for name, field in WorkerConfig.model_fields.items():
        click.echo(f"CHATGPTES_{name.upper()}={described[name]}")
        click.echo(f"    {field.description}")


@main.command()
@click.option("--prompts", type=int, default=40, show_default=True, help="Sample batch size.")
@click.option("--workers", type=int, default=2, show_default=True, help="Worker processes.")
def demo(prompts: int, workers: int) -> None:
    """Run the whole story offline: Redis, the simulator, workers, a batch, its results."""
    from chatgptes.demo import run_demo

    sys.exit(run_demo(prompts=prompts, workers=workers))


main.add_command(sim)


if __name__ == "__main__":
    main()
