"""``chatgptes demo``: the whole story offline — Redis, two simulated sites, one fleet of
workers over both, a batch, results, and which site answered what.

The processes come from ``chatgptes.local_fleet`` (as ``chatgptes up``'s do), the two
sites from ``chatgptes.demo_sites``; this module picks the Redis, tells the story and
shows the fleet the way ``chatgptes top`` does while the batch runs. The batch may go
to either site; a second, small one is pinned to one site and sends the other nothing.
``--via-api`` sends the batch through ``chatgptes serve`` the way OpenAI Batch API code
does (upload, create, poll, download).

Every process the demo starts is stopped on the way out, whatever happened (a
failure, Ctrl-C or SIGTERM included), and its work directory goes with them unless
the demo failed. On a Redis the user named it writes only under its own queue and
batch id, with a short TTL, and never flushes anything.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from redis import RedisError
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from chatgptes import local_fleet
from chatgptes.demo_prompts import sample_prompts
from chatgptes.demo_sites import (
    PINNED_SITE,
    RunningSite,
    ajax_posts,
    answered_by_site,
    fleet_settings,
    start_sites,
    stats_line,
)
from chatgptes.local_fleet import (
    Cleanup,
    FleetError,
    LocalRedis,
    Named,
    signal_handler,
)
from chatgptes.progress import status_changes
from chatgptes.top import (
    PIPE_WIDTH,
    FleetSnapshot,
    console_for_output,
    read_snapshot,
    recent_frames,
    render,
)
from contract.config import QueueSettings
from contract.models import BatchStatus
from contract.redaction import redact_text
from contract.redis_errors import explain
from contract.text import printable
from producer.api import BatchQueue
from producer.http.client import ApiCallError, run_batch_via_api
from producer.inputs import PromptLine

BATCH_WAIT_SECONDS = 120.0
RESULT_TTL_SECONDS = 3600  # demo data in a user's Redis goes away by itself
SHOWN_RESULTS = 20
PINNED_PROMPTS = 6  # the small second batch, pinned to one site
SHOWN_BATCHES = 5
FRAME_SECONDS = 0.5
HEARTBEAT_SECONDS = 1  # the demo's workers report every second, so the frames move
SETTLE_SECONDS = 3.0  # after the batch ends, for the workers' last reports

console = Console(highlight=False, soft_wrap=True)
if not console.is_terminal and "COLUMNS" not in os.environ:
    console.width = PIPE_WIDTH  # as `chatgptes top` prints off a terminal


class DemoError(FleetError):
    """A step of the demo could not be done; the message says which and where to look."""


def say(message: str) -> None:
    console.print(Text("» ", style="bold cyan") + Text(message))


def start_redis(cleanup: Cleanup, workdir: Path) -> LocalRedis:
    """The user's Redis if reachable, else a redis-server of our own, else embedded fakeredis."""
    given = os.environ.get("CHATGPTES_REDIS_URL")
    if given:
        found = local_fleet.given_redis(given)
        if found is not None:
            return found
        say(local_fleet.unreachable_note(given, local_fleet.redis_problem(given) or "gone"))
    return local_fleet.own_redis(cleanup, workdir)


def start_workers(
    cleanup: Cleanup, workdir: Path, count: int, *, redis_url: str, queue_name: str,
    sites: dict[str, str],
) -> list[tuple[str, subprocess.Popen[Any]]]:  # fmt: skip
    """``count`` workers, one fleet over the sites ``sites`` names (``fleet_settings``)."""
    return local_fleet.start_workers(cleanup, workdir, count, {
        "redis_url": redis_url,
        "queue_name": queue_name,
        **sites,
        "proxy_rate_per_second": "5",
        "result_ttl_seconds": str(RESULT_TTL_SECONDS),
        "log_format": "json",
        "heartbeat_seconds": str(HEARTBEAT_SECONDS),
        # The simulator echoes the message: without the long preamble the echo shows the prompt.
        "language_instruction": "",
    })  # fmt: skip


# -- the batch, shown the way `chatgptes top` shows the fleet -------------------------------


