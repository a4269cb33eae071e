"""The nemesis: a seeded schedule of faults, carried out one after another on a live fleet.

``schedule(seed, seconds)`` is a pure function of its arguments: the same seed gives the
same faults, on the same targets, in the same order (the moments they land on the fleet's
work still vary with the machine). Each fault carried out is noted (``Fault``) with the
wall-clock moments it began and ended, which the checker compares with the site's ledger.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import threading
import time
from dataclasses import dataclass, field

from contract import keys
from tests.campaign.fleet import Fleet
from tests.campaign.workload import Batch, Workload

# kind → weight in the draw
WEIGHTS: dict[str, int] = {
    "freeze": 4, "kill": 3, "terminate": 1, "redis_stall": 2, "redis_pause": 1,
    "redis_restart": 1, "redis_full": 1, "cancel": 2, "retry": 1, "expire": 1, "poison": 2,
    "proxies": 1,
}  # fmt: skip
# Faults after which a request answered around them may be sent again (the checker's
# excuse): a worker frozen or killed with requests out, Redis away while they came back.
LAPSING = frozenset({"freeze", "kill", "redis_stall", "redis_pause", "redis_restart"})


@dataclass(frozen=True)
class Step:
    at: float  # seconds after the start
    kind: str
    target: int  # a worker slot, or a pick among the batches (modulo their number)
    seconds: float  # how long it lasts (freeze, stall, pause, full, proxies)


@dataclass
class Fault:
    kind: str
    target: str
    began: float
    ended: float
    detail: str = ""


def schedule(seed: int, seconds: float, workers: int) -> list[Step]:
    """The faults of a run: one every 2-6 s after a quiet first 4 s."""
    rng = random.Random(seed)
    kinds = list(WEIGHTS)
    steps, at = [], 4.0
    while at < seconds:
        kind = rng.choices(kinds, weights=[WEIGHTS[k] for k in kinds])[0]
        target = rng.randrange(workers) if kind in ("freeze", "kill", "terminate") else (
            rng.randrange(1_000_000))  # fmt: skip
        steps.append(Step(round(at, 2), kind, target, round(rng.uniform(1.5, 7.0), 2)))
        at += rng.uniform(2.0, 6.0)
    return steps


@dataclass
class Nemesis:
    fleet: Fleet
    workload: Workload
    steps: list[Step]
    history: list[Fault] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="nemesis", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
        self.heal()

    def _run(self) -> None:
        started = time.monotonic()
        for step in self.steps:
            if self._stop.wait(max(0.0, started + step.at - time.monotonic())):
                return
            try:
                getattr(self, f"_{step.kind}")(step)
            except Exception as error:  # a fault that could not be carried out is noted
                self.errors.append(f"{step.kind} at {step.at}s: {type(error).__name__}: {error}")

    def note(self, kind: str, target: str, began: float, detail: str = "") -> None:
        self.history.append(Fault(kind, target, began, time.time(), detail))

    # -- workers ----------------------------------------------------------------------------

    def _freeze(self, step: Step) -> None:
        slot = self.fleet.slots[step.target]
        began = time.time()
        self.fleet.signal_worker(slot, signal.SIGSTOP)
        self._stop.wait(step.seconds)
        self.fleet.signal_worker(slot, signal.SIGCONT)
        self.note("freeze", f"worker {slot.number}", began, f"{step.seconds}s")

    def _kill(self, step: Step) -> None:
        slot = self.fleet.slots[step.target]
        began = time.time()
        self.fleet.signal_worker(slot, signal.SIGKILL)
        self.note("kill", f"worker {slot.number}", began)

    def _terminate(self, step: Step) -> None:
        slot = self.fleet.slots[step.target]
        process = slot.process
        began = time.time()
        self.fleet.signal_worker(slot, signal.SIGTERM)
        if process is not None:
            with contextlib.suppress(Exception):
                process.wait(timeout=30)
        self.note("terminate", f"worker {slot.number}", began)

    # -- Redis ------------------------------------------------------------------------------

    def _redis_stall(self, step: Step) -> None:
        began = time.time()
        with self.fleet.client(timeout=step.seconds + 10) as client:
            client.execute_command("DEBUG", "SLEEP", step.seconds)
        self.note("redis_stall", "redis", began, f"DEBUG SLEEP {step.seconds}")

    def _redis_pause(self, step: Step) -> None:
        began = time.time()
        with self.fleet.client() as client:
            client.execute_command("CLIENT", "PAUSE", int(step.seconds * 1000), "WRITE")
        self._stop.wait(step.seconds)
        self.note("redis_pause", "redis", began, f"CLIENT PAUSE {step.seconds}s WRITE")

    def _redis_restart(self, step: Step) -> None:
        began = time.time()
        self.fleet.crash_redis()
        self._stop.wait(min(step.seconds, 3.0))
        self.fleet.start_redis()
        self.note("redis_restart", "redis", began, "SIGKILL, then started again from its AOF")

    def _redis_full(self, step: Step) -> None:
        began = time.time()
        with self.fleet.client() as client:
            used = int(client.info("memory")["used_memory"])
            client.config_set("maxmemory", used)
            try:
                self._stop.wait(step.seconds)
            finally:
                client.config_set("maxmemory", 0)
        self.note("redis_full", "redis", began, f"maxmemory at {used} for {step.seconds}s")

    # -- batches ----------------------------------------------------------------------------

    def _pick(self, step: Step, *, running: bool = True) -> Batch | None:
        found = [
            b for b in self.workload.batches
            if not running or (b.cancel_returned is None and b.expired_at is None
                               and not self._ended(b))
        ]  # fmt: skip
        return found[step.target % len(found)] if found else None

    def _ended(self, batch: Batch) -> bool:
        with self.fleet.client() as client:
            state = client.hget(keys.batch_meta(batch.batch_id), "state")
        return state is not None and state.decode() in ("completed", "cancelled", "expired")

    def _cancel(self, step: Step) -> None:
        batch = self._pick(step)
        if batch is None:
            return
        began = time.time()
        batch.cancel_requested = began
        # --wait 0: cancel returns once its stop holds (nothing more can reach the site),
        # without waiting for the held prompts to settle, which a batch's end would hide.
        done = self.workload.cli("cancel", batch.batch_id, "--wait", "0")
        if done.returncode == 0:
            batch.cancel_returned = time.time()
        self.note("cancel", batch.batch_id, began, f"exit {done.returncode}")

    def _retry(self, step: Step) -> None:
        batch = self._pick(step, running=False)
        if batch is None:
            return
        began = time.time()
        done = self.workload.cli("retry", batch.batch_id)
        if done.returncode == 0 and "0 failed" not in done.stdout:
            batch.retried_at = began
        self.note("retry", batch.batch_id, began, f"exit {done.returncode}")

    def _expire(self, step: Step) -> None:
        batch = self._pick(step)
        if batch is None:
            return
        began = time.time()
        with self.fleet.client() as client:
            now_ms = int(began * 1000)
            # Only an existing record and deadline are moved (nothing made without its TTL).
            if not client.zadd(keys.batch_deadlines(), {batch.batch_id: now_ms}, xx=True, ch=True):
                return
            client.hset(keys.batch_meta(batch.batch_id), "expires_ms", now_ms)
        batch.expired_at = began
        self.note("expire", batch.batch_id, began)

    def _poison(self, step: Step) -> None:
        batch = self._pick(step)
        if batch is None:
            return
        began = time.time()
        poisoned = []
        with self.fleet.client() as client:
            requests = keys.batch_requests(batch.batch_id)
            for index in random.Random(step.target).sample(range(len(batch.tags)),
                                                            min(3, len(batch.tags))):  # fmt: skip
                raw = client.hget(requests, index)
                if raw is None:
                    continue
                stored = json.loads(raw)
                stored["service_tier"] = "flex"  # a field a newer producer writes
                client.hset(requests, index, json.dumps(stored))
                batch.poisoned[index] = time.time()
                poisoned.append(index)
        self.note("poison", batch.batch_id, began, f"indices {poisoned}")

    # -- proxies ----------------------------------------------------------------------------

    def _proxies(self, step: Step) -> None:
        """One proxy dropped from its worker's file for a while (each worker keeps one)."""
        urls = list(self.fleet.sim["proxies"])
        dropped = urls.pop(step.target % len(urls))
        began = time.time()
        self.fleet.write_proxies(urls)
        self._stop.wait(step.seconds)
        self.fleet.write_proxies(self.fleet.sim["proxies"])
        self.note("proxies", dropped.rsplit(":", 1)[-1], began, "dropped, then back")

    # -- the end ----------------------------------------------------------------------------

    def heal(self) -> None:
        """Every fault undone: workers thawed, Redis up with room, the proxies all back."""
        for slot in self.fleet.slots:
            if slot.frozen:
                self.fleet.signal_worker(slot, signal.SIGCONT)
        self.fleet.write_proxies(self.fleet.sim["proxies"])
        with contextlib.suppress(Exception), self.fleet.client() as client:
            client.execute_command("CLIENT", "UNPAUSE")
            client.config_set("maxmemory", 0)


__all__ = ["LAPSING", "WEIGHTS", "Fault", "Nemesis", "Step", "schedule"]
