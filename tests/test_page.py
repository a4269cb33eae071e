"""The page → the site's profile: every markup, every profile, with plain strings."""

from __future__ import annotations

import pytest

from simulator.config import MARKUPS, SimConfig
from simulator.pages import PageRenderer
from worker.errors import HandshakeFailed, RetryableError
from worker.page import ChatType, SiteProfile, parse_page

FILLER = "<p>" + "Lorem ipsum dolor sit amet, conversación en español. " * 400 + "</p>"
SHORTCODE = '<div class="wpaicg-chat-shortcode"></div>'


def page(markup: str) -> str:
    return f"<html><head><title>Chat</title></head><body>{FILLER}{markup}{FILLER}</body></html>"


@pytest.mark.parametrize(
    "markup",
    [
        '<div class="wpaicg-chat-shortcode" data-nonce="a1b2c3d4e5" data-post-id="106" data-url="x">',
        "<div data-post-id='106' class='wpaicg-chat-shortcode' data-nonce='a1b2c3d4e5'></div>",
        '<form><input type="hidden" name="_wpnonce" value="a1b2c3d4e5">'
        '<input type="hidden" name="post_id" value="106">'
        '<input type="hidden" name="action" value="wpaicg_chat_shortcode_message"></form>',
        '<input value="a1b2c3d4e5" name="_wpnonce" type="hidden" />'
        "<input value='106' type='hidden' name='post_id' />" + SHORTCODE,
        "<script>var wpaicg_nonce = 'a1b2c3d4e5'; var wpaicg_post_id = '106';</script>" + SHORTCODE,
        '<script>var wpaicg_nonce="a1b2c3d4e5";</script><input type="hidden" name="post_id" '
        'value="106">' + SHORTCODE,
        '<script>var wpaicg_params = {"ajax_url":"https://x/wp-admin/admin-ajax.php",'
        '"_wpnonce":"a1b2c3d4e5","post_id":"106","chatbot_identity":"shortcode"};</script>',
        '<script>var p = {"_wpnonce": "a1b2c3d4e5", "post_id": 106};</script>' + SHORTCODE,
    ],
    ids=[
        "data-attrs",
        "data-attrs-reordered",
        "hidden-inputs",
        "hidden-inputs-reordered",
        "script-var",
        "script-var-with-input",
        "json-blob",
        "json-blob-numeric-id",
    ],
)
def test_every_markup_yields_nonce_and_post_id(markup: str) -> None:
    profile = parse_page(page(markup))
    assert (profile.nonce, profile.post_id) == ("a1b2c3d4e5", "106")
    assert (profile.chat_type, profile.bot_id, profile.stream) == (ChatType.SHORTCODE, "0", False)


# The simulator's four markups, for every kind of chat a site may have.
PROFILES = {
    "shortcode": {},
    "widget": {"chat_type": "widget"},
    "custom bot": {"bot_id": 4367},
    "custom-bot widget": {"bot_id": 88, "chat_type": "widget", "post_id": 2477},
    "streaming widget": {"chat_type": "widget", "stream": True, "consent_field": "wpaicg_agree"},
}


@pytest.mark.parametrize("markup", MARKUPS)
@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_in_every_markup(markup: str, profile: str) -> None:
    config = SimConfig(**PROFILES[profile])  # type: ignore[arg-type]
    html = PageRenderer("https://chatgpt.es", config).render(markup, "0a1b2c3d4e", "ffffffffff")
    found = parse_page(html)
    assert found.nonce == "0a1b2c3d4e"  # never the REST decoy beside it
    assert found.post_id == str(config.post_id)
    assert found.bot_id == str(config.bot_id)
    assert found.chat_type == ChatType(config.chat_type)
    # What each markup carries, and nothing more: the rest is the script's default.
    says_stream = markup in ("data-attrs", "script-var")
    assert found.stream == (config.stream and says_stream)
    names_consent = markup in ("data-attrs", "hidden-inputs")
    assert found.consent_field == (config.consent_field if names_consent else None)
    assert found.url == ("https://chatgpt.es/" if markup == "data-attrs" else None)


def test_the_plugins_own_chat_element_says_everything() -> None:
    element = (
        '<div class="wpaicg-chatbox wpaicg_chat_widget" data-fontsize="13" '
        'data-nonce="9f8e7d6c5b" data-post-id="2477" data-url="https://chatgpt.co.uk/chat/" '
        'data-bot-id="4367" data-type="widget" data-openai_stream_nav="1" '
        'data-assistant-enabled="true"><input type="checkbox" name="wpaicg_user_agree"></div>'
    )
    assert parse_page(page(element)) == SiteProfile(
        nonce="9f8e7d6c5b",
        post_id="2477",
        bot_id="4367",
        chat_type=ChatType.WIDGET,
        stream=True,
        url="https://chatgpt.co.uk/chat/",
        consent_field="wpaicg_user_agree",
        assistant=True,
    )


def test_the_element_s_class_says_its_type_when_data_type_does_not() -> None:
    widget = '<div class="wpaicg-chatbox" data-nonce="a1b2c3d4e5" data-post-id="7"></div>'
    assert parse_page(widget).chat_type == ChatType.WIDGET
    # a child's class (…-content) is not the chat's
    inner = '<div data-nonce="a1b2c3d4e5" data-post-id="7" class="wpaicg-chatbox-content">'
    with pytest.raises(HandshakeFailed, match="no chat element"):
        parse_page(inner)


