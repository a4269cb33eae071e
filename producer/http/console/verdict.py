"""The fleet page's first line: healthy, degraded or down, and why.

Down: nothing can run (Redis refuses writes, no worker is alive, every identity is
cooling, every site of the fleet is down). Degraded: it runs, but something needs a look
(workers gone silent, dead or many cooling identities, a site that answers only errors, a
site of several down, a webhook endpoint failing, disabled or dropping events, events with
nobody to deliver them). Healthy otherwise.
Each reason says when its next retry is, where there is one.
"""

from __future__ import annotations

from dataclasses import dataclass

from producer.fleet import duration
from producer.http.console.fleet_reads import FleetView

COOLING_SHARE = 0.25  # this share of the identities cooling is a degraded fleet


@dataclass(frozen=True)
class Verdict:
    level: str  # healthy, degraded or down
    reasons: list[str]

    @property
    def line(self) -> str:
        """``Degraded: 2 identities dead …; …`` (what the page opens with, and announces)."""
        return f"{self.level.capitalize()}: " + "; ".join(self.reasons) + "."


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


def verdict(view: FleetView) -> Verdict:
    down, degraded = _down(view), _degraded(view)
    if down:
        return Verdict("down", down + degraded)  # the rest still worth knowing
    if degraded:
        return Verdict("degraded", degraded)
    ready = view.states.get("ready", 0) + view.states.get("full", 0)
    return Verdict("healthy", [
        f"{_plural(view.alive, 'worker')} alive, {_plural(ready, 'identity', 'identities')} "
        "able to send, nothing failing"
    ])  # fmt: skip


def _soonest_back(view: FleetView) -> str:
    cooling = [i.cooling_for for i in view.worst if i.cooling_for > 0]
    return f"; the first back in {duration(min(cooling))}" if cooling else ""


def _down(view: FleetView) -> list[str]:
    reasons = []
    if view.refusing:
        reasons.append(f"Redis refuses writes ({view.refusing}): nothing is saved")
    if not view.workers:
        reasons.append("no worker has reported: nothing runs the prompts")
    elif not view.alive:
        reasons.append(f"no worker is alive ({_plural(len(view.workers), 'worker')} gone)")
    able = view.identities - view.states.get("cooling", 0)
    if view.identities and not able:
        reasons.append(f"every identity is cooling{_soonest_back(view)}")
    down = [site for site in view.sites if site.state == "down"]
    if view.sites and len(down) == len(view.sites):
        back = min(site.down_for for site in down)
        reasons.append(f"every site is down; the first back in {duration(back)}")
    return reasons


def _degraded(view: FleetView) -> list[str]:
    reasons = []
    gone = len(view.workers) - view.alive
    if gone and view.alive:  # none alive is a down fleet, said already
        reasons.append(f"{_plural(gone, 'worker')} gone silent")
    cooling = view.states.get("cooling", 0)
    if view.dead:
        reasons.append(f"{_plural(view.dead, 'identity', 'identities')} dead (no success "
                       f"lately){_soonest_back(view)}")  # fmt: skip
    elif view.identities and cooling >= COOLING_SHARE * view.identities:
        reasons.append(f"{_plural(cooling, 'identity', 'identities')} of "
                       f"{view.identities:,} cooling{_soonest_back(view)}")  # fmt: skip
    down = [site for site in view.sites if site.state == "down"]
    if len(down) < len(view.sites):  # every one down is a down fleet, said already
        reasons.extend(f"site {site.name} down for {duration(site.down_for)} more after "
                       f"{site.reason} (its unpinned prompts go to the other sites)"
                       for site in down)  # fmt: skip
    failing = view.site_failing
    if failing is not None:
        count, kind = failing
        reasons.append(f"the site answered only errors this last minute ({count:,}, mostly "
                       f"{kind})")  # fmt: skip
    for endpoint in view.outbox.endpoints:
        if endpoint.disabled:
            reasons.append(f"webhook endpoint {endpoint.label} disabled ({endpoint.disabled_why})")
        elif endpoint.failing_since_ms:
            next_try = max(0.0, endpoint.next_ms / 1000 - view.at) if endpoint.next_ms else None
            when = "" if next_try is None else f", next try in {duration(next_try)}"
            reasons.append(f"webhook endpoint {endpoint.label} failing ({endpoint.last_error})"
                           f"{when}")  # fmt: skip
        if endpoint.dropped:
            dropped = _plural(endpoint.dropped, "event")
            reasons.append(f"webhook endpoint {endpoint.label} dropped {dropped} (its queue "
                           "was full)")  # fmt: skip
    if view.outbox.pending and not view.outbox.deliverers and view.outbox.configured:
        reasons.append(f"{_plural(view.outbox.pending, 'webhook delivery', 'webhook deliveries')}"
                       " waiting and no worker delivering them")  # fmt: skip
    return reasons
