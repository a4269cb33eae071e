"""OpenAI's error bodies: ``{"error": {"message", "type", "param", "code"}}`` with a status.

Every refusal the API makes is an ``ApiError``; the middleware turns it (and aiohttp's
own 404, 405 and 413) into this body, so the official SDK raises its typed errors
(``BadRequestError``, ``AuthenticationError``, ``NotFoundError``, ...).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from contract.errors import ServiceError

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"


class ApiError(ServiceError):
    """A request refused (or failed) with an OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status, dumps=_dumps,
                                 headers=self.headers)  # fmt: skip


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    """400: a field missing, of the wrong type or value."""
    return ApiError(400, message, param=param, code=code)


def not_found(message: str, param: str | None = None) -> ApiError:
    """404: an unknown file, batch or route."""
    return ApiError(404, message, param=param, code="not_found" if param is None else None)


def timed_out(message: str) -> ApiError:
    """504, which the SDKs would retry (twice, by default): told not to, as the wait was
    already as long as the server allows (``x-should-retry`` is read by OpenAI's SDKs)."""
    return ApiError(504, message, type=SERVER_ERROR, code="timeout",
                    headers={"x-should-retry": "false"})  # fmt: skip


def too_large(message: str) -> ApiError:
    return ApiError(413, message, code="request_too_large")


def unavailable(message: str) -> ApiError:
    return ApiError(503, message, type=SERVER_ERROR, code="service_unavailable")


def internal() -> ApiError:
    return ApiError(
        500, "the server had an error while processing your request; it is logged",
        type=SERVER_ERROR, code="server_error",
    )  # fmt: skip


def from_http_exception(request: web.Request, error: web.HTTPException) -> ApiError:
    """aiohttp's own refusals (no such route, wrong method, body too big) in OpenAI's shape."""
    if error.status == 404:
        return ApiError(404, f"Invalid URL ({request.method} {request.path})", code="unknown_url")
    if error.status == 405:
        allowed = ", ".join(sorted(getattr(error, "allowed_methods", ()) or ()))
        message = f"Method {request.method} is not allowed on {request.path}"
        return ApiError(405, message + (f"; allowed: {allowed}" if allowed else ""),
                        code="method_not_allowed")  # fmt: skip
    if error.status == 413:
        return too_large(f"the request body is too large: {error.text or 'over the limit'}")
    return ApiError(error.status, error.reason or "request refused")


_HTML_SIGNIFICANT = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def _dumps(value: Any) -> str:
    """JSON, with the characters that mean something in HTML escaped (the same JSON to a
    parser): a message quoting what was sent never reads as markup anywhere."""
    return json.dumps(value, ensure_ascii=False).translate(_HTML_SIGNIFICANT)
