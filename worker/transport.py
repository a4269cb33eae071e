"""The ajax POST on kept curl handles: a prompt's transport cut to what the exchange needs.

curl_cffi's ``AsyncSession.request`` resets its handle after every request and sets it up
again from nothing: the browser's impersonation (ciphers, TLS extensions, HTTP/2
settings, its default headers), the cookie engine, timeouts, the proxy; then it builds a
``Response`` with parsed headers and cookies. A worker sends thousands of POSTs that
differ only in their body, their headers and their proxy. Here each handle is set up
once (``Curl.impersonate`` and the fixed options, as the session sets them) and a POST
sets only those three; its reply is the status, the body, and the header block, parsed
only when the reply is not a 200 (a 200's content type comes from curl).

The handles run on the session's own multi handle (``AsyncSession.acurl``), so the POSTs
share its connections with each other and with the page GETs. A handle whose transfer
failed or was cancelled is closed, not reused. curl_cffi is pinned to a minor version in
``pyproject.toml``: this module uses its ``Curl`` and ``AsyncCurl`` directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO

from curl_cffi import Curl, CurlError, CurlInfo, CurlOpt
from curl_cffi.requests import AsyncSession
from curl_cffi.requests.exceptions import RequestException, code2error
from curl_cffi.requests.impersonate import resolve_latest_browser_type

ACCEPT_ENCODING = b"gzip, deflate, br"  # what AsyncSession asks for by default
MAX_REDIRECTS = 30  # AsyncSession's default (and it follows redirects)


@dataclass(frozen=True, slots=True)
class Reply:
    """One POST's reply: what ``worker.replies.classify_reply`` reads."""

    status: int
    body: bytes
    content_type: str | None
    head: bytes  # the raw header block(s); parsed by ``headers`` only when needed

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @property
    def headers(self) -> dict[str, str]:
        """The last response's headers (after any redirect or ``100 Continue``)."""
        found: dict[str, str] = {}
        for line in self.head.decode("latin-1").splitlines():
            if line.startswith("HTTP/"):
                found = {}  # a new response starts: keep only the last one's
            elif ":" in line:
                name, _, value = line.partition(":")
                found[name.strip()] = value.strip()
        return found


@dataclass(slots=True)
class _Handle:
    curl: Curl
    proxy: str | None = None


class AjaxPoster:
    """POSTs on impersonated handles kept between requests, on ``http``'s connections.

    ``keep``: how many idle handles to hold (the worker's in-flight limit: more would
    only sit idle); a POST beyond them opens another, closed when it ends.
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
        self.http = http
        self.impersonate = resolve_latest_browser_type(impersonate)  # as the session does
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
        handle = self._idle.pop() if self._idle else self._open()
        curl = handle.curl
        body_buffer, head_buffer = BytesIO(), BytesIO()
        curl.clean_handles_and_buffers()  # frees the last header list and buffer handles
        curl.setopt(CurlOpt.WRITEDATA, body_buffer)
        curl.setopt(CurlOpt.HEADERDATA, head_buffer)
        curl.setopt(CurlOpt.URL, url)
        curl.setopt(CurlOpt.POSTFIELDS, body)
        curl.setopt(CurlOpt.POSTFIELDSIZE, len(body))
        curl.setopt(CurlOpt.HTTPHEADER, headers)
        if proxy != handle.proxy:
            curl.setopt(CurlOpt.PROXY, proxy or "")
            curl.setopt(CurlOpt.HTTPPROXYTUNNEL, int(tunnel and not _socks(proxy)))
            handle.proxy = proxy
        acurl = self.http.acurl
        future = acurl.add_handle(curl)
        try:
            await future
        except CurlError as error:
            self._discard(handle)
            raise code2error(error.code, str(error))(str(error), error.code) from None
        except BaseException:
            acurl.remove_handle(curl)  # a cancelled POST: out of the multi, then closed
            self._discard(handle)
            raise
        content_type = curl.getinfo(CurlInfo.CONTENT_TYPE)
        reply = Reply(
            status=int(curl.getinfo(CurlInfo.RESPONSE_CODE)),  # type: ignore[arg-type]
            body=body_buffer.getvalue(),
            content_type=content_type.decode("latin-1") if content_type else None,  # type: ignore[union-attr]
            head=head_buffer.getvalue(),
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
        curl.setopt(CurlOpt.POST, 1)
        curl.setopt(CurlOpt.CONNECTTIMEOUT_MS, int(self.connect_timeout * 1000))
        curl.setopt(CurlOpt.TIMEOUT_MS, int(self.request_timeout * 1000))
        curl.setopt(CurlOpt.FOLLOWLOCATION, 1)
        curl.setopt(CurlOpt.MAXREDIRS, MAX_REDIRECTS)
        curl.setopt(CurlOpt.PROXY_CREDENTIAL_NO_REUSE, 1)  # a new proxy login, a new connection
        curl.setopt(CurlOpt.PROXY, "")  # never the environment's proxy
        curl.setopt(CurlOpt.NOPROXY, "")
        curl.setopt(CurlOpt.ACCEPT_ENCODING, ACCEPT_ENCODING)
        if curl.impersonate(self.impersonate, default_headers=True) != 0:
            curl.close()
            raise RequestException(f"impersonating {self.impersonate} is not supported")
        return _Handle(curl)

    def _release(self, handle: _Handle) -> None:
        if self._closed or len(self._idle) >= self.keep:
            handle.curl.close()
        else:
            self._idle.append(handle)

    def _discard(self, handle: _Handle) -> None:
        handle.curl.close()


def _socks(proxy: str | None) -> bool:
    return proxy is not None and proxy.startswith("socks")