async def run_batch(
    settings: QueueSettings, lines: list[PromptLine], workers: Named, sites: list[RunningSite]
) -> bool:
    """Enqueues, follows and shows a batch for any site, then a small one pinned to one;
    True if every prompt succeeded and the pinned batch went to its site only."""
    async with BatchQueue.connect(settings) as queue:
        batch = await queue.enqueue(lines, batch_id=f"demo_{secrets.token_hex(6)}")
        say(f"enqueued {batch.jobs} prompts as batch {batch.batch_id}, pinned to no site; the "
            "fleet as `chatgptes top` shows it:")  # fmt: skip
        # Off a terminal, a line a change; on one, the live frame shows the counts.
        changes = (
            status_changes(batch.batch_id, console.print)
            if not console.is_terminal
            else lambda status: None
        )

        async def done() -> bool:
            status = await queue.status(batch.batch_id)
            changes(status)
            return status.done

        await show_fleet_until(queue, done, workers, len(lines), wait_seconds(len(lines)))
        final = await queue.status(batch.batch_id)
        say(f"batch {final.state}: {final.succeeded} succeeded, {final.failed} failed, "
            f"{final.cancelled} cancelled")  # fmt: skip
        results = await queue.results(batch.batch_id)
        show_results(["site", "attempts"], [
            (r.custom_id, r.status, r.site or "-", str(r.attempts),
             r.content or (f"{r.error.type}: {r.error.message}" if r.error else ""))
            for r in results
        ])  # fmt: skip
        await show_simulator_stats(sites)
        pinned, pinned_ok = await run_pinned_batch(queue, lines[:PINNED_PROMPTS], workers, sites)
    say(answered_by_site(final, pinned))
    ok = len(results) == final.total and all(r.status == "succeeded" for r in results)
    return ok and pinned_ok


async def run_pinned_batch(
    queue: BatchQueue, lines: list[PromptLine], workers: Named, sites: list[RunningSite]
) -> tuple[BatchStatus, bool]:
    """A small batch pinned to ``PINNED_SITE`` (as ``enqueue --site`` pins one); its final
    status, and True if all of it succeeded and no other simulator was sent a prompt."""
    others = [site for site in sites if site.name != PINNED_SITE]
    before = await asyncio.to_thread(ajax_posts, others)
    batch = await queue.enqueue(lines, batch_id=f"demo_{secrets.token_hex(6)}",
                                metadata={"site": PINNED_SITE})  # fmt: skip
    deadline = time.monotonic() + wait_seconds(len(lines))
    while not (status := await queue.status(batch.batch_id)).done:
        _check_alive(workers)
        if time.monotonic() > deadline:
            raise TimeoutError(f"the pinned batch did not end within {wait_seconds(len(lines))}s")
        await asyncio.sleep(FRAME_SECONDS / 2)
    strays = await asyncio.to_thread(ajax_posts, others) - before
    elsewhere = ", ".join(site.name for site in others)
    say(f"batch {batch.batch_id}: {batch.jobs} prompts pinned to {PINNED_SITE} (as `enqueue "
        f"--site {PINNED_SITE}` pins them), {status.state}: {status.succeeded} succeeded; "
        + (f"{elsewhere} got none of them" if strays == 0
           else f"{elsewhere} got {strays} ajax POSTs meanwhile"))  # fmt: skip
    return status, strays == 0 and status.succeeded == status.total


async def run_batch_through_api(
    settings: QueueSettings,
    lines: list[PromptLine],
    workers: Named,
    sites: list[RunningSite],
    base_url: str,
) -> bool:
    """The same batch as OpenAI Batch API code sends it: upload, create, poll, download."""
    timeout = wait_seconds(len(lines))
    sending = asyncio.create_task(run_batch_via_api(base_url, "", openai_jsonl(lines), timeout))
    say(f"uploaded {len(lines)} prompts to {base_url}/files and created a batch from them; "
        "the fleet as `chatgptes top` shows it:")  # fmt: skip

    async def done() -> bool:
        return sending.done()

    try:
        async with BatchQueue.connect(settings) as queue:
            await show_fleet_until(queue, done, workers, len(lines), timeout + 10)
            found = await sending
            # The OpenAI lines do not say the site: the batch's own status and results do.
            batch_id = _api_batch_id(found)
            final = await queue.status(batch_id)
            site_of = {r.custom_id: r.site or "-" for r in await queue.results(batch_id)}
    except ApiCallError as error:
        raise DemoError(f"the API refused a step: {error}") from error
    finally:
        sending.cancel()
    answered = [line for line in found if (line.get("response") or {}).get("status_code") == 200]
    say(f"batch ended: {len(answered)} answered, {len(found) - len(answered)} in the error "
        "file (downloaded from the batch's output_file_id and error_file_id)")  # fmt: skip
    show_results(["site", "status_code"], [_api_row(line, site_of) for line in found])
    await show_simulator_stats(sites)
    say(answered_by_site(final))
    return len(found) == len(lines) == len(answered)


