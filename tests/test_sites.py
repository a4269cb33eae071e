"""The fleet's sites: CHATGPTES_SITES, the sites file, and everything refused at start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from contract.sites import (
    Sites,
    SitesConfigError,
    SiteSettings,
    load_sites,
    name_from_url,
    site_urls,
)

TWO = "es=https://chatgpt.es,uk=https://chatgpt.co.uk/chat"
DEFAULT_URL = "https://chatgpt.es"


def sites(setting: str = TWO, file: Path | None = None, **options: object) -> Sites:
    return load_sites(setting, file, DEFAULT_URL, **options)  # type: ignore[arg-type]


def sites_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sites.toml"
    path.write_text(text)
    return path


def test_sites_are_named_in_order() -> None:
    found = sites(" es = https://chatgpt.es , uk=https://chatgpt.co.uk/chat ")
    assert found.names == ("es", "uk")
    assert found["uk"] == SiteSettings(name="uk", url="https://chatgpt.co.uk/chat")
    assert found.by_url("https://chatgpt.co.uk/chat/") is found["uk"]
    assert found.by_url("https://chatgpt.it") is None
    with pytest.raises(KeyError, match="no site 'it'; the fleet's sites are es, uk"):
        found["it"]


def test_the_upstream_url_is_a_fleet_of_one_site_named_after_its_host() -> None:
    found = load_sites("", None, "https://www.chatgpt.es/")
    assert [(s.name, s.url) for s in found] == [("chatgpt-es", "https://www.chatgpt.es/")]
    assert name_from_url("http://127.0.0.1:8790") == "127-0-0-1"
    assert site_urls("", "https://chatgpt.co.uk") == [("chatgpt-co-uk", "https://chatgpt.co.uk")]


def test_sites_and_the_upstream_url_together_are_refused() -> None:
    with pytest.raises(SitesConfigError, match="both set: set CHATGPTES_SITES alone"):
        sites(upstream_url_given=True)


@pytest.mark.parametrize(
    ("setting", "error"),
    [
        ("es", r"CHATGPTES_SITES entry 1 is not name=URL"),
        ("es=https://chatgpt.es,", r"CHATGPTES_SITES entry 2 is not name=URL"),
        ("ES=https://chatgpt.es", r"entry 1: a site name is 1-32 of a-z, 0-9 and -"),
        ("chat gpt=https://chatgpt.es", r"entry 1: a site name is"),
        ("a" * 33 + "=https://chatgpt.es", r"entry 1: a site name is"),
        (
            "es=https://chatgpt.es,es=https://chatgpt.it",
            r"entry 2 \(es\): the name es is given twice",
        ),
        (
            "es=https://chatgpt.es,uk=https://ChatGPT.es/",
            r"entry 2 \(uk\): the same URL as site es",
        ),
        ("es=ftp://chatgpt.es", r"entry 1 \(es\): not a site URL"),
        ("es=chatgpt.es", r"entry 1 \(es\): not a site URL"),
        ("es=https://chatgpt.es/?a=1", r"not a site URL; it must be http\(s\)://host"),
        ("es=https://chatgpt.es:99999", r"not a site URL"),
    ],
)
def test_what_cannot_work_is_refused_naming_the_entry(setting: str, error: str) -> None:
    with pytest.raises(SitesConfigError, match=error):
        sites(setting)


def test_a_url_with_credentials_is_refused_without_showing_them() -> None:
    with pytest.raises(SitesConfigError) as caught:
        sites("es=https://admin:hunter2@chatgpt.es")
    assert "hunter2" not in str(caught.value) and "admin" not in str(caught.value)
    assert "entry 1 (es): not a site URL" in str(caught.value)


def test_the_sites_file_sets_each_site_over_the_fleet(tmp_path: Path) -> None:
    proxies = tmp_path / "uk-proxies.txt"
    proxies.write_text("http://127.0.0.1:3128\n")
    path = sites_file(
        tmp_path,
        """
        [sites.uk]
        proxy_rate_per_second = 0.5
        proxy_max_inflight = 2
        proxies_file = "uk-proxies.txt"   # beside this file
        weight = 2
        consent_field = "theme_renamed_agree"
        language = "en"

        [sites.es]
        language = "de"
        """,
    )
    found = sites(file=path)
    assert found["uk"] == SiteSettings(
        name="uk",
        url="https://chatgpt.co.uk/chat",
        proxy_rate_per_second=0.5,
        proxy_max_inflight=2,
        proxies_file=proxies,
        weight=2.0,
        consent_field="theme_renamed_agree",
        language="en",
    )
    assert found["es"] == SiteSettings(name="es", url="https://chatgpt.es", language="de")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[sites.it]\nweight = 1", r"\[sites.it\] is not a site of the fleet \(CHATGPTES_SITES names es, uk\)"),
        ("[sites.es]\nrate = 1", r"\[sites.es\]: unknown key rate; keys are proxy_rate_per_second"),
        ("[sites.es]\nproxy_rate = 1", r"unknown key proxy_rate \(did you mean proxy_rate_per_second\?\)"),
        ("[sites.es]\nproxy_rate_per_second = -1", r"\[sites.es\] proxy_rate_per_second must be a number >= 0"),
        ("[sites.es]\nproxy_max_inflight = 0", r"proxy_max_inflight must be a whole number >= 1"),
        ("[sites.es]\nproxy_max_inflight = 2.5", r"proxy_max_inflight must be a whole number >= 1"),
        ("[sites.es]\nweight = true", r"weight must be a number > 0"),
        ("[sites.es]\nlanguage = \"fr\"", r"language must be one of de, en, es"),
        ("[sites.es]\nconsent_field = \"a b\"", r"consent_field must be a form field name"),
        ("[sites.es]\nproxies_file = \"nowhere.txt\"", r"proxies_file: no such file .*nowhere.txt"),
        ("[site.es]\nweight = 1", r"unknown table site; sites go in \[sites.NAME\]"),
        ("sites = 3", r"sites must be tables"),
        ("[sites]\nes = 3", r"sites.es must be a table"),
        ("[sites.es\nweight = 1", r"is not TOML: .*line 1"),
    ],
)  # fmt: skip
def test_a_sites_file_that_cannot_work_is_refused(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(SitesConfigError, match=r"CHATGPTES_SITES_FILE \(.*sites.toml\)") as caught:
        sites(file=sites_file(tmp_path, text))
    assert caught.match(error)


def test_a_missing_or_binary_sites_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SitesConfigError, match="cannot be read: No such file"):
        sites(file=tmp_path / "absent.toml")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"[sites.es]\nweight = 1 # \xff\n")
    with pytest.raises(SitesConfigError, match="is not UTF-8 text"):
        sites(file=binary)


def test_the_one_site_fleet_takes_its_settings_under_its_name(tmp_path: Path) -> None:
    path = sites_file(tmp_path, '[sites.chatgpt-es]\nlanguage = "de"\n')
    assert load_sites("", path, DEFAULT_URL)["chatgpt-es"].language == "de"
    with pytest.raises(SitesConfigError, match="CHATGPTES_SITES names chatgpt-es"):
        load_sites("", sites_file(tmp_path, "[sites.es]\nweight = 1\n"), DEFAULT_URL)


# --- refused at start: the settings, the commands ---------------------------------------


def run(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATGPTES_")}
    env.update(settings)
    return subprocess.run(
        [sys.executable, "-m", "chatgptes.cli", *args],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_bad_sites_stop_a_command_naming_the_setting(tmp_path: Path) -> None:
    done = run("config", CHATGPTES_SITES="es=https://chatgpt.es,es=https://user:pw1@chatgpt.it")
    assert done.returncode == 2
    assert "CHATGPTES_SITES entry 2 (es): the name es is given twice" in done.stderr
    assert "pw1" not in done.stderr
    path = sites_file(tmp_path, "[sites.es]\nproxy_max_inflight = 0\n")
    done = run("config", CHATGPTES_SITES="es=https://chatgpt.es", CHATGPTES_SITES_FILE=str(path))
    assert done.returncode == 2 and "proxy_max_inflight must be a whole number" in done.stderr


def test_config_lists_the_sites_settings(tmp_path: Path) -> None:
    done = run("config", CHATGPTES_SITES=TWO)
    assert done.returncode == 0, done.stderr
    assert f"CHATGPTES_SITES={TWO}" in done.stdout and "CHATGPTES_SITES_FILE=None" in done.stdout


def test_a_worker_serves_every_site_named() -> None:
    import fakeredis

    from worker.config import WorkerConfig
    from worker.sites import SiteSet

    config = WorkerConfig(sites=TWO, redis_url="redis://127.0.0.1:9/0")
    sites = SiteSet(config, fakeredis.FakeAsyncRedis())
    assert sites.names == ["es", "uk"] and sites.several
    es, uk = sites
    assert [i.name for i in es.pool.identities] == ["es/direct"]
    assert [i.site for i in uk.pool.identities] == ["uk"]
    assert (es.book.site, uk.book.site) == ("es", "uk")
    assert es.client.page_url.startswith("https://chatgpt.es")
    assert es.client.http is uk.client.http  # one connection pool for every site
