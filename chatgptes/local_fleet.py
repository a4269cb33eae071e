"""A fleet on this machine, as processes: a Redis, the simulator, workers, ``serve``.

``chatgptes demo`` and ``chatgptes up`` start their processes here, through the helpers
the tests and benchmarks use (``simulator.local``). Every process started is recorded
in a ``Cleanup`` and stopped by it, whatever happened (a failure, Ctrl-C or SIGTERM
included): first the workers and ``serve`` together, then the servers they use.
Children run in sessions of their own, so a Ctrl-C at the terminal reaches only the
command that started them, which stops them in that order.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract.redaction import redact_text, redact_url
from simulator import local

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 15.0  # for the simulator and the API server to be ready
STOP_GRACE_SECONDS = 10.0

Say = Callable[[str], None]
Named = Sequence[tuple[str, subprocess.Popen[Any]]]


class FleetError(RuntimeError):
    """A process of the fleet could not be started; the message says which and where to look."""


@dataclass
class Cleanup:
    """What was started: processes stopped together first, then the servers they used."""

    say: Say
    processes: list[tuple[str, subprocess.Popen[Any]]] = field(default_factory=list)
    servers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        # A second Ctrl-C must not cut the clean-up short and leave processes behind.
        with signal_handler(signal.SIG_IGN, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            stop_together(self.processes, self.say)
            self.processes.clear()
            while self.servers:
                self.servers.pop()()


def stop_together(named: Named, say: Say, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM all at once, then each gets what is left of one grace period before SIGKILL."""
    running = [(name, process) for name, process in named if process.poll() is None]
    for _, process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for _, process in running:
        local.stop_process(process, grace=max(0.1, deadline - time.monotonic()))
    if running:
        say(f"stopped {', '.join(name for name, _ in running)}")


@contextmanager
def signal_handler(handler: Any, *signums: int) -> Iterator[None]:
    """Installs ``handler`` for ``signums`` while the block runs (only the main thread can)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, handler_before in previous.items():
            signal.signal(signum, handler_before)


def first_exit(named: Named) -> tuple[str, int] | None:
    """(name, exit code) of the first process that has exited, or None while all run."""
    for name, process in named:
        if process.poll() is not None:
            return name, process.returncode
    return None


# -- Redis ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalRedis:
    url: str
    label: str  # which Redis this is, as the user is told (no password)


def redis_problem(url: str, timeout: float = 1.0) -> str | None:
    """None if the Redis at ``url`` answers PING within ``timeout``, else why not."""
    from redis import Redis, RedisError

    from contract.redis_errors import explain

    try:
        with Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout) as client:
            client.ping()
    except (RedisError, OSError) as error:
        return explain(error).detail
    except ValueError:
        return "not a Redis URL"
    return None


def given_redis(url: str) -> LocalRedis | None:
    """The Redis at ``url`` if it answers, else None (and why not, said by the caller)."""
    if redis_problem(url) is None:
        return LocalRedis(url, f"your Redis at {redact_url(url)} (CHATGPTES_REDIS_URL)")
    return None


def own_redis(cleanup: Cleanup, workdir: Path, *, port: int | None = None) -> LocalRedis:
    """A redis-server of our own (on ``port``, or a free one), else the embedded fakeredis
    server; either stopped by ``cleanup``. FleetError if there is neither."""
    if shutil.which("redis-server") is not None:
        datadir = workdir / "redis"
        datadir.mkdir(exist_ok=True)
        port = port or local.free_port()
        try:
            process = local.start_redis(datadir, port, new_session=True)
        except TimeoutError as error:
            raise FleetError(f"redis-server did not start on port {port}; see {datadir}") from error
        cleanup.servers.append(lambda: stop_together([("redis-server", process)], cleanup.say))
        url = f"redis://127.0.0.1:{port}/0"
        return LocalRedis(url, f"a redis-server of its own at {url} (stopped at the end)")
    if port is not None:
        raise FleetError(f"no redis-server on PATH to start on port {port}")
    try:
        from chatgptes.embedded_redis import start_fake_redis

        url, stop = start_fake_redis()
    except ImportError as error:
        raise FleetError(
            "no Redis: install redis-server (apt-get install redis-server), set "
            f"CHATGPTES_REDIS_URL, or pip install 'fakeredis[lua]' for the embedded one ({error})"
        ) from error
    cleanup.servers.append(stop)
    return LocalRedis(url, f"embedded fakeredis server at {url} (redis-server not found)")


def unreachable_note(url: str, problem: str) -> str:
    return f"CHATGPTES_REDIS_URL={redact_url(url)} is not reachable ({redact_text(problem)})"


# -- the processes ----------------------------------------------------------------------


def child_env(**settings: str) -> dict[str, str]:
    """The fleet's own settings only: none of the user's CHATGPTES_* leaks into its processes."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CHATGPTES_")}
    # The children run in the work directory (so no .env applies); keep this package importable.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    env.update(setting_variables(settings))
    return env


