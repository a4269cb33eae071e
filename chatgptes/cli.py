"""``chatgptes``: enqueue batch prompts, follow them, read results, run workers.

Exit codes are in ``chatgptes.running``: 0 success, 1 an operational error, 2 bad input
or settings (nothing was enqueued), 3 ``wait`` timed out.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from chatgptes.lazy_commands import LazyCommand, LazyGroup
from chatgptes.running import (
    EXIT_BAD_INPUT,
    EXIT_BATCH_ENDED_BADLY,
    EXIT_ERROR,
    EXIT_TIMEOUT,
    counted,
    echo_json,
    fail,
    load_settings,
    log_warnings_to_stderr,
    printable,
    redis_problem,
    run_with_queue,
    warn_unknown_settings,
)
from chatgptes.setting_names import SETTING_NAMES
from producer.options import DEFAULT_COMPLETION_WINDOW, metadata_pairs
from producer.options import completion_window as options_completion_window

if TYPE_CHECKING:
    from contract.models import BatchStatus
    from producer.api import BatchQueue, CancelReport

# pydantic looks for plugins in every installed distribution's metadata the first time it
# builds a model (5 ms here, tens on a busy disk); the CLI, and the processes it starts,
# use none. A value already set is kept.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

# Only click, this package's small modules and producer.options load before a command
# runs; each command imports what it uses, and these load when they run
# (tests/test_cli_imports.py: --help imports no pydantic, redis or producer.api; the
# readers no aiohttp, curl_cffi or worker; config no tokenizer).
LAZY_COMMANDS = {
    "batches": LazyCommand("chatgptes.fleet_view:batches",
                           "List the recent batches, newest first: state and counts."),
    "workers": LazyCommand("chatgptes.fleet_view:workers", "List the live workers: host, pid, "
                           "queue, in flight, jobs done, last seen."),
    "top": LazyCommand("chatgptes.top:top", "Watch the fleet live: batches (rates, ETAs), "
                       "workers, identities, errors."),
    "serve": LazyCommand("chatgptes.serve:serve", "Serve the OpenAI-compatible API (/v1/files, "
                         "/v1/batches, /v1/chat/completions) and the web console (/)."),
    "sites": LazyCommand("chatgptes.sites:sites",
                         "The fleet's sites: each with its profile, health, answers and requests "
                         "in flight; ``probe URL`` reads a site's page for the profile of its "
                         "chat."),
    "sim": LazyCommand("simulator.cli:sim",
                       "Run the offline stand-in for chatgpt.es (and proxies in front of it)."),
    "config": LazyCommand("chatgptes.settings_view:config", "List every setting with its "
                          "current value (secrets masked) and what it does."),
    "up": LazyCommand("chatgptes.up:up", "Start a local fleet (Redis, the simulator, "
                      "workers) and print the environment to use it."),
}  # fmt: skip
# Commands that may log (Redis away while they wait): their warnings need a renderer
# (and `results --follow` and a live `top`, which set it up themselves).
LOGGING_COMMANDS = frozenset({"wait", "worker", "serve", "demo", "up"})
# Commands that only read or write a few keys and print: run as the console script, they
# skip the cyclic GC and the interpreter's teardown of every module (~40 ms, a sixth of
# `status`), since they leave no task running and flush what they write (`results`
# flushes its files; with --follow, a long run, it turns the GC back on). `enqueue`
# builds only acyclic objects, a block at a time, which the GC would rescan for nothing.
QUICK_COMMANDS = frozenset(
    {"status", "job", "batches", "workers", "cancel", "retry", "config", "top", "results",
     "enqueue"}
)  # fmt: skip


class CommandLine(LazyGroup):
    """The ``chatgptes`` group: a quick command run from a shell exits as soon as it is done."""

    quick = True  # until a command that is not quick starts

    def main(self, args: Sequence[str] | None = None, **kwargs: Any) -> Any:
        if args is not None:  # called with its arguments (a test, a caller): an ordinary call
            return super().main(args, **kwargs)
        gc.disable()
        try:
            return super().main(args, **kwargs)
        except SystemExit as done:
            if self.quick and (done.code is None or isinstance(done.code, int)):
                _exit_now(done.code or 0)
            raise


def _exit_now(code: int) -> None:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a closed pipe: let Python's own exit deal with it
        return
    os._exit(code)


SHOWN_IDENTITIES = 10
# Why prompts waited for capacity (the policy's counters, waited_for_capacity:<reason>),
# and the setting that decides it.
WAITED = "waited_for_capacity:"
CAPACITY_HINTS = {
    "rate": "each identity sends at most CHATGPTES_PROXY_RATE_PER_SECOND requests a second "
    "(1 by default, for chatgpt.es); more identities (CHATGPTES_PROXIES) go faster",
    "proxy_full": "each identity has at most CHATGPTES_PROXY_MAX_INFLIGHT requests in flight",
    "fleet_full": "the fleet has at most CHATGPTES_FLEET_MAX_INFLIGHT requests in flight",
    "cooling": "identities rest after the site refused them (above: why, and for how long)",
    "no_identity": "no identity to send through: see CHATGPTES_PROXIES, CHATGPTES_PROXIES_FILE",
}
# producer.formats.FORMATS's names (tests/test_cli.py checks): listed here, so that
# `results --help` does not import the result models.
RESULT_FORMATS = ("native", "openai")


@click.group(
    cls=CommandLine,
    lazy_commands=LAZY_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.pass_context
def main(ctx: click.Context) -> None:
    """Batch prompts for chatgpt.es through Redis and arq workers."""
    warn_unknown_settings(SETTING_NAMES)
    if ctx.invoked_subcommand not in QUICK_COMMANDS and isinstance(ctx.command, CommandLine):
        ctx.command.quick = False
        gc.enable()
    if ctx.invoked_subcommand in LOGGING_COMMANDS:
        log_warnings_to_stderr()


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--batch-id", help="Name the batch (1-64 of A-Z a-z 0-9 _ -); default random.")
@click.option("--model", help="Use this model for every line (gpt-4, gpt-4o, gpt-4o-mini).")
@click.option(
    "--completion-window",
    default=DEFAULT_COMPLETION_WINDOW,
    show_default=True,
    help="When it ends, prompts not yet sent end Expired (e.g. 24h, 90m).",
)
@click.option("--metadata", multiple=True, help="key=value kept with the batch (repeatable).")
@click.option(
    "--site", help="Send every prompt to this site of CHATGPTES_SITES only (metadata site=…)."
)
@click.option("--json", "as_json", is_flag=True, help='Print {"batch_id", "jobs", "warnings"}.')
def enqueue(
    file: str,
    batch_id: str | None,
    model: str | None,
    completion_window: str,
    metadata: tuple[str, ...],
    site: str | None,
    as_json: bool,
) -> None:
    """Validate FILE (JSONL, or - for stdin) whole, then enqueue it as one batch."""
    import asyncio

    from chatgptes.progress import enqueue_progress
    from producer.api import BatchExists, ClaimLost
    from producer.inputs import InputFileError

    try:
        pairs = metadata_pairs(metadata)
        if site is not None:
            if pairs.get("site", site) != site:
                raise ValueError(f"--site {site} and --metadata site={pairs['site']} disagree")
            pairs["site"] = site
        options_completion_window(completion_window)
    except ValueError as error:
        fail(f"{error}; nothing was enqueued", EXIT_BAD_INPUT)

    async def go(queue: BatchQueue) -> Any:
        # SIGTERM stops it as Ctrl-C does: asyncio cancels the task where it awaits (never
        # inside a Redis reply), and the enqueue takes back what it staged, frees the ID.
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            with enqueue_progress() as progress:
                return await queue.enqueue_file(
                    file, batch_id=batch_id, model=model, progress=progress,
                    completion_window=completion_window, metadata=pairs,
                )  # fmt: skip
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    try:
        batch = run_with_queue(go)
    except (BatchExists, ClaimLost) as error:  # the ID is another batch's: an operational error
        fail(f"{error}; nothing was enqueued", EXIT_ERROR)
    except (KeyboardInterrupt, asyncio.CancelledError):
        fail("interrupted: what was staged was taken back; nothing was enqueued", EXIT_ERROR)
    except InputFileError as error:
        fail(f"{error}\nnothing was enqueued", EXIT_BAD_INPUT)
    except (ValueError, OSError) as error:
        fail(f"{error}; nothing was enqueued", EXIT_BAD_INPUT)
    for warning in batch.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        echo_json({"batch_id": batch.batch_id, "jobs": batch.jobs, "warnings": batch.warnings})
    else:
        click.echo(batch.batch_id)
        click.echo(f"enqueued {counted(batch.jobs, 'prompt')}", err=True)


@main.command()
@click.argument("batch_id")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(batch_id: str, as_json: bool) -> None:
    """Show a batch's progress and what the shared policy is doing."""
    from dataclasses import asdict

    from contract.config import QueueSettings
    from producer.fleet import fleet_health, policy_events, writes_refused
    from producer.site_health import site_health

    names = load_settings(QueueSettings).site_names()

    async def go(queue: BatchQueue) -> Any:
        several = len(names) > 1  # a fleet of one site keeps no site health
        return (
            await queue.status(batch_id),
            await fleet_health(queue.redis),
            await policy_events(queue.redis),
            await writes_refused(queue.redis),
            await site_health(queue.redis, names, profiles=as_json) if several else [],
        )

    batch, identities, events, refused, sites = run_with_queue(go)
    if as_json:
        echo_json(
            {
                **batch.model_dump(mode="json"),
                "request_counts": request_counts(batch),
                "identities": [asdict(identity) for identity in identities],
                "policy_events": events,
                "redis_refusing_writes": refused,
                "sites": [asdict(site) for site in sites],
            }
        )
        return
    if refused:
        click.echo(
            f"warning: Redis refuses writes, {refused}; workers keep their answers and wait for it",
            err=True,
        )
    click.echo(
        f"batch {batch.batch_id} ({batch.state}): {batch.finished}/{batch.total} finished "
        f"({batch.succeeded} succeeded, {batch.failed} failed, {batch.cancelled} cancelled), "
        f"{batch.in_progress} in progress, "
        + (f"{batch.waiting} waiting for capacity, " if batch.waiting else "")
        + f"{batch.queued} queued"
        + (" — done" if batch.done else "")
    )
    if batch.answered_by_site:
        answered = ", ".join(f"{printable(name)} {n}" for name, n in batch.answered_by_site.items())
        click.echo(f"answered by site: {answered}")
    for site in sites:
        click.echo(f"site {printable(site.line)}")
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
    for reason, hint in CAPACITY_HINTS.items():
        if f"{WAITED}{reason}" in events:
            click.echo(f"  waited for capacity ({reason}): {hint}")


