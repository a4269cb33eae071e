"""The references every speed claim is set beside, each run in a child process of its own.

- ``plain_curl``: one curl_cffi process, one page handshake per proxy (or one direct)
  before the clock, then only ajax POSTs, ``concurrency`` at once: the physical limit.
- ``per_call``: the per-call provider the service replaces: a page GET and a POST per
  prompt, fresh cookies each prompt, at the same concurrency.
- ``arq_noop``: arq running a no-op job: the queue's own floor.

The parent runs ``python bench/references.py MODE ARGS.json``; the child runs the load
and prints one JSON line of figures. Its CPU is read from its own /proc entry around
the timed part only, so it is the reference's alone and never shares an event loop
with the caller. Import this module the way the bench scripts import ``harness``
(``bench/`` first on sys.path, as when they are run as ``python bench/x.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from arq.constants import (
    health_check_key_suffix,
    in_progress_key_prefix,
    job_key_prefix,
    retry_key_prefix,
)
from arq.jobs import serialize_job
from curl_cffi.requests import AsyncSession, Response
from curl_cffi.requests.exceptions import RequestException
from harness import cpu_seconds

from simulator.local import running, wait_until
from worker.errors import HandshakeFailed
from worker.page import parse_page

SCRIPT = Path(__file__).resolve()
AJAX_PATH = "/wp-admin/admin-ajax.php"
LOAD_SECONDS = 120.0  # a load stops early rather than run past this
CHILD_EXTRA_SECONDS = 60.0  # start-up, handshakes and shut-down on top of the load
REQUEST_TIMEOUT = 30.0
NOOP_FUNCTION = "noop"
ENQUEUE_CHUNK = 1000
DRAIN_POLL_SECONDS = 0.01
# A copy of worker.prompt.DEFAULT_LANGUAGE_INSTRUCTION, so a reference's POST body is
# as long as the service's (the site receives the instruction before every prompt).
LANGUAGE_INSTRUCTION = (
    "Your default language is English. Always respond in English unless the user's message "
    "is in a different language. If the user's message is not in English, respond in the "
    "language of the user's message. Maintain this language behavior throughout the "
    "conversation unless explicitly instructed otherwise. User input:"
)
# What one prompt may fail with; anything else is a bug in the reference and stops it.
FAILURES = (RequestException, ValueError, HandshakeFailed)


# --- the parent's side: one function per reference -------------------------------------


def plain_curl(
    site_url: str,
    count: int,
    concurrency: int,
    proxies: list[str] | None = None,
    impersonate: str = "chrome",
) -> dict[str, Any]:
    """One handshake per proxy before the clock, then ``count`` ajax POSTs only.

    Figures: prompts_per_s (ok replies / wall), seconds, ok, failed,
    cpu_ms_per_prompt (the child's CPU over the timed part / prompts sent), handshakes.
    """
    return run_child("plain_curl", _load_args(site_url, count, concurrency, proxies, impersonate))


def per_call(
    site_url: str,
    count: int,
    concurrency: int,
    proxies: list[str] | None = None,
    impersonate: str = "chrome",
) -> dict[str, Any]:
    """A page GET, its parse and a POST with that page's cookies, for every prompt.

    Figures: those of ``plain_curl`` plus requests_per_prompt.
    """
    return run_child("per_call", _load_args(site_url, count, concurrency, proxies, impersonate))


def arq_noop(
    redis_url: str,
    count: int,
    max_jobs: int,
    poll_delay: float = 0.05,
    queue_name: str = "bench:arq-noop",
) -> dict[str, Any]:
    """``count`` no-op jobs through one arq worker process.

    The jobs are written (pipelined, in arq's own layout) before the worker starts;
    the clock starts at the worker's first job and stops when the queue is empty and
    no job is in progress. Figures: jobs_per_s, seconds, cpu_ms_per_job (the worker
    process's CPU from its first job to the end / count).
    """
    _check_count(count)
    if not 1 <= max_jobs <= 10_000 or not 0 < poll_delay <= 5:
        raise ValueError("need 1 <= max_jobs <= 10,000 and 0 < poll_delay <= 5")
    job_ids = [f"{NOOP_FUNCTION}-{secrets.token_hex(4)}-{i}" for i in range(count)]
    mark_key = f"{queue_name}:first-job"
    args = {"redis_url": redis_url, "queue_name": queue_name, "max_jobs": max_jobs,
            "poll_delay": poll_delay, "mark_key": mark_key}  # fmt: skip
    health_key = queue_name + health_check_key_suffix
    with (
        redis.Redis.from_url(redis_url) as client,
        _forgetting(client, job_ids, queue_name, mark_key, health_key),
    ):
        client.delete(queue_name, mark_key)
        _enqueue_noops(client, queue_name, job_ids)
        with _child_argv("arq_worker", args) as (argv, log), running(argv, log=log) as worker:
            limit = LOAD_SECONDS + CHILD_EXTRA_SECONDS
            first = _first_job(client, mark_key, worker, log, limit)
            _drained(client, queue_name, job_ids, worker, log, LOAD_SECONDS)
            end, cpu = time.time(), cpu_seconds(worker.pid)
    seconds = end - first["t"]
    return {
        "jobs_per_s": round(count / seconds, 1),
        "seconds": round(seconds, 3),
        "cpu_ms_per_job": round((cpu - first["cpu"]) / count * 1000, 3),
        "jobs": count,
        "max_jobs": max_jobs,
        "poll_delay": poll_delay,
    }


def run_child(mode: str, args: dict[str, Any]) -> dict[str, Any]:
    """Runs ``references.py MODE`` to its end (bounded in time) and returns its JSON line."""
    timeout = LOAD_SECONDS + CHILD_EXTRA_SECONDS
    with _child_argv(mode, args) as (argv, log):
        with running(argv, log=log) as process:
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise TimeoutError(f"reference {mode} ran past {timeout:.0f}s") from None
        return _last_json_line(log, mode, process.returncode)


@contextmanager
def _child_argv(mode: str, args: dict[str, Any]) -> Iterator[tuple[list[str], Path]]:
    """(argv, log path) of a child; its arguments go in a 0600 file, not on the command
    line, since proxy URLs can carry a password."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{mode}-") as tmp:
        args_file = Path(tmp) / "args.json"
        args_file.touch(mode=0o600)
        args_file.write_text(json.dumps(args))
        yield [sys.executable, str(SCRIPT), mode, str(args_file)], Path(tmp) / "child.log"


def _last_json_line(log: Path, mode: str, returncode: int | None) -> dict[str, Any]:
    lines = log.read_text(errors="replace").splitlines()
    found = [line for line in lines if line.startswith("{")]
    if returncode != 0 or not found:
        tail = "\n".join(lines[-20:])
        raise RuntimeError(f"reference {mode} exited with {returncode}:\n{tail}")
    figures: dict[str, Any] = json.loads(found[-1])
    return figures


def _check_count(count: int) -> None:
    if not 1 <= count <= 1_000_000:
        raise ValueError("need 1 <= count <= 1,000,000")


def _load_args(
    site_url: str, count: int, concurrency: int, proxies: list[str] | None, impersonate: str
) -> dict[str, Any]:
    _check_count(count)
    if not 1 <= concurrency <= 4096:
        raise ValueError("need 1 <= concurrency <= 4096")
    return {"site_url": site_url, "count": count, "concurrency": concurrency,
            "proxies": list(proxies or []), "impersonate": impersonate}  # fmt: skip


# --- arq's no-op job: the parent's Redis side --------------------------------------------


def json_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _enqueue_noops(client: redis.Redis, queue_name: str, job_ids: list[str]) -> None:
    """Writes the jobs straight into arq's layout, a pipeline per chunk (as the producer does)."""
    now_ms = int(time.time() * 1000)
    job = serialize_job(NOOP_FUNCTION, (), {}, None, now_ms, serializer=json_dumps)
    for start in range(0, len(job_ids), ENQUEUE_CHUNK):
        chunk = job_ids[start : start + ENQUEUE_CHUNK]
        with client.pipeline(transaction=False) as pipe:
            for job_id in chunk:
                pipe.set(job_key_prefix + job_id, job, px=3_600_000)
            pipe.zadd(queue_name, {job_id: now_ms for job_id in chunk})
            pipe.execute()


@contextmanager
def _forgetting(client: redis.Redis, job_ids: list[str], *names: str) -> Iterator[None]:
    """Leaves no key of the run behind (its jobs' and ``names``), however it ends."""
    try:
        yield
    finally:
        prefixes = (job_key_prefix, in_progress_key_prefix, retry_key_prefix)
        with client.pipeline(transaction=False) as pipe:
            pipe.delete(*names)
            for start in range(0, len(job_ids), ENQUEUE_CHUNK):
                chunk = job_ids[start : start + ENQUEUE_CHUNK]
                pipe.delete(*(prefix + job_id for job_id in chunk for prefix in prefixes))
            pipe.execute()


def _alive(worker: subprocess.Popen[Any], log: Path) -> None:
    if worker.poll() is not None:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"the arq worker exited with {worker.returncode}:\n{tail}")


def _first_job(
    client: redis.Redis, mark_key: str, worker: subprocess.Popen[Any], log: Path, timeout: float
) -> dict[str, float]:
    """The wall time and worker CPU the first job saw, once the worker has written them."""

    def mark() -> bytes | None:
        _alive(worker, log)
        raw: bytes | None = client.get(mark_key)
        return raw

    found: dict[str, float] = json.loads(
        wait_until(mark, timeout=timeout, what="the arq worker's first job", every=0.01)
    )
    return found


def _drained(
    client: redis.Redis,
    queue_name: str,
    job_ids: list[str],
    worker: subprocess.Popen[Any],
    log: Path,
    timeout: float,
) -> None:
    """Returns once the queue is empty and none of the jobs is in progress."""
    in_progress = [in_progress_key_prefix + job_id for job_id in job_ids]

    def empty() -> bool:
        _alive(worker, log)
        return client.zcard(queue_name) == 0 and client.exists(*in_progress) == 0

    wait_until(empty, timeout=timeout, what="arq to drain the queue", every=DRAIN_POLL_SECONDS)


# --- the children ------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    page_url: str
    ajax_url: str
    origin: str

    @classmethod
    def of(cls, site_url: str) -> Site:
        origin = site_url.rstrip("/")
        return cls(page_url=origin + "/", ajax_url=origin + AJAX_PATH, origin=origin)


@dataclass(frozen=True)
class Handshake:
    nonce: str
    post_id: str
    cookies: dict[str, str]
    proxy: str | None


@dataclass
class Tally:
    ok: int = 0
    failed: int = 0


def open_session(concurrency: int, impersonate: str) -> AsyncSession:
    """One impersonating session; its jar never grows, each request carries its own cookies."""
    return AsyncSession(
        impersonate=impersonate,  # type: ignore[arg-type]
        max_clients=concurrency,
        discard_cookies=True,
        timeout=REQUEST_TIMEOUT,
        trust_env=False,  # loopback figures: no proxy from the environment in between
    )


async def handshake(http: AsyncSession, site: Site, proxy: str | None) -> Handshake:
    """GETs the page (as worker.client does) and keeps its nonce, post id and cookies."""
    reply = await http.get(site.page_url, headers={"Accept": "text/html"}, proxy=proxy)
    if reply.status_code != 200:
        raise HandshakeFailed(f"page GET answered HTTP {reply.status_code}")
    tokens = parse_page(reply.text)
    cookies = {name: value for name, value in reply.cookies.items() if value is not None}
    return Handshake(tokens.nonce, tokens.post_id, cookies, proxy)


def form_fields(session: Handshake, page_url: str, prompt: str) -> dict[str, str]:
    """The form as the service sent it before site profiles (bot 0, a shortcode, a client
    ID per prompt), kept here so that the reference sends the same form whichever version
    of the service is on PYTHONPATH (before/after). The default simulator is such a site,
    and reads this urlencoded form for the CPU a multipart one costs it (simulator.forms)."""
    return {
        "_wpnonce": session.nonce,
        "post_id": session.post_id,
        "url": page_url,
        "action": "wpaicg_chat_shortcode_message",
        "message": prompt,
        "bot_id": "0",
        "chatbot_identity": "shortcode",
        "wpaicg_chat_client_id": secrets.token_hex(5),
        "wpaicg_chat_history": json.dumps([f"Human: {prompt}"]),
        "wpaicg_user_agree": "1",
    }


async def ask(http: AsyncSession, site: Site, session: Handshake, index: int) -> bool:
    """POSTs one prompt with the session's cookies; True for HTTP 200 and status success."""
    prompt = f"{LANGUAGE_INSTRUCTION} Prompt {index}: why?"
    reply = await http.post(
        site.ajax_url,
        data=form_fields(session, site.page_url, prompt),
        cookies=session.cookies,
        headers={
            "Accept": "application/json, text/event-stream",
            "Origin": site.origin,
            "Referer": site.page_url,
            "X-Requested-With": "XMLHttpRequest",
        },
        proxy=session.proxy,
    )
    return succeeded(reply)


def succeeded(reply: Response) -> bool:
    if reply.status_code != 200:
        return False
    body = json.loads(reply.content)
    return isinstance(body, dict) and body.get("status") == "success"


async def pump(count: int, concurrency: int, one: Callable[[int], Awaitable[bool]]) -> Tally:
    """``count`` calls of ``one``, from ``concurrency`` coroutines pulling from a counter."""
    tally, next_index = Tally(), 0
    deadline = time.monotonic() + LOAD_SECONDS

    async def client() -> None:
        nonlocal next_index
        while next_index < count and time.monotonic() < deadline:
            index, next_index = next_index, next_index + 1
            try:
                ok = await one(index)
            except FAILURES:
                ok = False
            if ok:
                tally.ok += 1
            else:
                tally.failed += 1

    await asyncio.gather(*(client() for _ in range(min(concurrency, count))))
    return tally


async def timed(
    count: int, concurrency: int, one: Callable[[int], Awaitable[bool]]
) -> dict[str, Any]:
    """The figures of one timed load: wall clock and this process's CPU around it only."""
    cpu, start = cpu_seconds(os.getpid()), time.perf_counter()
    tally = await pump(count, concurrency, one)
    seconds, cpu = time.perf_counter() - start, cpu_seconds(os.getpid()) - cpu
    sent = max(tally.ok + tally.failed, 1)
    return {
        "prompts_per_s": round(tally.ok / seconds, 1),
        "seconds": round(seconds, 3),
        "ok": tally.ok,
        "failed": tally.failed,
        "cpu_ms_per_prompt": round(cpu / sent * 1000, 3),
        "concurrency": concurrency,
    }


async def plain_curl_load(
    site_url: str, count: int, concurrency: int, proxies: list[str], impersonate: str
) -> dict[str, Any]:
    site = Site.of(site_url)
    async with open_session(concurrency, impersonate) as http:
        routes = proxies or [None]
        sessions = await asyncio.gather(*(handshake(http, site, proxy) for proxy in routes))

        async def one(index: int) -> bool:
            return await ask(http, site, sessions[index % len(sessions)], index)

        figures = await timed(count, concurrency, one)
    return {**figures, "handshakes": len(sessions)}


async def per_call_load(
    site_url: str, count: int, concurrency: int, proxies: list[str], impersonate: str
) -> dict[str, Any]:
    site = Site.of(site_url)
    routes: list[str | None] = [*proxies] or [None]
    requests = 0
    async with open_session(concurrency, impersonate) as http:

        async def one(index: int) -> bool:
            nonlocal requests
            requests += 1
            session = await handshake(http, site, routes[index % len(routes)])
            requests += 1
            return await ask(http, site, session, index)

        figures = await timed(count, concurrency, one)
    sent = max(figures["ok"] + figures["failed"], 1)
    return {**figures, "handshakes": sent, "requests_per_prompt": round(requests / sent, 3)}


def run_noop_worker(
    redis_url: str, queue_name: str, max_jobs: int, poll_delay: float, mark_key: str
) -> None:
    """An arq worker with one no-op function, configured like worker/jobs.py, until SIGTERM."""
    from arq import func
    from arq.connections import RedisSettings
    from arq.worker import Worker

    async def noop(ctx: dict[str, Any]) -> None:
        # The first job marks the clock's start: one SET in the whole run.
        if "started" not in ctx:
            ctx["started"] = True
            mark = {"t": time.time(), "cpu": cpu_seconds(os.getpid())}
            await ctx["redis"].set(mark_key, json.dumps(mark), ex=3600)

    Worker(
        functions=[func(noop, name=NOOP_FUNCTION, max_tries=1)],
        queue_name=queue_name,
        redis_settings=RedisSettings.from_dsn(redis_url),
        max_jobs=max_jobs,
        poll_delay=poll_delay,
        keep_result=0,
        job_serializer=json_dumps,
        job_deserializer=json.loads,
        log_results=False,
    ).run()


def child_main(mode: str, args_file: str) -> None:
    args = json.loads(Path(args_file).read_text())
    if mode == "arq_worker":
        run_noop_worker(**args)
        return
    loads = {"plain_curl": plain_curl_load, "per_call": per_call_load}
    print(json.dumps(asyncio.run(loads[mode](**args))), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("plain_curl", "per_call", "arq_worker"):
        sys.exit("usage: references.py plain_curl|per_call|arq_worker ARGS.json")
    child_main(sys.argv[1], sys.argv[2])
