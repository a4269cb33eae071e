"""Every row of the reply table in DESIGN.md, as plain strings."""

import json
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from contract.sites import LANGUAGES
from simulator.wording import LANGUAGES as SIMULATED_LANGUAGES
from simulator.wording import WORDINGS
from worker.errors import (
    Blocked,
    ConsentMissing,
    ContentRefused,
    PermanentError,
    ProxyFault,
    QuotaExceeded,
    RateLimited,
    RetryableError,
    SessionStale,
    UpstreamHiccup,
    UpstreamRejected,
    Verdict,
)
from worker.replies import REFUSALS, Answer, classify_reply, parse_retry_after

JSON = {"Content-Type": "application/json; charset=UTF-8"}


def reply(status: int, body: object, headers: dict[str, str] | None = None, **kw: object):
    text = body if isinstance(body, str) else json.dumps(body)
    return classify_reply(status, headers if headers is not None else JSON, text, **kw)


def test_success_keys_on_status_not_msg() -> None:
    outcome = reply(200, {"status": "success", "msg": "Something went wrong", "data": "Hi there"})
    assert outcome == Answer("Hi there")


def test_success_with_empty_answer_is_a_hiccup() -> None:
    assert isinstance(reply(200, {"status": "success", "data": ""}), UpstreamHiccup)


@pytest.mark.parametrize(
    "wording",
    ["Security check", "Invalid nonce. Please refresh the page.", "Nonce verification failed"],
)
def test_nonce_failures_are_session_stale(wording: str) -> None:
    outcome = reply(200, {"status": "error", "msg": wording})
    assert isinstance(outcome, SessionStale)
    assert outcome.retryable and outcome.drops_session and outcome.verdict is Verdict.NONE


def test_token_limit_cools_the_identity() -> None:
    outcome = reply(200, {"tokenLimitReached": True, "msg": "You have reached your token limit."})
    assert isinstance(outcome, QuotaExceeded)
    assert outcome.retryable and outcome.verdict is Verdict.COOL


def test_429_carries_retry_after_seconds() -> None:
    outcome = reply(429, "Too Many Requests", {"Retry-After": "17"})
    assert isinstance(outcome, RateLimited)
    assert outcome.retry_after == 17 and outcome.verdict is Verdict.COOL


def test_429_retry_after_as_http_date() -> None:
    now = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
    header = format_datetime(datetime(2026, 11, 23, 12, 1, 30, tzinfo=UTC), usegmt=True)
    outcome = reply(429, "", {"retry-after": header}, now=now.timestamp())
    assert isinstance(outcome, RateLimited) and outcome.retry_after == 90


def test_429_without_retry_after() -> None:
    outcome = reply(429, "", {})
    assert isinstance(outcome, RateLimited) and outcome.retry_after is None


def test_403_challenge_page_quarantines() -> None:
    page = "<html><head><title>Just a moment...</title></head><body>cf-challenge</body></html>"
    outcome = reply(403, page, {"Content-Type": "text/html"})
    assert isinstance(outcome, Blocked) and "challenge page" in str(outcome)
    assert outcome.verdict is Verdict.QUARANTINE and outcome.retryable


def test_not_allowed_text_is_blocked_even_with_200() -> None:
    outcome = reply(
        200, "You are not allowed to access this feature.", {"Content-Type": "text/html"}
    )
    assert isinstance(outcome, Blocked)


def test_not_allowed_as_json_message_is_blocked() -> None:
    outcome = reply(200, {"status": "error", "msg": "You are not allowed to access this feature."})
    assert isinstance(outcome, Blocked)


def test_consent_missing_is_permanent() -> None:
    body = {
        "status": "error",
        "msg": "Something went wrong",
        "data": "Du musst das Kästchen anklicken!",
    }
    outcome = reply(200, body)
    assert isinstance(outcome, ConsentMissing) and isinstance(outcome, PermanentError)
    assert not outcome.retryable


@pytest.mark.parametrize(
    "msg",
    [
        "Your message has been flagged because it contains prohibited words.",
        "Your message has been flagged as potentially harmful or inappropriate.",
    ],
)
def test_content_refused_is_permanent(msg: str) -> None:
    outcome = reply(200, {"status": "error", "msg": msg})
    assert isinstance(outcome, ContentRefused) and not outcome.retryable


def test_every_language_a_site_setting_may_name_has_its_refusal_words() -> None:
    assert tuple(REFUSALS) == LANGUAGES == SIMULATED_LANGUAGES


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_sites_refusals_in_its_language(language: str) -> None:
    """The simulated site's wording (an independent copy) read with the worker's words."""
    wording = WORDINGS[language]
    consent = {"status": "error", "msg": "Something went wrong", "data": wording.consent}
    flagged = {"status": "error", "msg": wording.flagged}
    for setting in (language, None):  # the site's language, or any known one
        assert isinstance(reply(200, consent, language=setting), ConsentMissing)
        assert isinstance(reply(200, flagged, language=setting), ContentRefused)
    others = [other for other in LANGUAGES if other != language]
    for other in others:  # in another language's words it is a refusal, but not known as one
        assert isinstance(reply(200, consent, language=other), UpstreamRejected)