def test_the_chat_element_wins_over_a_json_blob() -> None:
    html = (
        '<script>var wpaicg_params = {"bot_id":"5","chatbot_identity":"custom_bot_5"};</script>'
        '<div class="wpaicg-chat-shortcode" data-nonce="a1b2c3d4e5" data-post-id="7" '
        'data-bot-id="9" data-type="shortcode"></div>'
    )
    assert parse_page(html).bot_id == "9"


def test_a_custom_bot_named_only_by_its_identity() -> None:
    blob = '{"_wpnonce":"a1b2c3d4e5","post_id":"7","chatbot_identity":"custom_bot_321"}'
    found = parse_page(f"<script>var wpaicg_params = {blob};</script>")
    assert (found.bot_id, found.chat_type) == ("321", ChatType.SHORTCODE)


def test_a_widget_told_by_its_hidden_action() -> None:
    form = (
        '<input type="hidden" name="_wpnonce" value="a1b2c3d4e5">'
        '<input type="hidden" name="post_id" value="7">'
        '<input type="hidden" name="action" value="wpaicg_chatbox_message">'
        '<input type="hidden" name="bot_id" value="12">'
    )
    found = parse_page(page(form))
    assert (found.chat_type, found.bot_id) == (ChatType.WIDGET, "12")


def test_only_the_plugins_checkbox_is_the_consent_field() -> None:
    chat = '<div class="wpaicg-chat-shortcode" data-nonce="a1b2c3d4e5" data-post-id="7"></div>'
    comments = '<input id="wp-comment-cookies-consent" name="wp-comment-cookies-consent" ' \
        'type="checkbox" value="yes">'  # fmt: skip
    assert parse_page(chat + comments).consent_field is None
    theme = '<input type="checkbox" name="theme_renamed_agree" value="1">'
    assert parse_page(chat + theme).consent_field is None  # a theme's: the settings must say
    plugin = '<input type="checkbox" name="wpaicg_agree_terms" value="1">'
    assert parse_page(chat + comments + plugin).consent_field == "wpaicg_agree_terms"


def test_post_id_from_body_class_when_chat_markup_has_none() -> None:
    html = (
        '<body class="page-template page-id-2477 logged-out">'
        '<div class="wpaicg-chat-shortcode" data-nonce="ffee001122"></div>'
    )
    found = parse_page(html)
    assert (found.nonce, found.post_id) == ("ffee001122", "2477")


def test_page_without_nonce_is_a_typed_handshake_failure() -> None:
    with pytest.raises(HandshakeFailed, match="no nonce") as caught:
        parse_page(page('<div class="wpaicg-chat-shortcode" data-post-id="106"></div>'))
    assert isinstance(caught.value, RetryableError)


def test_page_without_post_id_names_what_is_missing() -> None:
    with pytest.raises(HandshakeFailed, match="no post id"):
        parse_page('<div class="wpaicg-chatbox" data-nonce="a1b2c3d4e5"></div>')


def test_page_without_a_chat_element_names_it() -> None:
    """A nonce and a post id are not a chat: nothing says which form the site wants."""
    with pytest.raises(HandshakeFailed, match="no chat element"):
        parse_page(page("<script>var wpaicg_nonce = 'a1b2c3d4e5'; wpaicg_post_id = 7;</script>"))


def test_challenge_page_has_nothing() -> None:
    with pytest.raises(HandshakeFailed, match="no nonce and no post id and no chat element"):
        parse_page("<html><title>Just a moment...</title><body>Checking your browser</body></html>")


def test_empty_nonce_attribute_is_not_a_nonce() -> None:
    with pytest.raises(HandshakeFailed, match="no nonce"):
        parse_page(
            '<input type="hidden" name="_wpnonce" value="">'
            '<div class="wpaicg-chat-shortcode" data-post-id="106">'
        )


def test_a_bot_id_that_is_not_a_number_is_refused_not_guessed() -> None:
    element = (
        '<div class="wpaicg-chatbox" data-nonce="a1b2c3d4e5" data-post-id="7" data-bot-id="x">'
    )
    with pytest.raises(HandshakeFailed, match="data-bot-id is not a number"):
        parse_page(element)


def test_a_script_variable_is_a_whole_name() -> None:
    html = (
        "var my_wpaicg_nonce = 'decoy0001'; var wpaicg_nonce = 'real0002'; wpaicg_post_id = 7;"
        "var my_wpaicg_bot_id = '66'; var wpaicg_bot_id = '5';" + SHORTCODE
    )
    found = parse_page(html)
    assert (found.nonce, found.post_id, found.bot_id) == ("real0002", "7", "5")
    blob = (
        '{"my_wpnonce":"decoy0003","nonce":"decoy0005","_wpnonce":"real0004","xpost_id":1,'
        '"post_id":"8","xbot_id":"3"}' + SHORTCODE
    )
    found = parse_page(blob)
    assert (found.nonce, found.post_id, found.bot_id) == ("real0004", "8", "0")
