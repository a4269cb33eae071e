"""The chatgpt.es exchange: GET the page for a session, POST prompts to admin-ajax.php.

Fully async over curl_cffi with browser impersonation. One ``AsyncSession`` serves
every identity: the proxy is chosen per request, and the cookies travel with the
site session (the connection's own jar is never used), so there is nothing per
identity to open, evict or close while a request is using it. The client holds
no policy: which identity to use, when to refresh a session and whether to retry
belong to the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from curl_cffi import CurlECode
from curl_cffi.requests import AsyncSession, Response
from curl_cffi.requests import exceptions as curl_errors

from contract.models import NO_PARAMS, Message, RequestParams, check_model
from contract.redaction import redact_text
from worker.errors import ProxyFault, UnknownModel, UpstreamError, UpstreamHiccup, UpstreamTimeout
from worker.form import cookie_header, form_body
from worker.page import parse_page
from worker.prompt import DEFAULT_LANGUAGE_INSTRUCTION, Shaped, format_prompt, shape_answer
from worker.proxies import Identity
from worker.replies import Answer, Outcome, classify_reply
from worker.sessions import SiteSession

AJAX_PATH = "/wp-admin/admin-ajax.php"
_PROXY_CONNECT_CODES = {CurlECode.COULDNT_CONNECT, CurlECode.COULDNT_RESOLVE_PROXY, CurlECode.PROXY}


@dataclass(frozen=True)
class ClientOptions:
    base_url: str = "https://chatgpt.es"
    impersonate: str = "chrome"
    connect_timeout: float = 10.0
    request_timeout: float = 60.0
    language_instruction: str = DEFAULT_LANGUAGE_INSTRUCTION
    max_connections: int = 64


def open_http_session(options: ClientOptions) -> AsyncSession:
    """The worker's one impersonating session: connections for every identity, no cookie jar."""
    read_timeout = max(options.request_timeout - options.connect_timeout, 0.1)
    return AsyncSession(
        impersonate=options.impersonate,  # type: ignore[arg-type]
        timeout=(options.connect_timeout, read_timeout),
        max_clients=options.max_connections,
        discard_cookies=True,
        trust_env=False,
    )


class ChatGptEsClient:
    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        self.page_url = options.base_url.rstrip("/") + "/"
        self.ajax_url = options.base_url.rstrip("/") + AJAX_PATH
        self.http = open_http_session(options)
        self._post_headers = {
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": options.base_url.rstrip("/"),
            "Referer": self.page_url,
            "X-Requested-With": "XMLHttpRequest",
        }

    async def close(self) -> None:
        await self.http.close()

    async def handshake(self, identity: Identity) -> SiteSession:
        """GETs the page and returns its session; raises an UpstreamError when it cannot."""
        response = await self._send(identity, "GET", self.page_url, headers={"Accept": "text/html"})
        if response.status_code != 200:
            outcome = _classify(identity, response)
            raise (
                outcome if isinstance(outcome, UpstreamError) else UpstreamHiccup("page GET failed")
            )
        tokens = parse_page(response.text)
        cookies = {name: value for name, value in response.cookies.items() if value is not None}
        return SiteSession(nonce=tokens.nonce, post_id=tokens.post_id, cookies=cookies)

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
        headers = self._post_headers
        if session.cookies:
            headers = {**headers, "Cookie": cookie_header(session.cookies)}
        response = await self._send(
            identity,
            "POST",
            self.ajax_url,
            data=form_body(session, self.page_url, prompt),
            headers=headers,
        )
        outcome = _classify(identity, response)
        if isinstance(outcome, Answer):
            return shape_answer(outcome.text, params, model)
        raise outcome

    async def _send(self, identity: Identity, method: str, url: str, **kwargs: object) -> Response:
        """One request, transport failures turned into typed errors with no credentials in them."""
        try:
            return await self.http.request(  # type: ignore[misc]
                method, url, proxy=identity.proxy_url, **kwargs
            )
        except curl_errors.Timeout as error:
            raise UpstreamTimeout(f"{method} {url} timed out: {_describe(error)}") from None
        except curl_errors.RequestException as error:
            if identity.proxy_url is not None and (
                isinstance(error, curl_errors.ProxyError) or error.code in _PROXY_CONNECT_CODES
            ):
                raise ProxyFault(f"proxy failed on {method} {url}: {_describe(error)}") from None
            raise UpstreamHiccup(f"{method} {url} failed: {_describe(error)}") from None


def _classify(identity: Identity, response: Response) -> Outcome:
    headers = dict(response.headers) if response.status_code != 200 else _content_type(response)
    via_proxy = identity.proxy_url is not None
    return classify_reply(response.status_code, headers, response.text, via_proxy=via_proxy)


def _content_type(response: Response) -> dict[str, str]:
    """All classify_reply reads of a 200's headers (the others matter for refusals only):
    one lookup instead of copying every header per prompt."""
    content_type = response.headers.get("content-type")
    return {"content-type": content_type} if content_type else {}


def _describe(error: Exception) -> str:
    return redact_text(str(error).split(". See ")[0])
