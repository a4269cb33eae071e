"""The simulator's options: one typed dataclass, shared by the CLI and the tests.

Imports nothing but the standard library, so `simulator.cli` can load it at
top level without pulling in aiohttp.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simulator.latency import parse_latency
from simulator.wording import LANGUAGES, WORDINGS, SiteWording

MARKUPS: tuple[str, ...] = ("data-attrs", "hidden-inputs", "script-var", "json-blob")
MARKUP_CHOICES: tuple[str, ...] = (*MARKUPS, "random")
PROXY_COUNTS: tuple[str, ...] = (
    "proxies",
    "bad_gateway_proxies",
    "auth_proxies",
    "plain_502_proxies",
    "dead_proxies",
)
CHAT_TYPES: tuple[str, ...] = ("shortcode", "widget")
CHAT_ACTIONS = {"shortcode": "wpaicg_chat_shortcode_message", "widget": "wpaicg_chatbox_message"}


@dataclass
class SimConfig:
    """Everything the stand-in for chatgpt.es can be told to do.

    Rates are probabilities per request (0..1); a rate, quota or proxy count of
    0 switches that behaviour off. Options added after the first release are
    keyword-only, so the positional order of the older ones never changes.
    """

    host: str = "127.0.0.1"
    port: int = 0
    """Site port; 0 picks a free one."""
    proxy_port_base: int = 0
    """First proxy port (then consecutive: proxies, bad-gateway, auth, plain-502, gateway);
    0 picks free ones. Dead proxies always get free ports."""

    markup: str = "random"
    """How the page carries the nonce: one of MARKUP_CHOICES ("random" = per request)."""
    post_id: int = 106
    bot_id: int = field(default=0, kw_only=True)
    """The chat's custom bot (0: the site's own shortcode or widget); its form must name it."""
    chat_type: str = field(default="shortcode", kw_only=True)
    """``shortcode`` or ``widget``: the chat element, and the action its form must post."""
    language: str = field(default="de", kw_only=True)
    """What the site's own refusals and its answers are worded in (``simulator.wording``)."""
    nonce_tick_seconds: float = 43200.0
    """WordPress's half-life of a nonce; a nonce is valid for this tick and the previous."""
    bind_nonce_to_cookie: bool = False
    """When on, a nonce only verifies together with the session cookie it was issued to."""
    bind_nonce_to_identity: bool = field(default=False, kw_only=True)
    """When on, a nonce only verifies for the identity (direct, proxyN, gw:USER…) it was
    issued to; independent of the cookie binding."""
    nonce_secret: str = field(default="sim-nonce-salt", repr=False)

    stream: bool = False
    """Answer successes as text/event-stream of OpenAI-style delta chunks (the page says
    so: ``data-openai_stream_nav="1"``)."""
    prohibited_words: tuple[str, ...] = ("forbiddenword",)
    consent_field: str = "wpaicg_user_agree"
    """The consent checkbox's form field, shown on the page as a checkbox; one not named
    ``wpaicg_…`` (a theme's) is not known to be the chat's, so a client must be told it."""

    rate_per_second: float = 0.0
    """Per-identity token-bucket refill rate for page GETs and ajax POSTs; 0 = no limit."""
    burst: float = 5.0
    quota: int = 0
    """Successful answers per identity per quota window; 0 = unlimited."""
    quota_window_seconds: float = 86400.0
    ban_after_violations: int = 3
    """Requests sent before Retry-After elapsed that earn a ban; 0 = never ban."""
    violation_grace_seconds: float = 0.25
    """Requests arriving this soon after a 429 were already on the wire: refused, not held
    against the identity."""
    ban_seconds: float = 600.0

    latency: str = "fixed:0"
    """Per-request delay in ms: "fixed:MS", "uniform:LO,HI" or "lognormal:MEDIAN,SIGMA"."""
    fault_5xx_rate: float = 0.0
    fault_reset_rate: float = 0.0
    fault_nonjson_rate: float = 0.0
    fault_slow_rate: float = 0.0
    fault_429_rate: float = field(default=0.0, kw_only=True)
    """A 429 with ``Retry-After: 1`` that the identity must honour, as a real one."""
    fault_stale_nonce_rate: float = field(default=0.0, kw_only=True)
    """An ajax POST refused as if its nonce had expired (no effect on the page)."""
    slow_seconds: float = 30.0

    proxies: int = 0
    bad_gateway_proxies: int = 0
    auth_proxies: int = 0
    proxy_credentials: str = field(default="user:secret", repr=False)
    """user:password the auth proxies demand (kept out of repr so it is never logged)."""
    plain_502_proxies: int = field(default=0, kw_only=True)
    """Ports that answer 502 to everything without a Proxy-Status header (plain502_1..)."""
    dead_proxies: int = field(default=0, kw_only=True)
    """Proxy URLs on which nothing listens: a connection is refused."""
    gateway: bool = field(default=False, kw_only=True)
    """One more proxy port where the proxy user name picks the identity (``gw:USER``)."""
    gateway_password: str = field(default="secret", repr=False, kw_only=True)
    """The password every gateway user must give (kept out of repr)."""

    seed: int | None = None
    ledger: bool = field(default=False, kw_only=True)
    """Keep a ledger of every ajax POST (message, identity, times, answered), served at
    ``/__sim/ledger``: a fault campaign's checker reads it."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError for options that cannot work together."""
        if self.markup not in MARKUP_CHOICES:
            raise ValueError(f"markup must be one of {', '.join(MARKUP_CHOICES)}")
        if self.chat_type not in CHAT_TYPES:
            raise ValueError(f"chat_type must be one of {', '.join(CHAT_TYPES)}")
        if self.language not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}")
        if self.bot_id < 0 or self.post_id < 1:
            raise ValueError("bot_id must be >= 0 and post_id >= 1")
        if not self.consent_field.isidentifier():
            raise ValueError("consent_field must be a field name (letters, digits, _)")
        rates = {
            "fault_5xx_rate": self.fault_5xx_rate,
            "fault_reset_rate": self.fault_reset_rate,
            "fault_nonjson_rate": self.fault_nonjson_rate,
            "fault_slow_rate": self.fault_slow_rate,
            "fault_429_rate": self.fault_429_rate,
            "fault_stale_nonce_rate": self.fault_stale_nonce_rate,
        }
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if sum(rates.values()) > 1.0:
            raise ValueError("fault rates must add up to at most 1")
        parse_latency(self.latency)
        if self.nonce_tick_seconds <= 0:
            raise ValueError("nonce_tick_seconds must be positive")
        if self.violation_grace_seconds < 0:
            raise ValueError("violation_grace_seconds must be >= 0")
        if self.rate_per_second < 0 or self.quota < 0 or self.ban_after_violations < 0:
            raise ValueError("rate_per_second, quota and ban_after_violations must be >= 0")
        if self.rate_per_second and self.burst < 1:
            raise ValueError("burst must be at least 1 when rate_per_second is set")
        for name in PROXY_COUNTS:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if ":" not in self.proxy_credentials:
            raise ValueError("proxy_credentials must look like user:password")
        if self.gateway and not self.gateway_password:
            raise ValueError("gateway_password must not be empty")

    @property
    def chat_action(self) -> str:
        """The ajax action this site's chat posts to."""
        return CHAT_ACTIONS[self.chat_type]

    @property
    def chatbot_identity(self) -> str:
        """What the plugin's script sends as ``chatbot_identity`` for this chat."""
        return f"custom_bot_{self.bot_id}" if self.bot_id else self.chat_type

    @property
    def wording(self) -> SiteWording:
        return WORDINGS[self.language]

    @property
    def proxy_user(self) -> str:
        return self.proxy_credentials.split(":", 1)[0]

    @property
    def proxy_password(self) -> str:
        return self.proxy_credentials.split(":", 1)[1]
