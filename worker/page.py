"""The site page → its :class:`SiteProfile`: everything the chat form is built from.

The plugin's own script (``wpaicg-chat.js``) reads what it sends from the chat element:
``data-nonce``, ``data-post-id``, ``data-url``, ``data-bot-id`` (a custom bot's id, else
``0``), ``data-type`` (``shortcode`` or ``widget``; the element's class says it too:
``wpaicg-chat-shortcode`` or ``wpaicg-chatbox``), ``data-openai_stream_nav`` (``1`` when
the site streams) and ``data-assistant-enabled``. Themes print some of these elsewhere,
and each is read from the first place that has it, the chat element first:

- hidden inputs ``_wpnonce``, ``post_id``, ``action``, ``bot_id``, ``chatbot_identity``;
- script variables ``wpaicg_nonce = '…'``, ``wpaicg_post_id``, ``wpaicg_bot_id``;
- a JSON blob (``wp_localize_script``): ``"_wpnonce"``, ``"post_id"``, ``"bot_id"``,
  ``"chatbot_identity"``;
- the post id in the body classes (``page-id-N``, ``postid-N``);
- a consent checkbox: an ``<input type="checkbox">`` whose name is one of the plugin's
  (``wpaicg_…``); another page checkbox (a comment form's, a newsletter's) is not it.

Nothing is made up. What the plugin's script itself assumes is assumed too, and only
that: a chat element without ``data-bot-id`` is the site's own chat (bot ``0``), and
one without ``data-openai_stream_nav`` does not stream. A page without a nonce, a post
id or any sign of a chat element (its class, its type, its action) is a
:class:`HandshakeFailed` that names what is missing.

Speed: a scan of a 35 KB page costs some 15 µs, so each source is scanned at most once,
and only while something is still missing: the chat element (found by ``data-nonce``)
usually says everything, and its consent checkbox follows it. Every pattern starts with
a literal, which the regex engine scans for in C (see ``_Key``).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from worker.errors import HandshakeFailed

_TOKEN = r"([A-Za-z0-9]{4,64})"
_DIGITS = r"(\d{1,20})"
_PLUGIN_FIELD_PREFIX = "wpaicg_"


class ChatType(enum.StrEnum):
    """The plugin's two chat elements: the shortcode's box and the floating widget."""

    SHORTCODE = "shortcode"
    WIDGET = "widget"


_CLASS_TYPES = {"wpaicg-chat-shortcode": ChatType.SHORTCODE, "wpaicg-chatbox": ChatType.WIDGET}
_ACTION_TYPES = {
    "wpaicg_chat_shortcode_message": ChatType.SHORTCODE,
    "wpaicg_chatbox_message": ChatType.WIDGET,
}


@dataclass(frozen=True)
class SiteProfile:
    """What one site's page says about its chat; one page GET yields one.

    ``bot_id`` is digits, ``"0"`` for the site's own shortcode or widget. ``url`` is the
    chat element's ``data-url`` and ``consent_field`` the name of the plugin's consent
    checkbox: each None when the page does not say.
    """

    nonce: str
    post_id: str
    bot_id: str = "0"
    chat_type: ChatType = ChatType.SHORTCODE
    stream: bool = False
    url: str | None = None
    consent_field: str | None = None
    assistant: bool = False

    @property
    def custom_bot(self) -> bool:
        return self.bot_id != "0"

    def to_dict(self) -> dict[str, str | bool | None]:
        return {
            "nonce": self.nonce,
            "post_id": self.post_id,
            "bot_id": self.bot_id,
            "chat_type": self.chat_type.value,
            "stream": self.stream,
            "url": self.url,
            "consent_field": self.consent_field,
            "assistant": self.assistant,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> SiteProfile:
        """The inverse of ``to_dict``; KeyError or ValueError for data that is not one."""

        def optional(name: str) -> str | None:
            value = data.get(name)
            return None if value is None else str(value)

        return cls(
            nonce=str(data["nonce"]),
            post_id=str(data["post_id"]),
            bot_id=str(data["bot_id"]),
            chat_type=ChatType(data["chat_type"]),
            stream=bool(data["stream"]),
            url=optional("url"),
            consent_field=optional("consent_field"),
            assistant=bool(data.get("assistant", False)),
        )


@dataclass(frozen=True)
class _Key:
    """A value the page gives under a name, as a script variable (``wpaicg_post_id = '7'``)
    or a JSON key (``"post_id":"7"``), found in one scan.

    The pattern starts with the name's literal tail (so the regex engine scans for it in
    C) and what must stand just before it is checked by hand: a ``prefix`` that is not the
    end of a longer word (``my_wpaicg_nonce`` is not ``wpaicg_nonce``). Writing that into
    the pattern, as ``\\b`` or a leading class, costs the engine its literal scan: 45
    times slower on a 35 KB page.
    """

    regex: re.Pattern[str]
    prefixes: tuple[str, ...]

    @classmethod
    def named(cls, tail: str, value: str, *prefixes: str) -> _Key:
        return cls(re.compile(tail + r"""["']?\s*[=:]\s*""" + value), prefixes)

    def first(self, html: str) -> str | None:
        for match in self.regex.finditer(html):
            start = match.start()
            for prefix in self.prefixes:
                if html.startswith(prefix, start - len(prefix), start):
                    before = start - len(prefix) - 1
                    if prefix[0] in "\"'" or before < 0 or not _word_character(html[before]):
                        return match.group(1)
        return None


