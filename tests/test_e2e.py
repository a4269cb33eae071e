"""The whole path: a real Redis, the simulator process, two `chatgptes worker` processes."""

from __future__ import annotations

import json

import pytest
import redis

from simulator.local import wait_until

pytestmark = pytest.mark.e2e
PROMPTS = 300


def prompts_file(tmp_path, count: int) -> str:
    path = tmp_path / "prompts.jsonl"
    lines = []
    for n in range(count):
        if n % 3 == 0:  # OpenAI Batch API lines work unchanged
            body = {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": f"question {n}"}],
            }
            if n == 3:  # honoured parameters reach the worker
                body["response_format"] = {"type": "json_object"}
            if n == 6:
                body["stop"] = ["question"]
            lines.append(
                {
                    "custom_id": f"c{n}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": body,
                }
            )
        else:
            lines.append(
                {"custom_id": f"c{n}", "messages": [{"role": "user", "content": f"question {n}"}]}
            )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def test_batch_end_to_end_with_two_workers(fleet, tmp_path) -> None:
    fleet.start_simulator("--latency", "uniform:5,30", "--markup", "random")
    fleet.start_workers(2, proxy_rate_per_second=0, max_jobs=16)
    enqueued = fleet.cli("enqueue", prompts_file(tmp_path, PROMPTS), "--json")
    assert enqueued.returncode == 0, enqueued.stderr
    batch = json.loads(enqueued.stdout)
    assert batch["jobs"] == PROMPTS

    waited = fleet.cli("wait", batch["batch_id"], "--timeout", "120")
    assert waited.returncode == 0, waited.stderr + fleet.worker_logs()[-3000:]
    # each worker its own log, each log whole: both say they started
    logs = sorted(tmp_path.glob("worker*.log"))
    assert [p.name for p in logs] == ["worker0.log", "worker1.log"]
    assert all(p.read_text().count('"worker.started"') == 1 for p in logs)

    out = tmp_path / "results.jsonl"
    written = fleet.cli("results", batch["batch_id"], "-o", str(out))
    assert written.returncode == 0, written.stderr
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["custom_id"] for r in results] == [f"c{n}" for n in range(PROMPTS)]
    for n, result in enumerate(results):
        assert result["status"] == "succeeded", result
        if n == 3:  # JSON mode: the object the simulator answered with, and only that
            assert json.loads(result["content"])["echo"].startswith("Your default language")
        elif n == 6:  # cut before its stop sequence
            assert result["content"].endswith("User input: ")
        else:
            assert result["content"].endswith(f"User input: question {n}")
        assert result["model"] == ("gpt-4o-mini" if n % 3 == 0 else "gpt-4o")
        assert result["job_id"] == f"{batch['batch_id']}.{n}"

    status = json.loads(fleet.cli("status", batch["batch_id"], "--json").stdout)
    assert (status["total"], status["succeeded"], status["done"]) == (PROMPTS, PROMPTS, True)

    stats = fleet.sim_stats()
    assert stats["requests"]["ajax"] == PROMPTS
    # Sessions are shared by the workers: one page GET, not one per prompt or per worker.
    assert stats["requests"]["page"] <= 2
    assert stats["inflight_max"] > 1

    openai = fleet.cli("results", batch["batch_id"], "--format", "openai")
    first = json.loads(openai.stdout.splitlines()[0])
    assert first["custom_id"] == "c0" and first["response"]["status_code"] == 200
    assert first["response"]["body"]["choices"][0]["message"]["content"].endswith("question 0")


def test_a_file_with_one_bad_line_enqueues_nothing(fleet, tmp_path) -> None:
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"messages": [{"role": "user", "content": "fine"}]})
    bad = json.dumps({"messages": [{"role": "robot", "content": "nope"}]})
    path.write_text("\n".join([good, good, bad, good]) + "\n")
    result = fleet.cli("enqueue", str(path))
    assert result.returncode == 2
    assert "line 3" in result.stderr and "robot" in result.stderr
    assert "nothing was enqueued" in result.stderr
    client = redis.Redis.from_url(fleet.redis_url)
    try:
        assert client.keys("chatgptes:*") == [] and client.zcard(fleet.queue_name) == 0
    finally:
        client.close()


