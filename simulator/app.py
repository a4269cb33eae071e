"""The site's handlers: the chat page, admin-ajax.php and the ``/__sim`` control endpoints.

``POST /wp-admin/admin-ajax.php`` takes a form urlencoded or multipart (``forms``) and
checks, in this order (HTTP 200 unless said; JSON bodies are ``application/json;
charset=UTF-8`` with non-ASCII escaped as PHP's ``json_encode`` does; the wordings W are
the site's language's, ``wording``):

1. ``action`` is neither ``wpaicg_chat_shortcode_message`` nor ``wpaicg_chatbox_message``
   → HTTP 400, body ``0`` (what WordPress's admin-ajax.php answers for an unknown action).
2. ``_wpnonce`` invalid, expired, or (with cookie binding) not issued to this
   ``wpaicg_session`` cookie → ``{"status":"error","msg":W}``, W rotating
   through "Security check", "Invalid nonce. Please refresh the page.",
   "Nonce verification failed".
3. the consent field (``wpaicg_user_agree``, or ``consent_field``) missing or not ``1``
   → ``{"status":"error","msg":"Something went wrong","data":W.consent}``.
4. a form that is not this chat's (``form_mismatch``): a ``post_id`` not the site's, an
   action not its type's, a ``bot_id`` or ``chatbot_identity`` not its own, a
   ``wpaicg_chat_client_id`` not 10 letters and digits, a ``wpaicg_chat_history`` not a
   JSON array → ``{"status":"error","msg":W.not_this_chat}``. (The plugin would answer the
   first three under another chat's settings, or not at all; the last two it does not
   check: here each is refused and counted, so a test can say no malformed form was sent.)
5. ``message`` empty → ``{"status":"error","msg":W.empty_message}``.
6. prohibited word → ``{"status":"error","msg":W.flagged}``.
7. quota used up → ``{"tokenLimitReached":true,"msg":"You have reached your token
   limit.","status":"error"}``.
8. success → ``{"status":"success","msg":"Something went wrong","data":W.answer_prefix +
   message}`` (``Echo: `` in ``de`` and ``en``; a message that asks for a "JSON object"
   gets ``Echo: {"echo": message}``, the object behind a word of prose as models do; one
   that sends a JSON Schema, or writes one in its text, gets an object of that schema's
   shape instead, see ``schema_answers``; one that offers functions gets calls of them,
   or a plain answer once they have answered, see ``tool_answers``; the word
   ``offschema`` makes those answers off the schema), or with ``stream`` on,
   ``text/event-stream`` of ``data: {"choices":[{"delta":{"content":PIECE}}]}\\n\\n``
   events whose pieces join to the answer, then ``data: [DONE]\\n\\n``.

Before any of that, for the page and the ajax endpoint alike: a banned
identity gets HTTP 403 (page: the "Just a moment..." challenge HTML; ajax:
``You are not allowed to access this feature.``), an identity over its rate
(or still inside a Retry-After it was given) gets HTTP 429 with
``Retry-After: <seconds>`` and body ``Too Many Requests``; then the latency is
slept and a fault may be injected (see ``faults``): a reset, a 5xx page, an
HTML body on the ajax endpoint, a slow reply, a 429 with ``Retry-After: 1``
(held to like a real one), or on the ajax endpoint a nonce refusal as in 2.

The identity is the port's (``direct``, ``proxyN``, …) unless a middleware
put one on the request (the gateway port: ``gw:USER``), so one application
serves any number of identities.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import socket
import struct
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from simulator.config import CHAT_ACTIONS, SimConfig
from simulator.faults import FAULT_RETRY_AFTER, NON_JSON_BODY, SERVER_ERROR_PAGES, Fault
from simulator.forms import read_form
from simulator.latency import parse_latency
from simulator.limits import Admission
from simulator.nonces import CHAT_ACTION, REST_ACTION
from simulator.pages import AJAX_PATH, CHALLENGE_PAGE, NOT_ALLOWED_TEXT
from simulator.schema_answers import instance_of, off_instance_of, schema_in, schema_written_in
from simulator.state import SimState
from simulator.tool_answers import (
    OFF_SCHEMA_WORD,
    PLAIN_AS_JSON,
    plain_answer,
    tool_answer,
    tool_prompt,
)

Serve = Callable[[web.Request, SimState, str], Awaitable[web.StreamResponse]]

STATE_KEY = web.AppKey("sim_state", SimState)
IDENTITY_KEY = web.AppKey("sim_identity", str)
REQUEST_IDENTITY_KEY: Any
ANSWERED_KEY: Any  # set on an ajax request the site answered (for the ledger)
try:
    REQUEST_IDENTITY_KEY = web.RequestKey("sim_request_identity", str)
    ANSWERED_KEY = web.RequestKey("sim_answered", bool)
except AttributeError:  # aiohttp < 3.13: plain string keys, which warn only on newer versions
    REQUEST_IDENTITY_KEY = "sim_request_identity"
    ANSWERED_KEY = "sim_answered"

SESSION_COOKIE = "wpaicg_session"
_SESSION_RE = re.compile(r"^[0-9a-f]{32}$")
_CLIENT_ID_RE = re.compile(r"[A-Za-z0-9]{10}")

TOKEN_LIMIT_MSG = "You have reached your token limit."


class ConnectionAborted(Exception):
    """Raised after a reset fault has torn the connection down, so no reply is written."""


def _json(payload: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(payload, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        charset="UTF-8",
    )


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="UTF-8")


def set_request_identity(request: web.Request, identity: str) -> None:
    """Serve this one request as ``identity`` instead of the port's own."""
    request[REQUEST_IDENTITY_KEY] = identity


