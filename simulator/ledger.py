"""What reached the site, one entry per ajax POST: its message, who carried it, when it
arrived, when it ended, and whether it was answered. Served at ``GET /__sim/ledger``.

A fault campaign's checker reads it (``tests/campaign``) to prove what the service's own
view cannot: that nothing of a cancelled batch arrived after its ``cancel`` returned,
and which prompts were answered twice. Times are this host's wall clock (epoch seconds),
the clock the campaign's nemesis notes its faults on. It is kept only when asked for
(``SimConfig.ledger``), and bounded: the oldest entries go first.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

MAX_ENTRIES = 500_000


@dataclass
class Arrival:
    n: int
    message: str
    identity: str
    arrived: float
    ended: float | None = None
    answered: bool = False


class Ledger:
    def __init__(self, *, keep: bool) -> None:
        self.keep = keep
        self._entries: deque[Arrival] = deque(maxlen=MAX_ENTRIES)
        self._next = 0

    def arrive(self, message: str, identity: str) -> Arrival | None:
        """An ajax POST arrived (before it is admitted, delayed or faulted)."""
        if not self.keep:
            return None
        self._next += 1
        entry = Arrival(self._next, message, identity, time.time())
        self._entries.append(entry)
        return entry

    @staticmethod
    def end(entry: Arrival | None, *, answered: bool) -> None:
        if entry is not None:
            entry.ended, entry.answered = time.time(), answered

    def since(self, n: int, limit: int = 10_000) -> dict[str, Any]:
        """The entries after the ``n``-th (in arrival order), at most ``limit`` of them."""
        found = [asdict(e) for e in self._entries if e.n > n][:limit]
        return {"entries": found, "next": found[-1]["n"] if found else n}


__all__ = ["Arrival", "Ledger"]
