"""Each command imports only what it uses: the readers never load the HTTP stacks or the worker.

Every command runs in a fresh interpreter against the tests' Redis; the modules it
loaded are read at its end. ``status``, ``job``, ``batches`` and ``workers`` answer
at once because of it (their whole-process times: docs/benchmarks.md).
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
NEVER = ("aiohttp", "curl_cffi", "worker", "simulator")
LINE = json.dumps({"custom_id": "a", "messages": [{"role": "user", "content": "hi"}]})


def loaded_by(tmp_path: Path, redis_url: str, *args: str) -> set[str]:
    listing = tmp_path / "modules.json"
    env = {**os.environ, "CHATGPTES_REDIS_URL": redis_url, "CHATGPTES_QUEUE_NAME": "imports:q"}
    done = subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST, str(listing), *args],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return set(json.loads(listing.read_text()))


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


@pytest.mark.parametrize(
    "args", [("status", "imp"), ("job", "imp.0"), ("batches",), ("workers",)], ids=" ".join
)
def test_readers_never_import_the_http_stacks_or_the_worker(
    batch, redis_server, tmp_path, args
) -> None:
    loaded = loaded_by(tmp_path, redis_server, *args)
    assert "producer.api" in loaded  # the command did run
    found = sorted(m for m in loaded if m.split(".")[0] in NEVER)
    assert found == [], f"{' '.join(args)} imported {found[:5]}"


def test_help_imports_no_command_it_lists(tmp_path, redis_server) -> None:
    loaded = loaded_by(tmp_path, redis_server, "--help")
    assert not [m for m in loaded if m.split(".")[0] in NEVER]
    assert "chatgptes.serve" not in loaded and "chatgptes.top" not in loaded
