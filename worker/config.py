"""The worker's settings: the upstream, the proxies, the policy, the retries.

Read from ``CHATGPTES_*`` variables and ``.env`` like the shared queue settings,
passed in to whatever needs them, never read from globals deep inside.
"""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from contract.config import QueueSettings
from contract.redaction import redact_text
from contract.sites import Sites, load_sites
from worker.metrics import parse_port_spec
from worker.prompt import DEFAULT_LANGUAGE_INSTRUCTION
from worker.webhook_endpoints import WebhookEndpoint, parse_endpoints, parse_secrets

DEFAULT_RETRY_BUDGETS: dict[str, int] = {
    "SessionStale": 3,
    "RateLimited": 8,
    "QuotaExceeded": 8,
    "Blocked": 4,
    "ProxyFault": 6,
    "HandshakeFailed": 3,
    "UpstreamHiccup": 4,
    "UpstreamTimeout": 3,
    "AnswerNotJson": 2,
    "AnswerOffSchema": 2,
    "ToolCallOffSchema": 2,
}


# Settings renamed: the old name is still read (when the new one is unset), and warned of.
DEPRECATED = {"lease_ttl_seconds": "claim_ttl_seconds", "chunk_crash_limit": "chunk_lapse_limit"}


def claim_margin(ttl_seconds: float) -> float:
    """How much sooner than Redis a holder stops trusting its claim: clocks and the wire."""
    return max(0.25, ttl_seconds * 0.1)


def shortest_claim_ttl(heartbeat_seconds: float) -> float:
    """The shortest claim TTL that stays trusted for two heartbeats (see claim_margin)."""
    small = 2 * heartbeat_seconds + 0.25  # while the margin is its floor, 0.25 s
    shortest = small if small <= 2.5 else 2 * heartbeat_seconds / 0.9
    return math.ceil(shortest * 100 - 1e-6) / 100  # rounded up to what a person types


