"""Which site each waiting prompt asks a lease of: its own if it is pinned, else the one
with the most room, weighted.

A fleet of one site routes everything to it (its book is ``""``). With several, a
prompt pinned to a site (``PromptRequest.site``) asks that site only, and waits while
it is down; an unpinned one goes to a site that is not resting, in proportion to
``weight × room``: room is the share of the leases a site granted of those it was last
asked for (a site that is full or cooling is asked for less, and more again once it
grants), and a site that answered ``site_down`` or ``site_probing`` rests until then
(its prompts move to the others without spending any budget: they were never sent).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

SITE_RESTING = ("site_down", "site_probing")
SMOOTHING = 0.5  # how much of a site's room figure its last call decides
LEAST_ROOM = 0.05  # a site that granted nothing is still asked now and then


@dataclass
class SiteRoom:
    weight: float = 1.0
    room: float = 1.0  # granted ÷ asked, smoothed
    resting_until: float = 0.0  # this process's clock
    reason: str = "ready"


@dataclass
class SiteRouter:
    """Routes the prompts of one turn of the broker to the sites' lease books."""

    weights: Mapping[str, float]
    sites: dict[str, SiteRoom] = field(init=False)

    def __post_init__(self) -> None:
        self.sites = {name: SiteRoom(weight=weight) for name, weight in self.weights.items()}

    def knows(self, site: str) -> bool:
        return site in self.sites

    def resting(self, site: str, now: float | None = None) -> bool:
        room = self.sites.get(site)
        return room is not None and room.resting_until > (now or time.monotonic())

    def route(self, pins: Sequence[str | None]) -> dict[str, list[int]]:
        """site → the slots (positions in ``pins``) to ask it for; a slot whose pinned site
        rests, or unpinned with every site resting, is asked of none (it waits)."""
        now = time.monotonic()
        routed: dict[str, list[int]] = {}
        open_sites = [name for name in self.sites if not self.resting(name, now)]
        shares = {name: self.sites[name].weight * self.sites[name].room for name in open_sites}
        for slot, pin in enumerate(pins):
            if pin is not None:
                if pin in self.sites and not self.resting(pin, now):
                    routed.setdefault(pin, []).append(slot)
                continue
            if not open_sites:
                continue
            # The site whose share is least used so far (largest remainder, as seats go).
            site = max(open_sites, key=lambda name: shares[name] / (len(routed.get(name, ())) + 1))
            routed.setdefault(site, []).append(slot)
        return routed

    def told(self, site: str, asked: int, granted: int, reason: str, wait: float) -> None:
        """What a site's book answered: its room from now on, and a rest if it is down."""
        room = self.sites[site]
        if asked:
            room.room = max(LEAST_ROOM, (1 - SMOOTHING) * room.room + SMOOTHING * granted / asked)
        room.reason = reason
        if reason in SITE_RESTING and granted < asked:
            room.resting_until = time.monotonic() + wait
        elif granted:
            room.resting_until = 0.0

    def next_rest_end(self) -> float | None:
        """Seconds until the first resting site may be asked again (None: none rests)."""
        now = time.monotonic()
        ends = [room.resting_until for room in self.sites.values() if room.resting_until > now]
        return min(ends) - now if ends else None


__all__ = ["SITE_RESTING", "SiteRoom", "SiteRouter"]
