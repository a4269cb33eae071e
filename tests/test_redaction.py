from contract.config import QueueSettings
from contract.redaction import redact_text, redact_url


def test_password_in_url_is_masked() -> None:
    assert (
        redact_url("http://alice:s3cr3t@proxy.example:8080")
        == "http://alice:***@proxy.example:8080"
    )
    assert redact_url("redis://:hunter2@10.0.0.1:6379/2") == "redis://:***@10.0.0.1:6379/2"


def test_url_without_password_is_unchanged() -> None:
    assert redact_url("socks5://10.0.0.1:1080") == "socks5://10.0.0.1:1080"


def test_passwords_inside_free_text_are_masked() -> None:
    text = "failed via http://bob:pa55@1.2.3.4:3128 and socks5h://u:p@h:1 then redis://:x@r/0"
    masked = redact_text(text)
    assert "pa55" not in masked and ":p@" not in masked and ":x@" not in masked
    assert "http://bob:***@1.2.3.4:3128" in masked


def test_config_description_masks_the_redis_password(monkeypatch) -> None:
    monkeypatch.setenv("CHATGPTES_REDIS_URL", "redis://:topsecret@127.0.0.1:6380/3")
    described = QueueSettings().describe()
    assert described["redis_url"] == "redis://:***@127.0.0.1:6380/3"
    assert "topsecret" not in str(described)


SECRET_PASSWORDS = ["pa/ss1", "pa?ss", "pa#ss", "p@ss", "pa ss", "s3cr3t"]


def test_a_password_with_url_delimiters_is_masked_whole() -> None:
    for secret in SECRET_PASSWORDS:
        for scheme in ("http", "socks5h", "redis"):
            url = f"{scheme}://bob:{secret}@10.0.0.7:3128/0"
            for shown in (redact_url(url), redact_text(f"'{url}' is not a URL (bad port)")):
                assert secret not in shown and "bob:***@10.0.0.7:3128" in shown, shown


def test_the_log_processor_masks_every_string_value() -> None:
    from contract.logs import redact_secrets

    event = {
        "event": "proxy failed",
        "proxy": "http://bob:pa/ss1@10.0.0.7:3128",
        "error": ConnectionError("via socks5h://u:p@ss@h:1 refused"),
        "count": 3,
    }
    masked = redact_secrets(None, "warning", event)
    assert "pa/ss1" not in str(masked) and "p@ss" not in str(masked)
    assert masked["count"] == 3


def test_bad_settings_do_not_echo_the_password() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        QueueSettings(redis_url="redis://u:zq/xy@h:1/0")
    messages = " ".join(error["msg"] for error in caught.value.errors())
    assert "zq/xy" not in str(caught.value)  # not as the input either
    assert "must be percent-encoded" in messages and "'/' as %2F" in messages


def test_a_user_only_credential_is_masked_whole() -> None:
    assert redact_url("http://TOKENSECRET@gw.example:7777") == "http://***@gw.example:7777"
    assert redact_url("redis://S3cr%40tOnly@10.0.0.1/0") == "redis://***@10.0.0.1/0"
    # An empty password leaves the user name as the secret.
    assert redact_url("http://TOKENSECRET:@gw.example:7777") == "http://***@gw.example:7777"
    text = "worker.started shown=['http://TOKENSECRET@gw:1', 'socks5h://u:pw@h:2']"
    assert redact_text(text) == "worker.started shown=['http://***@gw:1', 'socks5h://u:***@h:2']"


def test_a_user_only_credential_with_url_delimiters_is_masked_whole() -> None:
    for secret in SECRET_PASSWORDS:
        url = f"http://{secret}@10.0.0.7:3128"
        for shown in (redact_url(url), redact_text(f"'{url}' refused")):
            assert secret not in shown and "http://***@10.0.0.7:3128" in shown, shown


def test_a_raw_newline_in_one_url_is_masked_too() -> None:
    assert redact_url("redis://:pa\nss@h:1/0") == "redis://:***@h:1/0"


def test_config_description_masks_a_user_only_redis_credential(monkeypatch) -> None:
    monkeypatch.setenv("CHATGPTES_REDIS_URL", "redis://S3cr%40tOnly@127.0.0.1:6380/3")
    described = QueueSettings().describe()
    assert described["redis_url"] == "redis://***@127.0.0.1:6380/3"


def test_a_password_given_as_a_query_argument_is_masked() -> None:
    url = "redis://10.0.0.1:6379/0?db=2&password=hunter2&socket_timeout=5"
    assert redact_url(url) == "redis://10.0.0.1:6379/0?db=2&password=***&socket_timeout=5"
    assert "hunter2" not in redact_text(f"connecting to {url} failed")


BAD_REDIS_URLS = [
    "redis://:S3cr@t:p/w?q#r%s tZ@127.0.0.1:6379/0",  # nothing encoded
    "redis://:S3cr%40t:p%2Fw%3Fq%23r%s%20tZ@127.0.0.1:6379/0",  # a stray %
    "redis://:S3cr%40t:p%2Fw%3Fq%23r%25s%20tZ@127.0.0.1:99999/0",  # a bad port
    "redis:/:S3cr%40t:p%2Fw%3Fq%23r%25s%20tZ@127.0.0.1/0",  # one slash: no URL at all
    "http://:S3cr%40t:p%2Fw%3Fq%23r%25s%20tZ@127.0.0.1/0",
]


def test_a_bad_redis_url_is_refused_without_any_piece_of_it() -> None:
    import pytest
    from pydantic import ValidationError

    secrets = ("S3cr@t:p/w?q#r%s tZ", "S3cr%40t:p%2Fw%3Fq%23r%25s%20tZ")
    for url in BAD_REDIS_URLS:
        with pytest.raises(ValidationError) as caught:
            QueueSettings(redis_url=url)
        said = str(caught.value)
        leaked = [s[i : i + 4] for s in secrets for i in range(len(s) - 3) if s[i : i + 4] in said]
        assert not leaked, (url, leaked, said)
        assert "Redis URL" in said  # it says what is wrong, and where


def test_masking_takes_time_linear_in_the_text() -> None:
    import time

    # A scheme matched anywhere in a run of letters took quadratic time: ~2 s for 40,000
    # letters, minutes for a payload. Each of these takes milliseconds now.
    for text in ("a" * 200_000 + "@", "a1" * 100_000 + "@", "://x " * 40_000 + "@"):
        started = time.perf_counter()
        redact_text(text)
        redact_url(text)
        assert time.perf_counter() - started < 2.0, text[:20]
