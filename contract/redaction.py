"""Masking of credentials in URLs, so no secret reaches a log line, an error or a result.

Whatever stands between ``scheme://`` and the last ``@`` before the host is the
userinfo, valid URL or not: a password may hold an unencoded ``/``, ``?``, ``#``,
``@`` or a space, which URL parsers split in the wrong place. The user name stays
visible only beside a password (``user:***@``); a user name alone, or one with an
empty password, is often the secret itself (a rotating gateway's token), so the
whole userinfo is masked (``***@``). A password given as a query argument
(``redis://host?password=…``, which redis-py reads) is masked too. When in doubt
this masks too much (a URL followed by an e-mail address on the same line), never
too little.
"""

from __future__ import annotations

import re

MASK = "***"
# The userinfo: after a "://", up to the last @ before the next "://" (and, in free text,
# before the line's end). Whatever stands before the "://" is kept as it is: matching a
# scheme there could take time quadratic in a long run of letters.
_IN_TEXT = re.compile(r"(?<=://)(?P<userinfo>(?:(?!://)[^\n])*)@")
_IN_URL = re.compile(r"(?<=://)(?P<userinfo>(?:(?!://).)*)@", re.DOTALL)
_QUERY_PASSWORD = re.compile(r"(?i)(?P<name>[?&](?:password|passwd|pass|pwd)=)[^&#\s'\"]*")


def redact_url(url: str) -> str:
    """``scheme://user:secret@host`` → ``scheme://user:***@host``; ``scheme://token@host`` →
    ``scheme://***@host``; URLs without credentials unchanged."""
    return _QUERY_PASSWORD.sub(rf"\g<name>{MASK}", _IN_URL.sub(_masked, url))


def redact_text(text: str) -> str:
    """Masks the credentials of every ``scheme://…@`` found inside free text."""
    return _QUERY_PASSWORD.sub(rf"\g<name>{MASK}", _IN_TEXT.sub(_masked, text))


def _masked(found: re.Match[str]) -> str:
    user, colon, password = found["userinfo"].partition(":")
    if colon and password and not any(c.isspace() or c in "/?#" for c in user):
        return f"{user}:{MASK}@"
    return f"{MASK}@"
