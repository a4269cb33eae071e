"""What one worker counts: for its registry entry, the fleet's counters and Prometheus.

The runtime, the runner and the broker report here; nothing else in the worker keeps
tallies. ``fleet_deltas`` hands the fleet-wide counters (errors by type, waits by
reason) to the heartbeat, which adds them up in Redis for ``status`` and ``top``.
"""

from __future__ import annotations

from collections import Counter


class WorkerMetrics:
    def __init__(self) -> None:
        self.prompts: Counter[str] = Counter()
        self.chunks_done = 0
        self._fleet: Counter[str] = Counter()

    def prompt_finished(self, status: str, error_type: str | None) -> None:
        """A prompt got its one result (succeeded, failed or cancelled)."""
        self.prompts[status] += 1

    def chunk_finished(self, outcome: str) -> None:
        if outcome == "done":
            self.chunks_done += 1

    def upstream_error(self, kind: str) -> None:
        """One exchange failed with this error class (the prompt may still succeed)."""
        self._fleet[f"error:{kind}"] += 1

    def request_finished(self, kind: str, seconds: float) -> None:
        """One request to the site ended (``page`` or ``ajax``), whatever its outcome."""

    def capacity_wait(self, reason: str) -> None:
        """A prompt has waited long for capacity, because of ``reason``."""
        self._fleet[f"waited_for_capacity:{reason}"] += 1
        self._fleet["waited_for_capacity"] += 1

    def session_refreshed(self) -> None:
        """A page handshake made a new site session."""

    def gauges(self, *, in_flight: int, waiting: int, chunks: int) -> None:
        """The worker's state now (set at every heartbeat)."""

    def fleet_deltas(self) -> dict[str, int]:
        """The fleet-wide counters since the last call, for the heartbeat to add up in Redis."""
        deltas, self._fleet = dict(self._fleet), Counter()
        return deltas

    def restore_fleet_deltas(self, deltas: dict[str, int]) -> None:
        """Puts back deltas the heartbeat could not write (Redis away): nothing is lost."""
        self._fleet.update(deltas)
