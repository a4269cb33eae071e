"""The sites of a fleet, and the settings of each, checked whole before anything runs.

``CHATGPTES_SITES=es=https://chatgpt.es,uk=https://chatgpt.co.uk`` names them: a name is
a short slug (what ``--site`` and the results say), a URL the page the chat is on. With
no ``CHATGPTES_SITES``, ``CHATGPTES_UPSTREAM_URL`` is a fleet of one site, named after
its host (``https://chatgpt.es`` → ``chatgpt-es``). Setting both is refused: one of them
would be silently ignored.

``CHATGPTES_SITES_FILE`` (TOML) may hold settings per site, each over the fleet's own::

    [sites.uk]
    proxy_rate_per_second = 0.5      # CHATGPTES_PROXY_RATE_PER_SECOND at this site
    proxy_max_inflight = 2           # CHATGPTES_PROXY_MAX_INFLIGHT at this site
    proxies_file = "/etc/chatgptes/proxies-uk.txt"   # CHATGPTES_PROXIES_FILE for it
    weight = 2.0                     # its share when prompts may go to any site
    consent_field = "wpaicg_user_agree"   # over what its page names
    language = "en"                  # what its refusals are worded in

Everything that cannot work is refused at once, naming the setting and the entry: a
name given twice or not a slug, a URL that is not http(s) or carries a user or password,
a site in the file that ``CHATGPTES_SITES`` does not name, an unknown key, a value of the
wrong kind, a proxies file that is not there. No error quotes a URL: a site's may carry
credentials by mistake, and a refused one is said to be refused, never shown.

Producers and workers both import this module: the names are what ``--site`` accepts.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SITE_NAME_FORM = "1-32 of a-z, 0-9 and -, starting with a letter or a digit"
LANGUAGES: tuple[str, ...] = ("de", "en", "es")
_SITE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_SITE_URL_FORM = "http(s)://host[:port][/path], with no user, password, query or fragment"


class SitesConfigError(ValueError):
    """A site setting that cannot work; the message names the setting and the entry."""


@dataclass(frozen=True)
class SiteSettings:
    """One site of the fleet. ``None`` means the fleet's own setting (or, for the consent
    field, what the page names; for the language, any the worker knows)."""

    name: str
    url: str
    proxy_rate_per_second: float | None = None
    proxy_max_inflight: int | None = None
    proxies_file: Path | None = None
    weight: float = 1.0
    consent_field: str | None = None
    language: str | None = None


_FILE_KEYS = tuple(f.name for f in fields(SiteSettings) if f.name not in ("name", "url"))


@dataclass(frozen=True)
class Sites:
    """The fleet's sites, in the order they were named."""

    sites: tuple[SiteSettings, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(site.name for site in self.sites)

    def __getitem__(self, name: str) -> SiteSettings:
        for site in self.sites:
            if site.name == name:
                return site
        raise KeyError(f"no site {name!r}; the fleet's sites are {', '.join(self.names)}")

    def __iter__(self) -> Iterator[SiteSettings]:
        return iter(self.sites)

    def __len__(self) -> int:
        return len(self.sites)

    def by_url(self, url: str) -> SiteSettings | None:
        """The site at ``url`` (its scheme, host, port and path), if the fleet has it."""
        key = _same_site_key(url)
        return next((site for site in self.sites if _same_site_key(site.url) == key), None)


def load_sites(
    sites: str, sites_file: Path | None, upstream_url: str, *, upstream_url_given: bool = False
) -> Sites:
    """The fleet's sites from the settings' values; SitesConfigError if any cannot work.

    ``upstream_url_given`` says whether ``CHATGPTES_UPSTREAM_URL`` was set (its default is
    only the one-site fleet's site when ``CHATGPTES_SITES`` is empty)."""
    named = site_urls(sites, upstream_url, upstream_url_given=upstream_url_given)
    per_site = read_sites_file(sites_file, named) if sites_file is not None else {}
    return Sites(tuple(SiteSettings(name, url, **per_site.get(name, {})) for name, url in named))


def site_urls(
    sites: str, upstream_url: str, *, upstream_url_given: bool = False
) -> list[tuple[str, str]]:
    """(name, URL) of each site, checked; what a producer needs to validate ``--site``."""
    if not sites.strip():
        check_site_url(upstream_url, "CHATGPTES_UPSTREAM_URL")
        return [(name_from_url(upstream_url), upstream_url)]
    if upstream_url_given:
        raise SitesConfigError(
            "CHATGPTES_SITES and CHATGPTES_UPSTREAM_URL are both set: set CHATGPTES_SITES "
            "alone (CHATGPTES_UPSTREAM_URL is the shorthand for a fleet of one site)"
        )
    named: list[tuple[str, str]] = []
    urls: dict[str, str] = {}
    for number, entry in enumerate(sites.split(","), 1):
        where = f"CHATGPTES_SITES entry {number}"
        name, separator, url = (part.strip() for part in entry.partition("="))
        if not separator or not name or not url:
            raise SitesConfigError(f"{where} is not name=URL (e.g. es=https://chatgpt.es)")
        if not _SITE_NAME.fullmatch(name):
            raise SitesConfigError(f"{where}: a site name is {SITE_NAME_FORM}")
        where = f"{where} ({name})"
        if name in dict(named):
            raise SitesConfigError(f"{where}: the name {name} is given twice")
        check_site_url(url, where)
        key = _same_site_key(url)
        if key in urls:
            raise SitesConfigError(f"{where}: the same URL as site {urls[key]}")
        urls[key] = name
        named.append((name, url))
    return named


def name_from_url(url: str) -> str:
    """A one-site fleet's name: its host as a slug (``https://www.chatgpt.es`` →
    ``chatgpt-es``)."""
    host = (urlsplit(url).hostname or "").removeprefix("www.")
    return re.sub(r"[^a-z0-9]+", "-", host.lower()).strip("-")[:32].strip("-") or "site"


def read_sites_file(path: Path, named: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """site name → its settings from the TOML file, checked against the named sites."""
    where = f"CHATGPTES_SITES_FILE ({path})"
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SitesConfigError(f"{where} cannot be read: {error.strerror}") from None
    except UnicodeDecodeError:
        raise SitesConfigError(f"{where} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise SitesConfigError(f"{where} is not TOML: {error}") from None
    unknown = sorted(set(document) - {"sites"})
    if unknown:
        raise SitesConfigError(f"{where}: unknown table {unknown[0]}; sites go in [sites.NAME]")
    tables = document.get("sites", {})
    if not isinstance(tables, dict):
        raise SitesConfigError(f"{where}: sites must be tables, [sites.NAME]")
    names = [name for name, _ in named]
    out = {}
    for name, table in tables.items():
        if name not in names:
            raise SitesConfigError(
                f"{where}: [sites.{name}] is not a site of the fleet (CHATGPTES_SITES names "
                f"{', '.join(names)})"
            )
        if not isinstance(table, dict):
            raise SitesConfigError(f"{where}: sites.{name} must be a table, [sites.{name}]")
        out[name] = _site_table(table, f"{where} [sites.{name}]", path.parent)
    return out


def _site_table(table: dict[str, Any], where: str, base: Path) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for key, value in table.items():
        if key not in _FILE_KEYS:
            close = difflib.get_close_matches(key, _FILE_KEYS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise SitesConfigError(
                f"{where}: unknown key {key}{hint}; keys are {', '.join(_FILE_KEYS)}"
            )
        settings[key] = _checked(key, value, f"{where} {key}", base)
    return settings


def _checked(key: str, value: Any, where: str, base: Path) -> Any:
    """One value of a site's table, as SiteSettings holds it."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    is_whole = is_number and isinstance(value, int)
    if key == "proxy_rate_per_second" and is_number and value >= 0:
        return float(value)
    if key == "proxy_max_inflight" and is_whole and value >= 1:
        return value
    if key == "weight" and is_number and value > 0:
        return float(value)
    if key == "proxies_file" and isinstance(value, str) and value:
        path = Path(value).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise SitesConfigError(f"{where}: no such file {path}")
        return path
    if key == "consent_field" and isinstance(value, str) and _FIELD_NAME.fullmatch(value):
        return value
    if key == "language" and value in LANGUAGES:
        return value
    wanted = {
        "proxy_rate_per_second": "a number >= 0 (0: unlimited)",
        "proxy_max_inflight": "a whole number >= 1",
        "weight": "a number > 0",
        "proxies_file": "a file name",
        "consent_field": "a form field name (letters, digits, _ and -)",
        "language": f"one of {', '.join(LANGUAGES)}",
    }
    raise SitesConfigError(f"{where} must be {wanted[key]}")


def check_site_url(url: str, where: str) -> None:
    """A SitesConfigError naming ``where`` (never quoting the URL) unless ``url`` can be a
    site's."""
    if not _is_site_url(url):
        raise SitesConfigError(f"{where}: not a site URL; it must be {_SITE_URL_FORM}")


def _is_site_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        if parts.port == 0:  # .port raises for one that is not a number in 0-65535
            return False
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and "@" not in parts.netloc
        and not parts.query
        and not parts.fragment
        and not any(c.isspace() for c in url)
    )


def _same_site_key(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.lower()}{parts.path.rstrip('/')}"
