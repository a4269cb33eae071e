"""A webhook receiver for the tests: an HTTP server on 127.0.0.1 that keeps every delivery.

It checks each one with the official SDK (``openai``'s ``client.webhooks.unwrap``), the way
a user's receiver would, and can refuse the first attempts (to prove the retries) or
answer otherwise (a redirect, a hang). It runs in a thread of its own, so that tests
of worker processes and of the deliverer in this event loop both use it; ``running``
stops it whatever happens.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from openai import OpenAI

SECRET = "whsec_" + base64.b64encode(b"the tests' webhook signing key!!").decode()


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int  # the status the receiver answered
    event: Any = None  # the SDK's event, when the signature checked out
    problem: str = ""  # why the SDK refused it, when it did


class Receiver:
    """Answers ``refuse_first`` deliveries with ``refuse_status``, the rest with 200."""

    def __init__(
        self, *, refuse_first: int = 0, refuse_status: int = 503, port: int = 0,
        secret: str = SECRET,
    ) -> None:  # fmt: skip
        self.secret = secret
        self.refuse_first = refuse_first
        self.refuse_status = refuse_status
        self.hang_seconds = 0.0  # set > 0: every delivery waits that long before answering
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._sdk = OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1", max_retries=0)
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}/hooks"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver._received(self, body)

            def log_message(self, *args: object) -> None:  # quiet
                pass

        return Handler

    def _received(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {name.lower(): value for name, value in handler.headers.items()}
        with self._lock:
            refused = len(self.deliveries) < self.refuse_first
            status = self.refuse_status if refused else 200
            event, problem = None, ""
            try:
                event = self._sdk.webhooks.unwrap(body, headers, secret=self.secret)
            except Exception as error:
                problem = f"{type(error).__name__}: {error}"
            self.deliveries.append(Delivery(handler.path, headers, body, status, event, problem))
        if self.hang_seconds:  # recorded as received, answered too late
            time.sleep(self.hang_seconds)
        handler.send_response(status)
        if 300 <= status < 400:
            handler.send_header("Location", "/elsewhere")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def accepted(self) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.answered == 200]

    def events(self) -> list[Any]:
        """The events taken (2xx), as the SDK unwrapped them."""
        return [d.event for d in self.accepted()]

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._sdk.close()


@contextmanager
def running(**options: Any) -> Iterator[Receiver]:
    receiver = Receiver(**options)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
