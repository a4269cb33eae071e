"""``chatgptes up``: a local fleet in one command, to run your own prompts offline.

It starts a Redis of its own (a ``redis-server`` on a free port, else the embedded
fakeredis server; never the shared 6379 unless told with ``--redis-port`` or
``--redis-url``), the simulator, N workers at a rate fit for the simulator and,
with ``--serve``, ``chatgptes serve``. Once every worker has reported, it prints the
environment another terminal needs as ``export NAME=value`` lines (stdout; all else
goes to stderr), and then runs until Ctrl-C, SIGTERM or SIGHUP, which stop every
process it started and remove its work directory. A process that dies stops the
fleet too; its log's last lines are shown and the work directory is kept.

The processes come from ``chatgptes.local_fleet``, as the demo's do.
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import click

from chatgptes import local_fleet
from chatgptes.local_fleet import Cleanup, FleetError, LocalRedis, signal_handler
from chatgptes.running import EXIT_ERROR, counted
from contract.config import QueueSettings

# The simulator answers in 20-120 ms and limits no one: the workers' one identity (this
# machine's address) may send as fast as its caps allow. The real site's default, one
# request a second per identity, would make 200 prompts take over three minutes here.
SIMULATOR_OPTIONS = ("--latency", "uniform:20,120")
WORKER_SETTINGS = {
    "proxy_rate_per_second": "0",
    "proxy_max_inflight": "16",
    # The simulator echoes the message: without the preamble the echo shows the prompt.
    "language_instruction": "",
}
QUEUE_NAME = QueueSettings.model_fields["queue_name"].default  # the queue producers default to
LOCAL_API_KEY = "sk-local"  # serve on loopback with no key takes any; the SDKs want one
READY_SECONDS = 30.0  # for every worker to report
WATCH_SECONDS = 0.5
# Requests on the wire at Ctrl-C get this long; the simulator answers within a second, so
# a request times out in as long (a grace must cover the request timeout, or a worker
# refuses to start).
WORKER_GRACE_SECONDS = "5"
LOG_FILES = {"simulator": "sim.log"}  # the others' are <name>.log


def say(message: str) -> None:
    click.echo(f"» {message}", err=True)


@click.command()
@click.option(
    "--workers", type=click.IntRange(1, 64), default=2, show_default=True, help="Worker processes."
)
@click.option(
    "--serve",
    "with_api",
    is_flag=True,
    help="Also run `chatgptes serve`: the OpenAI-compatible API and the console.",
)
@click.option(
    "--serve-port",
    type=click.IntRange(0, 65535),
    default=0,
    help="The API's port (default: a free one; OPENAI_BASE_URL names it).",
)
@click.option(
    "--redis-port",
    type=click.IntRange(1, 65535),
    help="Run the redis-server on this port (default: a free one).",
)
@click.option("--redis-url", help="Use this Redis instead of starting one (never flushed).")
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the export lines here (for `source FILE`); removed at the end.",
)
def up(
    workers: int,
    with_api: bool,
    serve_port: int,
    redis_port: int | None,
    redis_url: str | None,
    env_file: Path | None,
) -> None:
    """Start a local fleet (Redis, the simulator, workers) and print the environment to use it.

    Prints `export NAME=value` lines for another terminal, where `chatgptes enqueue FILE`
    and `chatgptes wait BATCH` then run against this fleet. Ctrl-C stops everything.
    """
    if redis_port is not None and redis_url is not None:
        raise click.UsageError("--redis-port starts a Redis, --redis-url uses one: not both")
    workdir = Path(tempfile.mkdtemp(prefix="chatgptes-up-"))
    cleanup = Cleanup(say=say)
    failed = False
    try:
        # SIGTERM and SIGHUP (the terminal closed) unwind like Ctrl-C, so the clean-up runs;
        # Ctrl-C too where a parent left SIGINT ignored (Python then keeps it ignored).
        stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        with signal_handler(signal.default_int_handler, *stops):
            exports = start(cleanup, workdir, workers, with_api, serve_port, redis_port,
                            redis_url)  # fmt: skip
            announce(exports, env_file)
            say(f"ready: {counted(workers, 'worker')} on the simulator; logs in {workdir}. "
                "Ctrl-C stops everything.")  # fmt: skip
            watch(cleanup, workdir)
    except KeyboardInterrupt:
        say("stopping")
    except (FleetError, TimeoutError, OSError) as error:
        failed = True
        say(f"error: {error}")
    finally:
        cleanup.close()
        if env_file is not None:
            env_file.unlink(missing_ok=True)
        if failed and any(workdir.iterdir()):
            say(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if failed:
        sys.exit(EXIT_ERROR)


def start(
    cleanup: Cleanup,
    workdir: Path,
    workers: int,
    with_api: bool,
    serve_port: int,
    redis_port: int | None,
    redis_url: str | None,
) -> dict[str, str]:
    """Starts the fleet; the variables that reach it, by name."""
    server = given_redis(redis_url) if redis_url else None
    server = server or local_fleet.own_redis(cleanup, workdir, port=redis_port)
    say(f"using {server.label}")
    sim = local_fleet.start_simulator(cleanup, workdir, *SIMULATOR_OPTIONS)
    say(f"simulator (chatgpt.es stand-in) at {sim['url']}")
    # The queue is named too, so that a CHATGPTES_QUEUE_NAME already in a shell is overridden.
    settings = {"redis_url": server.url, "queue_name": QUEUE_NAME, "upstream_url": sim["url"],
                **WORKER_SETTINGS}  # fmt: skip
    started = local_fleet.start_workers(cleanup, workdir, workers, {
        **settings, "log_format": "json", "shutdown_grace_seconds": WORKER_GRACE_SECONDS,
        "request_timeout_seconds": WORKER_GRACE_SECONDS,
    })  # fmt: skip
    wait_for_workers(server.url, started, workdir)
    exports = local_fleet.setting_variables(settings)
    if with_api:
        base_url = local_fleet.start_api(cleanup, workdir, {**settings, "log_format": "json"},
                                         port=serve_port or None)  # fmt: skip
        say(f"chatgptes serve at {base_url} (the console at {base_url.removesuffix('/v1')}/)")
        exports |= {"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": LOCAL_API_KEY}
    return exports


def given_redis(url: str) -> LocalRedis:
    found = local_fleet.given_redis(url)
    if found is None:
        raise FleetError(local_fleet.unreachable_note(url, local_fleet.redis_problem(url) or "?"))
    return found


def wait_for_workers(url: str, started: local_fleet.Named, workdir: Path) -> None:
    """Returns once every worker started has reported itself; FleetError if one exits."""
    from producer.fleet import live_workers

    async def count() -> int:
        from contract.retrying import redis_client

        client = redis_client(url)
        try:
            return len(await live_workers(client, QUEUE_NAME))
        finally:
            await client.aclose()

    deadline = time.monotonic() + READY_SECONDS
    while asyncio.run(count()) < len(started):
        check_running(started, workdir)
        if time.monotonic() > deadline:
            raise FleetError(f"the workers did not report within {READY_SECONDS:.0f}s; "
                             f"see {workdir}/worker-N.log")  # fmt: skip
        time.sleep(WATCH_SECONDS)


def announce(exports: dict[str, str], env_file: Path | None) -> None:
    """The ``export`` lines on stdout (and in ``env_file``), each value shell-quoted."""
    lines = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in exports.items())
    if env_file is not None:
        env_file.parent.mkdir(parents=True, exist_ok=True)
        env_file.write_text(lines)
    click.echo(lines, nl=False)
    sys.stdout.flush()


def watch(cleanup: Cleanup, workdir: Path) -> None:
    """Until interrupted; FleetError (with its log's end) as soon as a process exits."""
    while True:
        check_running(cleanup.processes, workdir)
        time.sleep(WATCH_SECONDS)


def check_running(named: local_fleet.Named, workdir: Path) -> None:
    exited = local_fleet.first_exit(named)
    if exited is None:
        return
    name, code = exited
    tail = local_fleet.log_tail(workdir / LOG_FILES.get(name, f"{name}.log"))
    raise FleetError(f"{name} exited with code {code}; the end of its log:\n{tail}")
