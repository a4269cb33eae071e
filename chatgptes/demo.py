"""``chatgptes demo``: the whole story offline — Redis, the simulator, workers, a batch, results.

The processes come from ``chatgptes.local_fleet`` (as ``chatgptes up``'s do); this
module picks the Redis, tells the story and shows the fleet the way ``chatgptes top``
does while the batch runs. ``--via-api`` sends the batch through
``chatgptes serve`` the way OpenAI Batch API code does (upload, create, poll, download).

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
import urllib.request
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
from chatgptes.local_fleet import (
    PACKAGE_ROOT,
    Cleanup,
    FleetError,
    LocalRedis,
    Named,
    signal_handler,
)
from chatgptes.progress import status_changes
from chatgptes.top import FleetSnapshot, console_for_output, read_snapshot, recent_frames, render
from contract.config import DEFAULT_MODEL, QueueSettings
from contract.redaction import redact_text
from contract.redis_errors import explain
from contract.text import printable
from producer.api import BatchQueue
from producer.http.client import ApiCallError, run_batch_via_api
from producer.inputs import PromptLine, parse_prompt_lines

EXAMPLE_PROMPTS = PACKAGE_ROOT / "examples" / "prompts.jsonl"
SIMULATOR_OPTIONS = ("--proxies", "3", "--latency", "uniform:20,120", "--fault-5xx-rate", "0.02")
BATCH_WAIT_SECONDS = 120.0
RESULT_TTL_SECONDS = 3600  # demo data in a user's Redis goes away by itself
SHOWN_RESULTS = 20
SHOWN_BATCHES = 5
FRAME_SECONDS = 0.5
HEARTBEAT_SECONDS = 1  # the demo's workers report every second, so the frames move
SETTLE_SECONDS = 3.0  # after the batch ends, for the workers' last reports

console = Console(highlight=False, soft_wrap=True)


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
    sim: dict[str, Any],
) -> list[tuple[str, subprocess.Popen[Any]]]:  # fmt: skip
    return local_fleet.start_workers(cleanup, workdir, count, {
        "redis_url": redis_url,
        "queue_name": queue_name,
        "upstream_url": sim["url"],
        "proxies": ",".join(sim["proxies"]),
        "proxy_rate_per_second": "5",
        "result_ttl_seconds": str(RESULT_TTL_SECONDS),
        "log_format": "json",
        "heartbeat_seconds": str(HEARTBEAT_SECONDS),
        # The simulator echoes the message: without the long preamble the echo shows the prompt.
        "language_instruction": "",
    })  # fmt: skip


def sample_prompts(count: int) -> list[PromptLine]:
    """``count`` prompts: the example file's first lines, or generated ones if it has too few."""
    lines = EXAMPLE_PROMPTS.read_text().splitlines() if EXAMPLE_PROMPTS.exists() else []
    source = str(EXAMPLE_PROMPTS)
    if count > len(lines):
        lines, source = [json.dumps(_generated(index)) for index in range(count)], "<generated>"
    return parse_prompt_lines(
        lines[:count], source=source, default_model=DEFAULT_MODEL, max_prompt_chars=32_000
    )


_TOPICS = (
    "Redis", "the Alhambra", "sourdough bread", "black holes", "HTTP/2", "olive trees",
    "the Spanish Armada", "garbage collection", "flamenco", "solar panels", "octopuses",
)  # fmt: skip
_QUESTIONS = (
    "What is {}?", "Explain {} in two sentences.", "Give me three facts about {}.",
    "What is a common misconception about {}?", "Write a haiku about {}.",
)  # fmt: skip


