"""Settings shared by every process role: where Redis is and how the queue is laid out.

Each role has one pydantic-settings class read from ``CHATGPTES_*`` variables and an
optional ``.env`` file; the worker's settings extend these (see ``worker.config``).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.model_map import ModelMap
from contract.redaction import redact_url

REDIS_SCHEMES = ("redis", "rediss", "unix")
REDIS_URL_FORM = "redis://[[user]:password@]host[:port][/db]; rediss:// for TLS"
PERCENT_ENCODING_HINT = (
    "in a user or password write '#' as %23, ',' as %2C, '@' as %40, '/' as %2F, "
    "'?' as %3F, '%' as %25 and a space as %20"
)
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")

DEFAULT_MODEL = "gpt-4o"


def check_url(url: str, kind: str, schemes: tuple[str, ...], form: str) -> SplitResult:
    """The parts of ``url``, a ``kind`` ("Redis URL") that must look like ``form``.

    A ValueError unless it starts with one of ``schemes``, its user and password are
    percent-encoded and its port (if any) is 1-65535. The error quotes nothing of the
    URL, nor a parser's words about it: any piece of it may be part of a password.
    """
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() not in schemes:
        *others, last = (f"{s}://" for s in schemes)
        raise ValueError(f"not a {kind}: it must start with {', '.join(others)} or {last} ({form})")
    userinfo = rest.rpartition("@")[0]
    if any(c in "/?#@" for c in userinfo) or _BAD_PERCENT.search(userinfo):
        raise ValueError(
            f"the {kind}'s user or password holds a character that must be percent-encoded: "
            f"{PERCENT_ENCODING_HINT}"
        )
    try:
        parts = urlsplit(url)
        if parts.port != 0:  # .port raises for one that is not a number in 0-65535
            return parts
    except ValueError:
        pass
    raise ValueError(
        f"the {kind}'s port is not a number from 1 to 65535: it must be {form} "
        f"({PERCENT_ENCODING_HINT})"
    )


class QueueSettings(BaseSettings):
    """What producers and workers must agree on."""

    # A refused value is never repeated in an error: it may be a URL with a password.
    model_config = SettingsConfigDict(
        env_prefix="CHATGPTES_",
        env_file=".env",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
    )

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis holding the queue, the batches and the results (may carry a password).",
    )
    queue_name: str = Field("chatgptes:queue", description="arq queue the jobs go through.")
    result_ttl_seconds: int = Field(
        7 * 24 * 3600, gt=0, description="How long results and batch records are kept."
    )
    max_prompt_chars: int = Field(
        32_000, gt=0, description="Largest prompt accepted, counted over all message contents."
    )
    max_input_bytes: int = Field(
        64 * 1024 * 1024,
        gt=0,
        description="Largest prompts file (or stdin) enqueue reads; bigger is refused unread.",
    )
    default_model: str = Field(DEFAULT_MODEL, description="Model used when a line names none.")
    models: str = Field(
        "",
        description="Model names accepted besides the built-in OpenAI ones, comma-separated, "
        "each 'name=served' (served: gpt-4o, gpt-4o-mini or gpt-4) or 'name' (gpt-4o).",
    )
    sites: str = Field(
        "",
        description="The fleet's sites, comma-separated name=URL (es=https://chatgpt.es); "
        "empty = the one site of upstream_url.",
    )
    chunk_size: int = Field(
        50, ge=1, le=1000, description="Prompts one arq job carries (smaller for small batches)."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="Log rendering; auto = console on a terminal, else JSON."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest log level written."
    )

    @field_validator("redis_url")
    @classmethod
    def _a_redis_url(cls, url: str) -> str:
        parts = check_url(url, "Redis URL", REDIS_SCHEMES, REDIS_URL_FORM)
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError(f"the Redis URL names no host: it must be {REDIS_URL_FORM}")
        return url

    @field_validator("models")
    @classmethod
    def _a_model_map(cls, models: str) -> str:
        ModelMap.parse(models)  # a ValueError naming the bad entry
        return models

    @field_validator("sites")
    @classmethod
    def _named_sites(cls, sites: str) -> str:
        from contract.sites import site_urls

        if sites.strip():
            site_urls(sites, "")  # a ValueError naming the bad entry, never its URL
        return sites

    def site_names(self) -> tuple[str, ...]:
        """The names of the fleet's sites, when CHATGPTES_SITES names them (a fleet of one
        named by its worker's CHATGPTES_UPSTREAM_URL: empty here)."""
        from contract.sites import site_urls

        return tuple(name for name, _ in site_urls(self.sites, "")) if self.sites.strip() else ()

    def check_site(self, site: str | None) -> str | None:
        """``site`` if prompts may be pinned to it here; a ValueError naming the sites."""
        names = self.site_names()
        if site is None or not names or site in names:
            return site
        raise ValueError(f"no site {site!r}: the fleet's sites are {', '.join(names)} "
                         "(CHATGPTES_SITES)")  # fmt: skip

    def model_map(self) -> ModelMap:
        """The names accepted: OpenAI's (``contract.model_map.BUILT_IN``) and ``models``."""
        return _model_map(self.models)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, level: object) -> object:
        return level.upper() if isinstance(level, str) else level

    def describe(self) -> dict[str, str]:
        """Every setting with its value, secrets masked, for ``chatgptes config``."""
        values = self.model_dump(mode="json")
        values["redis_url"] = redact_url(self.redis_url)
        return {
            name: json.dumps(value) if isinstance(value, dict | list) else str(value)
            for name, value in values.items()
        }


@lru_cache(maxsize=8)
def _model_map(setting: str) -> ModelMap:
    return ModelMap.parse(setting)
