"""The ajax POST on kept curl handles: a prompt's transport cut to what the exchange needs.

curl_cffi's ``AsyncSession.request`` resets its handle after every request and sets it up
again from nothing: the browser's impersonation (ciphers, TLS extensions, HTTP/2
settings, its default headers), the cookie engine, timeouts, the proxy; then it builds a
``Response`` with parsed headers and cookies. A worker sends thousands of POSTs that
differ only in their body, their headers and their proxy. Here each handle is set up
once, with the options the session would set (``Curl.impersonate``, the session's CA
bundle, timeouts, redirects, the cookie engine), and a POST sets only those three and
empties the cookie engine (a handle serves every identity in turn). Its reply is the
status, the body, and the header block, parsed only when it is read.

The handles run on the session's own multi handle (``AsyncSession.acurl``), so the POSTs
share its connections with each other and with the page GETs. A handle whose transfer
failed or was cancelled is closed, not reused; one that goes back to the idle list lets
go of its request's and reply's buffers. curl_cffi is pinned to a minor version in
``pyproject.toml``: this module uses its ``Curl`` and ``AsyncCurl`` directly.
"""

from __future__ import annotations

import codecs
from contextlib import suppress
from dataclasses import dataclass
from functools import cached_property
from io import BytesIO

from curl_cffi import Curl, CurlError, CurlInfo, CurlOpt
from curl_cffi.requests import AsyncSession
from curl_cffi.requests.exceptions import RequestException, code2error
from curl_cffi.requests.impersonate import resolve_latest_browser_type
from curl_cffi.requests.utils import NATIVE_TARGET_NAMES

from contract.errors import ServiceError

MAX_REDIRECTS = 30  # AsyncSession's default (and it follows redirects)
# What AsyncSession sets before it impersonates: the browser's own Accept-Encoding header
# is sent, and this turns on curl's decoding of a compressed reply.
ACCEPT_ENCODING = b"gzip, deflate, br"


class Reply:
    """One POST's reply: what ``worker.replies.classify_reply`` reads."""

    def __init__(self, status: int, body: bytes, head: bytes) -> None:
        self.status = status
        self.body = body
        self.head = head  # the raw header block(s): parsed only when read

    @cached_property
    def headers(self) -> dict[str, str]:
        """The last response's headers (after any redirect, ``100 Continue`` or proxy
        ``CONNECT``), names as sent; a folded line joins the header it continues."""
        found: dict[str, str] = {}
        name = None
        for raw in self.head.split(b"\r\n"):
            line = raw.decode("latin-1")
            if line.startswith("HTTP/"):
                found, name = {}, None  # a new response starts: keep only the last one's
            elif line[:1] in (" ", "\t") and name is not None:
                found[name] = f"{found[name]} {line.strip()}"
            elif ":" in line:
                name, _, value = line.partition(":")
                name = name.strip()
                found[name] = value.strip()
        return found

    @cached_property
    def content_type(self) -> str | None:
        return next(
            (value for name, value in self.headers.items() if name.lower() == "content-type"),
            None,
        )

    @cached_property
    def text(self) -> str:
        """The body, decoded as its content type's charset says (UTF-8 when it says none,
        or names one Python does not know), as curl_cffi's ``Response.text`` does."""
        return self.body.decode(_charset(self.content_type), errors="replace")


class BrowserConfigError(ServiceError, ValueError):
    """``CHATGPTES_IMPERSONATE`` names no browser curl impersonates natively."""


@dataclass(slots=True)
class _Handle:
    curl: Curl
    proxy: str | None = None