def setting_variables(settings: Mapping[str, str]) -> dict[str, str]:
    """``{"redis_url": u}`` as ``{"CHATGPTES_REDIS_URL": u}``."""
    return {f"CHATGPTES_{name.upper()}": value for name, value in settings.items()}


def spawn(
    cleanup: Cleanup, name: str, argv: Sequence[str], workdir: Path, env: dict[str, str]
) -> subprocess.Popen[Any]:
    process = local.start_process(argv, log=workdir / f"{name}.log", env=env, cwd=workdir,
                                  inherit_env=False, new_session=True)  # fmt: skip
    cleanup.processes.append((name, process))
    return process


def start_simulator(
    cleanup: Cleanup, workdir: Path, *options: str, name: str = "simulator"
) -> dict[str, Any]:
    """Starts a simulator (``name``, as the clean-up says it) and returns its ready info:
    {"url", "proxies", "stats_url", "chat", ...}. Several may run side by side."""
    try:
        sim, process = local.start_simulator(workdir, *options, env=child_env(), cwd=workdir,
                                             inherit_env=False, timeout=START_SECONDS,
                                             new_session=True)  # fmt: skip
    except (RuntimeError, TimeoutError) as error:
        raise FleetError(str(error)) from error
    cleanup.processes.append((name, process))
    return sim


def start_workers(
    cleanup: Cleanup, workdir: Path, count: int, settings: Mapping[str, str]
) -> list[tuple[str, subprocess.Popen[Any]]]:
    """``count`` ``chatgptes worker`` processes with ``settings`` (names without the prefix)."""
    env = child_env(**settings)
    argv = [sys.executable, "-m", "chatgptes.cli", "worker"]
    return [
        (name, spawn(cleanup, name, argv, workdir, env))
        for name in (f"worker-{n}" for n in range(1, count + 1))
    ]


def start_api(
    cleanup: Cleanup, workdir: Path, settings: Mapping[str, str], *, port: int | None = None
) -> str:
    """Starts ``chatgptes serve`` on loopback (no key needed there); its ``/v1`` URL."""
    from producer.http.client import answers_health

    port = port or local.free_port()
    argv = [sys.executable, "-m", "chatgptes.serve", "--host", "127.0.0.1", "--port", str(port)]
    process = spawn(cleanup, "api", argv, workdir, child_env(**settings))
    base_url = f"http://127.0.0.1:{port}/v1"

    def healthy() -> bool:
        if process.poll() is not None:
            raise FleetError(f"chatgptes serve exited with code {process.returncode}; "
                             f"see {workdir / 'api.log'}")  # fmt: skip
        return answers_health(base_url)

    local.wait_until(healthy, timeout=START_SECONDS, what="chatgptes serve to answer /healthz")
    return base_url


def log_tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a process's log, for a message saying why it died."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
