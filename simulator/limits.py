"""Per-identity admission: a token bucket, Retry-After discipline, bans and quotas.

An identity (``direct``, ``proxy1``, ``gw:USER``, …) that exceeds the rate
gets 429 with a Retry-After (so does one hit by an injected 429 fault).
Sending again before that time is a *violation*; after
``ban_after_violations`` violations the identity is banned for ``ban_seconds``
and every request is refused until the ban ends (then the slate is clean).
Requests arriving within ``violation_grace_seconds`` of the 429 are refused too,
but not held against the identity: they were on the wire before the client could
have read the Retry-After (a concurrent client always has a few).
The quota counts successful answers in a sliding window.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from simulator.clock import Clock
from simulator.config import SimConfig


class Admission(Enum):
    OK = "ok"
    RATE_LIMITED = "rate_limited"
    BANNED = "banned"


@dataclass(frozen=True)
class Verdict:
    admission: Admission
    retry_after: int = 0
    violation: bool = False
    newly_banned: bool = False
    banned_until: float = 0.0


@dataclass
class IdentityLimits:
    tokens: float
    updated_at: float
    retry_not_before: float = 0.0
    limited_at: float = 0.0  # when the current Retry-After was sent
    violations: int = 0
    banned_until: float = 0.0
    successes: deque[float] = field(default_factory=deque)


class Limiter:
    def __init__(self, config: SimConfig, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._identities: dict[str, IdentityLimits] = {}

    def reset(self) -> None:
        self._identities.clear()

    def _state(self, identity: str) -> IdentityLimits:
        state = self._identities.get(identity)
        if state is None:
            state = IdentityLimits(tokens=self._config.burst, updated_at=self._clock.now())
            self._identities[identity] = state
        return state

    def banned_until(self, identity: str) -> float:
        state = self._identities.get(identity)
        return state.banned_until if state else 0.0

    def admit(self, identity: str) -> Verdict:
        """Decide whether one page GET or ajax POST from this identity may proceed."""
        now = self._clock.now()
        state = self._state(identity)
        if now < state.banned_until:
            return Verdict(Admission.BANNED, banned_until=state.banned_until)
        if state.banned_until:
            state.banned_until = 0.0
            state.violations = 0
        if now < state.retry_not_before:
            if now < state.limited_at + self._config.violation_grace_seconds:
                retry_after = max(1, math.ceil(state.retry_not_before - now))
                return Verdict(Admission.RATE_LIMITED, retry_after=retry_after)
            return self._violation(state, now)
        return self._take_token(state, now)

    def _violation(self, state: IdentityLimits, now: float) -> Verdict:
        state.violations += 1
        limit = self._config.ban_after_violations
        if limit and state.violations >= limit:
            state.banned_until = now + self._config.ban_seconds
            state.retry_not_before = 0.0
            return Verdict(
                Admission.BANNED,
                violation=True,
                newly_banned=True,
                banned_until=state.banned_until,
            )
        retry_after = max(1, math.ceil(state.retry_not_before - now))
        return Verdict(Admission.RATE_LIMITED, retry_after=retry_after, violation=True)

    def _take_token(self, state: IdentityLimits, now: float) -> Verdict:
        rate = self._config.rate_per_second
        if rate <= 0:
            return Verdict(Admission.OK)
        elapsed = max(0.0, now - state.updated_at)
        state.tokens = min(self._config.burst, state.tokens + elapsed * rate)
        state.updated_at = now
        if state.tokens >= 1.0:
            state.tokens -= 1.0
            return Verdict(Admission.OK)
        retry_after = max(1, math.ceil((1.0 - state.tokens) / rate))
        state.retry_not_before = now + retry_after
        state.limited_at = now
        return Verdict(Admission.RATE_LIMITED, retry_after=retry_after)

    def impose_retry_after(self, identity: str, seconds: int) -> None:
        """Hold the identity to a Retry-After sent outside the token bucket (a 429 fault)."""
        state = self._state(identity)
        now = self._clock.now()
        if now + seconds > state.retry_not_before:
            state.retry_not_before = now + seconds
            state.limited_at = now

    def quota_reached(self, identity: str) -> bool:
        quota = self._config.quota
        if quota <= 0:
            return False
        successes = self._state(identity).successes
        horizon = self._clock.now() - self._config.quota_window_seconds
        while successes and successes[0] <= horizon:
            successes.popleft()
        return len(successes) >= quota

    def record_success(self, identity: str) -> None:
        if self._config.quota > 0:
            self._state(identity).successes.append(self._clock.now())
