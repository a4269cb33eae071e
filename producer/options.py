"""What a batch may be given besides its prompts: a completion window and metadata.

Both follow OpenAI's Batch API. The completion window is how long the batch may take:
OpenAI only takes ``24h``; this service takes any ``<n>h``, ``<n>m`` or ``<n>s`` from
one minute to 30 days. When it ends, the prompts not yet sent end ``Expired`` and the
batch ``expired``. Metadata is at most 16 string pairs, keys up to 64 characters,
values up to 512, kept with the batch and shown by ``status``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta

DEFAULT_COMPLETION_WINDOW = "24h"
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
_WINDOW = re.compile(r"^(\d+)([hms])$")
_UNITS = {"h": 3600, "m": 60, "s": 1}
_SHORTEST, _LONGEST = timedelta(minutes=1), timedelta(days=30)


def completion_window(text: str) -> timedelta:
    """``24h`` → 24 hours; a ValueError that says what is accepted otherwise."""
    found = _WINDOW.match(text.strip())
    # At most 30 days in seconds has 7 digits: a longer number is out of range, never
    # handed to timedelta (which overflows on a huge one).
    fits = found is not None and len(found[1].lstrip("0")) <= 7
    window = timedelta(seconds=int(found[1]) * _UNITS[found[2]]) if fits and found else None
    if window is None or not _SHORTEST <= window <= _LONGEST:
        raise ValueError(
            f"completion window {_quoted(text)} must be like 24h, 90m or 3600s, "
            "between 1 minute and 30 days"
        )
    return window


def _quoted(text: str) -> str:
    """A short value quoted; a long one (never echoed whole) by its length."""
    return repr(text) if len(text) <= 40 else f"of {len(text)} characters"


def checked_metadata(metadata: Mapping[str, object] | None) -> dict[str, str]:
    """The metadata if it fits OpenAI's limits, else a ValueError naming what does not."""
    if not metadata:
        return {}
    if len(metadata) > MAX_METADATA_PAIRS:
        raise ValueError(f"metadata has {len(metadata)} pairs; at most {MAX_METADATA_PAIRS}")
    checked: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_METADATA_KEY:
            raise ValueError(f"metadata key {key!r} must be 1-{MAX_METADATA_KEY} characters")
        if not isinstance(value, str) or len(value) > MAX_METADATA_VALUE:
            raise ValueError(
                f"metadata value of {key!r} must be a string of at most {MAX_METADATA_VALUE} "
                "characters"
            )
        checked[key] = value
    return checked


def metadata_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    """``key=value`` items (the CLI's repeated ``--metadata``) → a dict, checked."""
    found: dict[str, str] = {}
    for pair in pairs:
        key, sign, value = pair.partition("=")
        if not sign:
            raise ValueError(f"metadata {pair!r} must be key=value")
        found[key] = value
    return checked_metadata(found)
