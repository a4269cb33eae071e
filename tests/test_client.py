"""The exchange client against the simulator, over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from contract.models import Message, RequestParams
from simulator import ManualClock, SimConfig, run_simulator
from simulator.local import free_port
from worker.client import ChatGptEsClient, ClientOptions
from worker.errors import (
    ConsentMissing,
    ContentRefused,
    ProxyFault,
    RateLimited,
    SessionStale,
    UnknownModel,
    UpstreamHiccup,
    UpstreamRejected,
    UpstreamTimeout,
)
from worker.form import form_fields
from worker.page import ChatType
from worker.prompt import JSON_INSTRUCTION
from worker.proxies import Identity
from worker.replies import classify_reply
from worker.sessions import SiteSession

HELLO = (Message(role="user", content="Hello there"),)
DIRECT = Identity("direct", None, max_inflight=4, rate_per_second=0)


def via(proxy_url: str) -> Identity:
    return Identity("proxy", proxy_url, max_inflight=4, rate_per_second=0)


@asynccontextmanager
async def site(**options: object) -> AsyncIterator[tuple[object, ChatGptEsClient]]:
    clock = options.pop("clock", None)
    async with run_simulator(SimConfig(**options), clock=clock) as sim:
        client = ChatGptEsClient(
            ClientOptions(base_url=sim.url, connect_timeout=2, request_timeout=5)
        )
        try:
            yield sim, client
        finally:
            await client.close()


async def exchange(client: ChatGptEsClient, identity: Identity = DIRECT, messages=HELLO) -> str:
    session = await client.handshake(identity)
    return (await client.ask(identity, session, messages, "gpt-4o")).text


@pytest.mark.parametrize("markup", ["data-attrs", "hidden-inputs", "script-var", "json-blob"])
async def test_direct_exchange_in_every_markup(markup: str) -> None:
    async with site(markup=markup) as (_sim, client):
        answer = await exchange(client)
    assert answer.startswith("Echo: Your default language is English.")
    assert answer.endswith("User input: Hello there")


async def test_handshake_keeps_the_page_cookie_and_sends_it_back() -> None:
    async with site(bind_nonce_to_cookie=True) as (_sim, client):
        session = await client.handshake(DIRECT)
        assert "wpaicg_session" in session.cookies
        assert await client.ask(DIRECT, session, HELLO, "gpt-4o")
        # Without the cookie the bound nonce is refused: the cookie really travels, and
        # the connection kept no jar of its own that would have sent it anyway.
        cookieless = SiteSession(session.profile)
        with pytest.raises(SessionStale):
            await client.ask(DIRECT, cookieless, HELLO, "gpt-4o")


async def test_session_is_reused_for_many_posts() -> None:
    async with site() as (sim, client):
        session = await client.handshake(DIRECT)
        for _ in range(5):
            await client.ask(DIRECT, session, HELLO, "gpt-4o")
        stats = sim.stats.snapshot()
    assert (stats["requests"]["page"], stats["requests"]["ajax"]) == (1, 5)


async def test_via_a_proxy_port_the_site_sees_the_proxy_identity() -> None:
    async with site(proxies=1) as (sim, client):
        assert (await exchange(client, via(sim.proxy_urls[0]))).endswith("Hello there")
        identities = sim.stats.snapshot()["identities"]
    assert identities["proxy1"]["ajax"] == 1 and "direct" not in identities


async def test_via_an_authenticating_proxy() -> None:
    async with site(auth_proxies=1) as (sim, client):
        assert (await exchange(client, via(sim.auth_proxy_urls[0]))).endswith("Hello there")
        wrong = sim.auth_proxy_urls[0].replace(":secret@", ":wrong@")
        with pytest.raises(ProxyFault, match="407") as caught:
            await exchange(client, via(wrong))
    assert "wrong" not in str(caught.value) and "secret" not in str(caught.value)


async def test_bad_gateway_proxy_is_a_proxy_fault() -> None:
    async with site(bad_gateway_proxies=1) as (sim, client):
        with pytest.raises(ProxyFault, match="502"):
            await exchange(client, via(sim.bad_gateway_proxy_urls[0]))


async def test_dead_proxy_is_a_proxy_fault() -> None:
    async with site() as (_sim, client):
        with pytest.raises(ProxyFault, match="proxy failed"):
            await exchange(client, via(f"http://user:pw@127.0.0.1:{free_port()}"))


async def test_streaming_mode_is_joined_into_one_answer() -> None:
    async with site(stream=True) as (_sim, client):
        answer = await exchange(client)
    assert answer.startswith("Echo: ") and answer.endswith("User input: Hello there")


async def test_expired_nonce_is_session_stale() -> None:
    clock = ManualClock()
    async with site(clock=clock, nonce_tick_seconds=100) as (_sim, client):
        session = await client.handshake(DIRECT)
        clock.advance(250)  # past two ticks, as WordPress nonces expire
        with pytest.raises(SessionStale, match="nonce rejected"):
            await client.ask(DIRECT, session, HELLO, "gpt-4o")


async def test_rate_limit_gives_retry_after() -> None:
    async with site(rate_per_second=0.001, burst=1, ban_after_violations=0) as (_sim, client):
        session = await client.handshake(DIRECT)
        with pytest.raises(RateLimited) as caught:
            await client.ask(DIRECT, session, HELLO, "gpt-4o")
    assert caught.value.retry_after is not None and caught.value.retry_after >= 1


async def test_consent_and_refusal_are_permanent() -> None:
    async with site() as (_sim, client):
        with pytest.raises(ContentRefused):
            await exchange(client, messages=(Message(role="user", content="a forbiddenword here"),))
        session = await client.handshake(DIRECT)
        fields = form_fields(session, client.form_site, "hi")
        del fields["wpaicg_user_agree"]
        response = await client.http.post(client.ajax_url, data=fields, cookies=session.cookies)
        outcome = classify_reply(response.status_code, dict(response.headers), response.text)
    assert isinstance(outcome, ConsentMissing)


# --- the profile a page gives decides the form -------------------------------------------

PROFILES = {
    "custom-bot widget": {"bot_id": 4367, "chat_type": "widget", "post_id": 2477},
    "widget": {"chat_type": "widget"},
    "custom bot": {"bot_id": 12},
    "streaming custom bot": {"bot_id": 12, "stream": True, "markup": "data-attrs"},
}


@pytest.mark.parametrize("markup", ["data-attrs", "hidden-inputs", "script-var", "json-blob"])
@pytest.mark.parametrize("profile", PROFILES)
async def test_every_profile_is_answered_with_no_form_mismatch(profile: str, markup: str) -> None:
    options = {"markup": markup, **PROFILES[profile]}
    async with site(**options) as (sim, client):
        session = await client.handshake(DIRECT)
        answers = [await client.ask(DIRECT, session, HELLO, "gpt-4o") for _ in range(3)]
        stats = sim.stats.snapshot()
    assert all(answer.text.endswith("Hello there") for answer in answers)
    assert (stats["replies"]["success"], stats["replies"]["form_mismatch"]) == (3, 0)


async def test_a_form_built_for_another_profile_is_refused_as_the_site_s() -> None:
    """The fields bot 0 / shortcode (what was sent before profiles) at a custom-bot widget."""
    options = {"bot_id": 4367, "chat_type": "widget", "markup": "data-attrs", "language": "en"}
    async with site(**options) as (sim, client):
        session = await client.handshake(DIRECT)
        assumed = dataclasses.replace(session.profile, bot_id="0", chat_type=ChatType.SHORTCODE)
        with pytest.raises(UpstreamRejected, match="not available"):
            await client.ask(DIRECT, SiteSession(assumed, session.cookies), HELLO, "gpt-4o")
        stats = sim.stats.snapshot()
    assert stats["replies"]["form_mismatch"] == 1 and stats["mismatches"] == {"action": 1}


async def test_the_consent_field_of_the_site_s_settings_is_sent() -> None:
    async with site(consent_field="theme_renamed_agree", markup="data-attrs") as (sim, client):
        with pytest.raises(ConsentMissing):  # the page's checkbox is a theme's, not the plugin's
            await exchange(client)
        told = ChatGptEsClient(ClientOptions(base_url=sim.url, consent_field="theme_renamed_agree"))
        try:
            assert (await exchange(told)).endswith("Hello there")
        finally:
            await told.close()


async def test_a_consent_field_the_page_names_is_sent() -> None:
    async with site(consent_field="wpaicg_agree_terms", markup="hidden-inputs") as (sim, client):
        assert (await exchange(client)).endswith("Hello there")
        assert sim.stats.snapshot()["replies"]["consent_missing"] == 0


@pytest.mark.parametrize("language", ["de", "en", "es"])
async def test_refusals_are_read_in_the_site_s_language(language: str) -> None:
    async with site(language=language, consent_field="theme_renamed_agree") as (sim, _):
        untold = ChatGptEsClient(ClientOptions(base_url=sim.url, language=language))
        told = ChatGptEsClient(
            ClientOptions(base_url=sim.url, language=language, consent_field="theme_renamed_agree")
        )
        try:
            with pytest.raises(ConsentMissing):
                await exchange(untold)
            with pytest.raises(ContentRefused):
                await exchange(told, messages=(Message(role="user", content="forbiddenword"),))
        finally:
            await untold.close()
            await told.close()


def test_a_language_with_no_known_refusals_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="no refusal words known for language 'fr'"):
        ChatGptEsClient(ClientOptions(language="fr"))


async def test_the_chat_on_a_subpage_posts_to_the_site_s_ajax() -> None:
    async with site() as (sim, _):
        client = ChatGptEsClient(ClientOptions(base_url=sim.url + "/chat"))
        try:
            assert client.page_url == sim.url + "/chat"
            assert client.ajax_url == sim.url + "/wp-admin/admin-ajax.php"
        finally:
            await client.close()


async def test_a_malformed_model_name_is_refused() -> None:
    async with site() as (_sim, client):
        session = await client.handshake(DIRECT)
        with pytest.raises(UnknownModel, match="is not a model name"):
            await client.ask(DIRECT, session, HELLO, "gpt 5; drop")
        assert await client.ask(DIRECT, session, HELLO, "a-name-only-the-producer-knows")


async def test_site_faults_are_hiccups() -> None:
    async with site(fault_nonjson_rate=1.0) as (_sim, client):
        with pytest.raises(UpstreamHiccup, match="not JSON"):
            await exchange(client)
    async with site(fault_reset_rate=1.0) as (_sim, client):
        with pytest.raises(UpstreamHiccup):
            await exchange(client)


async def test_slow_reply_times_out() -> None:
    async with run_simulator(SimConfig(fault_slow_rate=1.0, slow_seconds=30)) as sim:
        client = ChatGptEsClient(
            ClientOptions(base_url=sim.url, connect_timeout=1, request_timeout=1.5)
        )
        with pytest.raises(UpstreamTimeout, match="timed out"):
            await exchange(client)
        await client.close()


async def test_fifty_concurrent_exchanges_overlap() -> None:
    async with site(latency="fixed:100") as (sim, client):
        session = await client.handshake(DIRECT)
        prompts = [(Message(role="user", content=f"prompt {n}"),) for n in range(50)]
        answers = await asyncio.gather(*(client.ask(DIRECT, session, p, "gpt-4o") for p in prompts))
        stats = sim.stats.snapshot()
    assert [a.text.rsplit(" ", 1)[-1] for a in answers] == [str(n) for n in range(50)]
    assert stats["inflight_max"] > 1
    assert stats["requests"]["ajax"] == 50


async def test_one_connection_pool_serves_many_identities_through_a_gateway() -> None:
    """A gateway's user names pick the exits; one session carries all of them, no jar mixing."""
    async with site(gateway=True, bind_nonce_to_identity=True) as (sim, client):
        from simulator.proxies import gateway_proxy_urls

        urls = gateway_proxy_urls(sim.gateway_url, sim.config.gateway_password, 20)
        exits = [Identity(f"gw{n}", url, 4, 0) for n, url in enumerate(urls)]
        sessions = await asyncio.gather(*(client.handshake(exit_) for exit_ in exits))
        answers = await asyncio.gather(
            *(client.ask(e, s, HELLO, "gpt-4o") for e, s in zip(exits, sessions, strict=True))
        )
        stats = sim.stats.snapshot()
    assert len(answers) == 20
    gateway_identities = [name for name in stats["identities"] if name.startswith("gw:")]
    assert len(gateway_identities) == 20
    assert stats["replies"]["nonce_failed"] == 0  # each exit's nonce went out through that exit


async def test_the_site_is_asked_for_json_and_the_object_is_kept() -> None:
    async with site() as (_sim, client):
        session = await client.handshake(DIRECT)
        answer, _, _ = await client.ask(
            DIRECT, session, HELLO, "gpt-4o", RequestParams(json_object=True, stop=("zzz",))
        )
    # The simulator answers 'Echo: {"echo": <message>}' when asked for a JSON object.
    echoed = json.loads(answer)["echo"]
    assert echoed.endswith(f"Hello there\n\n{JSON_INSTRUCTION}")


async def test_a_stop_sequence_cuts_the_answer() -> None:
    async with site() as (_sim, client):
        session = await client.handshake(DIRECT)
        answer, _, _ = await client.ask(
            DIRECT, session, HELLO, "gpt-4o", RequestParams(stop=("Hello",))
        )
    assert answer.startswith("Echo: Your default language") and answer.endswith("User input: ")
