"""The chatgpt.es exchange: GET the page for a session, POST prompts to admin-ajax.php.

The page's profile (``worker.page``) decides the form (``worker.form``): its action,
bot and identity, and its encoding. The page is the site's URL (a path if the chat is on
a subpage); the form goes to ``/wp-admin/admin-ajax.php`` on its origin.

Fully async over curl_cffi with browser impersonation. One ``AsyncSession`` serves
every identity: the proxy is chosen per request, and the cookies travel with the
site session (the connection's own jar is never used), so there is nothing per
identity to open, evict or close while a request is using it. The page GET goes
through the session; the prompt's POST, the hot path, through ``worker.transport``
on the session's connections (handles set up once, not once per request). The client
holds no policy: which identity to use, when to refresh a session and whether to
retry belong to the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from curl_cffi import CurlECode
from curl_cffi.requests import AsyncSession, Response
from curl_cffi.requests import exceptions as curl_errors

from contract.models import NO_PARAMS, Message, RequestParams, check_model
from contract.redaction import redact_text
from contract.sites import SiteSettings
from worker.errors import ProxyFault, UnknownModel, UpstreamError, UpstreamHiccup, UpstreamTimeout
from worker.form import FormSite, cookie_header, encode_form
from worker.page import parse_page
from worker.prompt import DEFAULT_LANGUAGE_INSTRUCTION, Shaped, format_prompt, shape_answer
from worker.proxies import Identity
from worker.replies import Answer, Outcome, classify_reply, refusals_in
from worker.sessions import SiteSession
from worker.transport import AjaxPoster, Reply

if TYPE_CHECKING:
    from worker.config import WorkerConfig

AJAX_PATH = "/wp-admin/admin-ajax.php"
_HEADERS_KEPT = 16384
_PROXY_CONNECT_CODES = {CurlECode.COULDNT_CONNECT, CurlECode.COULDNT_RESOLVE_PROXY, CurlECode.PROXY}


@dataclass(frozen=True)
class ClientOptions:
    """``base_url`` is the page the chat is on; ``consent_field`` and ``language`` are the
    site's settings (None: the page's consent field, refusals in any known language)."""

    base_url: str = "https://chatgpt.es"
    impersonate: str = "chrome"
    connect_timeout: float = 10.0
    request_timeout: float = 60.0
    language_instruction: str = DEFAULT_LANGUAGE_INSTRUCTION
    max_connections: int = 64
    consent_field: str | None = None
    language: str | None = None


def client_options(config: WorkerConfig, site: SiteSettings | None = None) -> ClientOptions:
    """The client options of one of the fleet's sites (``contract.sites``), from the
    worker's settings; with no site given, the fleet's first."""
    if site is None:
        site = config.fleet_sites().sites[0]
    return ClientOptions(
        base_url=site.url,
        impersonate=config.impersonate,
        connect_timeout=config.connect_timeout_seconds,
        request_timeout=config.request_timeout_seconds,
        language_instruction=config.language_instruction,
        max_connections=config.worker_max_inflight,
        consent_field=site.consent_field,
        language=site.language,
    )


def open_http_session(options: ClientOptions) -> AsyncSession:
    """The worker's one impersonating session: connections for every identity, no cookie jar."""
    read_timeout = _whole_timeout(options) - options.connect_timeout
    return AsyncSession(
        impersonate=options.impersonate,  # type: ignore[arg-type]
        timeout=(options.connect_timeout, read_timeout),
        max_clients=options.max_connections,
        discard_cookies=True,
        trust_env=False,
    )


