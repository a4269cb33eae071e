"""The ajax form as bytes: the same as urllib would encode it, for any text."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote_plus

from hypothesis import given
from hypothesis import strategies as st

from worker.form import cookie_header, form_body, form_fields, quote_form
from worker.sessions import SiteSession

PAGE = "https://chatgpt.es/"


@given(st.text())
def test_quoting_is_urllibs(text: str) -> None:
    assert quote_form(text) == quote_plus(text, safe="").encode()


@given(st.text(min_size=1), st.text(min_size=1), st.text())
def test_the_body_is_the_fields_urlencoded(nonce: str, post_id: str, prompt: str) -> None:
    session = SiteSession(nonce=nonce, post_id=post_id)
    body = form_body(session, PAGE, prompt)
    decoded = dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=True))
    expected = form_fields(session, PAGE, prompt)
    assert decoded.keys() == expected.keys()
    decoded["wpaicg_chat_client_id"] = expected["wpaicg_chat_client_id"]  # random in each
    assert decoded == expected


def test_cookies_travel_as_one_header() -> None:
    assert cookie_header({"a": "1", "wp_session": "x9"}) == "a=1; wp_session=x9"