@main.command()
@click.argument("batch_id")
@click.option("--timeout", type=float, help="Give up after this many seconds (exit 3).")
def wait(batch_id: str, timeout: float | None) -> None:
    """Wait for a batch to end, with a live progress bar.

    Exits 0 when it completed, 4 when it ended failed, expired or cancelled, 3 on timeout.
    """
    from chatgptes.progress import wait_progress

    async def go(queue: BatchQueue) -> Any:
        with wait_progress(batch_id) as on_status:
            return await queue.wait(batch_id, timeout=timeout, on_status=on_status)

    try:
        done = run_with_queue(go)
    except TimeoutError as error:
        fail(str(error), EXIT_TIMEOUT)
    click.echo(
        f"batch {batch_id} {done.state}: {done.succeeded} succeeded, {done.failed} failed, "
        f"{done.cancelled} cancelled",
        err=True,
    )
    if done.state != "completed":
        sys.exit(EXIT_BATCH_ENDED_BADLY)


@main.command()
@click.argument("batch_id")
@click.option(
    "-o",
    "--output",
    type=click.File("w", lazy=False),  # an unwritable path fails now, not after the reads
    default="-",
    help="Write here (default -). With --format openai: the output file (succeeded only).",
)
@click.option(
    "--errors",
    type=click.File("w", lazy=False),
    default=None,
    help="With --format openai: write the error file (every other line) here.",
)
@click.option(
    "--format", "fmt", type=click.Choice(RESULT_FORMATS), default="native", show_default=True
)
@click.option("--follow", is_flag=True, help="Keep streaming results as jobs finish.")
def results(batch_id: str, output: Any, errors: Any, fmt: str, follow: bool) -> None:
    """Write the batch's results as JSONL, one line per prompt, in input order.

    native: every result in one file. openai: OpenAI's output file (the prompts that
    succeeded) to --output, and its error file (the rest) to --errors.
    """
    if errors is not None and fmt != "openai":
        fail("--errors goes with --format openai (native lines hold both)", EXIT_BAD_INPUT)
    from contract.models import JobResult
    from producer.formats import FORMATS, is_output

    render = FORMATS[fmt]
    if follow:
        gc.enable()
        log_warnings_to_stderr()

    async def go(queue: BatchQueue) -> tuple[int, int, BatchStatus]:
        written = held_back = 0
        async for raw in queue.iter_raw_results(batch_id, follow=follow):
            if fmt == "native":  # the stored line is the native one: written through unparsed
                target, line = output, raw.decode()
            else:
                result = JobResult.model_validate_json(raw)
                target = output if is_output(result) else errors
                line = render(result)
            if target is None:
                held_back += 1
                continue
            target.write(line + "\n")
            written += 1
            if follow:
                target.flush()
        return written, held_back, await queue.status(batch_id)

    written, held_back, status = run_with_queue(go)
    output.flush()
    if errors is not None:
        errors.flush()
    click.echo(f"{counted(written, 'result')} written", err=True)
    if held_back:
        click.echo(f"{counted(held_back, 'error line')} not written: --errors FILE takes them",
                   err=True)  # fmt: skip
    if not status.done:
        click.echo(
            f"batch {batch_id} is not done yet ({status.state}, "
            f"{status.total - status.finished} of {status.total} to come: --follow waits for them)",
            err=True,
        )