def _generated(index: int) -> dict[str, Any]:
    topic = _TOPICS[index % len(_TOPICS)]
    question = _QUESTIONS[(index // len(_TOPICS)) % len(_QUESTIONS)].format(topic)
    messages = [{"role": "user", "content": question}]
    if index % 5 == 1:
        messages.insert(0, {"role": "system", "content": "Answer briefly, for a curious teenager."})
    if index % 7 == 3:
        messages = [
            {"role": "user", "content": f"I want to learn about {topic}."},
            {"role": "assistant", "content": "Happy to help. What would you like to know?"},
            *messages,
        ]
    return {"custom_id": f"gen{index + 1:04d}", "messages": messages}


# -- the batch, shown the way `chatgptes top` shows the fleet -------------------------------


async def run_batch(
    settings: QueueSettings, lines: list[PromptLine], workers: Named, sim: dict[str, Any]
) -> bool:
    """Enqueues, follows and shows one batch; True if every prompt succeeded."""
    async with BatchQueue.connect(settings) as queue:
        batch = await queue.enqueue(lines, batch_id=f"demo_{secrets.token_hex(6)}")
        say(f"enqueued {batch.jobs} prompts as batch {batch.batch_id}; the fleet as "
            "`chatgptes top` shows it:")  # fmt: skip
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
        show_results(["attempts"], [
            (r.custom_id, r.status, str(r.attempts),
             r.content or (f"{r.error.type}: {r.error.message}" if r.error else ""))
            for r in results
        ])  # fmt: skip
    show_simulator_stats(await asyncio.to_thread(_fetch_json, sim["stats_url"]), len(lines))
    return len(results) == final.total and all(r.status == "succeeded" for r in results)


async def run_batch_through_api(
    settings: QueueSettings,
    lines: list[PromptLine],
    workers: Named,
    sim: dict[str, Any],
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
    except ApiCallError as error:
        raise DemoError(f"the API refused a step: {error}") from error
    finally:
        sending.cancel()
    answered = [line for line in found if (line.get("response") or {}).get("status_code") == 200]
    say(f"batch ended: {len(answered)} answered, {len(found) - len(answered)} in the error "
        "file (downloaded from the batch's output_file_id and error_file_id)")  # fmt: skip
    show_results(["status_code"], [_api_row(line) for line in found])
    show_simulator_stats(await asyncio.to_thread(_fetch_json, sim["stats_url"]), len(lines))
    return len(found) == len(lines) == len(answered)


def openai_jsonl(lines: Sequence[PromptLine]) -> bytes:
    """The prompts as an OpenAI Batch API input file."""
    requests = (
        {"custom_id": line.custom_id, "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": line.model,
                  "messages": [m.model_dump() for m in line.messages]}}
        for line in lines
    )  # fmt: skip
    return "".join(json.dumps(request) + "\n" for request in requests).encode()


def _api_row(line: dict[str, Any]) -> tuple[str, ...]:
    response = line.get("response") or {}
    body = response.get("body") or {}
    if response.get("status_code") == 200:
        answer = body["choices"][0]["message"]["content"]
        status = "succeeded"
    else:
        error = line.get("error") or body.get("error") or {}
        answer = f"{error.get('code')}: {error.get('message')}"
        status = "failed"
    return line["custom_id"], status, str(response.get("status_code", "-")), answer


def wait_seconds(prompts: int) -> float:
    # Three proxies at 5/s get through ~15 prompts a second: let big batches take longer.
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


def _fetch_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.loads(reply.read())


def show_results(extra: list[str], rows: Sequence[tuple[str, ...]]) -> None:
    """custom_id, status, the ``extra`` columns, then the answer (or the error), shortened."""
    table = Table(title="results", title_justify="left")
    table.add_column("custom_id", no_wrap=True, min_width=9)
    table.add_column("status", no_wrap=True, min_width=9)
    for name in extra:
        table.add_column(name, no_wrap=True, justify="right", min_width=len(name))
    table.add_column("answer", no_wrap=True, overflow="ellipsis")
    for *fields, answer in rows[:SHOWN_RESULTS]:
        table.add_row(*fields, _short(answer, 60))
    console.print(table)
    if len(rows) > SHOWN_RESULTS:
        console.print(f"  … and {len(rows) - SHOWN_RESULTS} more")


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def show_simulator_stats(stats: dict[str, Any], prompts: int) -> None:
    requests, faults = stats["requests"], stats["faults"]
    say(f"simulator: {requests['page']} page GETs and {requests['ajax']} ajax POSTs for "
        f"{prompts} prompts (one page GET per proxy session, not one per prompt); "
        f"{faults['5xx']} injected 5xx retried; at most {stats['inflight_max']} requests "
        f"in flight")  # fmt: skip


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
    sim = local_fleet.start_simulator(cleanup, workdir, *SIMULATOR_OPTIONS)
    say(f"simulator (chatgpt.es stand-in) at {sim['url']} with {len(sim['proxies'])} proxies")
    queue_name = f"chatgptes:demo:{secrets.token_hex(4)}"
    started = start_workers(
        cleanup, workdir, workers, redis_url=server.url, queue_name=queue_name, sim=sim
    )
    say(f"started {workers} workers on queue {queue_name}; "
        f"logs in {workdir}/worker-N.log (JSON)")  # fmt: skip
    lines = sample_prompts(prompts)
    settings = QueueSettings(
        redis_url=server.url, queue_name=queue_name, result_ttl_seconds=RESULT_TTL_SECONDS
    )
    if not via_api:
        return asyncio.run(run_batch(settings, lines, started, sim))
    base_url = local_fleet.start_api(cleanup, workdir, {
        "redis_url": server.url, "queue_name": queue_name, "log_format": "json",
        "result_ttl_seconds": str(RESULT_TTL_SECONDS),
    })  # fmt: skip
    say(f"OpenAI-compatible API (chatgptes serve) at {base_url}; the batch goes through it "
        "as OpenAI Batch API code sends it")  # fmt: skip
    return asyncio.run(run_batch_through_api(settings, lines, started, sim, base_url))
