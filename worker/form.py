"""The admin-ajax.php form of a prompt, built as the plugin's script builds it for the
site's profile, and encoded as the browser sends it.

``form_fields`` is the one definition of the form. ``wpaicg-chat.js`` sends, in this order:
``_wpnonce``, ``post_id``, ``url``, ``action`` (``wpaicg_chatbox_message`` from a widget,
``wpaicg_chat_shortcode_message`` from a shortcode), ``message``, ``bot_id``,
``chatbot_identity`` (``custom_bot_<id>`` for a custom bot, else the chat's type),
``wpaicg_chat_history`` (JSON) and ``wpaicg_chat_client_id`` (10 letters and digits,
kept in the browser's localStorage: here one per session, so the fleet looks like one
browser per exit); a streaming site's script adds ``chat_id`` (1-100000). The consent
checkbox (the site's setting, else the page's, else ``wpaicg_user_agree``) comes last.

No ``thread_id``: the script sends one only once the site has opened an assistant thread
for a conversation, and every prompt here starts a conversation of its own.

The encoding is the browser's too: a non-streaming site gets ``multipart/form-data``
(``XMLHttpRequest.send(FormData)``), a streaming one ``x-www-form-urlencoded`` (the
script's ``fetch`` with ``URLSearchParams``). Either way a session's fixed fields are
encoded once (a :class:`_Template` per session) and a prompt costs only its message and
history: as raw UTF-8 for multipart, or through an escaper that visits the text in C (a
regular expression) for urlencoded. A multipart boundary is drawn per session and checked
against each prompt; a prompt that holds it gets a boundary of its own.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import secrets
import string
from dataclasses import dataclass

from worker.page import ChatType, SiteProfile
from worker.sessions import SiteSession

DEFAULT_CONSENT_FIELD = "wpaicg_user_agree"
SHORTCODE_ACTION = "wpaicg_chat_shortcode_message"
WIDGET_ACTION = "wpaicg_chatbox_message"
CLIENT_ID_LENGTH = 10
MULTIPART = "multipart/form-data"
URLENCODED = "application/x-www-form-urlencoded"

_ALPHANUMERIC = string.ascii_letters + string.digits
_UNSAFE = re.compile(rb"[^A-Za-z0-9_.\-~ ]+")
_ESCAPED = [b"%%%02X" % byte for byte in range(256)]
_TEMPLATES_KEPT = 16384
_chat_ids = random.Random()  # the script's Math.random(); nothing secret rides on it


@dataclass(frozen=True)
class FormSite:
    """What the form takes from the site's settings rather than its page: the page's URL
    (the ``url`` field when the page gives no ``data-url``) and the consent field the
    settings name (None: the page's, else ``DEFAULT_CONSENT_FIELD``)."""

    page_url: str
    consent_field: str | None = None


@dataclass(frozen=True)
class EncodedForm:
    body: bytes
    content_type: str


def action(profile: SiteProfile) -> str:
    """The ajax action the profile's chat posts to."""
    return WIDGET_ACTION if profile.chat_type is ChatType.WIDGET else SHORTCODE_ACTION


def chatbot_identity(profile: SiteProfile) -> str:
    """``custom_bot_<id>`` for a custom bot, else the chat's type."""
    return f"custom_bot_{profile.bot_id}" if profile.custom_bot else profile.chat_type.value


def consent_field(profile: SiteProfile, site: FormSite) -> str:
    return site.consent_field or profile.consent_field or DEFAULT_CONSENT_FIELD


def client_id(session: SiteSession) -> str:
    """The session's ``wpaicg_chat_client_id``: 10 letters and digits, the same for every
    prompt of the session (and every worker using it)."""
    digest = hashlib.sha256(session.id.encode()).digest()
    return "".join(_ALPHANUMERIC[byte % len(_ALPHANUMERIC)] for byte in digest[:CLIENT_ID_LENGTH])


def form_fields(
    session: SiteSession, site: FormSite, prompt: str, *, chat_id: int | None = None
) -> dict[str, str]:
    """Every field of the POST that asks one prompt, in the browser's order. ``chat_id``
    (a streaming site's) is drawn when not given."""
    varying = {"message": prompt, "wpaicg_chat_history": _history(prompt)}
    if session.profile.stream:
        varying["chat_id"] = str(_chat_id() if chat_id is None else chat_id)
    layout = _layout(session, site)
    return {name: varying[name] if value is None else value for name, value in layout}


def encode_form(
    session: SiteSession, site: FormSite, prompt: str, *, chat_id: int | None = None
) -> EncodedForm:
    """``form_fields``, encoded as the browser would for the session's profile."""
    template = _template(session, site)
    varying = {"message": prompt, "wpaicg_chat_history": _history(prompt)}
    if session.profile.stream:
        varying["chat_id"] = str(_chat_id() if chat_id is None else chat_id)
    values = [varying[name] for name in template.varying]
    if template.boundary is None:
        return EncodedForm(template.join([quote_form(value) for value in values]), URLENCODED)
    encoded = [value.encode("utf-8") for value in values]
    if any(template.boundary in value for value in encoded):
        template = _fresh_template(session, site, encoded)  # the prompt holds the boundary
    return EncodedForm(template.join(encoded), template.content_type)


def quote_form(text: str) -> bytes:
    """What ``urllib.parse.quote_plus(text, safe="")`` gives, as bytes."""
    raw = text.encode("utf-8")
    escaped = _UNSAFE.sub(lambda run: b"".join([_ESCAPED[byte] for byte in run.group()]), raw)
    return escaped.replace(b" ", b"+")


def cookie_header(cookies: dict[str, str]) -> str:
    """The site session's cookies as one ``Cookie`` header."""
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


# --- the template: a session's fixed fields, encoded once -------------------------------


@dataclass(frozen=True)
class _Template:
    """The body's fixed bytes around the per-prompt values of the fields ``varying``
    (``pieces[i]`` before value i, the last piece after the last value); ``boundary``
    None for a urlencoded body."""

    pieces: tuple[bytes, ...]
    varying: tuple[str, ...]
    content_type: str
    boundary: bytes | None

    def join(self, encoded: list[bytes]) -> bytes:
        body = [self.pieces[0]]
        for value, piece in zip(encoded, self.pieces[1:], strict=True):
            body += (value, piece)
        return b"".join(body)


_templates: dict[tuple[str, SiteProfile, FormSite], _Template] = {}


def _template(session: SiteSession, site: FormSite) -> _Template:
    key = (session.id, session.profile, site)  # the profile too: whatever a session says, is sent
    template = _templates.get(key)
    if template is None:
        if len(_templates) >= _TEMPLATES_KEPT:
            _templates.clear()  # sessions come and go; rebuilding one costs microseconds
        boundary = None if session.profile.stream else _new_boundary()
        template = _templates[key] = _build(_layout(session, site), boundary)
    return template


def _fresh_template(session: SiteSession, site: FormSite, encoded: list[bytes]) -> _Template:
    """The slow path: a template whose boundary is in none of the ``encoded`` values."""
    while True:
        boundary = _new_boundary()
        if not any(boundary in value for value in encoded):
            return _build(_layout(session, site), boundary)


def _layout(session: SiteSession, site: FormSite) -> list[tuple[str, str | None]]:
    """(name, value) in the browser's order; None for the values each prompt fills in."""
    profile = session.profile
    fields: list[tuple[str, str | None]] = [
        ("_wpnonce", profile.nonce),
        ("post_id", profile.post_id),
        ("url", profile.url or site.page_url),
        ("action", action(profile)),
        ("message", None),
        ("bot_id", profile.bot_id),
        ("chatbot_identity", chatbot_identity(profile)),
        ("wpaicg_chat_history", None),
        ("wpaicg_chat_client_id", client_id(session)),
    ]
    if profile.stream:
        fields.append(("chat_id", None))
    fields.append((consent_field(profile, site), "1"))
    return fields


def _build(layout: list[tuple[str, str | None]], boundary: bytes | None) -> _Template:
    pieces: list[bytes] = []
    varying = tuple(name for name, value in layout if value is None)
    current = b""
    for name, value in layout:
        if boundary is None:
            separator = b"&" if current or pieces else b""
            current += separator + quote_form(name) + b"="
        else:
            current += b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n' % (
                boundary,
                name.encode(),
            )
        if value is None:
            pieces.append(current)
            current = b""
        else:
            current += quote_form(value) if boundary is None else value.encode("utf-8")
        if boundary is not None:
            current += b"\r\n"
    if boundary is None:
        return _Template((*pieces, current), varying, URLENCODED, None)
    current += b"--%s--\r\n" % boundary
    content_type = f"{MULTIPART}; boundary={boundary.decode()}"
    return _Template((*pieces, current), varying, content_type, boundary)


def _new_boundary() -> bytes:
    """A boundary as Chrome draws one."""
    tail = "".join(secrets.choice(_ALPHANUMERIC) for _ in range(16))
    return f"----WebKitFormBoundary{tail}".encode()


def _history(prompt: str) -> str:
    """The conversation the script sends: this prompt, as a new conversation's first line."""
    return json.dumps([f"Human: {prompt}"], ensure_ascii=False)


def _chat_id() -> int:
    return _chat_ids.randint(1, 100_000)


__all__ = [
    "DEFAULT_CONSENT_FIELD",
    "EncodedForm",
    "FormSite",
    "action",
    "chatbot_identity",
    "client_id",
    "consent_field",
    "cookie_header",
    "encode_form",
    "form_fields",
    "quote_form",
]