def request_counts(batch: BatchStatus) -> dict[str, int]:
    """OpenAI's request_counts: what went to the output file and what to the error file."""
    return {
        "total": batch.total,
        "completed": batch.succeeded,
        "failed": batch.failed + batch.cancelled,
    }


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def job(job_id: str, as_json: bool) -> None:
    """Show one job (JOB_ID is <batch>.<n>, n from 0): its result, or where it is."""
    from dataclasses import asdict

    from producer.api import JobState

    found = run_with_queue(lambda queue: queue.job(job_id))
    data = asdict(found) if isinstance(found, JobState) else found.model_dump(mode="json")
    if as_json:
        echo_json(data)
    else:
        for name, value in data.items():
            click.echo(f"{name}: {printable(str(value))}")


@main.command()
@click.argument("batch_id")
@click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the prompts workers hold to settle, to count them too.",
)
def cancel(batch_id: str, wait_seconds: float) -> None:
    """Cancel a batch: nothing more of it is sent; requests already sent finish."""
    report = run_with_queue(lambda queue: queue.cancel_and_wait(batch_id, timeout=wait_seconds))
    click.echo(cancel_summary(report))


def cancel_summary(report: CancelReport) -> str:
    """``cancelled 36 prompts of b1 (30 queued, 6 held by workers); 4 already sent
    finished``, and what is still held if the wait ran out."""
    if report.ended_before:
        return f"batch {report.batch_id} had ended ({report.state}): nothing to cancel"
    held = report.cancelled - report.cancelled_queued
    line = f"cancelled {counted(report.cancelled, 'prompt')} of {report.batch_id}"
    if held:
        line += f" ({report.cancelled_queued:,} queued, {held:,} held by workers)"
    if report.finished:
        line += f"; {report.finished:,} already sent finished"
    if report.unsettled:
        line += (f"; {report.unsettled:,} still held by workers end cancelled unless already "
                 f"sent (`chatgptes status {report.batch_id}`)")  # fmt: skip
    return line


