"""The worker's settings: the upstream, the proxies, the policy, the retries.

Read from ``CHATGPTES_*`` variables and ``.env`` like the shared queue settings,
passed in to whatever needs them, never read from globals deep inside.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from contract.config import QueueSettings
from contract.redaction import redact_text
from contract.sites import Sites, load_sites
from worker.metrics import parse_port_spec
from worker.prompt import DEFAULT_LANGUAGE_INSTRUCTION
from worker.standard_webhooks import decode_secret, endpoint_label, parse_urls

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
}


class WorkerConfig(QueueSettings):
    """Everything a worker process reads from its environment."""

    upstream_url: str = Field(
        "https://chatgpt.es", description="The chatgpt.es site (page + ajax)."
    )
    sites: str = Field(
        "",
        description="The fleet's sites, comma-separated name=URL (es=https://chatgpt.es); "
        "empty = the one site of upstream_url.",
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

    lease_ttl_seconds: float = Field(
        3.0,
        gt=0,
        description="A claim (a chunk, a lease) its worker renews expires this long after the "
        "worker died or stalled: its prompts run again on another worker this soon.",
    )
    chunk_crash_limit: int = Field(
        3,
        ge=1,
        description="A chunk whose worker died this many times while running it ends its "
        "unsettled prompts failed (WorkerCrashed) instead of running them again.",
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
        description="How often a worker renews its claims (chunks, leases) and reports in; "
        "at most half of lease_ttl_seconds.",
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
        30, ge=0, description="On SIGTERM running jobs get this long to finish."
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
        "signed); may carry credentials, never logged; empty = no webhooks.",
    )
    webhook_secret: SecretStr = Field(
        SecretStr(""),
        description="Signing secret of the webhooks, in OpenAI's form: whsec_ then base64 "
        "(at least 16 bytes).",
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

    @field_validator("webhook_urls")
    @classmethod
    def _webhook_urls(cls, urls: SecretStr) -> SecretStr:
        parse_urls(urls.get_secret_value())  # raises naming the URL by place, never whole
        return urls

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, secret: SecretStr) -> SecretStr:
        if secret.get_secret_value():
            decode_secret(secret.get_secret_value())  # raises without quoting it
        return secret

    @model_validator(mode="after")
    def _webhooks_signed(self) -> WorkerConfig:
        if self.webhook_urls.get_secret_value() and not self.webhook_secret.get_secret_value():
            raise ValueError(
                "CHATGPTES_WEBHOOK_URLS needs CHATGPTES_WEBHOOK_SECRET (whsec_ then base64) to "
                "sign the deliveries"
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
    def _renewed_in_time(self) -> WorkerConfig:
        if self.heartbeat_seconds * 2 > self.lease_ttl_seconds:
            raise ValueError(
                f"heartbeat_seconds ({self.heartbeat_seconds}) must be at most half of "
                f"lease_ttl_seconds ({self.lease_ttl_seconds}): a lease is renewed every "
                "heartbeat and must not expire between two"
            )
        return self

    def budget_for(self, error_kind: str) -> int:
        return {**DEFAULT_RETRY_BUDGETS, **self.retry_budgets}.get(error_kind, 0)

    def describe(self) -> dict[str, str]:
        described = super().describe()
        described["proxies"] = redact_text(self.proxies)
        urls = parse_urls(self.webhook_urls.get_secret_value())
        described["webhook_urls"] = ", ".join(endpoint_label(url) + "/***" for url in urls)
        described["webhook_secret"] = "***" if self.webhook_secret.get_secret_value() else ""
        return described
