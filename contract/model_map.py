"""Model names clients send, and the model chatgpt.es serves for each.

The site serves whatever model it is configured with and takes no model parameter, so
the name in a request is a label: what matters is that clients written for OpenAI may
send the names they know. ``BUILT_IN`` maps OpenAI's chat model names to the model of
the site's three that is closest (``SERVED``); ``CHATGPTES_MODELS`` adds more
(``name=served`` or a bare ``name``, served as ``gpt-4o``; ``name=served@site`` also pins
the prompts that name it to one site of the fleet, ``contract.sites``). A dated snapshot of a known
name (``gpt-4o-2024-08-06``, ``gpt-4-0613``, ``gpt-4-1106-preview``) is that name. An
answer echoes the name asked for, as OpenAI's do for an alias; its tokens are counted
with that name's encoding (``worker.tokens``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

SERVED: tuple[str, ...] = ("gpt-4o", "gpt-4o-mini", "gpt-4")
SETTING = "CHATGPTES_MODELS"
BUILT_IN: Mapping[str, str] = {
    "gpt-4o": "gpt-4o",
    "gpt-4o-mini": "gpt-4o-mini",
    "gpt-4": "gpt-4",
    "chatgpt-4o-latest": "gpt-4o",
    "gpt-4.1": "gpt-4o",
    "gpt-4.1-mini": "gpt-4o-mini",
    "gpt-4.1-nano": "gpt-4o-mini",
    "gpt-4.5-preview": "gpt-4o",
    "gpt-4-turbo": "gpt-4",
    "gpt-4-turbo-preview": "gpt-4",
    "gpt-4-32k": "gpt-4",
    "gpt-3.5-turbo": "gpt-4o-mini",
    "gpt-3.5-turbo-16k": "gpt-4o-mini",
    "gpt-5": "gpt-4o",
    "gpt-5-mini": "gpt-4o-mini",
    "gpt-5-nano": "gpt-4o-mini",
    "o1": "gpt-4o",
    "o3": "gpt-4o",
    "o3-mini": "gpt-4o-mini",
    "o4-mini": "gpt-4o-mini",
}
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$")
# -2024-08-06, -0613, -1106-preview: a snapshot of the name before it
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})(?:-preview)?$")


def check_name(name: str) -> str:
    """The name if it is shaped like a model name (1-100 letters, digits, ``._:/-``)."""
    if not MODEL_NAME.match(name):
        raise ValueError(f"{name[:40]!r} is not a model name (1-100 letters, digits, '._:/-')")
    return name


SITE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")  # contract.sites' names


class ModelMap:
    """The names accepted, each with the model served for it (and a site, for some)."""

    def __init__(
        self, extra: Mapping[str, str] | None = None, sites: Mapping[str, str] | None = None
    ) -> None:
        self._served = {**BUILT_IN, **(extra or {})}
        self._sites = dict(sites or {})

    @classmethod
    def parse(cls, setting: str) -> ModelMap:
        """The built-in map plus ``CHATGPTES_MODELS`` entries (``name=served`` or ``name``,
        comma-separated); ``ValueError`` naming the first bad entry."""
        extra: dict[str, str] = {}
        sites: dict[str, str] = {}
        for entry in (part.strip() for part in setting.split(",")):
            if not entry:
                continue
            name, _, served = (s.strip() for s in entry.partition("="))
            served, at, site = (s.strip() for s in served.partition("@"))
            check_name(name)
            if at:
                if not SITE_NAME.match(site):
                    raise ValueError(f"{entry!r}: after @ comes a site's name (a-z, 0-9, -)")
                sites[name] = site
            served = served or SERVED[0]
            if served not in SERVED:
                raise ValueError(f"{entry!r}: the model served must be one of "
                                 f"{', '.join(SERVED)}, not {served!r}")  # fmt: skip
            extra[name] = served
        return cls(extra, sites)

    def site_of(self, name: str) -> str | None:
        """The site prompts naming ``name`` are pinned to (None: any)."""
        return self._sites.get(name)

    def served(self, name: str) -> str | None:
        """The model served for ``name`` (or for the name it is a dated snapshot of)."""
        found = self._served.get(name)
        if found is None and (snapshot := _SNAPSHOT.search(name)):
            found = self._served.get(name[: snapshot.start()])
        return found

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.served(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._served)

    def check(self, name: str) -> str:
        """``name`` if it is accepted, else a ValueError saying how to add it."""
        if name not in self:
            shown = name if len(name) <= 40 else name[:37] + "..."
            known = ", ".join(list(self._served)[:6])
            raise ValueError(
                f"unknown model {shown!r}; add it to {SETTING} (e.g. {SETTING}={shown}=gpt-4o), "
                f"or use a known name ({known}, ... and their dated snapshots)"
            )
        return name


DEFAULT_MAP = ModelMap()
