import pytest

from worker.errors import HandshakeFailed, RetryableError
from worker.page import PageTokens, parse_page

FILLER = "<p>" + "Lorem ipsum dolor sit amet. " * 400 + "</p>"


@pytest.mark.parametrize(
    "markup",
    [
        '<div class="wpaicg-chat-shortcode" data-nonce="a1b2c3d4e5" data-post-id="106" data-url="x">',
        "<div data-post-id='106' class='chat' data-nonce='a1b2c3d4e5'></div>",
        '<form><input type="hidden" name="_wpnonce" value="a1b2c3d4e5">'
        '<input type="hidden" name="post_id" value="106"></form>',
        '<input value="a1b2c3d4e5" name="_wpnonce" type="hidden" />'
        "<input value='106' type='hidden' name='post_id' />",
        "<script>var wpaicg_nonce = 'a1b2c3d4e5'; var wpaicg_post_id = '106';</script>",
        '<script>var wpaicg_nonce="a1b2c3d4e5";</script><input type="hidden" name="post_id" value="106">',
        '<script>var wpaicg_params = {"ajax_url":"https://x/wp-admin/admin-ajax.php",'
        '"_wpnonce":"a1b2c3d4e5","post_id":"106"};</script>',
        '<script>var p = {"_wpnonce": "a1b2c3d4e5", "post_id": 106};</script>',
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
    page = f"<html><head><title>Chat</title></head><body>{FILLER}{markup}{FILLER}</body></html>"
    tokens = parse_page(page)
    assert (tokens.nonce, tokens.post_id) == ("a1b2c3d4e5", "106")


def test_post_id_from_body_class_when_chat_markup_has_none() -> None:
    page = '<body class="page-template page-id-2477 logged-out"><div data-nonce="ffee001122"></div>'
    tokens = parse_page(page)
    assert (tokens.nonce, tokens.post_id) == ("ffee001122", "2477")


def test_page_without_nonce_is_a_typed_handshake_failure() -> None:
    with pytest.raises(HandshakeFailed, match="no nonce") as caught:
        parse_page(f'<html><body>{FILLER}<div data-post-id="106"></div></body></html>')
    assert isinstance(caught.value, RetryableError)


def test_page_without_post_id_names_what_is_missing() -> None:
    with pytest.raises(HandshakeFailed, match="no post id"):
        parse_page('<div data-nonce="a1b2c3d4e5"></div>')


def test_challenge_page_has_neither() -> None:
    with pytest.raises(HandshakeFailed, match="no nonce and no post id"):
        parse_page("<html><title>Just a moment...</title><body>Checking your browser</body></html>")


def test_empty_nonce_attribute_is_not_a_nonce() -> None:
    with pytest.raises(HandshakeFailed, match="no nonce"):
        parse_page('<input type="hidden" name="_wpnonce" value=""><div data-post-id="106">')


def test_a_script_variable_is_a_whole_name() -> None:
    page = "var my_wpaicg_nonce = 'decoy0001'; var wpaicg_nonce = 'real0002'; wpaicg_post_id = 7"
    assert parse_page(page) == PageTokens(nonce="real0002", post_id="7")
    blob = '{"my_wpnonce":"decoy0003","_wpnonce":"real0004","xpost_id":1,"post_id":"8"}'
    assert parse_page(blob) == PageTokens(nonce="real0004", post_id="8")
