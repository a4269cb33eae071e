"""What the console keeps on the application: who may enter, its templates (and what they
use: times with their zone, stable element IDs), its files, its batches' pace readings."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from contract.models import BatchStatus
from producer.fleet import duration
from producer.http.console.access import ConsoleAccess
from producer.http.console.pace_book import PaceBook

STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".txt": "text/plain",
                ".svg": "image/svg+xml"}  # fmt: skip


def age(status: BatchStatus) -> str:
    """How long ago the batch was created."""
    if status.created_at is None:
        return "?"
    return duration((datetime.now(UTC) - status.created_at).total_seconds())


def moment(value: datetime | float | None) -> str:
    """A time with its zone, as every page shows times: ``2026-12-07 19:23:04 UTC``."""
    if value is None:
        return ""
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def iso(value: datetime | float) -> str:
    """The ``datetime`` attribute of a ``<time>``."""
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    return value.isoformat()


def dom_id(prefix: str, value: object) -> str:
    """A stable element ID for a thing shown (a batch, an error type): the live update
    swaps the element and htmx gives focus back to the one with the same ID."""
    return f"{prefix}-{hashlib.sha256(str(value).encode()).hexdigest()[:12]}"


def count(value: int) -> str:
    return f"{value:,}"


def plural(number: int, one: str, many: str | None = None) -> str:
    """``1 prompt``, ``2,000 prompts``."""
    return f"{number:,} {one if number == 1 else (many or one + 's')}"


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    version: str  # a hash of the body: its URL changes when it does


def static_files() -> dict[str, StaticFile]:
    """The console's files (its vendored htmx and its licence included), read once."""
    folder = resources.files("producer.http.console").joinpath("static")
    found = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in STATIC_TYPES:
            body = entry.read_bytes()
            found[entry.name] = StaticFile(body, STATIC_TYPES[suffix],
                                           hashlib.sha256(body).hexdigest()[:12])  # fmt: skip
    return found


@dataclass
class ConsoleState:
    access: ConsoleAccess
    files: dict[str, StaticFile] = field(default_factory=static_files)
    pace: PaceBook = field(default_factory=PaceBook)
    templates: Environment = field(init=False)

    def __post_init__(self) -> None:
        # Autoescape everything: what is shown comes from users and a third-party site.
        self.templates = Environment(
            loader=PackageLoader("producer.http.console", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.globals.update(
            static_url=self.static_url, duration=duration, age=age, moment=moment, iso=iso,
            dom_id=dom_id, plural=plural,
        )  # fmt: skip
        self.templates.filters["count"] = count

    def static_url(self, name: str) -> str:
        return f"/static/{name}?v={self.files[name].version}"


CONSOLE: web.AppKey[ConsoleState] = web.AppKey("chatgptes_console", ConsoleState)
