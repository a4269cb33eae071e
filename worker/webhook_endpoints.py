"""Where webhooks go: the fleet's endpoints, and those a project has of its own.

``CHATGPTES_WEBHOOK_URLS`` is comma-separated; an entry is a URL (an endpoint of the
fleet) or ``project:URL`` (an endpoint of that project). ``CHATGPTES_WEBHOOK_SECRET`` is
the same: ``whsec_…`` signs for the fleet, ``project:whsec_…`` for that project. A
batch is told to its project's own endpoints if it has any, else to the fleet's: the
fleet-wide setting stays the default (``contract.outbox.targets_for``). A project's
endpoints are signed with its own secret, else the fleet's.

Everything is checked when the worker starts; an error names an entry by its place
(``URL 2``) or its project, never by its text: a URL may carry credentials and a
secret is a secret. What is said of an endpoint anywhere is its label
(``worker.standard_webhooks.endpoint_label``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from contract.outbox import FLEET
from worker.standard_webhooks import check_url, decode_secret, endpoint_label

# A project's name, as in CHATGPTES_API_KEYS' 'project:key' entries.
PROJECT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class WebhookEndpoint:
    project: str  # FLEET ("") for an endpoint of the whole fleet
    url: str  # may carry credentials: never logged, never stored
    signing_key: bytes

    @property
    def label(self) -> str:
        return endpoint_label(self.url)

    @property
    def key(self) -> str:
        """Its short, stable name in Redis (a fleet endpoint's is its URL's hash, as before
        projects had endpoints of their own)."""
        named = self.url if self.project == FLEET else f"{self.project}\n{self.url}"
        return hashlib.sha256(named.encode()).hexdigest()[:16]

    @property
    def shown(self) -> str:
        """How ``chatgptes config`` and logs name it: ``team-a: https://host/***``."""
        return (f"{self.project}: " if self.project else "") + f"{self.label}/***"


def split_url_entry(entry: str) -> tuple[str, str]:
    """(project, URL) of a ``CHATGPTES_WEBHOOK_URLS`` entry: ``https://…`` is the fleet's,
    ``team-a:https://…`` team-a's (a bare URL's first colon is followed by //)."""
    project, colon, rest = entry.partition(":")
    if colon and not rest.startswith("//") and PROJECT_NAME.match(project):
        return project, rest.strip()
    return FLEET, entry


def split_secret_entry(entry: str) -> tuple[str, str]:
    """(project, secret) of a ``CHATGPTES_WEBHOOK_SECRET`` entry (base64 has no colon)."""
    project, colon, rest = entry.partition(":")
    return (project, rest.strip()) if colon else (FLEET, entry)


def parse_secrets(text: str) -> dict[str, bytes]:
    """Project (FLEET for the bare one) → signing key; ValueError naming the entry."""
    found: dict[str, bytes] = {}
    for place, entry in enumerate((e.strip() for e in text.split(",") if e.strip()), 1):
        project, secret = split_secret_entry(entry)
        whose = f"the secret of project {project!r}" if project else f"secret {place}"
        if project and not PROJECT_NAME.match(project):
            raise ValueError(f"secret {place}: a project name is 1-64 letters, digits, - or _")
        if project in found:
            raise ValueError(f"{whose} is given twice")
        try:
            found[project] = decode_secret(secret)
        except ValueError as error:
            raise ValueError(f"{whose} {error}") from None
    return found


def parse_endpoints(urls_text: str, secrets_text: str) -> tuple[WebhookEndpoint, ...]:
    """Every endpoint with its signing key; ValueError (quoting no URL and no secret)."""
    keys = parse_secrets(secrets_text)
    entries = [split_url_entry(e.strip()) for e in urls_text.split(",") if e.strip()]
    endpoints: list[WebhookEndpoint] = []
    for place, (project, url) in enumerate(entries, 1):
        check_url(url, place)
        key = keys.get(project, keys.get(FLEET))
        if key is None:
            what = f"URL {place} (project {project!r})" if project else f"URL {place}"
            raise ValueError(
                f"{what} needs CHATGPTES_WEBHOOK_SECRET (whsec_ then base64"
                + (f", or {project}:whsec_… for that project" if project else "")
                + ") to sign the deliveries"
            )
        endpoint = WebhookEndpoint(project, url, key)
        if any(e.key == endpoint.key for e in endpoints):
            raise ValueError(f"URL {place} ({endpoint.label}) is given twice for its project")
        endpoints.append(endpoint)
    unused = sorted(set(keys) - {FLEET} - {e.project for e in endpoints})
    if unused:
        raise ValueError(f"project {unused[0]!r} has a webhook secret but no URL")
    return tuple(endpoints)