def request_identity(request: web.Request) -> str:
    """The identity a request is served as: set on the request, else the port's."""
    identity: str | None = request.get(REQUEST_IDENTITY_KEY)
    return identity if identity is not None else request.app[IDENTITY_KEY]


def _context(request: web.Request) -> tuple[SimState, str]:
    return request.app[STATE_KEY], request_identity(request)


def _too_many_requests(retry_after: int) -> web.Response:
    return web.Response(
        text="Too Many Requests", status=429, headers={"Retry-After": str(retry_after)}
    )


def _nonce_refusal(state: SimState) -> web.Response:
    return _json({"status": "error", "msg": state.next_nonce_wording()})


def _abort_connection(request: web.Request) -> None:
    """Close with a TCP RST, the way a crashed upstream or a middlebox drops a request."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _admit(state: SimState, identity: str, *, ajax: bool) -> web.Response | None:
    """Apply bans and the rate limit; a response means the request stops here."""
    verdict = state.limiter.admit(identity)
    if verdict.violation:
        state.stats.violation(identity)
    if verdict.newly_banned:
        state.stats.ban(identity, verdict.banned_until)
    if verdict.admission is Admission.BANNED:
        state.stats.reply(identity, "refused")
        if ajax:
            return web.Response(text=NOT_ALLOWED_TEXT, status=403)
        return _html(CHALLENGE_PAGE, status=403)
    if verdict.admission is Admission.RATE_LIMITED:
        state.stats.reply(identity, "rate_limited")
        return _too_many_requests(verdict.retry_after)
    return None


async def _delay_and_fault(
    request: web.Request, state: SimState, identity: str, *, ajax: bool
) -> web.Response | None:
    """Sleep the drawn latency, then maybe inject a fault; a response means stop here."""
    if not state.latency.is_zero:
        await asyncio.sleep(state.latency.sample_seconds(state.rng))
    fault = state.faults.draw(ajax=ajax)
    if fault is None:
        return None
    state.stats.fault(identity, fault.value)
    if fault is Fault.SLOW:
        await asyncio.sleep(state.config.slow_seconds)
        return None
    if fault is Fault.RESET:
        _abort_connection(request)
        raise ConnectionAborted
    if fault is Fault.SERVER_ERROR:
        status = state.faults.server_error_status()
        return _html(SERVER_ERROR_PAGES[status], status=status)
    if fault is Fault.RATE_LIMITED:
        state.limiter.impose_retry_after(identity, FAULT_RETRY_AFTER)
        state.stats.reply(identity, "rate_limited")
        return _too_many_requests(FAULT_RETRY_AFTER)
    if fault is Fault.STALE_NONCE:
        state.stats.reply(identity, "nonce_failed")
        return _nonce_refusal(state)
    return _html(NON_JSON_BODY)


async def _guarded(request: web.Request, kind: str, serve: Serve) -> web.StreamResponse:
    """Count, admit, delay and fault one page/ajax request, then hand it to ``serve``."""
    state, identity = _context(request)
    ajax = kind == "ajax"
    state.stats.request(identity, kind)
    entry = None
    if ajax:  # what reached the site, answered or not (its sender may die meanwhile)
        text = (await read_form(request)).get("message", "")
        state.stats.receive(text)
        entry = state.ledger.arrive(text, identity)
    try:
        with state.stats.inflight_request(identity):
            refusal = _admit(state, identity, ajax=ajax)
            if refusal is None:
                refusal = await _delay_and_fault(request, state, identity, ajax=ajax)
            if refusal is not None:
                return refusal
            response = await serve(request, state, identity)
            state.ledger.end(entry, answered=request.get(ANSWERED_KEY, False))
            return response
    finally:
        if entry is not None and entry.ended is None:
            state.ledger.end(entry, answered=False)


async def page(request: web.Request) -> web.StreamResponse:
    return await _guarded(request, "page", _serve_page)


async def _serve_page(request: web.Request, state: SimState, identity: str) -> web.Response:
    session = request.cookies.get(SESSION_COOKIE, "")
    if not _SESSION_RE.match(session):
        session = secrets.token_hex(16)
    nonce = state.nonces.create(CHAT_ACTION, session, identity)
    rest_nonce = state.nonces.create(REST_ACTION, session, identity)
    html = state.pages.render(state.pick_markup(), nonce, rest_nonce)
    response = _html(html)
    response.set_cookie(SESSION_COOKIE, session, path="/", httponly=True, samesite="Lax")
    return response


async def ajax(request: web.Request) -> web.StreamResponse:
    return await _guarded(request, "ajax", _serve_ajax)


async def _serve_ajax(request: web.Request, state: SimState, identity: str) -> web.StreamResponse:
    fields = await read_form(request)
    session = request.cookies.get(SESSION_COOKIE, "")
    refusal = _check_form(state, identity, fields, session)
    if refusal is not None:
        kind, response = refusal
        state.stats.reply(identity, kind)
        return response
    state.limiter.record_success(identity)
    state.stats.reply(identity, "success")
    state.stats.answer(fields["message"])
    request[ANSWERED_KEY] = True
    answer = state.config.wording.answer_prefix + echoed(fields["message"])
    if state.config.stream:
        return await _stream_answer(request, answer)
    return _json({"status": "success", "msg": "Something went wrong", "data": answer})


def echoed(message: str) -> str:
    """The message; or calls of the functions it offers; or an object of the schema it sends
    or writes; or the message as a JSON object when it asks for one."""
    off_schema = OFF_SCHEMA_WORD in message.lower()
    tools = tool_prompt(message)
    if tools is not None:
        calls = tool_answer(tools, off_schema)
        if calls is not None:
            return calls
    schema = schema_in(message)
    if schema is None and tools is None:
        schema = schema_written_in(message)
    if schema is not None:
        return json.dumps((off_instance_of(schema) if off_schema else None) or instance_of(schema))
    if tools is not None:
        plain = plain_answer(tools)
        return json.dumps({"echo": plain}) if PLAIN_AS_JSON in message else plain
    return json.dumps({"echo": message}) if "JSON object" in message else message


def _check_form(
    state: SimState, identity: str, fields: Mapping[str, str], session: str
) -> tuple[str, web.Response] | None:
    """The plugin's checks in its order; (stats kind, reply) for the first that fails."""
    config, wording = state.config, state.config.wording
    if fields.get("action") not in CHAT_ACTIONS.values():
        return "unknown_action", web.Response(text="0", status=400)
    if not state.nonces.verify(fields.get("_wpnonce", ""), CHAT_ACTION, session, identity):
        return "nonce_failed", _nonce_refusal(state)
    if fields.get(config.consent_field) != "1":
        body = {"status": "error", "msg": "Something went wrong", "data": wording.consent}
        return "consent_missing", _json(body)
    mismatch = form_mismatch(config, fields)
    if mismatch is not None:
        state.stats.mismatch(mismatch)
        return "form_mismatch", _json({"status": "error", "msg": wording.not_this_chat})
    message = fields.get("message", "")
    if not message.strip():
        return "bad_request", _json({"status": "error", "msg": wording.empty_message})
    lowered = message.lower()
    if any(word.lower() in lowered for word in config.prohibited_words if word):
        return "prohibited", _json({"status": "error", "msg": wording.flagged})
    if state.limiter.quota_reached(identity):
        body = {"tokenLimitReached": True, "msg": TOKEN_LIMIT_MSG, "status": "error"}
        return "token_limited", _json(body)
    return None


