"""``chatgptes sites``: the fleet's sites with their profile, health, answers of the last
minute and requests in flight. ``probe URL`` reads one site's page and prints the profile
its chat gives, and the form a worker would send it, without sending a prompt.

Loaded only when run (``LAZY_COMMANDS``); what it needs of the worker (curl_cffi, the
client) is imported inside the command.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import click

from chatgptes.running import (
    EXIT_BAD_INPUT,
    EXIT_ERROR,
    echo_json,
    fail,
    load_settings,
    printable,
)

if TYPE_CHECKING:
    from worker.client import ClientOptions
    from worker.form import FormSite
    from worker.proxies import Identity
    from worker.sessions import SiteSession


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the sites as JSON.")
@click.pass_context
def sites(context: click.Context, as_json: bool) -> None:
    """The fleet's sites: each with its profile, health, answers and requests in flight;
    ``probe URL`` reads a site's page for the profile of its chat."""
    if context.invoked_subcommand is not None:
        return
    from dataclasses import asdict

    from chatgptes.running import run_with_queue
    from producer.fleet import redis_now_ms
    from producer.site_health import site_health
    from worker.config import WorkerConfig

    settings = load_settings(WorkerConfig)
    fleet = settings.fleet_sites()

    async def go(queue: Any) -> Any:
        return await site_health(queue.redis, fleet.names, await redis_now_ms(queue.redis))

    found = run_with_queue(go)
    if as_json:
        echo_json([{**asdict(health), "url": fleet[health.name].url} for health in found])
        return
    for health in found:
        click.echo(printable(health.line))
        click.echo(f"  {printable(fleet[health.name].url)}"
                   + (f" ({printable(health.profile)})" if health.profile else ""))  # fmt: skip


@sites.command()
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="Print the profile and the form as JSON.")
def probe(url: str, as_json: bool) -> None:
    """GET the page at URL (through the first configured proxy, if any) and print the
    profile of its chat: nonce, post id, bot, type, stream mode, consent field, and the
    form a worker would send. No prompt is sent."""
    from contract.sites import SitesConfigError, SiteSettings, check_site_url
    from worker.client import client_options
    from worker.config import WorkerConfig
    from worker.errors import HandshakeFailed, UpstreamError
    from worker.proxies import ProxyConfigError

    try:
        check_site_url(url, "URL")
    except SitesConfigError as error:
        fail(str(error), EXIT_BAD_INPUT)
    settings = load_settings(WorkerConfig)
    try:
        site = settings.fleet_sites().by_url(url) or SiteSettings(name="probe", url=url)
        identity = first_identity(settings, site)
        options = client_options(settings, site)
    except (ProxyConfigError, SitesConfigError) as error:
        fail(str(error), EXIT_BAD_INPUT)
    try:
        session, form_site = asyncio.run(fetch_session(options, identity))
    except HandshakeFailed as error:
        fail(f"no chat on {printable(url)}: {printable(error.message)}", EXIT_ERROR)
    except UpstreamError as error:
        via = f" through {identity.shown}" if identity.proxy_url else ""
        problem = f"{error.kind}: {printable(error.message)}"
        fail(f"cannot read {printable(url)}{via}: {problem}", EXIT_ERROR)
    described = describe(session, form_site, url, identity.shown)
    if as_json:
        echo_json(described)
        return
    for name, value in text_lines(described):
        click.echo(f"{name:<10} {printable(value)}")


def first_identity(settings: Any, site: Any) -> Identity:
    """The first proxy the worker would use for ``site`` (its own proxies file's, else the
    fleet's), or the worker's own address."""
    from worker.proxies import ProxyDefaults, ProxyPool

    defaults = ProxyDefaults(
        settings.proxy_max_inflight, settings.proxy_rate_per_second, settings.proxy_burst
    )
    proxies_file = site.proxies_file or settings.proxies_file
    proxies = "" if site.proxies_file else settings.proxies
    return ProxyPool(proxies, proxies_file, defaults).identities[0]


async def fetch_session(options: ClientOptions, identity: Identity) -> tuple[SiteSession, FormSite]:
    """The session one page GET makes, and what the form takes from the site's settings."""
    from worker.client import ChatGptEsClient

    client = ChatGptEsClient(options)
    try:
        return await client.handshake(identity), client.form_site
    finally:
        await client.close()


def describe(session: SiteSession, site: FormSite, url: str, via: str) -> dict[str, Any]:
    """What the page said (``profile``), and the fixed fields of the form it gives."""
    from worker.form import action, chatbot_identity, consent_field

    profile = session.profile
    if site.consent_field:
        consent_from = "settings"
    else:
        consent_from = "page" if profile.consent_field else "default"
    return {
        "url": url,
        "via": via,
        "profile": profile.to_dict(),
        "cookies": sorted(session.cookies),
        "form": {
            "action": action(profile),
            "bot_id": profile.bot_id,
            "chatbot_identity": chatbot_identity(profile),
            "consent_field": consent_field(profile, site),
            "consent_from": consent_from,
            "encoding": "urlencoded" if profile.stream else "multipart",
        },
    }


def text_lines(described: dict[str, Any]) -> list[tuple[str, str]]:
    profile, form = described["profile"], described["form"]
    bot = f"custom bot {profile['bot_id']}" if profile["bot_id"] != "0" else "the site's own"
    consent_from = {
        "settings": "the site's settings",
        "page": "the page's",
        "default": "the plugin's default: the page names none",
    }[form["consent_from"]]
    return [
        ("site", f"{described['url']} (via {described['via']})"),
        ("chat", f"{profile['chat_type']}, {bot}"),
        ("post id", profile["post_id"]),
        ("nonce", profile["nonce"]),
        ("data-url", profile["url"] or "(none)"),
        ("stream", "yes" if profile["stream"] else "no"),
        ("assistant", "yes" if profile["assistant"] else "no"),
        ("consent", f"{form['consent_field']} ({consent_from})"),
        ("cookies", ", ".join(described["cookies"]) or "(none)"),
        ("form", f"action={form['action']} bot_id={form['bot_id']} "
                 f"chatbot_identity={form['chatbot_identity']} ({form['encoding']})"),
    ]  # fmt: skip
