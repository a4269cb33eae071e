from __future__ import annotations

import os
from urllib.parse import quote

import pytest
import structlog

from worker.proxies import (
    DIRECT,
    ProxyConfigError,
    ProxyDefaults,
    ProxyPool,
    parse_proxy_entry,
    parse_proxy_line,
)

DEFAULTS = ProxyDefaults(max_inflight=4, rate_per_second=1.0, burst=2)


def edit(file, text: str) -> None:
    """Rewrites the proxies file as an operator would, seen as changed (a later mtime)."""
    file.write_text(text)
    stat = file.stat()
    os.utime(file, (stat.st_atime, stat.st_mtime + 5))


def test_proxy_line_with_options_and_comment() -> None:
    identity = parse_proxy_line(
        "socks5h://u:secret@10.0.0.7:1080 max_inflight=2 rate=0.5 weight=3  # EU", DEFAULTS, "f:1"
    )
    assert identity is not None
    assert identity.proxy_url == "socks5h://u:secret@10.0.0.7:1080"
    assert (identity.max_inflight, identity.rate_per_second, identity.weight) == (2, 0.5, 3.0)
    assert identity.name.startswith("10.0.0.7:1080~") and "secret" not in identity.name
    assert identity.shown == "socks5h://u:***@10.0.0.7:1080"


@pytest.mark.parametrize("scheme", ["http", "https", "socks5", "socks5h"])
def test_every_scheme_is_accepted(scheme: str) -> None:
    identity = parse_proxy_line(f"{scheme}://h:1", DEFAULTS, "x")
    assert identity is not None and identity.name == "h:1" and identity.max_inflight == 4


@pytest.mark.parametrize("line", ["", "   ", "# only a comment"])
def test_blank_and_comment_lines_are_nothing(line: str) -> None:
    assert parse_proxy_line(line, DEFAULTS, "x") is None


def fragments(secret: str, size: int = 4) -> set[str]:
    """Every piece of ``secret`` long enough to give part of it away."""
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def assert_no_fragment_of(secret: str, text: str) -> None:
    leaked = sorted(piece for piece in fragments(secret) if piece in text)
    assert not leaked, f"{leaked} of the secret in {text!r}"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ftp://u:hunter2@h:21", "not a proxy URL: it must start with http://"),
        ("u:hunter2@h:21", "not a proxy URL: it must start with http://"),
        ("http://u:hunter2@h", "names no host or no port"),
        ("http://u:hunter2@h:0", "port is not a number from 1 to 65535"),
        ("http://u:hunter2@h:1 speed=3", "word 1 after the URL is not an option"),
        ("http://u:hunter2@h:1 rate=fast", "rate must be a number"),
        ("http://u:hunter2@h:1 max_inflight=0", "max_inflight must be positive"),
        ("http://u:hunter2@h:1?x=1", "has no '[?]' or '#'"),
    ],
)
def test_bad_lines_name_the_place_and_hide_the_password(line: str, message: str) -> None:
    with pytest.raises(ProxyConfigError, match=message) as caught:
        parse_proxy_line(line, DEFAULTS, "line 7 of proxies.txt")
    assert str(caught.value).startswith("line 7 of proxies.txt: ")
    assert_no_fragment_of("hunter2", str(caught.value))


AWKWARD = "p#ss w,rd@x:y/z?%q"  # every character a URL parser splits on, and a space


@pytest.mark.parametrize("credentials", [f"user:{AWKWARD}", AWKWARD, f"{AWKWARD}:"])
def test_a_raw_awkward_secret_is_refused_by_position_and_never_quoted(credentials: str) -> None:
    line = f"http://{credentials}@10.0.0.7:3128 max_inflight=2"
    for parse, where in ((parse_proxy_line, "line 3 of f.txt"),
                         (parse_proxy_entry, "proxy 2 in CHATGPTES_PROXIES")):  # fmt: skip
        with pytest.raises(ProxyConfigError) as caught:
            parse(line, DEFAULTS, where)
        message = str(caught.value)
        assert message.startswith(f"{where}: ") and "%20" in message, message
        assert_no_fragment_of(AWKWARD, message)


@pytest.mark.parametrize("broken", ["p w", "p#w", "p@w", "p/w", "p?w", "p%w"])
def test_each_character_to_encode_gets_an_error_that_says_how(broken: str) -> None:
    with pytest.raises(ProxyConfigError, match="%2F") as caught:
        ProxyPool(f"http://h:1,http://u:{broken}xyzzy@h:2", None, DEFAULTS)
    assert str(caught.value).startswith("proxy 2 in CHATGPTES_PROXIES: ")
    assert_no_fragment_of(f"{broken}xyzzy", str(caught.value))