class ChatGptEsClient:
    """The exchange with one site. ``http``: a session to share with other sites' clients
    (one connection pool per worker); by default its own."""

    def __init__(self, options: ClientOptions, *, http: AsyncSession | None = None) -> None:
        refusals_in(options.language)  # a ValueError now rather than on every reply
        self.options = options
        parts = urlsplit(options.base_url)
        self.page_url = options.base_url if parts.path else options.base_url + "/"
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.ajax_url = self.origin + AJAX_PATH
        self._ajax_url = self.ajax_url.encode()
        self._tunnel = parts.scheme == "https"  # through a proxy: CONNECT, as curl_cffi does
        self.form_site = FormSite(page_url=self.page_url, consent_field=options.consent_field)
        self.http = http or open_http_session(options)
        self.poster = AjaxPoster(
            self.http,
            impersonate=options.impersonate,
            connect_timeout=options.connect_timeout,
            request_timeout=_whole_timeout(options),
            keep=options.max_connections,
        )
        self._post_headers = {
            "Accept": "application/json, text/event-stream",
            "Origin": self.origin,
            "Referer": self.page_url,
            "X-Requested-With": "XMLHttpRequest",
        }
        self._session_headers: dict[tuple[str, str], list[bytes]] = {}

    async def close(self) -> None:
        self.poster.close()
        await self.http.close()

    async def handshake(self, identity: Identity) -> SiteSession:
        """GETs the page and returns its session; raises an UpstreamError when it cannot."""
        response = await self._send(identity, "GET", self.page_url, headers={"Accept": "text/html"})
        if response.status_code != 200:
            outcome = _classify(identity, response, self.options.language)
            raise (
                outcome if isinstance(outcome, UpstreamError) else UpstreamHiccup("page GET failed")
            )
        profile = parse_page(response.text)
        cookies = {name: value for name, value in response.cookies.items() if value is not None}
        return SiteSession(profile=profile, cookies=cookies)

    async def ask(
        self,
        identity: Identity,
        session: SiteSession,
        messages: Sequence[Message],
        model: str,
        params: RequestParams = NO_PARAMS,
    ) -> Shaped:
        """POSTs one prompt and returns the answer text, shaped by ``params`` (stop, JSON
        mode, a schema, max_tokens), or raises the typed UpstreamError."""
        try:
            check_model(model)
        except ValueError as error:
            raise UnknownModel(str(error)) from None
        prompt = format_prompt(messages, self.options.language_instruction, params)
        form = encode_form(session, self.form_site, prompt)
        headers = self._headers(session, form.content_type)
        try:
            reply = await self.poster.post(
                self._ajax_url, form.body, headers, identity.proxy_url, tunnel=self._tunnel
            )
        except curl_errors.RequestException as error:
            raise _transport_error(identity, "POST", self.ajax_url, error) from None
        outcome = classify_reply(
            reply.status,
            _reply_headers(reply),
            reply.text,
            via_proxy=identity.proxy_url is not None,
            language=self.options.language,
        )
        if isinstance(outcome, Answer):
            return shape_answer(outcome.text, params, model)
        raise outcome

    def _headers(self, session: SiteSession, content_type: str) -> list[bytes]:
        """The POST's header lines: built once per session (and form encoding), not per
        prompt. ``Expect:`` turns off curl's ``100-continue`` for a large body, as
        curl_cffi does."""
        key = (session.id, content_type)
        lines = self._session_headers.get(key)
        if lines is None:
            if len(self._session_headers) >= _HEADERS_KEPT:
                self._session_headers.clear()
            headers = {**self._post_headers, "Content-Type": content_type}
            if session.cookies:
                headers["Cookie"] = cookie_header(session.cookies)
            lines = [f"{name}: {value}".encode() for name, value in headers.items()]
            lines.append(b"Expect:")
            self._session_headers[key] = lines
        return lines

    async def _send(self, identity: Identity, method: str, url: str, **kwargs: object) -> Response:
        """One request, transport failures turned into typed errors with no credentials in them."""
        try:
            return await self.http.request(  # type: ignore[misc]
                method, url, proxy=identity.proxy_url, **kwargs
            )
        except curl_errors.RequestException as error:
            raise _transport_error(identity, method, url, error) from None


def _whole_timeout(options: ClientOptions) -> float:
    """A request's whole time, its connection included: the GETs' and the POSTs' alike,
    with at least 0.1 s left to read a reply once connected."""
    return max(options.request_timeout, options.connect_timeout + 0.1)


def _transport_error(
    identity: Identity, method: str, url: str, error: curl_errors.RequestException
) -> UpstreamError:
    """A request that failed on the way, as a typed error with no credentials in it."""
    if isinstance(error, curl_errors.Timeout):
        return UpstreamTimeout(f"{method} {url} timed out: {_describe(error)}")
    if identity.proxy_url is not None and (
        isinstance(error, curl_errors.ProxyError) or error.code in _PROXY_CONNECT_CODES
    ):
        return ProxyFault(f"proxy failed on {method} {url}: {_describe(error)}")
    return UpstreamHiccup(f"{method} {url} failed: {_describe(error)}")


def _reply_headers(reply: Reply) -> dict[str, str]:
    """All classify_reply reads of a 200's headers is its content type (the others matter
    for refusals only): a 200 passes that one header, not all of them."""
    if reply.status != 200:
        return reply.headers
    return {"content-type": reply.content_type} if reply.content_type else {}


def _classify(identity: Identity, response: Response, language: str | None = None) -> Outcome:
    via_proxy = identity.proxy_url is not None
    return classify_reply(
        response.status_code,
        dict(response.headers),
        response.text,
        via_proxy=via_proxy,
        language=language,
    )


def _describe(error: Exception) -> str:
    return redact_text(str(error).split(". See ")[0])
