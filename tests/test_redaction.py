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
