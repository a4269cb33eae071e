"""Where webhooks go, as a worker's settings say: the fleet's endpoints, a project's own, their
secrets — checked at start, and never quoted back (a URL may carry credentials)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from contract.outbox import FLEET, targets_for
from tests.webhook_receiver import SECRET
from worker.config import WorkerConfig
from worker.standard_webhooks import decode_secret
from worker.webhook_endpoints import parse_endpoints, split_url_entry
from worker.webhooks import WebhookOptions

OTHER = "whsec_" + "b3RoZXIgcHJvamVjdCdzIHNpZ25pbmcga2V5IQ=="


@pytest.mark.parametrize(
    ("urls", "secret", "problem"),
    [
        ("https://h.example/x", "", "needs CHATGPTES_WEBHOOK_SECRET"),
        ("https://h.example/x", "sk-notawhsec", "must start with 'whsec_'"),
        ("https://h.example/x", "whsec_!!!not-base64!!!", "is not base64"),
        ("https://h.example/x", "whsec_c2hvcnQ=", "at least 16 bytes"),
        ("ftp://u:hunter2@h.example/x", SECRET, "URL 1 (ftp://h.example) must be http(s)"),
        ("https://a.example, https://u:hunter2@b.example:x/", SECRET, "URL 2 is not a URL"),
        ("team-a:https://u:hunter2@a.example/x", f"team-b:{OTHER}", "URL 1 (project 'team-a') "
         "needs CHATGPTES_WEBHOOK_SECRET"),
        ("https://a.example/x", f"{SECRET},team-b:{OTHER}", "'team-b' has a webhook secret but no URL"),
        ("https://a.example/x", f"{SECRET},bad name:{OTHER}", "a project name is"),
        ("https://a.example/x,https://a.example/x", SECRET, "given twice"),
    ],
)  # fmt: skip
def test_bad_webhook_settings_say_why_without_quoting_a_secret(
    urls: str, secret: str, problem: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        WorkerConfig(_env_file=None, webhook_urls=urls, webhook_secret=secret)
    said = str(raised.value)
    assert problem in said
    for secret_text in ("hunter2", "notawhsec", "not-base64", SECRET[6:], OTHER[6:]):
        assert secret_text not in said


def test_a_url_entry_names_its_project_or_is_the_fleets() -> None:
    assert split_url_entry("https://h.example/x") == (FLEET, "https://h.example/x")
    assert split_url_entry("team-a:https://h.example/x") == ("team-a", "https://h.example/x")
    assert split_url_entry("https:https://h.example") == ("https", "https://h.example")
    assert split_url_entry("http://u:p@h.example") == (FLEET, "http://u:p@h.example")


def test_a_projects_endpoint_is_signed_with_its_secret_else_the_fleets() -> None:
    found = parse_endpoints("https://f.example,team-a:https://a.example,team-b:https://b.example",
                            f"{SECRET},team-a:{OTHER}")  # fmt: skip
    keys = {e.project: e.signing_key for e in found}
    assert keys == {FLEET: decode_secret(SECRET), "team-a": decode_secret(OTHER),
                    "team-b": decode_secret(SECRET)}  # fmt: skip
    # The same URL for two projects is two endpoints, with queues of their own.
    twice = parse_endpoints("https://h.example,team-a:https://h.example", SECRET)
    assert len({e.key for e in twice}) == 2
    assert [e.project for e in targets_for("team-a", found)] == ["team-a"]
    assert [e.project for e in targets_for("team-c", found)] == [FLEET]


def test_config_shows_endpoints_by_their_labels_only() -> None:
    config = WorkerConfig(_env_file=None, webhook_secret=f"{SECRET},team-a:{OTHER}",
                          webhook_urls="https://u:pw@a.example/t0k, team-a:http://b.example:8080/x")  # fmt: skip
    described = config.describe()
    assert described["webhook_urls"] == "https://a.example/***, team-a: http://b.example:8080/***"
    assert described["webhook_secret"] == "***, team-a: ***"


def test_a_workers_settings_make_its_options() -> None:
    config = WorkerConfig(_env_file=None, webhook_urls="https://a.example/x", webhook_secret=SECRET,
                          webhook_timeout_seconds=3, webhook_retry_base_seconds=0.5)  # fmt: skip
    made = WebhookOptions.from_config(config)
    ((only),) = made.endpoints
    assert (only.url, only.signing_key, made.timeout_seconds) == (
        "https://a.example/x", decode_secret(SECRET), 3,
    )  # fmt: skip
    assert made.retry_base_seconds == 0.5 and made.claim_seconds == 8
    assert WebhookOptions.from_config(WorkerConfig(_env_file=None)).endpoints == ()