def form_mismatch(config: SimConfig, fields: Mapping[str, str]) -> str | None:
    """The first field of ``fields`` that is not what this site's chat sends, or None."""
    expected = {
        "post_id": str(config.post_id),
        "action": config.chat_action,
        "bot_id": str(config.bot_id),
        "chatbot_identity": config.chatbot_identity,
    }
    for name, value in expected.items():
        if fields.get(name, "").strip() != value:
            return name
    if not _CLIENT_ID_RE.fullmatch(fields.get("wpaicg_chat_client_id", "")):
        return "wpaicg_chat_client_id"
    try:
        history = json.loads(fields.get("wpaicg_chat_history", ""))
    except ValueError:
        history = None
    return None if isinstance(history, list) else "wpaicg_chat_history"


def answer_chunks(answer: str, pieces: int = 4) -> list[str]:
    """Split an answer into a few consecutive pieces that join back to it."""
    size = max(1, -(-len(answer) // pieces))
    return [answer[i : i + size] for i in range(0, len(answer), size)] or [""]


async def _stream_answer(request: web.Request, answer: str) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    for piece in answer_chunks(answer):
        event = {"choices": [{"delta": {"content": piece}}]}
        await response.write(f"data: {json.dumps(event)}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def sim_stats(request: web.Request) -> web.Response:
    return _json(request.app[STATE_KEY].stats.snapshot())


async def sim_ledger(request: web.Request) -> web.Response:
    """``GET /__sim/ledger?since=N``: the ajax POSTs after the N-th (see ``ledger``)."""
    try:
        since = int(request.query.get("since", "0"))
    except ValueError:
        return web.Response(text="since must be a whole number", status=400)
    return _json(request.app[STATE_KEY].ledger.since(since))


async def sim_reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    return _json({"reset": True})


async def sim_latency(request: web.Request) -> web.Response:
    """``POST /__sim/latency?spec=fixed:60000``: the site slows down (or speeds up) now."""
    try:
        latency = parse_latency(request.query.get("spec", ""))
    except ValueError as error:
        return web.Response(text=str(error), status=400)
    request.app[STATE_KEY].latency = latency
    return _json({"latency": request.query["spec"]})


@web.middleware
async def swallow_aborted(request: web.Request, handler: Any) -> web.StreamResponse:
    """Turn a reset fault into a silent end of the handler instead of an error log line."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except ConnectionAborted:
        response = web.Response(status=500)
        response.force_close()
        return response


def build_app(
    state: SimState, identity: str, middlewares: Iterable[Middleware] = ()
) -> web.Application:
    """One port's application: the site's routes, served as ``identity``."""
    app = web.Application(middlewares=[swallow_aborted, *middlewares])
    app[STATE_KEY] = state
    app[IDENTITY_KEY] = identity
    app.router.add_get("/", page)
    app.router.add_post(AJAX_PATH, ajax)
    app.router.add_get(AJAX_PATH, ajax)
    app.router.add_get("/__sim/stats", sim_stats)
    app.router.add_get("/__sim/ledger", sim_ledger)
    app.router.add_post("/__sim/reset", sim_reset)
    app.router.add_post("/__sim/latency", sim_latency)
    return app
