"""The fleet a campaign breaks: its own Redis, the simulator, workers and ``serve``.

Every process is started here and stopped by ``Fleet.close`` (the campaign runs it in a
``with``), whatever happened. Workers are kept in slots: one the nemesis killed or
stopped is started again after a moment, as a process supervisor would; one that exits
when nobody asked it to is noted (``unexpected_exits``) and started again too, so that
the run goes on and the checker can report it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from simulator import local

# What the workers are told: the defaults where the campaign is about them (claims,
# heartbeats), wide retry budgets (the fault mix must not fail a prompt for good) and a
# lapse limit no kill storm reaches (WorkerCrashed has tests of its own).
WORKER_SETTINGS: dict[str, object] = {
    "proxy_rate_per_second": 0,
    "proxy_max_inflight": 3,  # 2 proxies a worker: 18 requests out at most, as with 3 shared
    "fleet_max_inflight": 24,
    "chunk_size": 10,
    "connect_timeout_seconds": 3,
    "request_timeout_seconds": 8,
    "shutdown_grace_seconds": 12,
    "job_timeout_seconds": 600,
    "chunk_lapse_limit": 1000,
    "cooldown_base_seconds": 0.5,
    "cooldown_cap_seconds": 5,
    "backoff_base_seconds": 0.2,
    "backoff_cap_seconds": 2,
    "retry_budgets": (
        '{"SessionStale": 50, "RateLimited": 50, "Blocked": 50, "ProxyFault": 50, '
        '"HandshakeFailed": 50, "UpstreamHiccup": 50, "UpstreamTimeout": 50}'
    ),
    "log_format": "json",
}
SIM_OPTIONS = (
    "--ledger", "--latency", "uniform:20,400", "--ban-after-violations", "0",
    "--fault-5xx-rate", "0.01", "--fault-reset-rate", "0.01", "--fault-nonjson-rate", "0.005",
    "--fault-429-rate", "0.005", "--fault-stale-nonce-rate", "0.01", "--fault-slow-rate",
    "0.002", "--slow-seconds", "12",
)  # fmt: skip
RESTART_AFTER_SECONDS = 1.0
# Each worker sends through proxies of its own, so that the site's ledger says which worker
# sent each request (the checker excuses a freeze or kill only for that worker's requests).
PROXIES_PER_WORKER = 2


@dataclass
class Slot:
    """One worker's place in the fleet: the process running there now, and its history."""

    number: int
    process: subprocess.Popen[Any] | None = None
    incarnation: int = 0
    expected_exit: bool = False  # the nemesis stopped it: its exit is no surprise
    frozen: bool = False