@main.command()
@click.argument("batch_id")
def retry(batch_id: str) -> None:
    """Enqueue a batch's failed jobs again (not a cancelled or expired batch's)."""
    from producer.api import RetryRefused

    try:
        count = run_with_queue(lambda queue: queue.retry(batch_id))
    except RetryRefused as error:
        fail(str(error), EXIT_ERROR)
    click.echo(f"re-enqueued {counted(count, 'failed job')} of {batch_id}")


@main.command()
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@click.option("--max-jobs", type=click.IntRange(min=1), help="Chunks this process holds at once.")
def worker(burst: bool, max_jobs: int | None) -> None:
    """Run a worker (arq's Worker, taking chunks of prompts under claims it renews)."""
    from redis.exceptions import RedisError

    from contract.sites import SitesConfigError
    from worker.config import WorkerConfig
    from worker.jobs import run_worker
    from worker.proxies import ProxyConfigError
    from worker.transport import BrowserConfigError

    settings = load_settings(WorkerConfig)
    try:
        exit_code = run_worker(settings, burst=burst, max_jobs=max_jobs)
    except (ProxyConfigError, SitesConfigError, BrowserConfigError) as error:
        fail(str(error), EXIT_BAD_INPUT)
    except (RedisError, ConnectionError) as error:  # unreachable at start: no traceback loop
        fail(redis_problem(settings.redis_url, error), EXIT_ERROR)
    sys.exit(exit_code)


@main.command()
@click.option("--prompts", type=int, default=40, show_default=True, help="Sample batch size.")
@click.option("--workers", type=int, default=2, show_default=True, help="Worker processes.")
@click.option(
    "--via-api",
    is_flag=True,
    help="Send the batch through `chatgptes serve` as OpenAI Batch API code does.",
)
def demo(prompts: int, workers: int, via_api: bool) -> None:
    """Run the whole story offline: Redis, the simulator, workers, a batch, its results."""
    from chatgptes.demo import run_demo

    sys.exit(run_demo(prompts=prompts, workers=workers, via_api=via_api))


if __name__ == "__main__":
    main()
