"""The HTML the simulator serves: the chat page (in four markups) and the ban challenge.

The page is ~35 kB of WordPress-looking HTML rendered once per simulator; per request
only the chat block with the nonce is put in the middle. NONCE is 10 lowercase hex
characters, POSTID, BOTID decimal digits (BOTID 0: the site's own chat), TYPE
``shortcode`` or ``widget``, CLASS its element's class (``wpaicg-chat-shortcode`` or
``wpaicg-chatbox``), ACTION its ajax action (``wpaicg_chat_shortcode_message`` or
``wpaicg_chatbox_message``), IDENTITY ``custom_bot_BOTID`` or TYPE, STREAM ``1`` when the
site streams else ``0``, CONSENT the consent field and SITE the site URL without a
trailing slash (e.g. ``http://127.0.0.1:8790``). The chat block is exactly one of:

``data-attrs`` (what the plugin prints)::

    <div class="CLASS" data-nonce="NONCE" data-post-id="POSTID" data-url="SITE/" data-bot-id="BOTID" data-type="TYPE" data-openai_stream_nav="STREAM">
    … <label><input type="checkbox" name="CONSENT" value="1"> …</label></div>

``hidden-inputs`` (inside ``<form class="CLASS-form" ...>``)::

    <input type="hidden" name="_wpnonce" value="NONCE">
    <input type="hidden" name="post_id" value="POSTID">
    <input type="hidden" name="action" value="ACTION">
    <input type="hidden" name="bot_id" value="BOTID">
    <input type="hidden" name="chatbot_identity" value="IDENTITY">
    … <label><input type="checkbox" name="CONSENT" value="1"> …</label>

``script-var`` (the nonce in a script; the chat element keeps its other attributes)::

    <script>var wpaicg_nonce = 'NONCE'; var wpaicg_post_id = 'POSTID'; var wpaicg_ajax_url = 'SITE/wp-admin/admin-ajax.php';</script>
    <div class="CLASS" data-bot-id="BOTID" data-type="TYPE" data-openai_stream_nav="STREAM"></div>

``json-blob`` (slashes escaped as ``wp_localize_script`` does; a bare chat element)::

    <script id="wpaicg-init-js-extra">var wpaicg_params = {"ajax_url":"SITE\\/wp-admin\\/admin-ajax.php","_wpnonce":"NONCE","post_id":"POSTID","bot_id":"BOTID","chatbot_identity":"IDENTITY"};</script>
    <div class="CLASS"></div>

So only ``data-attrs`` and ``script-var`` say whether the site streams, and only
``data-attrs`` and ``hidden-inputs`` name the consent field. The body classes carry ``page-id-POSTID`` in every markup, and ``<html lang>``
the site's language.

Like a real WordPress page, every variant also carries a *decoy*: the REST API nonce,
``var wpApiSettings = {"root":"SITE\\/wp-json\\/","nonce":"DECOY",...}``.
It is 10 hex characters too but belongs to another action, so the ajax
endpoint rejects it. A parser must key on ``_wpnonce`` / ``wpaicg_nonce`` /
``data-nonce``, never on a bare ``nonce``.
"""

# ruff: noqa: E501 -- the markups above are quoted verbatim for parser authors

from __future__ import annotations

import random
from functools import cache

from simulator.config import SimConfig

AJAX_PATH = "/wp-admin/admin-ajax.php"

_WORDS = [
    "inteligencia",
    "artificial",
    "conversación",
    "modelo",
    "lenguaje",
    "respuesta",
    "pregunta",
    "usuario",
    "chat",
    "asistente",
    "gratis",
    "español",
    "texto",
    "ejemplo",
    "aprender",
    "escribir",
    "traducir",
    "resumen",
    "ideas",
    "trabajo",
    "estudio",
    "código",
    "programación",
    "explicar",
    "ayuda",
    "rápida",
    "sencilla",
    "online",
    "herramienta",
    "privacidad",
    "seguridad",
    "registro",
    "cuenta",
    "navegador",
    "página",
    "contenido",
]


@cache
def _filler_paragraphs(count: int = 60) -> str:
    rng = random.Random(106)
    paragraphs = []
    for index in range(count):
        sentences = []
        for _ in range(rng.randint(4, 7)):
            words = rng.sample(_WORDS, rng.randint(8, 14))
            sentences.append(" ".join(words).capitalize() + ".")
        if index % 8 == 0:
            paragraphs.append(f'<h2 class="wp-block-heading">Sección {index // 8 + 1}</h2>')
        paragraphs.append(f"<p>{' '.join(sentences)}</p>")
    return "\n".join(paragraphs)


def _head(site: str, config: SimConfig) -> str:
    links = "".join(
        f'<link rel="stylesheet" id="{name}-css" href="{site}/wp-content/{name}.css?ver=6.4.3" '
        f'media="all">\n'
        for name in ("wp-block-library", "astra-theme", "wpaicg-chat", "elementor-frontend")
    )
    nav = "".join(
        f'<li class="menu-item"><a href="{site}/{slug}/">{label}</a></li>'
        for slug, label in (
            ("", "Inicio"),
            ("chatgpt-gratis", "ChatGPT Gratis"),
            ("blog", "Blog"),
            ("contacto", "Contacto"),
            ("privacidad", "Privacidad"),
        )
    )
    return (
        f'<!DOCTYPE html>\n<html lang="{config.language}">\n<head>\n<meta charset="UTF-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>ChatGPT Gratis en Español &#8211; ChatGPT.es</title>\n"
        f'<link rel="canonical" href="{site}/">\n{links}'
        f'<link rel="https://api.w.org/" href="{site}/wp-json/">\n'
        '<meta name="generator" content="WordPress 6.4.3">\n</head>\n'
        f'<body class="home page-template-default page page-id-{config.post_id}">\n'
        '<header id="masthead" class="site-header"><div class="site-branding">'
        f'<a href="{site}/" rel="home">ChatGPT.es</a></div>'
        f'<nav id="site-navigation" class="main-navigation"><ul id="primary-menu">{nav}</ul>'
        "</nav></header>\n"
        f'<main id="main" class="site-main"><article id="post-{config.post_id}" class="page">'
        '<h1 class="entry-title">ChatGPT Gratis en Español</h1>\n'
        '<div class="entry-content">\n'
    )