def test_a_percent_encoded_secret_is_taken_as_written() -> None:
    url = f"socks5h://us%40er:{quote(AWKWARD, safe='')}@10.0.0.7:1080"
    identity = parse_proxy_line(f"  {url}  rate=2  # EU exits", DEFAULTS, "x")
    assert identity is not None and identity.proxy_url == url and identity.rate_per_second == 2
    assert identity.shown == "socks5h://us%40er:***@10.0.0.7:1080"
    assert identity.name.startswith("10.0.0.7:1080~")


def test_a_user_only_credential_is_masked_whole() -> None:
    identity = parse_proxy_entry("http://TOKENSECRET@gw.example:7777", DEFAULTS, "x")
    assert identity is not None and identity.shown == "http://***@gw.example:7777"
    assert "TOKEN" not in identity.name


@pytest.mark.parametrize(
    ("line", "url"),
    [
        ("# a comment", None),
        ("   # an indented comment", None),
        ("http://u:p%23w@h:1 # EU", "http://u:p%23w@h:1"),
        ("http://u:p%23w@h:1\t#\tEU", "http://u:p%23w@h:1"),
        ("http://h:1 weight=2 #", "http://h:1"),
    ],
)
def test_a_comment_starts_at_a_hash_after_whitespace(line: str, url: str | None) -> None:
    identity = parse_proxy_line(line, DEFAULTS, "x")
    assert (identity.proxy_url if identity else None) == url


def test_a_hash_inside_a_url_is_no_comment_and_is_refused_unquoted() -> None:
    with pytest.raises(ProxyConfigError, match="%23") as caught:
        parse_proxy_line("http://u:secr#et@h:1", DEFAULTS, "line 1 of f")
    assert "secr" not in str(caught.value) and "et@h" not in str(caught.value)


def test_no_proxies_means_one_direct_identity() -> None:
    pool = ProxyPool("", None, DEFAULTS)
    assert [(i.name, i.proxy_url, i.max_inflight) for i in pool.identities] == [(DIRECT, None, 4)]


def test_setting_and_file_combine_without_duplicates(tmp_path) -> None:
    file = tmp_path / "proxies.txt"
    file.write_text("# pool\nhttp://a:1\nhttp://b:2 max_inflight=1\n\nhttp://a:1\n")
    pool = ProxyPool("http://c:3, http://a:1", file, DEFAULTS)
    assert [i.name for i in pool.identities] == ["c:3", "a:1", "b:2"]


def test_file_is_reloaded_when_it_changes(tmp_path) -> None:
    file = tmp_path / "proxies.txt"
    file.write_text("http://a:1\n")
    pool = ProxyPool("", file, DEFAULTS)
    assert not pool.reload()
    edit(file, "http://a:1\nhttp://b:2\n")
    assert pool.reload()
    assert [i.name for i in pool.identities] == ["a:1", "b:2"]


def test_missing_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ProxyConfigError, match="does not exist"):
        ProxyPool("", tmp_path / "nope.txt", DEFAULTS)


def test_bad_edit_later_keeps_the_old_pool(tmp_path) -> None:
    file = tmp_path / "proxies.txt"
    file.write_text("http://a:1\n")
    pool = ProxyPool("", file, DEFAULTS)
    edit(file, "http://a:1\nnot a proxy\n")
    assert not pool.reload()
    assert [i.name for i in pool.identities] == ["a:1"]


def test_bad_file_at_start_up_is_refused(tmp_path) -> None:
    file = tmp_path / "proxies.txt"
    file.write_text("http://a:1\nnot a proxy\n")
    with pytest.raises(ProxyConfigError, match=r"line 2 of .*proxies.txt: not a proxy URL"):
        ProxyPool("", file, DEFAULTS)


def test_a_file_that_is_not_utf8_is_refused_by_line(tmp_path) -> None:
    file = tmp_path / "proxies.txt"
    file.write_bytes(b"http://a:1\nhttp://u:s\xffcret@b:2\n")
    with pytest.raises(ProxyConfigError, match=r"line 2 of .*proxies.txt is not UTF-8") as caught:
        ProxyPool("", file, DEFAULTS)
    assert "cret" not in str(caught.value)


def test_a_bad_edit_is_logged_by_line_without_the_secret(tmp_path) -> None:
    file = tmp_path / "proxies.txt"
    file.write_text("http://a:1\n")
    pool = ProxyPool("", file, DEFAULTS)
    edit(file, "http://a:1\nhttp://u:hunter2#more@b:2\n")
    with structlog.testing.capture_logs() as logged:
        assert not pool.reload()
    [failed] = [entry for entry in logged if entry["event"] == "proxies.reload_failed"]
    assert "line 2 of" in failed["error"] and failed["kept"] == 1
    assert_no_fragment_of("hunter2#more", str(logged))