def _api_batch_id(found: list[dict[str, Any]]) -> str:
    """The batch of the OpenAI result lines: a line's ``id`` is ``batch_req_<batch>.<index>``."""
    if not found:
        raise DemoError("the API's batch ended with no result lines")
    return str(found[0]["id"]).removeprefix("batch_req_").rpartition(".")[0]


def openai_jsonl(lines: Sequence[PromptLine]) -> bytes:
    """The prompts as an OpenAI Batch API input file."""
    requests = (
        {"custom_id": line.custom_id, "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": line.model,
                  "messages": [m.model_dump() for m in line.messages]}}
        for line in lines
    )  # fmt: skip
    return "".join(json.dumps(request) + "\n" for request in requests).encode()


def _api_row(line: dict[str, Any], site_of: dict[str, str]) -> tuple[str, ...]:
    response = line.get("response") or {}
    body = response.get("body") or {}
    if response.get("status_code") == 200:
        answer = body["choices"][0]["message"]["content"]
        status = "succeeded"
    else:
        error = line.get("error") or body.get("error") or {}
        answer = f"{error.get('code')}: {error.get('message')}"
        status = "failed"
    site = site_of.get(line["custom_id"], "-")
    return line["custom_id"], status, site, str(response.get("status_code", "-")), answer


def wait_seconds(prompts: int) -> float:
    # Three proxies a site at 5/s get through ~30 prompts a second: let big batches take longer.
    return max(BATCH_WAIT_SECONDS, prompts / 5)


async def show_fleet_until(
    queue: BatchQueue,
    done: Callable[[], Awaitable[bool]],
    workers: Named,
    prompts: int,
    timeout: float,
) -> None:
    """`chatgptes top`'s frame, in place on a terminal, until ``done`` and the workers have
    reported the batch's prompts (a heartbeat later, at most ``SETTLE_SECONDS``);
    elsewhere the last frame once. DemoError if a worker dies, TimeoutError after
    ``timeout``."""
    frames: list[FleetSnapshot] = []
    deadline = settle = time.monotonic() + timeout
    view = console_for_output()
    live = Live(console=view, auto_refresh=False) if view.is_terminal else None
    with live or nullcontext():
        while True:
            _check_alive(workers)
            finished = await done()
            frames = recent_frames([*frames, await read_snapshot(queue, limit=SHOWN_BATCHES)])
            if live is not None:
                live.update(render(frames, interval=FRAME_SECONDS), refresh=True)
            if finished and (reported(frames[-1], workers, prompts) or time.monotonic() > settle):
                break
            if not finished:
                settle = time.monotonic() + SETTLE_SECONDS
            if time.monotonic() > deadline:
                raise TimeoutError(f"the batch did not end within {timeout:.0f}s")
            await asyncio.sleep(FRAME_SECONDS)
    if live is None:
        view.print(render(frames))


def reported(frame: FleetSnapshot, workers: Named, prompts: int) -> bool:
    """Whether the demo's workers have counted every prompt in their reports."""
    pids = {process.pid for _, process in workers}
    ours = [w for w in frame.workers if w.pid in pids]
    return sum(w.succeeded + w.failed + w.cancelled for w in ours) >= prompts


def _check_alive(workers: Named) -> None:
    for name, process in workers:
        if process.poll() is not None:
            raise DemoError(f"{name} exited with code {process.returncode}; see its log")