def test_stdin_and_follow(fleet) -> None:
    fleet.start_simulator("--latency", "fixed:5")
    fleet.start_workers(1, proxy_rate_per_second=0)
    lines = "".join(
        json.dumps({"custom_id": f"s{n}", "messages": [{"role": "user", "content": f"s{n}"}]})
        + "\n"
        for n in range(5)
    )
    enqueued = fleet.cli("enqueue", "-", "--batch-id", "from-stdin", input=lines)
    assert enqueued.returncode == 0 and enqueued.stdout.strip() == "from-stdin"
    followed = fleet.cli("results", "from-stdin", "--follow")
    ids = sorted(json.loads(line)["custom_id"] for line in followed.stdout.splitlines())
    assert ids == [f"s{n}" for n in range(5)]
    job = json.loads(fleet.cli("job", "from-stdin.4", "--json").stdout)
    assert job["status"] == "succeeded" and job["custom_id"] == "s4"


def test_sigterm_lets_running_jobs_finish(fleet, tmp_path) -> None:
    fleet.start_simulator("--latency", "fixed:800")
    fleet.start_workers(1, proxy_rate_per_second=0, shutdown_grace_seconds=20,
                        request_timeout_seconds=20)  # fmt: skip
    [worker] = fleet.workers
    # One prompt first: the identity proves itself (slow start), then three run at once.
    warm_up = fleet.cli(
        "enqueue",
        "-",
        "--json",
        input=json.dumps({"messages": [{"role": "user", "content": "hi"}]}),
    )
    assert (
        fleet.cli("wait", json.loads(warm_up.stdout)["batch_id"], "--timeout", "30").returncode == 0
    )
    enqueued = fleet.cli("enqueue", prompts_file(tmp_path, 3), "--json")
    batch_id = json.loads(enqueued.stdout)["batch_id"]

    wait_until(
        lambda: fleet.sim_stats()["inflight"] == 3, timeout=30, what="three requests at the site"
    )
    worker.terminate()
    assert worker.wait(timeout=30) == 0
    status = json.loads(fleet.cli("status", batch_id, "--json").stdout)
    assert status["succeeded"] == 3, status


def test_a_planted_pickle_job_is_refused_and_the_worker_carries_on(fleet, tmp_path) -> None:
    fleet.start_simulator()
    fleet.start_workers(1, proxy_rate_per_second=0)
    client = redis.Redis.from_url(fleet.redis_url)
    pickle = (
        b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94."
    )
    client.set("arq:job:planted", pickle)
    client.zadd(fleet.queue_name, {"planted": 1, "zero-scored junk": 0})
    enqueued = fleet.cli("enqueue", prompts_file(tmp_path, 5), "--json")
    batch_id = json.loads(enqueued.stdout)["batch_id"]
    assert fleet.cli("wait", batch_id, "--timeout", "60").returncode == 0
    assert all(worker.poll() is None for worker in fleet.workers)
    assert client.zscore(fleet.queue_name, "planted") is None  # arq failed it, unread
    assert "deserializing job planted failed" in fleet.worker_logs()
    client.close()


def test_a_workers_metrics_move_with_its_work(fleet, tmp_path) -> None:
    import urllib.request

    from simulator.local import free_port

    fleet.start_simulator("--latency", "fixed:5")
    port = free_port()
    fleet.start_workers(1, proxy_rate_per_second=0, metrics_port=f"{port}-{port + 3}",
                        heartbeat_seconds=0.5, claim_ttl_seconds=2)  # fmt: skip

    def scrape() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                return reply.read().decode()
        except OSError:  # not listening yet
            return ""

    def sample(text: str, line_start: str) -> float:
        found = [line for line in text.splitlines() if line.startswith(line_start)]
        return float(found[0].rsplit(" ", 1)[1]) if found else 0.0

    wait_until(lambda: "chatgptes_prompts_total" in scrape(), timeout=30, what="the endpoint")
    before = sample(scrape(), 'chatgptes_prompts_total{error_type="",outcome="succeeded",site=')
    enqueued = fleet.cli("enqueue", prompts_file(tmp_path, 12), "--json")
    batch_id = json.loads(enqueued.stdout)["batch_id"]
    assert fleet.cli("wait", batch_id, "--timeout", "60").returncode == 0
    after = scrape()
    assert (
        sample(after, 'chatgptes_prompts_total{error_type="",outcome="succeeded",site=')
        == before + 12
    )
    assert sample(after, 'chatgptes_upstream_request_seconds_count{kind="ajax"}') >= 12
    wait_until(lambda: sample(scrape(), 'chatgptes_identities{state="ready"}') == 1,
               timeout=30, what="the identity gauge")  # fmt: skip
    listed = json.loads(fleet.cli("workers", "--json").stdout)
    assert listed and listed[0]["alive"]


