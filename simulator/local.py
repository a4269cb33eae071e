"""Running the local stand-ins as processes: the simulator and a private redis-server.

Tests and benchmarks use these so that everything binds to 127.0.0.1 on a free
port and every process started here is stopped by whoever started it, whatever
happened (the context managers do it themselves).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], Any], *, timeout: float, what: str, every: float = 0.05
) -> Any:
    """Polls ``condition`` until it is truthy; TimeoutError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def stop_process(process: subprocess.Popen[Any], *, grace: float = 10.0) -> None:
    """SIGTERM, wait up to ``grace``, then SIGKILL: nothing is left running."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def start_process(
    argv: Sequence[str],
    *,
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    inherit_env: bool = True,
    new_session: bool = False,
) -> subprocess.Popen[Any]:
    """A subprocess with stdout and stderr in ``log``; the caller stops it.

    Its environment is this one with ``env`` over it, or only ``env`` (``inherit_env``
    False: a caller that must keep its own variables out builds the whole of it).
    ``new_session``: a Ctrl-C at the terminal does not reach it, only its starter, which
    stops it in its turn.
    """
    environment = {**os.environ, **(env or {})} if inherit_env else dict(env or {})
    with log.open("wb") as handle:
        return subprocess.Popen(
            list(argv), env=environment, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=new_session,
        )  # fmt: skip


@contextmanager
def running(
    argv: Sequence[str], *, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[Any]]:
    """A subprocess writing to ``log``, stopped on the way out."""
    process = start_process(argv, log=log, env=env)
    try:
        yield process
    finally:
        stop_process(process)


def redis_pings(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.2).ping())
    except redis.ConnectionError:
        return False


def redis_argv(workdir: Path, port: int, *, appendonly: bool = False) -> list[str]:
    """A redis-server command line on 127.0.0.1:``port``, its files in ``workdir``."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("no redis-server on PATH")
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes" if appendonly else "no", "--appendfsync", "always",
            "--dir", str(workdir)]  # fmt: skip


def start_redis(
    workdir: Path,
    port: int,
    *,
    appendonly: bool = False,
    extra: Sequence[str] = (),
    new_session: bool = False,
) -> subprocess.Popen[Any]:
    """A redis-server process answering PING on ``port`` (``extra``: more of its options);
    the caller stops it."""
    argv = [*redis_argv(workdir, port, appendonly=appendonly), *extra]
    process = start_process(argv, log=workdir / f"redis-{port}.log", new_session=new_session)
    try:
        wait_until(lambda: redis_pings(port), timeout=10, what="redis-server to answer PING")
    except BaseException:
        stop_process(process)
        raise
    return process


@contextmanager
def redis_server(
    workdir: Path, *, appendonly: bool = False
) -> Iterator[tuple[str, subprocess.Popen[Any]]]:
    """(URL, process) of a redis-server of our own on a free port (no persistence unless asked)."""
    port = free_port()
    process = start_redis(workdir, port, appendonly=appendonly)
    try:
        yield f"redis://127.0.0.1:{port}/0", process
    finally:
        stop_process(process)


def start_simulator(
    workdir: Path,
    *options: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    inherit_env: bool = True,
    timeout: float = 30.0,
    new_session: bool = False,
) -> tuple[dict[str, Any], subprocess.Popen[Any]]:
    """(ready info, process) of ``python -m simulator`` started with ``options``, once it
    has written its ready file; the caller stops it. Log: ``workdir/sim.log`` for the
    first in ``workdir``, then ``sim-2.log``…: several run side by side."""
    name = _unused_name(workdir, "sim", ".log")
    ready = workdir / f"{name}-ready.json"
    log = workdir / f"{name}.log"
    ready.unlink(missing_ok=True)  # an earlier simulator's file would name its dead ports
    argv = [sys.executable, "-m", "simulator", "--port", "0", "--ready-file", str(ready), *options]
    process = start_process(argv, log=log, env=env, cwd=cwd, inherit_env=inherit_env,
                            new_session=new_session)  # fmt: skip

    def is_ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the simulator exited with code {process.returncode}; see {log}")
        return ready.exists()

    try:
        wait_until(is_ready, timeout=timeout, what=f"the simulator's ready file (log: {log})")
    except BaseException:
        stop_process(process)
        raise
    return json.loads(ready.read_text()), process


def _unused_name(workdir: Path, stem: str, suffix: str) -> str:
    """``stem``, or ``stem-2``, ``stem-3``…: the first with no ``suffix`` file in ``workdir``."""
    for number in itertools.count(1):
        name = stem if number == 1 else f"{stem}-{number}"
        if not (workdir / f"{name}{suffix}").exists():
            return name
    raise AssertionError("unreachable")


@contextmanager
def simulator_process(
    workdir: Path, *options: str
) -> Iterator[tuple[dict[str, Any], subprocess.Popen[Any]]]:
    """(ready info, process) of ``python -m simulator`` started with ``options``, stopped
    on the way out."""
    info, process = start_simulator(workdir, *options)
    try:
        yield info, process
    finally:
        stop_process(process)