class WorkerConfig(QueueSettings):
    """Everything a worker process reads from its environment."""

    upstream_url: str = Field(
        "https://chatgpt.es", description="The chatgpt.es site (page + ajax)."
    )
    sites_file: Path | None = Field(
        None, description="TOML file of settings per site ([sites.NAME]: rate, caps, proxies…)."
    )
    impersonate: str = Field("chrome", description="curl_cffi browser to impersonate.")
    connect_timeout_seconds: float = Field(10.0, gt=0, description="Connect timeout per request.")
    request_timeout_seconds: float = Field(60.0, gt=0, description="Whole-request timeout.")
    language_instruction: str = Field(
        DEFAULT_LANGUAGE_INSTRUCTION,
        description="Text put before every prompt; empty turns it off.",
    )

    proxies: str = Field(
        "", description="Comma-separated proxy URLs (http, https, socks5, socks5h)."
    )
    proxies_file: Path | None = Field(
        None, description="File of proxy URLs, one a line, '#' comments; reloaded when it changes."
    )
    proxy_max_inflight: int = Field(4, ge=1, description="Default in-flight cap per proxy.")
    proxy_rate_per_second: float = Field(
        1.0, ge=0, description="Default request rate per proxy (0 = unlimited)."
    )
    proxy_burst: int = Field(2, ge=1, description="Requests a proxy may send back to back.")
    fleet_max_inflight: int = Field(64, ge=1, description="In-flight cap across all workers.")
    worker_max_inflight: int = Field(
        256,
        ge=1,
        description="Most requests one worker process keeps in flight; below it, the fleet's "
        "capacity decides.",
    )
    max_jobs: int | None = Field(
        None,
        ge=1,
        description="Chunks of prompts (arq jobs) one worker holds at once; unset = as many "
        "as keep its requests flowing.",
    )

    claim_ttl_seconds: float = Field(
        3.0,
        gt=0,
        description="A claim (a chunk, a lease) its worker renews expires this long after the "
        "worker died or stalled: its prompts run again on another worker this soon.",
    )
    lease_ttl_seconds: float | None = Field(
        None,
        gt=0,
        description="Deprecated: the old name of claim_ttl_seconds, read when that is unset.",
    )
    chunk_lapse_limit: int = Field(
        3,
        ge=1,
        description="A chunk whose holders lapsed (died or were cut off) this many times ends "
        "its unsettled prompts failed (WorkerCrashed) instead of running them again.",
    )
    chunk_crash_limit: int | None = Field(
        None,
        ge=1,
        description="Deprecated: the old name of chunk_lapse_limit, read when that is unset.",
    )
    lease_wait_seconds: float = Field(
        2.0, ge=0, description="A prompt waiting this long for capacity shows as waiting."
    )
    capacity_wait_limit_seconds: float = Field(
        24 * 3600, gt=0, description="A prompt still finding no capacity after this fails."
    )
    heartbeat_seconds: float = Field(
        1.0,
        gt=0,
        description="How often a worker renews its claims (chunks, leases) and reports in; a "
        "claim must stay trusted for two of these (see claim_ttl_seconds).",
    )
    session_ttl_seconds: float = Field(
        6 * 3600, gt=0, description="Site session lifetime; keep it below the nonce's 12-24 h."
    )
    session_max_uses: int = Field(1000, ge=1, description="POSTs one site session may serve.")
    cooldown_base_seconds: float = Field(
        2.0, gt=0, description="First cooldown of a failing proxy."
    )
    cooldown_cap_seconds: float = Field(1800.0, gt=0, description="Longest backoff cooldown.")
    block_cooldown_seconds: float = Field(300.0, gt=0, description="Rest after a 403/block.")
    quota_cooldown_seconds: float = Field(3600.0, gt=0, description="Rest after tokenLimitReached.")

    retry_budgets: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_RETRY_BUDGETS),
        description="Attempts allowed per error class (JSON object), merged over the defaults.",
    )
    backoff_base_seconds: float = Field(1.0, gt=0, description="First backoff after a hiccup.")
    backoff_cap_seconds: float = Field(60.0, gt=0, description="Longest backoff after a hiccup.")

    job_timeout_seconds: float = Field(
        300.0, gt=0, description="Longest one prompt may spend sending and backing off."
    )
    shutdown_grace_seconds: int = Field(
        75,
        ge=0,
        description="On SIGTERM the requests on the wire get this long to finish and be "
        "stored; at least request_timeout_seconds.",
    )
    redis_startup_wait_seconds: float = Field(
        15.0,
        ge=0,
        description="A worker that starts while Redis cannot be reached waits this long for "
        "it (a Redis restarting, started beside it), then exits 1 naming it.",
    )
    poll_delay_seconds: float = Field(0.02, gt=0, description="arq poll delay when idle.")
    metrics_port: str = Field(
        "",
        description="Prometheus /metrics port, or a range (9100-9109: each worker on a host "
        "takes a free one); empty = off.",
    )

    webhook_urls: SecretStr = Field(
        SecretStr(""),
        description="Comma-separated URLs told when a batch ends (OpenAI's batch.* events, "
        "signed), each a URL (the fleet's) or project:URL (that project's own, used instead); "
        "may carry credentials, never logged; empty = no webhooks.",
    )
    webhook_secret: SecretStr = Field(
        SecretStr(""),
        description="Signing secret of the webhooks, in OpenAI's form: whsec_ then base64 "
        "(at least 16 bytes); project:whsec_... entries sign that project's (else this one).",
    )
    webhook_timeout_seconds: float = Field(
        10.0, gt=0, description="How long one webhook delivery may take (no answer: retried)."
    )
    webhook_retry_base_seconds: float = Field(
        5.0, gt=0, description="First wait before a failed webhook delivery is tried again."
    )
    webhook_retry_cap_seconds: float = Field(
        3600.0, gt=0, description="Longest wait between webhook attempts (tried for 72 hours)."
    )

    @field_validator("retry_budgets")
    @classmethod
    def _known_error_classes(cls, budgets: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(budgets) - set(DEFAULT_RETRY_BUDGETS))
        if unknown:
            raise ValueError(
                f"unknown error class {', '.join(unknown)}; "
                f"known: {', '.join(DEFAULT_RETRY_BUDGETS)}"
            )
        negative = sorted(kind for kind, budget in budgets.items() if budget < 0)
        if negative:
            raise ValueError(f"budgets must be >= 0: {', '.join(negative)}")
        return budgets

    @field_validator("metrics_port")
    @classmethod
    def _a_port_or_range(cls, spec: str) -> str:
        parse_port_spec(spec)  # raises a ValueError that names the setting
        return spec

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, secret: SecretStr) -> SecretStr:
        parse_secrets(secret.get_secret_value())  # raises without quoting one
        return secret

    @model_validator(mode="after")
    def _webhooks_signed(self) -> WorkerConfig:
        try:
            self.webhook_endpoints()
        except ValueError as error:  # names an entry by its place or project, never its text
            raise ValueError(f"CHATGPTES_WEBHOOK_URLS: {error}") from None
        return self

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: object) -> object:
        """A deprecated setting still counts, when its new name is not set."""
        if isinstance(data, dict):
            for old, new in DEPRECATED.items():
                if data.get(old) is not None and data.get(new) is None:
                    data = {**data, new: data[old]}
        return data

    @model_validator(mode="after")
    def _claims_leave_time_to_send(self) -> WorkerConfig:
        ttl, beat = self.claim_ttl_seconds, self.heartbeat_seconds
        if ttl - claim_margin(ttl) < 2 * beat - 1e-9:
            raise ValueError(
                f"CHATGPTES_CLAIM_TTL_SECONDS ({ttl:g}) leaves a worker no time to send: it "
                f"stops trusting a claim {claim_margin(ttl):g}s before Redis may expire it, "
                f"and renews it every CHATGPTES_HEARTBEAT_SECONDS ({beat:g}); a claim must "
                f"stay trusted for two heartbeats: raise the claim TTL to at least "
                f"{shortest_claim_ttl(beat):g}s, or beat more often"
            )
        return self

    @model_validator(mode="after")
    def _sites_work(self) -> WorkerConfig:
        self.fleet_sites()  # a SitesConfigError naming the setting and the entry
        return self

    def fleet_sites(self) -> Sites:
        """The fleet's sites and their settings (``contract.sites``)."""
        given = "upstream_url" in self.model_fields_set
        return load_sites(self.sites, self.sites_file, self.upstream_url, upstream_url_given=given)

    @model_validator(mode="after")
    def _grace_covers_a_request(self) -> WorkerConfig:
        if self.shutdown_grace_seconds < self.request_timeout_seconds:
            raise ValueError(
                f"CHATGPTES_SHUTDOWN_GRACE_SECONDS ({self.shutdown_grace_seconds}) is shorter "
                f"than CHATGPTES_REQUEST_TIMEOUT_SECONDS ({self.request_timeout_seconds:g}): a "
                "stopping worker would abandon requests still on the wire, and another worker "
                "would send them again; give the grace at least the request timeout"
            )
        return self

    def deprecated_in_use(self) -> list[tuple[str, str]]:
        """(old, new) names of the deprecated settings this configuration sets."""
        return [(old, new) for old, new in DEPRECATED.items() if getattr(self, old) is not None]

    def webhook_endpoints(self) -> tuple[WebhookEndpoint, ...]:
        """Where the webhooks go, each with its signing key (checked at start)."""
        return parse_endpoints(
            self.webhook_urls.get_secret_value(), self.webhook_secret.get_secret_value()
        )

    def budget_for(self, error_kind: str) -> int:
        return {**DEFAULT_RETRY_BUDGETS, **self.retry_budgets}.get(error_kind, 0)

    def describe(self) -> dict[str, str]:
        described = super().describe()
        described["proxies"] = redact_text(self.proxies)
        endpoints = self.webhook_endpoints()
        described["webhook_urls"] = ", ".join(endpoint.shown for endpoint in endpoints)
        secrets = parse_secrets(self.webhook_secret.get_secret_value())
        described["webhook_secret"] = ", ".join(
            f"{project}: ***" if project else "***" for project in secrets
        )
        return described
