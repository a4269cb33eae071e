"""Each command imports only what it uses: a guard against heavy imports creeping back.

Every command runs in a fresh interpreter against the tests' Redis; the modules it
loaded are read at its end and checked against the packages it must never load. A
whole-process time is what users feel, but a time is noisy on a shared machine: the
module lists are what this test holds (the times are in docs/benchmarks.md, from
bench/bench_cli.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Runs the CLI in-process (no quick exit), then lists the modules it loaded.
RUN_AND_LIST = """
import json, sys
from chatgptes.cli import main
try:
    main(sys.argv[2:], prog_name="chatgptes")
except SystemExit:
    pass
with open(sys.argv[1], "w") as out:
    json.dump(sorted(sys.modules), out)
"""
LINE = json.dumps({"custom_id": "a", "messages": [{"role": "user", "content": "hi"}]})
# What only the worker, serve or the simulator need: the HTTP stacks, the tokenizer
# (half a second to load), the schema checker, the metrics, the templates.
SERVICE_SIDE = ("aiohttp", "curl_cffi", "worker", "simulator", "bpe_openai", "jsonschema",
                "prometheus_client", "jinja2", "uvloop")  # fmt: skip
# What only enqueue, the terminal views or logging need.
PRODUCER_EXTRAS = ("producer.inputs", "producer.params", "producer.http", "rich", "structlog")
READERS = [("status", "imp"), ("job", "imp.0"), ("batches",), ("workers",), ("results", "imp")]


def loaded_by(tmp_path: Path, redis_url: str, *args: str) -> set[str]:
    listing = tmp_path / "modules.json"
    env = {**os.environ, "CHATGPTES_REDIS_URL": redis_url, "CHATGPTES_QUEUE_NAME": "imports:q"}
    done = subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST, str(listing), *args],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return set(json.loads(listing.read_text()))


def found(loaded: set[str], forbidden: tuple[str, ...]) -> list[str]:
    """The modules of ``loaded`` that are, or are inside, one of ``forbidden``."""
    return sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden))


@pytest.fixture
def batch(real_redis, redis_server, tmp_path) -> str:
    path = tmp_path / "p.jsonl"
    path.write_text(LINE + "\n")
    env = {**os.environ, "CHATGPTES_REDIS_URL": redis_server, "CHATGPTES_QUEUE_NAME": "imports:q"}
    done = subprocess.run(
        [sys.executable, "-m", "chatgptes.cli", "enqueue", str(path), "--batch-id", "imp"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return "imp"


@pytest.mark.parametrize("args", READERS, ids=" ".join)
def test_readers_load_neither_the_service_side_nor_enqueues_checks(
    batch, redis_server, tmp_path, args
) -> None:
    loaded = loaded_by(tmp_path, redis_server, *args)
    assert "producer.api" in loaded  # the command did run
    heavy = found(loaded, SERVICE_SIDE + PRODUCER_EXTRAS)
    assert heavy == [], f"{' '.join(args)} imported {heavy[:5]}"


def test_help_loads_no_settings_no_redis_and_no_command_it_lists(tmp_path, redis_server) -> None:
    loaded = loaded_by(tmp_path, redis_server, "--help")
    heavy = found(loaded, (*SERVICE_SIDE, *PRODUCER_EXTRAS, "pydantic", "pydantic_settings",
                           "redis", "asyncio", "producer.api", "contract.models"))  # fmt: skip
    assert heavy == [], heavy[:5]
    assert "chatgptes.serve" not in loaded and "chatgptes.top" not in loaded


def test_config_loads_the_settings_not_what_the_roles_run(tmp_path, redis_server) -> None:
    loaded = loaded_by(tmp_path, redis_server, "config")
    assert "worker.config" in loaded and "producer.http.settings" in loaded  # it did run
    heavy = found(loaded, ("aiohttp", "curl_cffi", "simulator", "bpe_openai", "jsonschema",
                           "jinja2", "uvloop", "rich", "structlog"))  # fmt: skip
    assert heavy == [], heavy[:5]


def test_top_once_loads_no_service_side_and_no_logging(batch, redis_server, tmp_path) -> None:
    loaded = loaded_by(tmp_path, redis_server, "top", "--once")
    assert "rich" in loaded  # it did draw
    heavy = found(loaded, (*SERVICE_SIDE, "producer.inputs", "producer.http", "structlog"))
    assert heavy == [], heavy[:5]
