"""What a simulated site says in its own words, by language: its refusals and its answers.

The plugin's nonce failures ("Security check", …) and its token-limit reply stay its
English strings on every site; what a site words itself (the consent check a theme adds,
a flagged message, an empty one, a form that is not for this chat) follows its language,
and so does the prefix of its answers. ``de`` is what chatgpt.es says today.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SiteWording:
    consent: str
    """``data`` of the refusal when the consent checkbox is missing."""
    flagged: str
    """``msg`` of the refusal of a message with a prohibited word."""
    empty_message: str
    not_this_chat: str
    """``msg`` of the refusal of a form that is not for this site's chat (its post, type,
    bot, client ID or history)."""
    answer_prefix: str
    agree_label: str
    """The consent checkbox's label on the page."""


WORDINGS: dict[str, SiteWording] = {
    "de": SiteWording(
        consent="Du musst das Kästchen anklicken!",
        flagged="Deine Nachricht wurde markiert, weil sie verbotene Wörter enthält.",
        empty_message="Bitte gib eine Nachricht ein.",
        not_this_chat="Dieser Chat ist hier nicht verfügbar.",
        answer_prefix="Echo: ",
        agree_label="Ich stimme den Bedingungen zu",
    ),
    "en": SiteWording(
        consent="You must tick the box!",
        flagged="Your message has been flagged because it contains prohibited words.",
        empty_message="Please enter a message.",
        not_this_chat="This chat is not available here.",
        answer_prefix="Echo: ",
        agree_label="I agree to the terms",
    ),
    "es": SiteWording(
        consent="¡Debes marcar la casilla!",
        flagged="Tu mensaje ha sido marcado porque contiene palabras prohibidas.",
        empty_message="Por favor, escribe un mensaje.",
        not_this_chat="Este chat no está disponible aquí.",
        answer_prefix="Eco: ",
        agree_label="Acepto los términos",
    ),
}
LANGUAGES: tuple[str, ...] = tuple(WORDINGS)
