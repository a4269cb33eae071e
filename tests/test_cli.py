"""The chatgptes command line: exit codes, messages, JSON shapes, secrets kept out."""

from __future__ import annotations

import json

import pytest
import redis
from click.testing import CliRunner

from chatgptes.cli import main
from simulator.local import free_port

LINE = json.dumps({"custom_id": "a", "messages": [{"role": "user", "content": "hi"}]})


@pytest.fixture
def run(monkeypatch, redis_server):
    monkeypatch.setenv("CHATGPTES_REDIS_URL", redis_server)
    monkeypatch.setenv("CHATGPTES_QUEUE_NAME", "cli:queue")

    def invoke(*args: str, input: str | None = None):
        return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)

    return invoke


def test_enqueue_status_cancel_retry(run, real_redis, tmp_path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(LINE + "\n" + LINE.replace('"a"', '"b"') + "\n")
    enqueued = run("enqueue", str(path), "--batch-id", "cli1", "--json")
    assert enqueued.exit_code == 0 and json.loads(enqueued.stdout) == {
        "batch_id": "cli1",
        "jobs": 2,
    }
    status = json.loads(run("status", "cli1", "--json").stdout)
    expected = {
        "batch_id",
        "total",
        "queued",
        "in_progress",
        "succeeded",
        "failed",
        "cancelled",
        "done",
    }
    assert expected <= status.keys() and (status["total"], status["queued"]) == (2, 2)
    assert run("cancel", "cli1").stdout.startswith("cancelled 2 queued prompts of cli1")
    assert json.loads(run("status", "cli1", "--json").stdout)["done"] is True
    results = [json.loads(line) for line in run("results", "cli1").stdout.splitlines()]
    assert [(r["custom_id"], r["status"]) for r in results] == [
        ("a", "cancelled"),
        ("b", "cancelled"),
    ]
    assert run("retry", "cli1").stdout.strip() == "re-enqueued 0 failed jobs of cli1"


def test_same_batch_id_twice_is_refused(run, real_redis) -> None:
    assert run("enqueue", "-", "--batch-id", "dup", input=LINE).exit_code == 0
    again = run("enqueue", "-", "--batch-id", "dup", input=LINE)
    assert again.exit_code == 2 and "already exists" in again.stderr


def test_unknown_model_override_is_bad_input(run, real_redis, redis_server) -> None:
    result = run("enqueue", "-", "--model", "gpt-5", input=LINE)
    assert result.exit_code == 2 and "gpt-4, gpt-4o, gpt-4o-mini" in result.stderr
    assert "nothing was enqueued" in result.stderr
    with redis.Redis.from_url(redis_server) as client:
        assert client.keys("*") == []


def test_unknown_batch_and_job_exit_1(run, real_redis) -> None:
    assert run("status", "nope").exit_code == 1
    missing = run("job", "nope.0")
    assert missing.exit_code == 1 and "no job 'nope.0'" in missing.stderr


def test_wait_timeout_exits_3(run, real_redis) -> None:
    run("enqueue", "-", "--batch-id", "slow", input=LINE)
    result = run("wait", "slow", "--timeout", "0")
    assert result.exit_code == 3 and "not done" in result.stderr


def test_unreachable_redis_is_clear_and_hides_the_password(monkeypatch) -> None:
    monkeypatch.setenv("CHATGPTES_REDIS_URL", f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    result = CliRunner().invoke(main, ["status", "x"])
    assert result.exit_code == 1
    assert "Redis at redis://:***@127.0.0.1" in result.stderr and "hunter2" not in result.output


def test_bad_settings_name_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("CHATGPTES_RETRY_BUDGETS", '{"Hiccup": 1}')
    result = CliRunner().invoke(main, ["config"])
    assert result.exit_code == 2
    assert (
        "CHATGPTES_RETRY_BUDGETS" in result.stderr and "unknown error class Hiccup" in result.stderr
    )


def test_config_lists_every_setting_with_secrets_masked(monkeypatch) -> None:
    monkeypatch.setenv("CHATGPTES_REDIS_URL", "redis://:hunter2@redis:6379/0")
    monkeypatch.setenv("CHATGPTES_PROXIES", "http://u:pr0xypass@10.0.0.1:3128")
    result = CliRunner().invoke(main, ["config"])
    assert result.exit_code == 0
    assert "hunter2" not in result.stdout and "pr0xypass" not in result.stdout
    assert "CHATGPTES_PROXIES=http://u:***@10.0.0.1:3128" in result.stdout
    assert result.stdout.count("CHATGPTES_") >= 30
