from __future__ import annotations

import os

import pytest

from worker.proxies import DIRECT, ProxyConfigError, ProxyDefaults, ProxyPool, parse_proxy_line

DEFAULTS = ProxyDefaults(max_inflight=4, rate_per_second=1.0, burst=2)


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


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ftp://u:hunter2@h:21", "must be scheme://"),
        ("http://u:hunter2@h", "must be scheme://"),
        ("http://u:hunter2@h:1 speed=3", "unknown option 'speed=3'"),
        ("http://u:hunter2@h:1 rate=fast", "rate must be a number"),
        ("http://u:hunter2@h:1 max_inflight=0", "max_inflight must be positive"),
    ],
)
def test_bad_lines_name_the_place_and_hide_the_password(line: str, message: str) -> None:
    with pytest.raises(ProxyConfigError, match=message) as caught:
        parse_proxy_line(line, DEFAULTS, "proxies.txt:7")
    assert "proxies.txt:7" in str(caught.value) and "hunter2" not in str(caught.value)


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
    file.write_text("http://a:1\nhttp://b:2\n")
    stat = file.stat()
    os.utime(file, (stat.st_atime, stat.st_mtime + 5))
    assert pool.reload()
    assert [i.name for i in pool.identities] == ["a:1", "b:2"]


def test_missing_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ProxyConfigError, match="does not exist"):
        ProxyPool("", tmp_path / "nope.txt", DEFAULTS)


def test_bad_edit_later_keeps_the_old_pool(tmp_path) -> None:
    file = tmp_path / "proxies.txt"
    file.write_text("http://a:1\n")
    pool = ProxyPool("", file, DEFAULTS)
    file.write_text("http://a:1\nnot a proxy\n")
    stat = file.stat()
    os.utime(file, (stat.st_atime, stat.st_mtime + 5))
    assert not pool.reload()
    assert [i.name for i in pool.identities] == ["a:1"]


def test_bad_file_at_start_up_is_refused(tmp_path) -> None:
    file = tmp_path / "proxies.txt"
    file.write_text("http://a:1\nnot a proxy\n")
    with pytest.raises(ProxyConfigError, match=r"proxies.txt:2"):
        ProxyPool("", file, DEFAULTS)
