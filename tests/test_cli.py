"""The chatgptes command line: exit codes, messages, JSON shapes, secrets kept out."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis
from click.testing import CliRunner

from chatgptes.cli import main
from contract import keys
from contract.config import QueueSettings
from contract.models import JobError, JobResult
from producer.api import BatchQueue
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
        "warnings": [],
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
    assert run("cancel", "cli1").stdout == "cancelled 2 prompts of cli1\n"
    assert json.loads(run("status", "cli1", "--json").stdout)["done"] is True
    results = [json.loads(line) for line in run("results", "cli1").stdout.splitlines()]
    assert [(r["custom_id"], r["status"]) for r in results] == [
        ("a", "cancelled"),
        ("b", "cancelled"),
    ]
    refused = run("retry", "cli1")  # a cancelled batch keeps what it ended with
    assert refused.exit_code == 1
    assert "batch cli1 is cancelled: retry is refused" in refused.stderr


def test_same_batch_id_twice_is_refused(run, real_redis) -> None:
    assert run("enqueue", "-", "--batch-id", "dup", input=LINE).exit_code == 0
    again = run("enqueue", "-", "--batch-id", "dup", input=LINE.replace('"a"', '"other"'))
    assert again.exit_code == 1 and "batch dup already exists" in again.stderr
    assert "nothing was enqueued" in again.stderr
    assert json.loads(run("status", "dup", "--json").stdout)["total"] == 1


def test_unknown_model_override_is_bad_input(run, real_redis, redis_server) -> None:
    result = run("enqueue", "-", "--model", "gpt-9", input=LINE)
    assert result.exit_code == 2 and "CHATGPTES_MODELS" in result.stderr
    assert "nothing was enqueued" in result.stderr
    with redis.Redis.from_url(redis_server) as client:
        assert client.keys("*") == []


def openai_line(custom_id: str, **body: object) -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
                                **body}})  # fmt: skip


BAD_INPUTS = {
    "a lone surrogate": (b'{"custom_id": "a", "messages": [{"role": "user", "content": '
                         b'"x\\ud800"}]}\n', "lone surrogate"),
    "nesting 10,000 deep": (b"[" * 10_000 + b"]" * 10_000 + b"\n", "nested too deeply"),
    "a repeated key": (b'{"custom_id": "a", "messages": [{"role": "user", "content": "x"}], '
                       b'"messages": [{"role": "user", "content": "y"}]}\n',
                       "duplicate key 'messages'"),
    "a misspelt parameter": (openai_line("a", temprature=1).encode() + b"\n",
                             "did you mean 'temperature'?"),
    "a parameter the site cannot honour": (openai_line("a", n=2).encode() + b"\n", "body.n"),
    "binary data": (b"\x00\x01\x02\xff\xfe", "not valid UTF-8"),
    "UTF-16": ('{"custom_id": "a"}'.encode("utf-16"), "line 1"),
    "a joined file": ((LINE + "\n\ufeff" + LINE + "\n").encode(), "byte order mark"),
    "nothing": (b"", "no prompts"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_exits_2_names_the_line_and_writes_nothing(
    run, real_redis, redis_server, tmp_path, case
) -> None:
    data, says = BAD_INPUTS[case]
    path = tmp_path / "p.jsonl"
    path.write_bytes(data)
    result = run("enqueue", str(path))
    assert result.exit_code == 2, result.output
    assert says in result.stderr and "nothing was enqueued" in result.stderr
    assert "Traceback" not in result.output
    with redis.Redis.from_url(redis_server) as client:
        assert client.keys("*") == []


def test_a_file_over_the_size_limit_is_refused_unread(
    run, real_redis, monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("CHATGPTES_MAX_INPUT_BYTES", "1000")
    path = tmp_path / "big.jsonl"
    path.write_text((LINE + "\n") * 100)
    result = run("enqueue", str(path))
    assert result.exit_code == 2 and "CHATGPTES_MAX_INPUT_BYTES" in result.stderr
    piped = run("enqueue", "-", input=(LINE + "\n") * 100)
    assert piped.exit_code == 2 and "<stdin> sent more than 1,000 bytes" in piped.stderr


def test_a_directory_is_bad_input(run, real_redis, tmp_path) -> None:
    result = run("enqueue", str(tmp_path))
    assert result.exit_code == 2 and "is a directory" in result.stderr


def test_ignored_parameters_are_summed_up_as_warnings(run, real_redis) -> None:
    lines = [openai_line(f"p{n}", temperature=0.5, stop="END") for n in range(3)]
    result = run("enqueue", "-", "--json", input="\n".join(lines))
    assert result.exit_code == 0
    warnings = json.loads(result.stdout)["warnings"]
    assert len(warnings) == 1 and warnings[0].startswith("temperature (3 prompts): ")
    assert f"warning: {warnings[0]}" in result.stderr


def test_unknown_batch_and_job_exit_1(run, real_redis) -> None:
    assert run("status", "nope").exit_code == 1
    missing = run("job", "nope.0")
    assert missing.exit_code == 1 and "no job 'nope.0'" in missing.stderr


def test_wait_timeout_exits_3(run, real_redis) -> None:
    run("enqueue", "-", "--batch-id", "slow", input=LINE)
    result = run("wait", "slow", "--timeout", "0")
    assert result.exit_code == 3 and "not done" in result.stderr


def test_a_browser_curl_cannot_impersonate_is_refused_at_start(monkeypatch) -> None:
    monkeypatch.setenv("CHATGPTES_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("CHATGPTES_IMPERSONATE", "netscape4")
    result = CliRunner().invoke(main, ["worker", "--burst"])
    assert result.exit_code == 2, result.output
    assert "CHATGPTES_IMPERSONATE: 'netscape4' is not a browser" in result.stderr


def test_unreachable_redis_is_clear_and_hides_the_password(monkeypatch) -> None:
    monkeypatch.setenv("CHATGPTES_REDIS_URL", f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    result = CliRunner().invoke(main, ["status", "x"])
    assert result.exit_code == 1
    assert "Redis at redis://:***@127.0.0.1" in result.stderr and "hunter2" not in result.output
    assert "cannot be reached" in result.stderr
    assert "CHATGPTES_REDIS_URL names the Redis to use" in result.stderr  # where to change it


async def refuse(redis_url: str, batch_id: str, index: int) -> None:
    """The prompt ends failed, as a worker would store it."""
    settings = QueueSettings(redis_url=redis_url, queue_name="cli:queue")
    async with BatchQueue.connect(settings) as queue:
        created = await queue.store.created_at(batch_id)
        (request,) = await queue.store.requests(batch_id, [index], created)
        error = JobError(type="ContentRefused", message="refused")
        await queue.store.ledger.save_results([JobResult.for_request(request, status="failed",
                                                                     error=error)])  # fmt: skip


def test_a_batch_id_given_as_a_job_id_gets_the_job_id_form(run, real_redis) -> None:
    run("enqueue", "-", "--batch-id", "jobs", input=LINE + "\n" + LINE.replace('"a"', '"b"'))
    as_job = run("job", "jobs")
    assert as_job.exit_code == 1
    assert "no job 'jobs' (it is a batch, with job IDs jobs.0 to jobs.1)" in as_job.stderr
    past = run("job", "jobs.2")
    assert "batch jobs has job IDs jobs.0 to jobs.1" in past.stderr
    shapeless = run("job", "what?")
    assert "a job ID is <batch>.<n>" in shapeless.stderr
    assert "job IDs are" not in run("job", "nope.0").stderr


def test_counts_of_one_are_singular(run, real_redis, redis_server) -> None:
    run("enqueue", "-", "--batch-id", "one", input=LINE)
    asyncio.run(refuse(redis_server, "one", 0))
    retried = run("retry", "one")
    assert retried.exit_code == 0 and retried.stdout == "re-enqueued 1 failed job of one\n"
    run("enqueue", "-", "--batch-id", "two", input=LINE)
    run("cancel", "two")
    held = run("results", "two", "--format", "openai")
    assert "1 error line not written" in held.stderr and "1 result written" not in held.stderr
    assert "0 results written" in held.stderr
    assert run("enqueue", "-", input=LINE).stderr.endswith("enqueued 1 prompt\n")


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


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("CHATGPTES_REDIS_URL", "notaurl", "must start with redis://"),
        ("CHATGPTES_REDIS_URL", "http://127.0.0.1:6379/0", "must start with redis://"),
        ("CHATGPTES_REDIS_URL", "redis://127.0.0.1:99999/0", "port is not a number"),
        ("CHATGPTES_RETRY_BUDGETS", "{bad", "not valid JSON"),
        ("CHATGPTES_PROXY_MAX_INFLIGHT", "many", "valid integer"),
        ("CHATGPTES_HEARTBEAT_SECONDS", "60", "CHATGPTES_CLAIM_TTL_SECONDS (3) leaves a worker"),
        ("CHATGPTES_SHUTDOWN_GRACE_SECONDS", "30", "shorter than CHATGPTES_REQUEST_TIMEOUT"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(monkeypatch, variable, value, says) -> None:
    monkeypatch.setenv(variable, value)
    commands = [["worker"], ["config"]]
    if variable == "CHATGPTES_REDIS_URL":  # the producer's commands read only the queue's
        commands.append(["status", "x"])
    for command in commands:
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2, (command, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: bad settings:"), lines
        assert says in lines[0]


def test_a_misspelled_variable_is_warned_about(monkeypatch) -> None:
    monkeypatch.setenv("CHATGPTES_PROXIE", "http://10.0.0.1:3128")
    result = CliRunner().invoke(main, ["config"])
    assert result.exit_code == 0
    assert "CHATGPTES_PROXIE is not a setting (did you mean CHATGPTES_PROXIES?)" in result.stderr


def test_job_output_escapes_control_characters(run, real_redis) -> None:
    hostile = json.dumps({"custom_id": "a\nb\x1b]0;pwned\x07", "messages": [
        {"role": "user", "content": "hi"}]})  # fmt: skip
    assert run("enqueue", "-", "--batch-id", "esc", input=hostile).exit_code == 0
    shown = run("job", "esc.0")
    assert shown.exit_code == 0
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    assert "custom_id: a\\nb\\x1b]0;pwned\\x07" in shown.stdout


def test_results_say_when_the_batch_is_not_done(run, real_redis) -> None:
    run("enqueue", "-", "--batch-id", "early", input=LINE)
    result = run("results", "early")
    assert result.exit_code == 0 and result.stdout == ""
    assert "batch early is not done yet" in result.stderr


def test_results_to_an_unwritable_path_fail(run, real_redis, tmp_path) -> None:
    run("enqueue", "-", "--batch-id", "ro", input=LINE)
    result = CliRunner().invoke(main, ["results", "ro", "-o", str(tmp_path / "no" / "dir.jsonl")])
    assert result.exit_code == 2 and "dir.jsonl" in result.stderr


def test_workers_lists_live_ones_and_check_says_if_this_host_has_one(run, real_redis) -> None:
    import os
    import socket
    import time

    client = redis.Redis.from_url(os.environ["CHATGPTES_REDIS_URL"])
    now_ms = int(time.time() * 1000)
    assert run("workers", "--check").exit_code == 1
    for worker_id, host, seen in (("w1", socket.gethostname(), now_ms),
                                  ("w2", "elsewhere", now_ms - 60_000)):  # fmt: skip
        client.zadd("chatgptes:{fleet}:workers", {worker_id: seen})
        client.hset(f"chatgptes:{{fleet}}:worker:{worker_id}", mapping={
            "host": host, "pid": 7, "queue": "q", "in_flight": 3, "last_seen": seen,
            "heartbeat_seconds": 5})  # fmt: skip
    listed = run("workers")
    assert "alive" in listed.stdout and "silent" in listed.stdout
    checked = run("workers", "--check")
    assert checked.exit_code == 0 and checked.stdout.startswith("ok: 1 live worker on ")
    assert run("workers", "--check", "--host", "elsewhere").exit_code == 1
    client.hset("chatgptes:{fleet}:worker:w1", "chores_failing", "stops: ValueError (3 times)")
    checked = run("workers", "--check")
    assert checked.exit_code == 0  # it still runs prompts: a restart would not mend a chore
    assert "chores failing: stops: ValueError (3 times)" in checked.stderr
    assert "chores failing: stops" in run("workers").stdout
    client.close()


def test_wait_exits_4_when_the_batch_ends_cancelled(run, real_redis) -> None:
    run("enqueue", "-", "--batch-id", "stop", input=LINE)
    assert run("cancel", "stop").exit_code == 0
    waited = run("wait", "stop", "--timeout", "5")
    assert waited.exit_code == 4 and "batch stop cancelled" in waited.stderr


def test_enqueue_takes_a_completion_window_and_metadata(run, real_redis) -> None:
    enqueued = run("enqueue", "-", "--batch-id", "meta", "--completion-window", "2h",
                   "--metadata", "team=ops", "--metadata", "run=7", input=LINE)  # fmt: skip
    assert enqueued.exit_code == 0, enqueued.stderr
    shown = json.loads(run("status", "meta", "--json").stdout)
    assert shown["metadata"] == {"team": "ops", "run": "7"} and shown["completion_window"] == "2h"
    assert shown["request_counts"] == {"total": 1, "completed": 0, "failed": 0}
    bad = run("enqueue", "-", "--metadata", "novalue", input=LINE)
    assert bad.exit_code == 2 and "key=value" in bad.stderr


def test_openai_results_go_to_an_output_file_and_an_error_file(run, real_redis, tmp_path) -> None:
    two = LINE + "\n" + LINE.replace('"a"', '"b"') + "\n"
    run("enqueue", "-", "--batch-id", "split", input=two)
    run("cancel", "split")  # both end cancelled: error lines
    out, err = tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    written = run("results", "split", "--format", "openai", "-o", str(out), "--errors", str(err))
    assert written.exit_code == 0
    assert out.read_text() == ""
    errors = [json.loads(line) for line in err.read_text().splitlines()]
    assert [(e["custom_id"], e["error"]["code"]) for e in errors] == [
        ("a", "batch_cancelled"), ("b", "batch_cancelled")]  # fmt: skip
    held = run("results", "split", "--format", "openai")
    assert held.stdout == "" and "2 error lines not written" in held.stderr
    assert run("results", "split", "--errors", str(err)).exit_code == 2


def test_serve_beyond_loopback_without_a_key_refuses_to_start(monkeypatch) -> None:
    monkeypatch.delenv("CHATGPTES_API_KEYS", raising=False)
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--port", str(free_port())])
    assert result.exit_code == 2 and "needs CHATGPTES_API_KEYS" in result.stderr


def test_config_lists_the_api_settings_with_the_keys_hidden(monkeypatch) -> None:
    monkeypatch.setenv("CHATGPTES_API_KEYS", "sk-one-0123456789abcdef,sk-two-0123456789abcdef")
    result = CliRunner().invoke(main, ["config"])
    assert result.exit_code == 0 and "is not a setting" not in result.stderr
    assert "CHATGPTES_API_KEYS=*** (2 keys)" in result.stdout and "sk-one-" not in result.stdout
    assert result.stdout.count("CHATGPTES_MAX_INPUT_BYTES=") == 1


def test_the_setting_names_are_every_roles_settings() -> None:
    from chatgptes.setting_names import SETTING_NAMES
    from chatgptes.settings_view import every_field

    assert tuple(name for _, name, _ in every_field()) == SETTING_NAMES, (
        "a setting was added or removed: update chatgptes/setting_names.py"
    )


def test_help_lists_every_command_with_its_own_help_line() -> None:
    import click

    from chatgptes.cli import LAZY_COMMANDS
    from chatgptes.lazy_commands import load

    shown = CliRunner().invoke(main, ["--help"]).stdout
    for name, lazy in LAZY_COMMANDS.items():
        assert load(lazy).get_short_help_str(limit=1000) == lazy.short_help, name
    names = [line.split()[0] for line in shown.split("Commands:")[1].splitlines() if line.strip()]
    assert names == sorted(main.list_commands(click.Context(main)))
    assert {"batches", "enqueue", "serve", "sim", "status", "top", "worker", "workers"} <= set(
        names
    )
    assert "  status   Show a batch's progress" in shown
    assert "  serve    Serve the OpenAI-compatible API" in shown


def test_results_offers_every_format_there_is() -> None:
    from chatgptes.cli import RESULT_FORMATS
    from producer.formats import FORMATS

    assert tuple(sorted(FORMATS)) == RESULT_FORMATS


def test_status_says_which_setting_made_prompts_wait(run, real_redis, redis_server) -> None:
    run("enqueue", "-", "--batch-id", "slow", input=LINE)
    with redis.Redis.from_url(redis_server) as client:  # the workers' counters
        client.hset(keys.policy_events(), mapping={
            "waited_for_capacity": 7, "waited_for_capacity:rate": 7})  # fmt: skip
    shown = run("status", "slow").stdout
    hint = "waited for capacity (rate): each identity sends at most "
    assert hint + "CHATGPTES_PROXY_RATE_PER_SECOND requests a second" in shown, shown
    assert "CHATGPTES_FLEET_MAX_INFLIGHT" not in shown