def _word_character(char: str) -> bool:
    return char.isalnum() or char == "_"


_QUOTES = ('"', "'")
_VARIABLE = ("wpaicg_",)
_NONCE = _Key.named("nonce", r"""["']""" + _TOKEN + "[\"']", *_VARIABLE, '"_wp', "'_wp")
_POST_ID = _Key.named("post_id", r"""["']?""" + _DIGITS, *_VARIABLE, *_QUOTES)
_BOT_ID = _Key.named("bot_id", r"""["']?""" + _DIGITS, *_VARIABLE, *_QUOTES)
_IDENTITY = _Key.named("chatbot_identity", r"""["'](\w{1,64})["']""", *_QUOTES)
# WordPress prints the current post in the body classes; used only when nothing else does.
_BODY_CLASS_POST_ID = re.compile(r"""<body[^>]*\bclass=["'][^"']*\b(?:postid|page-id)-""" + _DIGITS)
_CHAT_CLASS = re.compile(r"wpaicg-chat(?:-shortcode|box)(?![\w-])")
_INPUT_TAG = re.compile(r"<input\b[^>]*>")
_ATTRIBUTE = re.compile(r"""([\w-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_HIDDEN_NAMES = ("_wpnonce", "post_id", "action", "bot_id", "chatbot_identity")
_CUSTOM_BOT = re.compile(r"custom_bot_(\d{1,20})")


def parse_page(html: str) -> SiteProfile:
    """Reads the site's profile from its page, or raises HandshakeFailed naming what is
    missing."""
    chat, at = _nonce_element(html)
    inputs = _Inputs.of(html, at)  # a chat element's own checkbox follows its opening tag
    if not chat and inputs.hidden.get("action") not in _ACTION_TYPES:
        chat = _classed_element(html)
    nonce = chat.get("data-nonce") or inputs.hidden.get("_wpnonce") or _NONCE.first(html)
    post_id = (
        chat.get("data-post-id")
        or chat.get("data-post_id")
        or inputs.hidden.get("post_id")
        or _POST_ID.first(html)
        or _body_class_post_id(html)
    )
    identity = inputs.hidden.get("chatbot_identity")
    chat_type = _chat_type(chat, inputs, identity)
    if chat_type is None or ("data-bot-id" not in chat and "bot_id" not in inputs.hidden):
        identity = identity or _IDENTITY.first(html)  # only where it can still tell
        chat_type = chat_type or _chat_type({}, inputs, identity)
    missing = [
        what
        for what, value in (("nonce", nonce), ("post id", post_id), ("chat element", chat_type))
        if not value
    ]
    if missing:
        raise HandshakeFailed(
            f"site page ({len(html)} chars) has no {' and no '.join(missing)} in any known markup"
        )
    assert nonce is not None and post_id is not None and chat_type is not None
    return SiteProfile(
        nonce=nonce,
        post_id=post_id,
        bot_id=_bot_id(chat, inputs, identity, html),
        chat_type=chat_type,
        stream=chat.get("data-openai_stream_nav") == "1",
        url=chat.get("data-url") or None,
        consent_field=inputs.consent_field,
        assistant=chat.get("data-assistant-enabled") == "true",
    )


def _chat_type(chat: dict[str, str], inputs: _Inputs, identity: str | None) -> ChatType | None:
    declared = chat.get("data-type")
    if declared in (ChatType.SHORTCODE, ChatType.WIDGET):
        return ChatType(declared)
    for token in chat.get("class", "").split():
        if token in _CLASS_TYPES:
            return _CLASS_TYPES[token]
    action = inputs.hidden.get("action")
    if action in _ACTION_TYPES:
        return _ACTION_TYPES[action]
    if identity in (ChatType.SHORTCODE, ChatType.WIDGET):
        return ChatType(identity)
    if identity is not None and _CUSTOM_BOT.fullmatch(identity):
        return ChatType.SHORTCODE  # a custom bot named only by its identity: the script's default
    return None


def _bot_id(chat: dict[str, str], inputs: _Inputs, identity: str | None, html: str) -> str:
    declared = chat.get("data-bot-id")
    if declared is not None:
        if not declared.isdigit():
            raise HandshakeFailed("the chat element's data-bot-id is not a number")
        return str(int(declared))
    hidden = inputs.hidden.get("bot_id")
    if hidden is not None and hidden.isdigit():
        return str(int(hidden))
    found = _BOT_ID.first(html)
    if found is not None:
        return str(int(found))
    custom = _CUSTOM_BOT.fullmatch(identity or "")
    return str(int(custom.group(1))) if custom else "0"  # no bot id: the script sends 0


def _body_class_post_id(html: str) -> str | None:
    found = _BODY_CLASS_POST_ID.search(html)
    return found.group(1) if found else None


def _nonce_element(html: str) -> tuple[dict[str, str], int]:
    """The attributes of the element carrying ``data-nonce`` (the plugin's chat element),
    and where its tag starts; ({}, 0) if there is none."""
    start = html.find("data-nonce")
    while start != -1:
        attributes, opening = _tag_attributes(html, start)
        if "data-nonce" in attributes:
            return attributes, opening
        start = html.find("data-nonce", start + 1)
    return {}, 0


def _classed_element(html: str) -> dict[str, str]:
    """The attributes of the first element whose class is the plugin's chat class."""
    for match in _CHAT_CLASS.finditer(html):
        attributes, _ = _tag_attributes(html, match.start())
        if match.group() in attributes.get("class", "").split():
            return attributes
    return {}


def _tag_attributes(html: str, inside: int) -> tuple[dict[str, str], int]:
    """The attributes of the tag around position ``inside``, and where it opens; ({}, -1)
    if ``inside`` is not in a tag."""
    opening = html.rfind("<", 0, inside)
    closing = html.find(">", inside)
    if opening == -1 or closing == -1 or ">" in html[opening:inside]:
        return {}, -1
    tag = html[opening + 1 : closing]
    attributes = {m[1].lower(): m[2] if m[3] is None else m[3] for m in _ATTRIBUTE.finditer(tag)}
    return attributes, opening


@dataclass(frozen=True)
class _Inputs:
    """The page's ``<input>`` tags that matter: the hidden fields of the chat form (the
    first of each name) and the plugin's consent checkbox. Tags are read in lower case, as
    WordPress prints them."""

    hidden: dict[str, str]
    consent_field: str | None

    @classmethod
    def of(cls, html: str, start: int = 0) -> _Inputs:
        hidden: dict[str, str] = {}
        consent: str | None = None
        for tag in _INPUT_TAG.findall(html, start):
            attributes = {m[1].lower(): m[2] or m[3] for m in _ATTRIBUTE.finditer(tag)}
            name, value = attributes.get("name"), attributes.get("value")
            kind = (attributes.get("type") or "").lower()
            if kind == "checkbox" and consent is None and _is_plugin_field(name):
                consent = name
            elif name in _HIDDEN_NAMES and value and name not in hidden:
                hidden[name] = value
        return cls(hidden, consent)


def _is_plugin_field(name: str | None) -> bool:
    return name is not None and name.startswith(_PLUGIN_FIELD_PREFIX) and name.isidentifier()


__all__ = ["ChatType", "SiteProfile", "parse_page"]
