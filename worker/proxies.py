"""The identities requests go out through: configured proxies, or the worker's own address.

A proxy line is a URL with optional per-proxy settings after it::

    socks5h://user:secret@10.0.0.7:1080  max_inflight=2 rate=0.5 weight=2   # comment

The identity name is what logs, Redis keys and ``chatgptes status`` show: host and
port, never the credentials (a short hash tells apart two logins on one host).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import structlog

from contract.redaction import redact_url

log = structlog.get_logger("chatgptes.proxies")

PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
DIRECT = "direct"
_OPTIONS = {"max_inflight": int, "rate": float, "weight": float}


class ProxyConfigError(ValueError):
    """A proxy line that cannot be used; the message names the source and line."""


@dataclass(frozen=True)
class Identity:
    name: str
    proxy_url: str | None
    max_inflight: int
    rate_per_second: float
    weight: float = 1.0

    @property
    def shown(self) -> str:
        return redact_url(self.proxy_url) if self.proxy_url else DIRECT


@dataclass(frozen=True)
class ProxyDefaults:
    max_inflight: int
    rate_per_second: float
    burst: int


def parse_proxy_line(line: str, defaults: ProxyDefaults, where: str) -> Identity | None:
    """One line of a proxies file (or one item of the setting) → an Identity, None if blank."""
    text = line.split("#", 1)[0].strip()
    if not text:
        return None
    url, *options = text.split()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        # Not the parser's words: they may quote part of the password.
        raise ProxyConfigError(
            f"{where}: {redact_url(url)!r} is not a URL (host, then a port 1-65535)"
        ) from None
    if parts.scheme not in PROXY_SCHEMES or not parts.hostname or port is None:
        raise ProxyConfigError(
            f"{where}: {redact_url(url)!r} must be scheme://[user:password@]host:port "
            f"with scheme one of {', '.join(PROXY_SCHEMES)}"
        )
    values: dict[str, float] = {}
    for option in options:
        key, _, raw = option.partition("=")
        if key not in _OPTIONS or not raw:
            raise ProxyConfigError(
                f"{where}: unknown option {option!r}; use {', '.join(f'{k}=N' for k in _OPTIONS)}"
            )
        try:
            values[key] = _OPTIONS[key](raw)
        except ValueError:
            raise ProxyConfigError(f"{where}: {key} must be a number, got {raw!r}") from None
        if values[key] <= 0 and key != "rate":
            raise ProxyConfigError(f"{where}: {key} must be positive, got {raw!r}")
    return Identity(
        name=_identity_name(parts.hostname, port, parts.username, url),
        proxy_url=url,
        max_inflight=int(values.get("max_inflight", defaults.max_inflight)),
        rate_per_second=values.get("rate", defaults.rate_per_second),
        weight=values.get("weight", 1.0),
    )


def _identity_name(host: str, port: int, username: str | None, url: str) -> str:
    name = f"{host}:{port}"
    if username:
        name += "~" + hashlib.sha256(url.encode()).hexdigest()[:6]
    return name


def parse_proxies(lines: Iterable[tuple[str, str]], defaults: ProxyDefaults) -> list[Identity]:
    """(where, line) pairs → identities, duplicates (same name) kept once."""
    found: dict[str, Identity] = {}
    for where, line in lines:
        identity = parse_proxy_line(line, defaults, where)
        if identity is not None:
            found.setdefault(identity.name, identity)
    return list(found.values())


class ProxyPool:
    """The current identities; re-reads the proxies file when its mtime changes."""

    def __init__(self, setting: str, file: Path | None, defaults: ProxyDefaults) -> None:
        self._setting = setting
        self._file = file
        self._defaults = defaults
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
        lines = [
            (f"CHATGPTES_PROXIES item {n}", item)
            for n, item in enumerate(self._setting.split(","), 1)
        ]
        if self._file is not None:
            text = self._file.read_text(encoding="utf-8")
            lines += [(f"{self._file}:{n}", line) for n, line in enumerate(text.splitlines(), 1)]
        identities = parse_proxies(lines, self._defaults)
        if not identities:
            identities = [
                Identity(DIRECT, None, self._defaults.max_inflight, self._defaults.rate_per_second)
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
