"""The demo's two sites: two simulators side by side, and one fleet serving both.

``es`` plays chatgpt.es as the demo always has: its shortcode chat (no custom bot).
``bot`` plays another AI Power site, whose chat is a custom bot in a widget with a post
id and a language of its own; its simulator refuses a form that is not that bot's. Each
simulator has three proxies, and a simulator's proxies reach only its own site, so each
site's are in a proxies file of its own, named by a sites file (``CHATGPTES_SITES_FILE``)
in the work directory. The workers get ``CHATGPTES_SITES=es=…,bot=…`` with it (see the
README's "Sites").
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatgptes import local_fleet
from chatgptes.local_fleet import Cleanup
from contract.models import BatchStatus

# Both answer in 20-120 ms and fail 2% of requests with a 5xx (the workers retry them).
COMMON_OPTIONS = ("--proxies", "3", "--latency", "uniform:20,120", "--fault-5xx-rate", "0.02")
PINNED_SITE = "bot"  # the site the demo's second, small batch is pinned to


@dataclass(frozen=True)
class DemoSite:
    name: str
    stands_for: str
    options: tuple[str, ...] = ()


SITES = (
    DemoSite("es", "chatgpt.es"),
    DemoSite("bot", "another AI Power site",
             ("--bot-id", "12", "--type", "widget", "--post-id", "207", "--language", "en")),
)  # fmt: skip


@dataclass(frozen=True)
class RunningSite:
    """A demo site whose simulator runs; ``sim`` is its ready info."""

    name: str
    stands_for: str
    sim: dict[str, Any]

    @property
    def url(self) -> str:
        return str(self.sim["url"])

    def profile(self) -> str:
        """What its page says about its chat, as the simulator reports it."""
        chat = self.sim["chat"]
        bot = f"custom bot {chat['bot_id']}" if chat["bot_id"] else "no custom bot"
        return f"{chat['type']} chat, {bot}, post {chat['post_id']}, language {chat['language']}"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.sim["stats_url"], timeout=5) as reply:
            return dict(json.loads(reply.read()))


def start_sites(cleanup: Cleanup, workdir: Path) -> list[RunningSite]:
    """Starts a simulator per demo site (``simulator-<name>``, stopped by ``cleanup``)."""
    return [
        RunningSite(site.name, site.stands_for, local_fleet.start_simulator(
            cleanup, workdir, *COMMON_OPTIONS, *site.options, name=f"simulator-{site.name}"
        ))
        for site in SITES
    ]  # fmt: skip


def sites_setting(sites: Sequence[RunningSite]) -> str:
    """``CHATGPTES_SITES``'s value: ``es=http://…,bot=http://…``."""
    return ",".join(f"{site.name}={site.url}" for site in sites)


def write_sites_file(workdir: Path, sites: Sequence[RunningSite]) -> Path:
    """``workdir/sites.toml``: each site's own proxies file and language."""
    tables = []
    for site in sites:
        proxies = workdir / f"proxies-{site.name}.txt"
        proxies.write_text("".join(f"{url}\n" for url in site.sim["proxies"]))
        tables.append(f"[sites.{site.name}]\n"
                      f"proxies_file = {json.dumps(proxies.name)}  # beside this file\n"
                      f"language = {json.dumps(site.sim['chat']['language'])}\n")  # fmt: skip
    path = workdir / "sites.toml"
    path.write_text("\n".join(tables))
    return path


def fleet_settings(workdir: Path, sites: Sequence[RunningSite]) -> dict[str, str]:
    """The settings (names without ``CHATGPTES_``) that make one fleet of ``sites``."""
    return {"sites": sites_setting(sites), "sites_file": str(write_sites_file(workdir, sites))}


def stats_line(site: RunningSite, stats: dict[str, Any]) -> str:
    """What one simulator saw, for the demo's last lines."""
    requests, faults = stats["requests"], stats["faults"]
    return (f"simulator {site.name}: {requests['page']} page GETs (one per proxy session, not "
            f"one per prompt) and {requests['ajax']} ajax POSTs; {faults['5xx']} injected 5xx "
            "retried; "
            f"{stats['replies']['form_mismatch']} forms refused as not its chat's; at most "
            f"{stats['inflight_max']} requests in flight")  # fmt: skip


def ajax_posts(sites: Sequence[RunningSite]) -> int:
    """The ajax POSTs (prompts sent, retries included) these sites' simulators were sent."""
    return sum(int(site.stats()["requests"]["ajax"]) for site in sites)


def answered_by_site(batch: BatchStatus, pinned: BatchStatus | None = None) -> str:
    """The demo's last line: how many prompts each site answered, from the batches' status."""
    told = [f"{_answered(batch)} of batch {batch.batch_id} (any site)"]
    if pinned is not None:
        told.append(f"{_answered(pinned)} of batch {pinned.batch_id} (pinned to {PINNED_SITE})")
    return f"answered by site, as `chatgptes status` counts them: {'; '.join(told)}"


def _answered(batch: BatchStatus) -> str:
    """``es 21, bot 19``: a batch's answers by site, in the demo's order of sites."""
    order = [site.name for site in SITES]
    answered = batch.answered_by_site
    names = sorted(answered, key=lambda name: (order.index(name) if name in order else 99, name))
    return ", ".join(f"{name} {answered[name]}" for name in names) or "none"
