"""What the benchmarks share: a private redis-server, the simulator, worker processes, /proc.

Everything binds to 127.0.0.1 on a free port; every process started here is stopped
by the context manager that started it, whatever happened.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def stop_process(process: subprocess.Popen[Any], *, grace: float = 15.0) -> None:
    """SIGTERM, wait up to ``grace``, then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextmanager
def running(argv: list[str], *, log: Path, env: dict[str, str] | None = None) -> Iterator[Any]:
    """A subprocess writing to ``log``, stopped on the way out."""
    with log.open("wb") as handle:
        process = subprocess.Popen(
            argv, env={**os.environ, **(env or {})}, stdout=handle, stderr=subprocess.STDOUT
        )
        try:
            yield process
        finally:
            stop_process(process)


def _pings(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.2).ping())
    except redis.ConnectionError:
        return False


@contextmanager
def redis_server(workdir: Path) -> Iterator[tuple[str, subprocess.Popen[Any]]]:
    """(URL, process) of a redis-server of our own on a free port, no persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("no redis-server on PATH")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir)]  # fmt: skip
    with running(argv, log=workdir / "redis.log") as process:
        wait_until(lambda: _pings(port), timeout=10, what="redis-server to answer PING")
        yield f"redis://127.0.0.1:{port}/0", process


@contextmanager
def simulator(workdir: Path, *options: str) -> Iterator[tuple[dict[str, Any], Any]]:
    """(ready info, process) of the simulator started with ``options``."""
    ready = workdir / "sim-ready.json"
    argv = [sys.executable, "-m", "simulator", "--port", "0", "--ready-file", str(ready), *options]
    with running(argv, log=workdir / "sim.log") as process:

        def is_ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"simulator exited: {(workdir / 'sim.log').read_text()}")
            return ready.exists()

        wait_until(is_ready, timeout=30, what="the simulator's ready file")
        yield json.loads(ready.read_text()), process


def http_json(url: str, *, method: str = "GET") -> Any:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read() or b"null")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (its own, not its children's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mib(pid: int | str = "self") -> float:
    """VmHWM: the most resident memory the process has had, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def emit(figures: dict[str, Any]) -> None:
    """The one JSON line of figures every benchmark ends with."""
    print(json.dumps(figures, sort_keys=True))