def test_cancel_counts_every_prompt_it_ended_held_ones_too(fleet, tmp_path) -> None:
    fleet.start_simulator("--latency", "fixed:1500")
    fleet.start_workers(1, proxy_rate_per_second=0, proxy_max_inflight=4, fleet_max_inflight=4)
    enqueued = fleet.cli("enqueue", prompts_file(tmp_path, 40), "--json")
    batch_id = json.loads(enqueued.stdout)["batch_id"]
    # The worker holds a chunk or two: four prompts on the wire, the rest of them waiting.
    wait_until(lambda: fleet.sim_stats()["inflight"] == 4, timeout=30, what="4 requests sent")

    said = fleet.cli("cancel", batch_id, "--wait", "30")

    assert said.returncode == 0, said.stderr
    status = json.loads(fleet.cli("status", batch_id, "--json").stdout)
    assert status["state"] == "cancelled", status
    cancelled = status["cancelled"]
    shown = said.stdout.strip()
    assert shown.startswith(f"cancelled {cancelled} prompts of {batch_id} ("), shown
    queued, held = (int(part.split()[0]) for part in shown.split("(")[1].split(")")[0].split(","))
    assert held >= 1 and queued + held == cancelled, shown  # the held ones are counted too
    finished = int(shown.rpartition("; ")[2].removesuffix(" already sent finished"))
    assert finished >= 4, shown  # the four on the wire (an earlier one finished before)
    assert cancelled + status["succeeded"] == 40 and status["failed"] == 0, status


def test_a_worker_started_before_its_redis_waits_for_it_then_works(tmp_path) -> None:
    from simulator import local
    from tests.conftest import Fleet

    port = local.free_port()  # nothing answers here yet: a Redis restarting, or started late
    fleet = Fleet(tmp_path, f"redis://127.0.0.1:{port}/0")
    server = None
    try:
        fleet.start_simulator("--latency", "fixed:5")
        [worker] = fleet.start_workers(1, proxy_rate_per_second=0)
        wait_until(lambda: '"redis.unavailable"' in fleet.worker_logs(), timeout=30,
                   what="the worker waiting for Redis")  # fmt: skip
        assert worker.poll() is None  # waiting, not gone
        server = local.start_redis(tmp_path, port)
        enqueued = fleet.cli("enqueue", prompts_file(tmp_path, 6), "--json")
        batch_id = json.loads(enqueued.stdout)["batch_id"]
        waited = fleet.cli("wait", batch_id, "--timeout", "60")
        assert waited.returncode == 0, waited.stderr + fleet.worker_logs()[-2000:]
        assert worker.poll() is None and '"worker.started"' in fleet.worker_logs()
    finally:
        fleet.stop()
        if server is not None:
            local.stop_process(server)


def test_a_worker_whose_redis_never_answers_exits_1_naming_it(tmp_path) -> None:
    from simulator import local
    from tests.conftest import Fleet

    fleet = Fleet(tmp_path, f"redis://127.0.0.1:{local.free_port()}/0")
    try:
        [worker] = fleet.start_workers(1, redis_startup_wait_seconds=1)
        assert worker.wait(timeout=30) == 1
        said = fleet.worker_logs()
        assert "cannot be reached" in said and "CHATGPTES_REDIS_URL" in said
        assert '"redis.unavailable"' in said  # it waited before it gave up
    finally:
        fleet.stop()
