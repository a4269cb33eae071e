"""Masking of credentials in URLs, so no password reaches a log line, an error or a result.

Whatever stands between ``scheme://user:`` and the last ``@`` before the host is
masked, valid URL or not: a password may hold an unencoded ``/``, ``?``, ``#``,
``@`` or a space, which URL parsers split in the wrong place. When in doubt this
masks too much (a port followed by an e-mail address on the same line), never
too little.
"""

from __future__ import annotations

import re

MASK = "***"
_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)"  # scheme://
    r"(?P<user>[^:/@\s'\"]*):"  # user:
    r"(?:(?!://)[^\n])*@"  # the password: up to the last @ before the next URL or line end
)


def redact_url(url: str) -> str:
    """``scheme://user:secret@host`` → ``scheme://user:***@host``; other URLs unchanged."""
    return redact_text(url)


def redact_text(text: str) -> str:
    """Masks the password of every ``scheme://user:password@`` found inside free text."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