def show_results(extra: list[str], rows: Sequence[tuple[str, ...]]) -> None:
    """custom_id, status, the ``extra`` columns, then the answer (or the error), shortened."""
    table = Table(title="results", title_justify="left")
    table.add_column("custom_id", no_wrap=True, min_width=9)
    table.add_column("status", no_wrap=True, min_width=9)
    for name in extra:
        justify = "left" if name == "site" else "right"
        table.add_column(name, no_wrap=True, justify=justify, min_width=len(name))
    # The answer's column takes what the others leave (its text stays on one line): rich
    # squeezes a wrapping column first, where it would otherwise cut every column alike.
    table.add_column("answer")
    for *fields, answer in rows[:SHOWN_RESULTS]:
        table.add_row(*fields, Text(_short(answer, 60), no_wrap=True, overflow="ellipsis"))
    console.print(table)
    if len(rows) > SHOWN_RESULTS:
        console.print(f"  … and {len(rows) - SHOWN_RESULTS} more")


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def show_simulator_stats(sites: Sequence[RunningSite]) -> None:
    """What each simulator saw: one page GET per proxy session, not one per prompt."""
    for site in sites:
        say(stats_line(site, await asyncio.to_thread(site.stats)))


# -- the story ------------------------------------------------------------------------------


def run_demo(prompts: int = 40, workers: int = 2, *, via_api: bool = False) -> int:
    """Runs the demo; 0 if every prompt succeeded, 1 otherwise, 130 on Ctrl-C.

    Its work directory (the logs of every process) goes at the end, unless the demo
    failed: then it stays, and the last line says where."""
    if prompts < 1 or workers < 1:
        console.print("error: --prompts and --workers must be at least 1")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="chatgptes-demo-"))
    say(f"work directory (logs of every process): {workdir}")
    cleanup = Cleanup(say=say)
    code = 1
    try:
        # SIGTERM unwinds like Ctrl-C, so the clean-up runs (and Ctrl-C does where a parent
        # left SIGINT ignored: Python then keeps it ignored).
        with signal_handler(signal.default_int_handler, signal.SIGINT, signal.SIGTERM):
            code = 0 if _story(cleanup, workdir, prompts, workers, via_api) else 1
    except KeyboardInterrupt:
        say("interrupted")
        code = 130
    except RedisError as error:
        console.print(Text(f"demo failed: {explain(error).said('Redis')}", style="red"))
    except (FleetError, TimeoutError, OSError) as error:
        console.print(Text(f"demo failed: {printable(redact_text(str(error)))}", style="red"))
    finally:
        cleanup.close()
        if code == 1:
            say(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return code


def _story(cleanup: Cleanup, workdir: Path, prompts: int, workers: int, via_api: bool) -> bool:
    server = start_redis(cleanup, workdir)
    say(f"using {server.label}")
    sites = start_sites(cleanup, workdir)
    for site in sites:
        say(f"site {site.name}: a simulator ({site.stands_for} stand-in: {site.profile()}) at "
            f"{site.url} with {len(site.sim['proxies'])} proxies of its own")  # fmt: skip
    fleet = fleet_settings(workdir, sites)
    queue_name = f"chatgptes:demo:{secrets.token_hex(4)}"
    started = start_workers(
        cleanup, workdir, workers, redis_url=server.url, queue_name=queue_name, sites=fleet
    )
    say(f"started {workers} workers on queue {queue_name}, one fleet over both sites "
        f"(CHATGPTES_SITES={fleet['sites']}, each site's proxies in {fleet['sites_file']}); "
        f"logs in {workdir}/worker-N.log (JSON)")  # fmt: skip
    lines = sample_prompts(prompts)
    settings = QueueSettings(redis_url=server.url, queue_name=queue_name, sites=fleet["sites"],
                             result_ttl_seconds=RESULT_TTL_SECONDS)  # fmt: skip
    if not via_api:
        return asyncio.run(run_batch(settings, lines, started, sites))
    base_url = local_fleet.start_api(cleanup, workdir, {
        "redis_url": server.url, "queue_name": queue_name, "log_format": "json",
        "result_ttl_seconds": str(RESULT_TTL_SECONDS), "sites": fleet["sites"],
    })  # fmt: skip
    say(f"OpenAI-compatible API (chatgptes serve) at {base_url}; the batch goes through it "
        "as OpenAI Batch API code sends it")  # fmt: skip
    return asyncio.run(run_batch_through_api(settings, lines, started, sites, base_url))
