"""The site page → the nonce and post id the ajax endpoint wants.

The wpaicg plugin and the themes around it print them in one of several markups:
``data-nonce``/``data-post-id`` attributes on the chat div, hidden inputs
``_wpnonce``/``post_id``, a script variable ``wpaicg_nonce = '…'``, or a JSON blob
``"_wpnonce":"…"``. A page without them is a handshake failure; there is no
fallback value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from worker.errors import HandshakeFailed

_TOKEN = r"([A-Za-z0-9]{4,64})"
_POST_ID = r"(\d{1,20})"


@dataclass(frozen=True)
class _Pattern:
    """A pattern that starts with a literal (so the regex engine scans for it fast), and
    what must stand just before it: a quote, a non-word character, or anything. (Writing
    that into the pattern, as \\b or a leading class, costs the engine its literal scan:
    45 times slower on a 35 KB page.)"""

    regex: re.Pattern[str]
    after: str = "any"  # "quote", "word boundary" or "any"

    def first(self, html: str) -> str | None:
        for match in self.regex.finditer(html):
            before = html[match.start() - 1] if match.start() else " "
            if self.after == "quote" and before not in "\"'":
                continue
            if self.after == "word boundary" and (before.isalnum() or before == "_"):
                continue
            return match.group(1)
        return None


_NONCE_PATTERNS: tuple[_Pattern, ...] = (
    _Pattern(re.compile(r"""data-nonce\s*=\s*["']""" + _TOKEN + """["']""")),
    _Pattern(re.compile(r"""wpaicg_nonce\s*[=:]\s*["']""" + _TOKEN + """["']"""), "word boundary"),
    _Pattern(re.compile(r"""_wpnonce["']\s*:\s*["']""" + _TOKEN + """["']"""), "quote"),
)
_POST_ID_PATTERNS: tuple[_Pattern, ...] = (
    _Pattern(re.compile(r"""data-post[-_]id\s*=\s*["']""" + _POST_ID + """["']""")),
    _Pattern(re.compile(r"""wpaicg_post_id\s*[=:]\s*["']?""" + _POST_ID), "word boundary"),
    _Pattern(re.compile(r"""post_id["']\s*:\s*["']?""" + _POST_ID), "quote"),
)
# WordPress prints the current post in the body classes; used only when the chat markup does not.
_BODY_CLASS_POST_ID = _Pattern(
    re.compile(r"""<body[^>]*\bclass=["'][^"']*\b(?:postid|page-id)-""" + _POST_ID)
)
_INPUT_TAG = re.compile(r"<input\b[^>]*>", re.IGNORECASE)
_ATTRIBUTE = re.compile(r"""([\w-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")


@dataclass(frozen=True)
class PageTokens:
    nonce: str
    post_id: str


def parse_page(html: str) -> PageTokens:
    """Finds the nonce and post id in any supported markup, or raises HandshakeFailed."""
    hidden = _hidden_inputs(html)
    nonce = hidden.get("_wpnonce") or _first_match(_NONCE_PATTERNS, html)
    post_id = (
        hidden.get("post_id")
        or _first_match(_POST_ID_PATTERNS, html)
        or _first_match((_BODY_CLASS_POST_ID,), html)
    )
    missing = [name for name, value in (("nonce", nonce), ("post id", post_id)) if not value]
    if missing:
        raise HandshakeFailed(
            f"site page ({len(html)} chars) has no {' and no '.join(missing)} in any known markup"
        )
    assert nonce is not None and post_id is not None
    return PageTokens(nonce=nonce, post_id=post_id)


def _first_match(patterns: tuple[_Pattern, ...], html: str) -> str | None:
    for pattern in patterns:
        found = pattern.first(html)
        if found:
            return found
    return None


def _hidden_inputs(html: str) -> dict[str, str]:
    """name → value of the ``<input>`` tags named ``_wpnonce`` or ``post_id``."""
    found: dict[str, str] = {}
    if "_wpnonce" not in html and "post_id" not in html:
        return found
    for tag in _INPUT_TAG.findall(html):
        attributes = {m[1].lower(): m[2] or m[3] for m in _ATTRIBUTE.finditer(tag)}
        name, value = attributes.get("name"), attributes.get("value")
        if name in ("_wpnonce", "post_id") and value and name not in found:
            found[name] = value
    return found