class AjaxPoster:
    """POSTs on impersonated handles kept between requests, on ``http``'s connections.

    ``keep``: how many idle handles to hold (the worker's in-flight limit: more would
    only sit idle); a POST beyond them opens another, closed when it ends. Raises
    BrowserConfigError for a browser curl does not impersonate natively (a fingerprint
    file's name): every POST would fail.
    """

    def __init__(
        self,
        http: AsyncSession,
        *,
        impersonate: str,
        connect_timeout: float,
        request_timeout: float,
        keep: int,
    ) -> None:
        self.impersonate = resolve_latest_browser_type(impersonate)  # as the session does
        if self.impersonate not in NATIVE_TARGET_NAMES:
            raise BrowserConfigError(
                f"CHATGPTES_IMPERSONATE: {impersonate!r} is not a browser curl_cffi "
                "impersonates: chrome, edge, firefox, safari, tor, or one of their "
                "versions (chrome124, safari184, ...)"
            )
        self.http = http
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.keep = keep
        self._idle: list[_Handle] = []
        self._closed = False

    async def post(
        self, url: bytes, body: bytes, headers: list[bytes], proxy: str | None, *, tunnel: bool
    ) -> Reply:
        """One POST; raises curl_cffi's ``RequestException`` for what failed on the way.

        ``headers``: the request's header lines, encoded; ``tunnel``: whether a proxy
        that is not SOCKS is asked for a CONNECT tunnel (an https site)."""
        if self._closed:
            raise RequestException("the worker's HTTP session is closed")
        handle = self._idle.pop() if self._idle else self._open()
        curl = handle.curl
        body_buffer, head_buffer = BytesIO(), BytesIO()
        acurl = self.http.acurl
        try:
            curl.setopt(CurlOpt.WRITEDATA, body_buffer)
            curl.setopt(CurlOpt.HEADERDATA, head_buffer)
            curl.setopt(CurlOpt.URL, url)
            curl.setopt(CurlOpt.POSTFIELDS, body)
            curl.setopt(CurlOpt.POSTFIELDSIZE, len(body))
            curl.setopt(CurlOpt.HTTPHEADER, headers)
            curl.setopt(CurlOpt.COOKIELIST, "ALL")  # the last identity's cookies go
            if proxy != handle.proxy:
                curl.setopt(CurlOpt.PROXY, proxy or "")
                curl.setopt(CurlOpt.HTTPPROXYTUNNEL, int(tunnel and not _socks(proxy)))
                handle.proxy = proxy
            await acurl.add_handle(curl)
        except CurlError as error:
            self._discard(handle)
            raise code2error(error.code, str(error))(str(error), error.code) from None
        except BaseException:
            with suppress(Exception):
                acurl.remove_handle(curl)  # a cancelled POST: out of the multi, then closed
            self._discard(handle)
            raise
        reply = Reply(
            int(curl.getinfo(CurlInfo.RESPONSE_CODE)),  # type: ignore[arg-type]
            body_buffer.getvalue(),
            head_buffer.getvalue(),
        )
        self._release(handle)
        return reply

    def close(self) -> None:
        """Closes the idle handles (before the session's multi handle closes)."""
        self._closed = True
        while self._idle:
            self._idle.pop().curl.close()

    def _open(self) -> _Handle:
        curl = Curl(cacert=self.http.acurl._cacert)
        verify = self.http.verify  # REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE, as for the GETs
        if isinstance(verify, str):
            curl.setopt(CurlOpt.CAINFO, verify)
            curl.setopt(CurlOpt.PROXY_CAINFO, verify)
        curl.setopt(CurlOpt.POST, 1)
        curl.setopt(CurlOpt.CONNECTTIMEOUT_MS, int(self.connect_timeout * 1000))
        curl.setopt(CurlOpt.TIMEOUT_MS, int(self.request_timeout * 1000))
        curl.setopt(CurlOpt.FOLLOWLOCATION, 1)
        curl.setopt(CurlOpt.MAXREDIRS, MAX_REDIRECTS)
        curl.setopt(CurlOpt.COOKIEFILE, b"")  # a cookie set on a redirect goes to its target
        curl.setopt(CurlOpt.PROXY_CREDENTIAL_NO_REUSE, 1)  # a new proxy login, a new connection
        curl.setopt(CurlOpt.PROXY, "")  # never the environment's proxy
        curl.setopt(CurlOpt.NOPROXY, "")
        curl.setopt(CurlOpt.ACCEPT_ENCODING, ACCEPT_ENCODING)
        if curl.impersonate(self.impersonate, default_headers=True) != 0:
            curl.close()
            raise RequestException(f"impersonating {self.impersonate} failed")
        return _Handle(curl)

    def _release(self, handle: _Handle) -> None:
        if self._closed or len(self._idle) >= self.keep:
            handle.curl.close()
            return
        handle.curl.clean_handles_and_buffers()  # the request's and reply's buffers go now
        self._idle.append(handle)

    def _discard(self, handle: _Handle) -> None:
        handle.curl.close()


def _socks(proxy: str | None) -> bool:
    return proxy is not None and proxy.startswith("socks")


def _charset(content_type: str | None) -> str:
    if content_type:
        for part in content_type.split(";")[1:]:
            name, _, value = part.partition("=")
            if name.strip().lower() == "charset":
                charset = value.strip().strip('"') or "utf-8"
                with suppress(LookupError):
                    return codecs.lookup(charset).name
    return "utf-8"
