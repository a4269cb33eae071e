"""What an outcome means for the health of the identity it went through."""

from __future__ import annotations

from worker.config import WorkerConfig
from worker.errors import QuotaExceeded, UpstreamError, Verdict
from worker.leases import Cooldown

OK = Cooldown(verdict="ok")
NEUTRAL = Cooldown(verdict="none")


def cooldown_for(error: UpstreamError, config: WorkerConfig) -> Cooldown:
    """Maps an error to how long its identity rests: never less than the site asked for."""
    if error.verdict is Verdict.NONE:
        return NEUTRAL
    floor = error.retry_after or 0.0
    if isinstance(error, QuotaExceeded):
        floor = max(floor, config.quota_cooldown_seconds)
    elif error.verdict is Verdict.QUARANTINE:
        floor = max(floor, config.block_cooldown_seconds)
    return Cooldown(verdict=error.verdict.value, floor_seconds=floor, reason=error.kind)
