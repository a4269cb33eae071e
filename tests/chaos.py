"""What the chaos tests share: prompt files, and a batch read through the CLI as users read it."""

from __future__ import annotations

import json
from pathlib import Path

from simulator.local import wait_until
from tests.conftest import Fleet


def write_prompts(path: Path, count: int, *, tag: str = "q", extra: tuple[str, ...] = ()) -> str:
    lines = [
        json.dumps(
            {"custom_id": f"{tag}{n}", "messages": [{"role": "user", "content": f"{tag} {n}"}]}
        )
        for n in range(count)
    ]
    lines += [
        json.dumps({"custom_id": f"x{n}", "messages": [{"role": "user", "content": content}]})
        for n, content in enumerate(extra)
    ]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def enqueue(fleet: Fleet, tmp_path: Path, count: int, **options: object) -> str:
    enqueued = fleet.cli("enqueue", write_prompts(tmp_path / "p.jsonl", count, **options), "--json")
    assert enqueued.returncode == 0, enqueued.stderr
    return json.loads(enqueued.stdout)["batch_id"]


def batch_under_way(
    fleet: Fleet, tmp_path: Path, *, prompts: int, latency_ms: int, inflight: int, first: int
) -> str:
    """Two workers sharing ``inflight`` slots on one unthrottled identity, a batch of
    ``prompts`` at a site answering in ``latency_ms``; returns once ``first`` are done."""
    fleet.start_simulator("--latency", f"fixed:{latency_ms}")
    fleet.start_workers(
        2, proxy_rate_per_second=0, proxy_max_inflight=inflight, fleet_max_inflight=inflight
    )
    batch_id = enqueue(fleet, tmp_path, prompts)
    wait_until(finished_at_least(fleet, batch_id, first), timeout=60, what=f"{first} prompts done")
    return batch_id


def status(fleet: Fleet, batch_id: str) -> dict:
    shown = fleet.cli("status", batch_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def results(fleet: Fleet, batch_id: str) -> list[dict]:
    return [json.loads(line) for line in fleet.cli("results", batch_id).stdout.splitlines()]


def finished_at_least(fleet: Fleet, batch_id: str, count: int):
    def check() -> dict | None:
        shown = status(fleet, batch_id)
        return shown if shown["succeeded"] + shown["failed"] >= count else None

    return check


def done(fleet: Fleet, batch_id: str):
    def check() -> dict | None:
        shown = status(fleet, batch_id)
        return shown if shown["done"] else None

    return check


def assert_one_result_per_prompt(found: list[dict], count: int, tag: str = "q") -> None:
    assert [r["custom_id"] for r in found] == [f"{tag}{n}" for n in range(count)]
