"""Starting and stopping the processes the integration and end-to-end tests need."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], Any], *, timeout: float, what: str, every: float = 0.05
) -> Any:
    """Polls ``condition`` until it is truthy; fails naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
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


def chatgptes(*args: str) -> list[str]:
    return [sys.executable, "-m", "producer.cli", *args]


def start(argv: Sequence[str], *, env: dict[str, str], log: Path) -> subprocess.Popen[Any]:
    handle = log.open("wb")
    return subprocess.Popen(
        list(argv), env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT
    )


def start_simulator(tmp: Path, *options: str) -> tuple[subprocess.Popen[Any], dict[str, Any]]:
    ready = tmp / "sim-ready.json"
    process = start(
        [sys.executable, "-m", "simulator", "--port", "0", "--ready-file", str(ready), *options],
        env={},
        log=tmp / "sim.log",
    )

    def is_ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"simulator exited: {(tmp / 'sim.log').read_text()}")
        return ready.exists()

    try:
        wait_until(is_ready, timeout=20, what="the simulator's ready file")
    except BaseException:
        stop_process(process)
        raise
    return process, json.loads(ready.read_text())
