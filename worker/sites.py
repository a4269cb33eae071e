"""The sites a worker serves: for each, its identities, its lease book and its client.

A fleet of one site is the fleet as it always was: identities keep their plain names,
and its health is not tracked (there is nowhere else to send its prompts). With several
(``CHATGPTES_SITES``), an identity is a site and an exit (``uk/127.0.0.1:8081``): its
caps, rate, cooldowns, bans and site session are that pair's, so one proxy banned by one
site is still good for the others. Each site's identities form a pool of their own (a
lease book), each site has its own client (its page, consent field, language) on the
worker's one HTTP session, and the lease scripts keep each site's health fleet-wide
(``worker/lua/site_health.lua``): the broker routes prompts by it (``worker.routing``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from redis.asyncio import Redis

from contract.sites import SiteSettings
from worker.client import ChatGptEsClient, client_options, open_http_session
from worker.config import WorkerConfig
from worker.leases import LeaseBook
from worker.proxies import Identity, ProxyDefaults, ProxyPool


@dataclass
class Site:
    """One site as this worker serves it."""

    settings: SiteSettings
    pool: ProxyPool
    book: LeaseBook
    client: ChatGptEsClient

    @property
    def name(self) -> str:
        return self.settings.name


class SiteSet:
    """Every site of the fleet, by name, in the order the settings name them."""

    def __init__(self, config: WorkerConfig, redis: Redis) -> None:
        fleet = config.fleet_sites()
        several = len(fleet) > 1
        http = None
        self.sites: dict[str, Site] = {}
        for settings in fleet:
            defaults = ProxyDefaults(
                int(_or(settings.proxy_max_inflight, config.proxy_max_inflight)),
                _or(settings.proxy_rate_per_second, config.proxy_rate_per_second),
                config.proxy_burst,
            )
            pool = ProxyPool(
                config.proxies, settings.proxies_file or config.proxies_file, defaults,
                site=settings.name, named_by_site=several,
            )  # fmt: skip
            book = LeaseBook(
                redis, fleet_cap=config.fleet_max_inflight, burst=config.proxy_burst,
                ttl_seconds=config.claim_ttl_seconds,
                backoff_base_seconds=config.cooldown_base_seconds,
                backoff_cap_seconds=config.cooldown_cap_seconds,
                site=settings.name, track_site=several,
            )  # fmt: skip
            options = client_options(config, settings)
            http = http or open_http_session(options)  # one connection pool for every site
            client = ChatGptEsClient(options, http=http)
            self.sites[settings.name] = Site(settings, pool, book, client)
        self.several = several

    def __iter__(self) -> Iterator[Site]:
        return iter(self.sites.values())

    def __getitem__(self, name: str) -> Site:
        return self.sites[name]

    def __contains__(self, name: object) -> bool:
        return name in self.sites

    def __len__(self) -> int:
        return len(self.sites)

    @property
    def first(self) -> Site:
        return next(iter(self.sites.values()))

    @property
    def names(self) -> list[str]:
        return list(self.sites)

    @property
    def identities(self) -> list[Identity]:
        return [identity for site in self for identity in site.pool.identities]

    def client_for(self, identity: Identity) -> ChatGptEsClient:
        return self.sites.get(identity.site, self.first).client

    async def register(self) -> None:
        for site in self:
            await site.book.register(site.pool.identities)

    async def close(self) -> None:
        for site in self:
            site.client.poster.close()  # each client's kept POST handles, then
        await self.first.client.close()  # the one HTTP session every client shares


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


__all__ = ["Site", "SiteSet"]
