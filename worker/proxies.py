"""The identities requests go out through: configured proxies, or the worker's own address.

A proxy line is a URL with optional per-proxy settings after it::

    socks5h://user:secret@10.0.0.7:1080  max_inflight=2 rate=0.5 weight=2   # comment

The identity name is what logs, Redis keys and ``chatgptes status`` show: host and
port, never the credentials (a short hash tells apart two logins on one host).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import SplitResult

import structlog

from contract.config import PERCENT_ENCODING_HINT, check_url
from contract.errors import ServiceError
from contract.redaction import redact_url

log = structlog.get_logger("chatgptes.proxies")

PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
PROXY_URL_FORM = "scheme://[user[:password]@]host:port"
DIRECT = "direct"
_OPTIONS = {"max_inflight": int, "rate": float, "weight": float}
# A comment: from a # that starts the line or follows whitespace, to the line's end.
_COMMENT = re.compile(r"(?:^|(?<=\s))#.*", re.DOTALL)


class ProxyConfigError(ServiceError, ValueError):
    """A proxy line that cannot be used; the message names the source and line."""


@dataclass(frozen=True)
class Identity:
    """One exit a request can leave through, at one site: a proxy (or the worker's own
    address) and, in a fleet of several sites, the site (``uk/…``: its caps, rate,
    cooldowns, bans and site session are that pair's)."""

    name: str
    proxy_url: str | None
    max_inflight: int
    rate_per_second: float
    weight: float = 1.0
    site: str = ""  # the site's name in a fleet of several; "" in a fleet of one

    @property
    def shown(self) -> str:
        return redact_url(self.proxy_url) if self.proxy_url else DIRECT


@dataclass(frozen=True)
class ProxyDefaults:
    max_inflight: int
    rate_per_second: float
    burst: int


def parse_proxy_line(line: str, defaults: ProxyDefaults, where: str) -> Identity | None:
    """One line of a proxies file → an Identity; None if blank or only a comment.

    A comment starts at a ``#`` that begins the line or follows whitespace; a ``#``
    inside a URL is part of it (and must be written ``%23`` there, as RFC 3986 says).
    """
    return parse_proxy_entry(_COMMENT.sub("", line), defaults, where)


def parse_proxy_entry(text: str, defaults: ProxyDefaults, where: str) -> Identity | None:
    """One proxy URL with its options (an item of ``CHATGPTES_PROXIES``) → an Identity.

    Errors name ``where`` and what is wrong, never the text: it holds credentials.
    """
    words = text.split()
    if not words:
        return None
    url, *options = words
    parts = _proxy_url_parts(url, where)
    values: dict[str, float] = {}
    for number, option in enumerate(options, 1):
        key, _, raw = option.partition("=")
        if key not in _OPTIONS or not raw:
            raise ProxyConfigError(
                f"{where}: word {number} after the URL is not an option; options are "
                f"{', '.join(f'{k}=N' for k in _OPTIONS)} (a space inside a user or "
                "password must be written %20)"
            )
        try:
            values[key] = _OPTIONS[key](raw)
        except ValueError:
            raise ProxyConfigError(f"{where}: {key} must be a number") from None
        if values[key] <= 0 and key != "rate":
            raise ProxyConfigError(f"{where}: {key} must be positive")
    return Identity(
        name=_identity_name(parts.hostname or "", parts.port or 0, parts.username, url),
        proxy_url=url,
        max_inflight=int(values.get("max_inflight", defaults.max_inflight)),
        rate_per_second=values.get("rate", defaults.rate_per_second),
        weight=values.get("weight", 1.0),
    )


def _proxy_url_parts(url: str, where: str) -> SplitResult:
    """The parts of a proxy URL, checked; a ProxyConfigError that quotes none of it if bad."""
    try:
        parts = check_url(url, "proxy URL", PROXY_SCHEMES, PROXY_URL_FORM)
    except ValueError as error:
        raise ProxyConfigError(f"{where}: {error}") from None
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ProxyConfigError(
            f"{where}: a proxy URL has no '?' or '#' (a comment starts at a # after a space; "
            f"{PERCENT_ENCODING_HINT})"
        )
    if not parts.hostname or parts.port is None:
        raise ProxyConfigError(
            f"{where}: the proxy URL names no host or no port: it must be {PROXY_URL_FORM} "
            f"({PERCENT_ENCODING_HINT})"
        )
    return parts


def _identity_name(host: str, port: int, username: str | None, url: str) -> str:
    name = f"{host}:{port}"
    if username:
        name += "~" + hashlib.sha256(url.encode()).hexdigest()[:6]
    return name


def parse_proxies(
    entries: Iterable[tuple[str, str]],
    defaults: ProxyDefaults,
    parse: Callable[[str, ProxyDefaults, str], Identity | None] = parse_proxy_line,
) -> list[Identity]:
    """(where, text) pairs → identities, duplicates (same name) kept once."""
    found: dict[str, Identity] = {}
    for where, text in entries:
        identity = parse(text, defaults, where)
        if identity is not None:
            found.setdefault(identity.name, identity)
    return list(found.values())


def read_text(file: Path) -> str:
    """A proxies file's text; bytes that are not UTF-8 are refused by line, never shown."""
    data = file.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ProxyConfigError(f"line {line} of {file} is not UTF-8 text") from None


class ProxyPool:
    """The current identities; re-reads the proxies file when its mtime changes.

    ``site``: the identities are this site's; ``named_by_site`` (a fleet of several):
    each is named ``site/proxy``."""

    def __init__(
        self,
        setting: str,
        file: Path | None,
        defaults: ProxyDefaults,
        *,
        site: str = "",
        named_by_site: bool = False,
    ) -> None:
        self._setting = setting
        self._file = file
        self._defaults = defaults
        self._site = site
        self._prefix = f"{site}/" if named_by_site else ""
        self._file_mtime: float | None = None
        self._identities: list[Identity] = []
        self.reload()

    @property
    def identities(self) -> list[Identity]:
        return self._identities

    def reload(self) -> bool:
        """Reads the sources again if the file changed; True if the pool changed.

        A bad file at start-up raises; a bad edit later is logged and the old pool kept.
        """
        try:
            mtime = self._mtime()
            if self._identities and mtime == self._file_mtime:
                return False
            return self._load(mtime)
        except (ProxyConfigError, OSError) as error:
            if not self._identities:
                raise
            self._file_mtime = self._mtime_or_none()
            log.error("proxies.reload_failed", error=str(error), kept=len(self._identities))
            return False

    def _load(self, mtime: float | None) -> bool:
        entries = [
            (f"proxy {n} in CHATGPTES_PROXIES", item)
            for n, item in enumerate(self._setting.split(","), 1)
        ]
        identities = parse_proxies(entries, self._defaults, parse_proxy_entry)
        if self._file is not None:
            lines = [
                (f"line {n} of {self._file}", line)
                for n, line in enumerate(read_text(self._file).splitlines(), 1)
            ]
            known = {identity.name for identity in identities}
            identities += [
                identity
                for identity in parse_proxies(lines, self._defaults, parse_proxy_line)
                if identity.name not in known
            ]
        if not identities:
            identities = [
                Identity(DIRECT, None, self._defaults.max_inflight, self._defaults.rate_per_second)
            ]
        if self._site:
            identities = [
                replace(identity, name=self._prefix + identity.name, site=self._site)
                for identity in identities
            ]
        changed = identities != self._identities
        self._identities, self._file_mtime = identities, mtime
        return changed

    def _mtime_or_none(self) -> float | None:
        try:
            return self._mtime()
        except ProxyConfigError:
            return None

    def _mtime(self) -> float | None:
        if self._file is None:
            return None
        try:
            return os.stat(self._file).st_mtime
        except FileNotFoundError:
            raise ProxyConfigError(f"proxies file {self._file} does not exist") from None
