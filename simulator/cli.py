"""``sim``: run the offline chatgpt.es stand-in until SIGINT/SIGTERM.

Only click and the options dataclass are imported at module level, so mounting
this command in another CLI (``from simulator.cli import sim``) stays cheap.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import click

from simulator.config import CHAT_TYPES, MARKUP_CHOICES, SimConfig
from simulator.wording import LANGUAGES

_RATE = click.FloatRange(0.0, 1.0)
_DEFAULT = SimConfig()  # one set of defaults: the command line shows the in-process ones


def write_ready_file(path: Path, info: dict[str, Any]) -> None:
    """Write JSON atomically (temp file + rename) so a watcher never reads half of it."""
    directory = path.resolve().parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(info, handle)
            handle.write("\n")
        os.chmod(tmp, 0o600)  # it holds the auth proxies' and the gateway's passwords
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def _run(config: SimConfig, ready_file: Path | None) -> None:
    from simulator.server import run_simulator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with run_simulator(config) as sim:
        click.echo(json.dumps(sim.ready_info(mask_password=True)))
        if ready_file is not None:
            write_ready_file(ready_file, sim.ready_info(mask_password=False))
        await stop.wait()


@click.command(context_settings={"show_default": True})
@click.option("--host", default=_DEFAULT.host, help="Address to listen on.")
@click.option("--port", default=8790, type=int, help="Site port (0 = pick a free one).")
@click.option(
    "--proxy-port-base",
    default=_DEFAULT.proxy_port_base,
    type=int,
    help="First proxy port, then consecutive (0 = free).",
)
@click.option(
    "--markup",
    type=click.Choice(MARKUP_CHOICES),
    default=_DEFAULT.markup,
    help="How the page carries the nonce and post id.",
)
@click.option("--post-id", default=_DEFAULT.post_id, type=click.IntRange(min=1))
@click.option(
    "--bot-id",
    default=_DEFAULT.bot_id,
    type=click.IntRange(min=0),
    help="The chat's custom bot (0: the site's own chat).",
)
@click.option(
    "--type",
    "chat_type",
    type=click.Choice(CHAT_TYPES),
    default=_DEFAULT.chat_type,
    help="The chat element, and the action its form must post.",
)
@click.option(
    "--language",
    type=click.Choice(LANGUAGES),
    default=_DEFAULT.language,
    help="What the site's own refusals and its answers are worded in.",
)
@click.option(
    "--nonce-tick-seconds",
    default=_DEFAULT.nonce_tick_seconds,
    type=float,
    help="Nonce half-life; a nonce lives one to two ticks.",
)
@click.option(
    "--bind-nonce-to-cookie/--no-bind-nonce-to-cookie",
    default=_DEFAULT.bind_nonce_to_cookie,
    help="Only accept a nonce with the session cookie it was issued to.",
)
@click.option(
    "--bind-nonce-to-identity/--no-bind-nonce-to-identity",
    default=_DEFAULT.bind_nonce_to_identity,
    help="Only accept a nonce from the identity (port or gateway user) it was issued to.",
)
@click.option(
    "--stream/--no-stream",
    default=_DEFAULT.stream,
    help="Answer as text/event-stream (the page says so).",
)
@click.option(
    "--prohibited-word",
    "prohibited_words",
    multiple=True,
    default=_DEFAULT.prohibited_words,
    help="A word that gets a message flagged (repeatable).",
)
@click.option(
    "--consent-field",
    default=_DEFAULT.consent_field,
    help="The consent checkbox's form field (one not named wpaicg_…: a client must be told).",
)
@click.option(
    "--rate-per-second",
    default=_DEFAULT.rate_per_second,
    type=float,
    help="Per-identity request rate (0 = unlimited).",
)
@click.option("--burst", default=_DEFAULT.burst, type=float, help="Token-bucket size.")
@click.option(
    "--quota",
    default=_DEFAULT.quota,
    type=int,
    help="Successful answers per identity per window (0 = unlimited).",
)
@click.option("--quota-window-seconds", default=_DEFAULT.quota_window_seconds, type=float)
@click.option(
    "--ban-after-violations",
    default=_DEFAULT.ban_after_violations,
    type=int,
    help="Requests before Retry-After elapsed that earn a ban (0 = never).",
)
@click.option("--ban-seconds", default=_DEFAULT.ban_seconds, type=float)
@click.option(
    "--violation-grace-seconds",
    default=_DEFAULT.violation_grace_seconds,
    type=float,
    help="Requests this soon after a 429 were on the wire already: not held against it.",
)
@click.option(
    "--latency",
    default=_DEFAULT.latency,
    help="ms: fixed:MS, uniform:LO,HI or lognormal:MEDIAN,SIGMA.",
)
@click.option("--fault-5xx-rate", default=_DEFAULT.fault_5xx_rate, type=_RATE)
@click.option("--fault-reset-rate", default=_DEFAULT.fault_reset_rate, type=_RATE)
@click.option("--fault-nonjson-rate", default=_DEFAULT.fault_nonjson_rate, type=_RATE)
@click.option("--fault-slow-rate", default=_DEFAULT.fault_slow_rate, type=_RATE)
@click.option(
    "--fault-429-rate",
    default=_DEFAULT.fault_429_rate,
    type=_RATE,
    help="429 with Retry-After: 1, to be honoured like a real one.",
)
@click.option(
    "--fault-stale-nonce-rate",
    default=_DEFAULT.fault_stale_nonce_rate,
    type=_RATE,
    help="Ajax POSTs refused as a failed nonce check.",
)
@click.option("--slow-seconds", default=_DEFAULT.slow_seconds, type=float)
@click.option(
    "--proxies", default=_DEFAULT.proxies, type=int, help="Forward-proxy ports (proxy1..)."
)
@click.option(
    "--bad-gateway-proxies",
    default=_DEFAULT.bad_gateway_proxies,
    type=int,
    help="Ports that answer 502 (badgw1..).",
)
@click.option(
    "--auth-proxies",
    default=_DEFAULT.auth_proxies,
    type=int,
    help="Proxy ports demanding Basic auth (authproxy1..).",
)
@click.option(
    "--proxy-credentials",
    default=_DEFAULT.proxy_credentials,
    show_default=False,
    help="user:password for the auth proxies [default: user:secret].",
)
@click.option(
    "--plain-502-proxies",
    default=_DEFAULT.plain_502_proxies,
    type=int,
    help="Ports that answer a bare 502, no Proxy-Status (plain502_1..).",
)
@click.option(
    "--dead-proxies",
    default=_DEFAULT.dead_proxies,
    type=int,
    help="Proxy URLs on which nothing listens (connection refused).",
)
@click.option(
    "--gateway/--no-gateway",
    default=_DEFAULT.gateway,
    help="One proxy port where the user name picks the identity (gw:USER).",
)
@click.option(
    "--gateway-password",
    default=_DEFAULT.gateway_password,
    show_default=False,
    help="The password every gateway user must give [default: secret].",
)
@click.option(
    "--seed", default=_DEFAULT.seed, type=int, help="Seed for latency, faults and markups."
)
@click.option(
    "--ledger/--no-ledger",
    default=_DEFAULT.ledger,
    help="Keep every ajax POST (message, identity, times) for GET /__sim/ledger.",
)
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the ready JSON here, atomically. Unlike stdout (where the "
    "passwords are masked as ***), this file holds the auth proxy URLs and the gateway "
    "password in clear; it is created mode 0600.",
)
def sim(ready_file: Path | None, **options: Any) -> None:
    """Run the offline stand-in for chatgpt.es (and proxies in front of it).

    Prints one JSON line when listening: {"url", "proxies", "bad_gateway_proxies",
    "auth_proxies", "plain_502_proxies", "dead_proxies", "gateway" (URL or null),
    "gateway_password" (*** or null), "stats_url", "chat" (its post_id, bot_id, type,
    stream, language)}. Runs until SIGINT or SIGTERM.
    """
    options["prohibited_words"] = tuple(options["prohibited_words"])
    try:
        config = SimConfig(**options)
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    try:
        asyncio.run(_run(config, ready_file))
    except OSError as error:
        raise click.ClickException(f"cannot listen: {error}") from error
