"""A brake on guessing keys: wrong keys are counted per client address and per key prefix.

A client may get a key wrong a few times (``FREE_FAILURES``: a typo, a rotated key).
After that it waits before its next try, twice as long after each further wrong key,
from one second up to ``LONGEST_WAIT_SECONDS``; until then every request it makes with a key
is refused (429, ``Retry-After``) without the key being looked at, so a guess sent
meanwhile learns nothing. A client quiet for ``FORGET_AFTER_SECONDS`` starts afresh.

Two counts, because guessing comes in two shapes: one address trying many keys, and
many addresses (a botnet) trying keys that share a beginning (``sk-proj-…``): the
prefix is the first ``PREFIX_CHARS`` characters of the key given, kept only in this
process's memory. Both are bounded (``TRACKED_AT_MOST`` each, the stalest dropped).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

FREE_FAILURES = 5
LONGEST_WAIT_SECONDS = 60.0
FORGET_AFTER_SECONDS = 15 * 60.0
PREFIX_CHARS = 8
TRACKED_AT_MOST = 10_000


@dataclass
class _Record:
    failures: int = 0
    last: float = 0.0  # when the last wrong key came (monotonic s)
    until: float = 0.0  # refused until then (monotonic s)


class _Counts:
    """Wrong keys per name (an address or a prefix), the stalest forgotten first."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def wait(self, name: str) -> float:
        record = self._records.get(name)
        if record is None:
            return 0.0
        now = self._clock()
        if now - record.last > FORGET_AFTER_SECONDS:
            del self._records[name]
            return 0.0
        return max(0.0, record.until - now)

    def failed(self, name: str) -> None:
        now = self._clock()
        record = self._records.pop(name, None)
        if record is None or now - record.last > FORGET_AFTER_SECONDS:
            record = _Record()
        record.failures += 1
        record.last = now
        over = record.failures - FREE_FAILURES + 1  # the next try after the free ones waits
        if over > 0:
            record.until = now + min(LONGEST_WAIT_SECONDS, 2.0 ** (over - 1))
        self._records[name] = record
        while len(self._records) > TRACKED_AT_MOST:
            self._records.popitem(last=False)


class KeyThrottle:
    """Counts wrong keys; says how long a client must wait before its next try."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._addresses = _Counts(clock)
        self._prefixes = _Counts(clock)

    def wait(self, address: str, key: str) -> float:
        """Seconds this client must still wait (0: it may try)."""
        return max(self._addresses.wait(address), self._prefixes.wait(prefix_of(key)))

    def failed(self, address: str, key: str) -> None:
        self._addresses.failed(address)
        self._prefixes.failed(prefix_of(key))


def prefix_of(key: str) -> str:
    return key[:PREFIX_CHARS]