def test_the_plugins_english_flagged_message_is_known_on_every_site() -> None:
    body = {"status": "error", "msg": "Your message has been flagged as inappropriate."}
    assert all(isinstance(reply(200, body, language=lang), ContentRefused) for lang in LANGUAGES)


def test_an_answer_that_mentions_flagged_words_is_still_an_answer() -> None:
    body = {
        "status": "success",
        "data": "Messages get flagged for prohibited words. Security check!",
    }
    assert reply(200, body) == Answer(body["data"])


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_from_the_site_is_a_hiccup(status: int) -> None:
    outcome = reply(status, "<html>Bad things</html>", {"Content-Type": "text/html"})
    assert isinstance(outcome, UpstreamHiccup) and outcome.verdict is Verdict.SUSPECT


def test_non_json_body_is_a_hiccup() -> None:
    outcome = reply(200, "<html><body>Fatal error</body></html>", {"Content-Type": "text/html"})
    assert isinstance(outcome, UpstreamHiccup) and "not JSON" in str(outcome)


def test_json_without_status_is_a_hiccup() -> None:
    assert isinstance(reply(200, {"foo": 1}), UpstreamHiccup)


def test_unknown_refusal_is_permanent_and_quoted() -> None:
    outcome = reply(200, {"status": "error", "msg": "Chat bot is disabled"})
    assert isinstance(outcome, UpstreamRejected) and "Chat bot is disabled" in str(outcome)


def test_unknown_action_reply_is_rejected() -> None:
    assert isinstance(reply(400, "0", {"Content-Type": "text/html"}), UpstreamRejected)


def test_407_is_a_proxy_fault() -> None:
    outcome = reply(407, "Proxy Authentication Required", {"Proxy-Authenticate": 'Basic realm="x"'})
    assert isinstance(outcome, ProxyFault) and outcome.verdict is Verdict.DOWN


def test_502_made_by_the_proxy_is_the_proxys_fault() -> None:
    headers = {
        "Content-Type": "text/html",
        "Proxy-Status": "sim-proxy; error=destination_unavailable",
    }
    outcome = reply(502, "Bad Gateway", headers, via_proxy=True)
    assert isinstance(outcome, ProxyFault) and outcome.verdict is Verdict.DOWN


def test_squid_error_page_is_the_proxys_fault() -> None:
    headers = {"X-Squid-Error": "ERR_CONNECT_FAIL 111"}
    assert isinstance(reply(503, "<html>squid</html>", headers, via_proxy=True), ProxyFault)


def test_a_plain_502_through_a_proxy_makes_the_exit_a_suspect() -> None:
    """Many proxies answer a bare 502: it may be the site's or the proxy's, so the identity
    that carried it is charged (a suspect), and cooled if it keeps failing."""
    outcome = reply(502, "<html>nginx</html>", {"Content-Type": "text/html"}, via_proxy=True)
    assert isinstance(outcome, UpstreamHiccup) and outcome.verdict is Verdict.SUSPECT


def test_proxy_status_header_marks_a_proxy_generated_reply() -> None:
    headers = {"Proxy-Status": "squid; error=connection_refused"}
    assert isinstance(reply(503, "", headers, via_proxy=True), ProxyFault)


def test_streaming_reply_is_joined() -> None:
    chunks = ["Hel", "lo, ", "world"]
    body = (
        "".join(f"data: {json.dumps({'choices': [{'delta': {'content': c}}]})}\n\n" for c in chunks)
        + "data: [DONE]\n\n"
    )
    outcome = reply(200, body, {"Content-Type": "text/event-stream; charset=utf-8"})
    assert outcome == Answer("Hello, world")


def test_streaming_reply_with_role_chunk_and_no_content() -> None:
    body = 'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\ndata: [DONE]\n\n'
    outcome = reply(200, body, {"Content-Type": "text/event-stream"})
    assert isinstance(outcome, UpstreamHiccup)


def test_streaming_error_event_is_classified_like_json() -> None:
    body = 'data: {"status":"error","msg":"Security check"}\n\n'
    assert isinstance(reply(200, body, {"Content-Type": "text/event-stream"}), SessionStale)


def test_every_error_class_says_retryable_or_permanent() -> None:
    for cls in (SessionStale, RateLimited, QuotaExceeded, Blocked, ProxyFault, UpstreamHiccup):
        assert issubclass(cls, RetryableError)
    for cls in (ConsentMissing, ContentRefused, UpstreamRejected):
        assert issubclass(cls, PermanentError)


@pytest.mark.parametrize(("value", "seconds"), [("0", 0), ("  3 ", 3), ("-4", 0), ("soon", None)])
def test_parse_retry_after(value: str, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds
