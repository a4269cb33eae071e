"""The ajax form: the plugin script's fields for each profile, encoded as the browser does."""

from __future__ import annotations

import json
import re
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qsl, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.forms import parse_multipart
from worker.form import (
    FormSite,
    client_id,
    cookie_header,
    encode_form,
    form_fields,
    quote_form,
)
from worker.page import ChatType, SiteProfile
from worker.sessions import SiteSession

SITE = FormSite(page_url="https://chatgpt.es/")


def session(**profile: object) -> SiteSession:
    fields: dict[str, object] = {"nonce": "a1b2c3d4e5", "post_id": "106", **profile}
    return SiteSession(SiteProfile(**fields))  # type: ignore[arg-type]


def decoded(body: bytes, content_type: str) -> dict[str, str]:
    """The fields as a standard parser (the email package's MIME reader) reads them."""
    if content_type.startswith("application/x-www-form-urlencoded"):
        return dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=True))
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    assert message.is_multipart() and not message.defects
    return {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True).decode()
        for part in message.iter_parts()
    }


@pytest.mark.parametrize(
    ("profile", "action", "bot_id", "identity"),
    [
        ({}, "wpaicg_chat_shortcode_message", "0", "shortcode"),
        ({"chat_type": ChatType.WIDGET}, "wpaicg_chatbox_message", "0", "widget"),
        ({"bot_id": "4367"}, "wpaicg_chat_shortcode_message", "4367", "custom_bot_4367"),
        (
            {"bot_id": "88", "chat_type": ChatType.WIDGET},
            "wpaicg_chatbox_message",
            "88",
            "custom_bot_88",
        ),
    ],
    ids=["shortcode", "widget", "custom bot", "custom-bot widget"],
)
def test_each_profile_gets_the_identity_its_page_names(
    profile: dict[str, object], action: str, bot_id: str, identity: str
) -> None:
    fields = form_fields(session(**profile), SITE, "hola")
    assert (fields["action"], fields["bot_id"], fields["chatbot_identity"]) == (
        action,
        bot_id,
        identity,
    )


def test_the_fields_and_their_order_are_the_scripts() -> None:
    fields = form_fields(session(url="https://chatgpt.es/chat/"), SITE, "¿Qué es Redis?")
    assert list(fields) == [
        "_wpnonce", "post_id", "url", "action", "message", "bot_id", "chatbot_identity",
        "wpaicg_chat_history", "wpaicg_chat_client_id", "wpaicg_user_agree",
    ]  # fmt: skip
    assert fields["url"] == "https://chatgpt.es/chat/"  # the page's data-url
    assert json.loads(fields["wpaicg_chat_history"]) == ["Human: ¿Qué es Redis?"]
    assert fields["wpaicg_user_agree"] == "1"
    assert "thread_id" not in fields  # every prompt is a conversation of its own


def test_a_streaming_site_gets_a_chat_id_and_no_data_url_means_the_page() -> None:
    fields = form_fields(session(stream=True), SITE, "hola", chat_id=77)
    assert list(fields)[-2:] == ["chat_id", "wpaicg_user_agree"]
    assert fields["chat_id"] == "77" and fields["url"] == "https://chatgpt.es/"
    drawn = {int(form_fields(session(stream=True), SITE, "x")["chat_id"]) for _ in range(50)}
    assert all(1 <= chat_id <= 100_000 for chat_id in drawn) and len(drawn) > 1


def test_the_client_id_is_ten_letters_and_digits_one_per_session() -> None:
    one, other = session(), session()
    ids = {form_fields(one, SITE, f"prompt {n}")["wpaicg_chat_client_id"] for n in range(5)}
    assert len(ids) == 1 and re.fullmatch(r"[A-Za-z0-9]{10}", ids.pop() or "")
    assert client_id(one) != client_id(other)
    copy = SiteSession(one.profile, id=one.id)  # the same session, read back from Redis
    assert client_id(copy) == client_id(one)


def test_the_consent_field_settings_then_page_then_default() -> None:
    named = session(consent_field="wpaicg_agree_terms")
    assert "wpaicg_agree_terms" in form_fields(named, SITE, "x")
    assert "wpaicg_user_agree" in form_fields(session(), SITE, "x")
    told = FormSite(page_url=SITE.page_url, consent_field="theme_renamed_agree")
    fields = form_fields(named, told, "x")
    assert fields["theme_renamed_agree"] == "1" and "wpaicg_agree_terms" not in fields


def test_the_encoding_is_the_browsers() -> None:
    multipart = encode_form(session(), SITE, "hola")
    assert re.fullmatch(
        r"multipart/form-data; boundary=----WebKitFormBoundary[A-Za-z0-9]{16}",
        multipart.content_type,
    )
    urlencoded = encode_form(session(stream=True), SITE, "hola")
    assert urlencoded.content_type == "application/x-www-form-urlencoded"


@given(st.text(), st.booleans(), st.integers(1, 100_000))
def test_the_body_is_the_fields_encoded(prompt: str, stream: bool, chat_id: int) -> None:
    made = session(stream=stream, bot_id="12", chat_type=ChatType.WIDGET)
    form = encode_form(made, SITE, prompt, chat_id=chat_id)
    assert decoded(form.body, form.content_type) == form_fields(made, SITE, prompt, chat_id=chat_id)


def test_a_prompt_holding_the_boundary_gets_a_boundary_of_its_own() -> None:
    made = session()
    first = encode_form(made, SITE, "hola")
    boundary = first.content_type.partition("boundary=")[2]
    hostile = f'x\r\n--{boundary}\r\nContent-Disposition: form-data; name="bot_id"\r\n\r\n9'
    form = encode_form(made, SITE, hostile)
    assert boundary not in form.content_type
    fields = decoded(form.body, form.content_type)
    assert fields["message"] == hostile and fields["bot_id"] == "0"
    assert encode_form(made, SITE, "hola").content_type == first.content_type  # back to its own


@given(st.text())
def test_the_simulator_reads_the_body_as_a_standard_parser_does(prompt: str) -> None:
    form = encode_form(session(), SITE, prompt)
    boundary = form.content_type.partition("boundary=")[2].encode()
    assert parse_multipart(form.body, boundary) == decoded(form.body, form.content_type)


@given(st.text())
def test_quoting_is_urllibs(text: str) -> None:
    assert quote_form(text) == quote_plus(text, safe="").encode()


def test_cookies_travel_as_one_header() -> None:
    assert cookie_header({"a": "1", "wp_session": "x9"}) == "a=1; wp_session=x9"
