"""The demo's last resort when there is no Redis: a fakeredis server on a local TCP port.

Only the demo uses it, and says so: workers and producers reach it like any Redis. Two
gaps of fakeredis's TCP server are filled here: arq's worker asks for ``INFO`` when it
starts, and the server hangs up after any error reply where real Redis keeps the
connection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def start_fake_redis() -> tuple[str, Callable[[], None]]:
    """(URL, stop) of a fakeredis server on 127.0.0.1; ImportError without fakeredis[lua]."""
    from fakeredis import TcpFakeServer

    _teach_fakeredis_what_arq_needs()
    server = TcpFakeServer(("127.0.0.1", 0))
    server.daemon_threads = True  # a connection left open must not hold up the exit
    server.block_on_close = False
    server.RequestHandlerClass = _error_tolerant(server.RequestHandlerClass)
    thread = threading.Thread(target=server.serve_forever, name="fakeredis", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return f"redis://127.0.0.1:{server.server_address[1]}/0", stop


def _teach_fakeredis_what_arq_needs() -> None:
    """fakeredis (2.40) has no INFO, which an arq worker sends when it starts: a minimal one."""
    from fakeredis._commands import SUPPORTED_COMMANDS, command
    from fakeredis._socket._base import BaseFakeSocket

    if "info" in SUPPORTED_COMMANDS:
        return

    def info(self: Any, *sections: bytes) -> bytes:
        return b"# Server\r\nredis_version:7.0.0\r\n# Clients\r\nconnected_clients:1\r\n"

    BaseFakeSocket.info = command((), (bytes,))(info)  # type: ignore[attr-defined]


def _error_tolerant(handler: type) -> type:
    """fakeredis's TCP handler hangs up after any error reply; real Redis keeps the connection."""
    from redis.exceptions import ResponseError

    class ErrorTolerantHandler(handler):  # type: ignore[valid-type, misc]
        def setup(self) -> None:
            super().setup()
            read_response = self.current_client.read_response

            def read_reply(**kwargs: Any) -> Any:
                try:
                    return read_response(**kwargs)
                except ResponseError as error:
                    return error  # written back as an error reply, like real Redis

            self.current_client.read_response = read_reply

    return ErrorTolerantHandler