def _foot(site: str) -> str:
    return (
        "</div></article></main>\n"
        '<footer id="colophon" class="site-footer"><p>&copy; 2024 ChatGPT.es &middot; '
        f'<a href="{site}/aviso-legal/">Aviso legal</a> &middot; '
        f'<a href="{site}/cookies/">Cookies</a></p></footer>\n'
        f'<script src="{site}/wp-includes/js/jquery/jquery.min.js?ver=3.7.1" '
        'id="jquery-core-js"></script>\n'
        f'<script src="{site}/wp-content/plugins/gpt3-ai-content-generator/public/js/'
        'wpaicg-chat.js?ver=1.8.96" id="wpaicg-init-js"></script>\n'
        "</body>\n</html>\n"
    )


def chat_block(markup: str, site: str, nonce: str, config: SimConfig) -> str:
    """The chat's HTML in one markup (see the module docstring)."""
    css = "wpaicg-chatbox" if config.chat_type == "widget" else "wpaicg-chat-shortcode"
    stream = "1" if config.stream else "0"
    consent = (
        f'<label><input type="checkbox" name="{config.consent_field}" value="1"> '
        f"{config.wording.agree_label}</label>\n"
    )
    if markup == "data-attrs":
        return (
            f'<div class="{css}" data-nonce="{nonce}" data-post-id="{config.post_id}" '
            f'data-url="{site}/" data-bot-id="{config.bot_id}" data-type="{config.chat_type}" '
            f'data-openai_stream_nav="{stream}">\n<div class="{css}-content">'
            f'<ul class="{css}-messages"></ul></div>\n{consent}</div>\n'
        )
    if markup == "hidden-inputs":
        return (
            f'<form class="{css}-form" method="post" action="{site}{AJAX_PATH}">\n'
            f'<input type="hidden" name="_wpnonce" value="{nonce}">\n'
            f'<input type="hidden" name="post_id" value="{config.post_id}">\n'
            f'<input type="hidden" name="action" value="{config.chat_action}">\n'
            f'<input type="hidden" name="bot_id" value="{config.bot_id}">\n'
            f'<input type="hidden" name="chatbot_identity" value="{config.chatbot_identity}">\n'
            f'<textarea class="{css}-typing" name="message"></textarea>\n{consent}</form>\n'
        )
    if markup == "script-var":
        return (
            f"<script>var wpaicg_nonce = '{nonce}'; var wpaicg_post_id = '{config.post_id}'; "
            f"var wpaicg_ajax_url = '{site}{AJAX_PATH}';</script>\n"
            f'<div class="{css}" data-bot-id="{config.bot_id}" data-type="{config.chat_type}" '
            f'data-openai_stream_nav="{stream}"></div>\n'
        )
    if markup == "json-blob":
        escaped = f"{site}{AJAX_PATH}".replace("/", "\\/")
        return (
            '<script id="wpaicg-init-js-extra">var wpaicg_params = '
            f'{{"ajax_url":"{escaped}","_wpnonce":"{nonce}","post_id":"{config.post_id}",'
            f'"bot_id":"{config.bot_id}","chatbot_identity":"{config.chatbot_identity}"}};'
            f'</script>\n<div class="{css}"></div>\n'
        )
    raise ValueError(f"unknown markup {markup!r}")


def decoy_block(site: str, rest_nonce: str) -> str:
    """The REST API nonce every WordPress page carries; not the chat nonce."""
    root = f"{site}/wp-json/".replace("/", "\\/")
    return (
        '<script id="wp-api-request-js-extra">var wpApiSettings = '
        f'{{"root":"{root}","nonce":"{rest_nonce}","versionString":"wp\\/v2\\/"}};</script>\n'
    )


class PageRenderer:
    """Holds the pre-rendered bulk of the page; each request only adds the small blocks."""

    def __init__(self, site: str, config: SimConfig) -> None:
        self.site = site
        self.config = config
        filler = _filler_paragraphs()
        middle = len(filler) // 2
        cut = filler.index("</p>", middle) + len("</p>\n")
        self._before = _head(site, config) + filler[:cut]
        self._after = filler[cut:] + _foot(site)

    def render(self, markup: str, nonce: str, rest_nonce: str) -> str:
        return (
            self._before
            + decoy_block(self.site, rest_nonce)
            + chat_block(markup, self.site, nonce, self.config)
            + self._after
        )


CHALLENGE_PAGE = (
    '<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title>'
    '<meta http-equiv="Content-Type" content="text/html; charset=UTF-8">'
    '<meta name="robots" content="noindex,nofollow"></head><body>'
    '<div class="main-wrapper" role="main"><div class="main-content">'
    '<h1 class="zone-name-title h1">chatgpt.es</h1>'
    '<h2 class="h2" id="challenge-running">Checking if the site connection is secure</h2>'
    '<div id="challenge-body-text" class="core-msg spacer">chatgpt.es needs to review the '
    "security of your connection before proceeding.</div>"
    "<noscript>Enable JavaScript and cookies to continue</noscript>"
    "</div></div></body></html>"
)

NOT_ALLOWED_TEXT = "You are not allowed to access this feature."
