"""The worker's settings: combinations that cannot work are refused at start, naming them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from worker.config import WorkerConfig, shortest_claim_ttl


def test_a_claim_ttl_that_leaves_no_time_to_send_is_refused() -> None:
    """Regression: 0.2 s claims renewed every 0.1 s passed validation, but the margin
    (0.25 s) left no window: nothing was ever sent, and nothing said why."""
    with pytest.raises(ValidationError) as refused:
        WorkerConfig(claim_ttl_seconds=0.2, heartbeat_seconds=0.1)
    said = str(refused.value)
    assert "CHATGPTES_CLAIM_TTL_SECONDS (0.2)" in said
    assert "CHATGPTES_HEARTBEAT_SECONDS (0.1)" in said
    assert f"at least {shortest_claim_ttl(0.1):g}s" in said
    WorkerConfig(claim_ttl_seconds=shortest_claim_ttl(0.1), heartbeat_seconds=0.1)  # enough


@pytest.mark.parametrize("heartbeat", [0.05, 0.1, 0.5, 1.0, 2.0, 10.0])
def test_the_shortest_claim_ttl_named_is_accepted(heartbeat: float) -> None:
    WorkerConfig(claim_ttl_seconds=shortest_claim_ttl(heartbeat), heartbeat_seconds=heartbeat)


def test_the_default_grace_covers_the_default_request_timeout() -> None:
    """Regression: 30 s of grace against 60 s requests: SIGTERM abandoned requests on the wire
    and another worker sent them again."""
    config = WorkerConfig()
    assert config.shutdown_grace_seconds >= config.request_timeout_seconds


def test_a_grace_shorter_than_a_request_is_refused() -> None:
    with pytest.raises(ValidationError, match="CHATGPTES_SHUTDOWN_GRACE_SECONDS \\(10\\)"):
        WorkerConfig(shutdown_grace_seconds=10, request_timeout_seconds=60)
    WorkerConfig(shutdown_grace_seconds=10, request_timeout_seconds=10)


def test_the_old_names_still_count_and_are_named_deprecated(monkeypatch) -> None:
    monkeypatch.setenv("CHATGPTES_LEASE_TTL_SECONDS", "7")
    monkeypatch.setenv("CHATGPTES_CHUNK_CRASH_LIMIT", "5")
    config = WorkerConfig()
    assert (config.claim_ttl_seconds, config.chunk_lapse_limit) == (7, 5)
    assert config.deprecated_in_use() == [
        ("lease_ttl_seconds", "claim_ttl_seconds"), ("chunk_crash_limit", "chunk_lapse_limit"),
    ]  # fmt: skip
    monkeypatch.setenv("CHATGPTES_CLAIM_TTL_SECONDS", "4")  # the new name wins
    assert WorkerConfig().claim_ttl_seconds == 4
