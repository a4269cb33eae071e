"""``chatgptes serve``: the OpenAI-compatible HTTP API (files, batches, chat completions),
and the web console at ``/``.

Code written for OpenAI's Batch API runs against it by changing ``base_url``; see
``producer.http`` (and ``producer.http.console`` for the console). Without
``CHATGPTES_API_KEYS`` it serves only a loopback address (bound anywhere else it refuses
to start).
"""

from __future__ import annotations

import click
import structlog
from aiohttp import web

from chatgptes.running import EXIT_BAD_INPUT, fail, load_settings
from contract.logs import configure_logging
from producer.http.app import make_app
from producer.http.auth import is_loopback
from producer.http.settings import ApiSettings

DEFAULT_PORT = 8000

log = structlog.get_logger("chatgptes.api")


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; beyond loopback, CHATGPTES_API_KEYS is required.",
)
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
def serve(host: str, port: int) -> None:
    """Serve the OpenAI-compatible API (/v1/files, /v1/batches, /v1/chat/completions) and
    the web console (/)."""
    settings = load_settings(ApiSettings)
    configure_logging(settings.log_format, settings.log_level)
    keys = settings.api_key_list()
    open_without_keys = is_loopback(host)
    if not keys and not open_without_keys:
        # Open to the network with no key would serve anyone: refuse to start instead.
        fail(f"serving on {host} needs CHATGPTES_API_KEYS (clients send one as "
             "'Authorization: Bearer <key>'); only a loopback address is served without",
             EXIT_BAD_INPUT)  # fmt: skip
    log.info("api.listening", url=f"http://{host}:{port}/v1", console=f"http://{host}:{port}/",
             api_keys=len(keys),
             open=not keys and open_without_keys)  # fmt: skip
    app = make_app(settings, open_without_keys=open_without_keys)
    web.run_app(app, host=host, port=port, print=None, handler_cancellation=True)


if __name__ == "__main__":
    serve()