@dataclass
class Fleet:
    workdir: Path
    workers: int = 3
    seed: int = 0
    redis_port: int = 0
    redis_url: str = ""
    queue_name: str = "chatgptes:campaign"
    sim: dict[str, Any] = field(default_factory=dict)
    api_url: str = ""
    proxies_file: Path = field(init=False)
    slots: list[Slot] = field(default_factory=list)
    unexpected_exits: list[str] = field(default_factory=list)
    _redis: subprocess.Popen[Any] | None = None
    _sim: subprocess.Popen[Any] | None = None
    _api: subprocess.Popen[Any] | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _watching: bool = False

    def __post_init__(self) -> None:
        self.proxies_file = self.workdir / "proxies.txt"

    # -- start and stop -------------------------------------------------------------------

    def __enter__(self) -> Fleet:
        try:
            self.start_redis()
            proxies = str(PROXIES_PER_WORKER * self.workers)
            self.sim, self._sim = local.start_simulator(
                self.workdir, *SIM_OPTIONS, "--proxies", proxies, "--seed", str(self.seed)
            )
            self.slots = [Slot(n) for n in range(self.workers)]
            self.write_proxies(self.sim["proxies"])
            for slot in self.slots:
                self.start_worker(slot)
            self.api_url = self._start_api()
            self._watching = True
            threading.Thread(target=self._watch, name="fleet-watch", daemon=True).start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._watching = False
        with self._lock:
            for slot in self.slots:
                if slot.process is not None:
                    slot.expected_exit = True
                    with contextlib.suppress(ProcessLookupError):
                        slot.process.send_signal(signal.SIGCONT)
                    local.stop_process(slot.process, grace=20)
            for process in (self._api, self._sim, self._redis):
                if process is not None:
                    local.stop_process(process)

    def env(self, **extra: object) -> dict[str, str]:
        settings = {**WORKER_SETTINGS, **extra}
        env = {f"CHATGPTES_{name.upper()}": str(value) for name, value in settings.items()}
        env.update({
            "CHATGPTES_REDIS_URL": self.redis_url,
            "CHATGPTES_QUEUE_NAME": self.queue_name,
            "CHATGPTES_UPSTREAM_URL": self.sim["url"],
            "CHATGPTES_PROXIES_FILE": str(self.proxies_file),
        })  # fmt: skip
        return env

    # -- Redis ------------------------------------------------------------------------------

    def start_redis(self) -> None:
        """Append-only (fsync always: a crash keeps everything), DEBUG allowed from here."""
        if not self.redis_port:
            self.redis_port = local.free_port()
            self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self._redis = local.start_redis(self.workdir, self.redis_port, appendonly=True,
                                        extra=("--enable-debug-command", "local"))  # fmt: skip

    def crash_redis(self) -> None:
        """SIGKILL: what it had fsynced (everything: appendfsync always) survives."""
        if self._redis is not None:
            self._redis.kill()
            self._redis.wait(timeout=10)

    def client(self, timeout: float = 5.0) -> redis.Redis:
        return redis.Redis.from_url(
            self.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    # -- workers ----------------------------------------------------------------------------

    def start_worker(self, slot: Slot) -> None:
        with self._lock:
            slot.incarnation += 1
            log = self.workdir / f"worker{slot.number}-{slot.incarnation}.log"
            argv = [sys.executable, "-m", "chatgptes.cli", "worker"]
            env = self.env()
            env["CHATGPTES_PROXIES_FILE"] = str(self.proxies_file_of(slot.number))
            slot.process = local.start_process(argv, log=log, env=env)
            slot.expected_exit = False
            slot.frozen = False

    def signal_worker(self, slot: Slot, signum: signal.Signals) -> None:
        with self._lock:
            if slot.process is None or slot.process.poll() is not None:
                return
            if signum in (signal.SIGKILL, signal.SIGTERM):
                slot.expected_exit = True
            slot.frozen = signum is signal.SIGSTOP
            slot.process.send_signal(signum)

    def _watch(self) -> None:
        """Starts again the workers that exited; notes those nobody stopped."""
        while self._watching:
            with self._lock:
                for slot in self.slots:
                    process = slot.process
                    if process is None or process.poll() is None:
                        continue
                    if not slot.expected_exit:
                        log = self.workdir / f"worker{slot.number}-{slot.incarnation}.log"
                        tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
                        self.unexpected_exits.append(
                            f"worker {slot.number}.{slot.incarnation} exited "
                            f"{process.returncode} on its own; log ends: {tail!r}"
                        )
                    slot.process = None
                    threading.Timer(RESTART_AFTER_SECONDS, self._restart, (slot,)).start()
            time.sleep(0.1)

    def _restart(self, slot: Slot) -> None:
        if self._watching and slot.process is None:
            self.start_worker(slot)

    def all_up(self) -> bool:
        return all(s.process is not None and s.process.poll() is None for s in self.slots)

    # -- proxies ----------------------------------------------------------------------------

    def proxies_file_of(self, slot: int) -> Path:
        return self.workdir / f"proxies-{slot}.txt"

    def own_proxies(self, slot: int) -> list[str]:
        return list(
            self.sim["proxies"][PROXIES_PER_WORKER * slot : PROXIES_PER_WORKER * (slot + 1)]
        )

    def sender_of(self, identity: str) -> int | None:
        """The slot of the worker whose proxy the site saw (``proxy3`` → slot 1)."""
        if identity.startswith("proxy") and identity[5:].isdigit():
            return (int(identity[5:]) - 1) // PROXIES_PER_WORKER
        return None

    def write_proxies(self, urls: list[str]) -> None:
        """Writes each worker's proxies file (its own proxies among ``urls``) and the API's
        (all of them), each whole and atomically (workers reload a file when it changes)."""
        files = [(self.proxies_file, urls)] + [
            (self.proxies_file_of(slot.number),
             [url for url in self.own_proxies(slot.number) if url in urls])
            for slot in self.slots
        ]  # fmt: skip
        for path, listed in files:
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(f"{url}\n" for url in listed))
            os.replace(tmp, path)

    # -- the API ----------------------------------------------------------------------------

    def _start_api(self) -> str:
        from producer.http.client import answers_health

        port = local.free_port()
        argv = [sys.executable, "-m", "chatgptes.serve", "--host", "127.0.0.1", "--port",
                str(port)]  # fmt: skip
        env = self.env(api_keys="sk-campaign-key-0123456789", chat_timeout_seconds=120)
        self._api = local.start_process(argv, log=self.workdir / "api.log", env=env)
        base_url = f"http://127.0.0.1:{port}/v1"
        local.wait_until(lambda: answers_health(base_url), timeout=30, what="serve to answer")
        return base_url


__all__ = ["SIM_OPTIONS", "WORKER_SETTINGS", "Fleet", "Slot"]
